"""Skip-path FIFO depths from the data dependencies alone: no simulation.

A residual block forks one stream into branches that meet again in an
``add``. The add takes beat ``p`` of every branch at once, so while it waits
for a slow branch (one with line buffers: two 3×3 convs need about four rows
of the block input before their first output) the fork keeps feeding the
fast branch (the identity, or a 1×1 projection), whose output must wait
somewhere. If that somewhere is too small the fork stalls, the slow branch
starves and the network deadlocks: FINN sizes these FIFOs by simulating for
hours and still deadlocks residual nets.

Here the depth follows from counting pixels. For a chain of engines let
``need(p)`` be how many pixels of the fork's stream it must have read before
it can produce its output pixel ``p`` (the window generator's ``need``,
composed along the chain; ``p + 1`` for a plain wire) and ``out(N)`` how
many output pixels it can produce from ``N`` input pixels. While the add
waits for pixel ``p`` of branch ``j`` the fork must be free to deliver
``need_j(p)`` pixels; another branch ``i`` then holds ``out_i(need_j(p)) − p``
finished pixels the add has not taken. A FIFO of

    depth_i = max_p max_{j≠i} (out_i(need_j(p)) − p) · groups_i      beats

on the branch's edge into the add (the branch ``j`` the add waits for hands
each pixel over as it makes it, so only the others count) therefore never
fills while the fork still has to deliver, so no branch ever blocks its
fork: deadlock-free by construction (``deadlock_free_pixels`` in the build
plan; the tests show one beat less deadlocks).

Deadlock-free is not full rate: while branch ``j`` computes pixel ``p`` the
fork goes on delivering, as far as ``j``'s line buffers and pipelines take
it, and ``i``'s FIFO must hold all of that too or the fork stalls and ``j``
starves. So the depth built uses, for the branch waited for, what it *can*
have taken (:func:`chain_absorb`) instead of what it must have: the smaller
of a buffer bound (each window generator's writer stops ``ring`` pixels past
the window its reader is at, and the reader is at most ``ahead`` windows past
the engine's output) and a time bound (output ``p`` leaves at most the
branch's summed engine latency after its last needed pixel arrived, and the
fork delivers at most one pixel per ``period`` cycles). Both come from the
engines' parameters (:func:`stage_buffer`), none from a simulation; the
simulation tests measure the smallest depth that still runs at full rate
next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from qhw.hw.window import WindowGenerator, WindowGeometry, full_rate_ring
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Layer, MaxPool


def layer_need(layer: Layer) -> np.ndarray:
    """Per output pixel of one frame, how many input pixels the layer must have read (raster order)."""
    if isinstance(layer, (Conv, MaxPool)):
        c, h, w = layer.in_spec.shape
        geom = WindowGeometry(h, w, tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding))
        return geom.need.copy()
    if isinstance(layer, GlobalPool):
        return np.array([layer.in_spec.shape[1] * layer.in_spec.shape[2]], dtype=np.int64)
    if isinstance(layer, Dense):
        return np.array([1], dtype=np.int64)
    if isinstance(layer, Add):
        shape = layer.out.shape
        return np.arange(1, (shape[1] * shape[2] if len(shape) == 3 else 1) + 1, dtype=np.int64)
    raise TypeError(f"no dependency model for layer kind {layer.kind!r}")


def frames_need(need: np.ndarray, in_pixels: int, frames: int) -> np.ndarray:
    """``need`` over ``frames`` frames back to back, in pixels counted from the first frame."""
    return np.concatenate([need + f * in_pixels for f in range(frames)])


def chain_need(chain: Sequence[Layer], source_pixels: int, frames: int = 2) -> np.ndarray:
    """Source pixels a chain of single-input layers must read for each of its output pixels.

    An empty chain is a wire: output pixel ``p`` needs ``p + 1`` source pixels.
    """
    need = np.arange(1, frames * source_pixels + 1, dtype=np.int64)  # the source itself
    for layer in chain:
        in_pixels = int(np.prod(layer.in_specs[0].shape[1:])) if len(layer.in_specs[0].shape) == 3 else 1
        # Windows are emitted in order: pixel p waits for every earlier one too
        # (the bottom rows of a padded map need fewer new pixels than the row above).
        own = np.maximum.accumulate(frames_need(layer_need(layer), in_pixels, frames))
        need = need[own - 1]  # output p needs the layer's inputs 0 .. own[p] − 1
    return need


def skip_fifo_pixels(needs: Sequence[np.ndarray], absorbs: Sequence[np.ndarray] | None = None) -> list[int]:
    """Per branch, the most finished pixels it must hold while the add waits for another branch.

    While the add waits for pixel ``p`` of branch ``j``, the fork must be free
    to deliver ``need_j(p)`` pixels, and every other branch ``i`` produces
    ``out_i(need_j(p))`` pixels meanwhile, of which the add took ``p``. The
    branch the add waits for hands each pixel over as it is produced, so
    only the others count: ``max_p max_{j≠i} out_i(need_j(p)) − p``, at
    least 1 (one pixel in flight).

    With ``absorbs`` (:func:`chain_absorb`: the most fork pixels branch ``j``
    can have taken while it has emitted ``p``) in place of the ``need`` of
    the branches waited for, the result is the *full-rate* depth: branch
    ``i``'s FIFO then holds everything the fork can deliver, so it never is
    the reason the fork stalls.
    """
    needs = [np.asarray(n, dtype=np.int64) for n in needs]
    absorbs = needs if absorbs is None else [np.asarray(a, dtype=np.int64) for a in absorbs]
    n_out = min(len(n) for n in list(needs) + list(absorbs))
    needs = [n[:n_out] for n in needs]
    absorbs = [a[:n_out] for a in absorbs]
    depths = []
    for i, n in enumerate(needs):
        others = [m for j, m in enumerate(absorbs) if j != i]
        if not others:
            depths.append(1)
            continue
        critical = np.max(np.stack(others), axis=0)
        # out_i(N): how many output pixels have need <= N (need is non-decreasing)
        produced = np.searchsorted(n, critical, side="right")
        depths.append(max(1, int(np.max(produced - np.arange(n_out)))))
    return depths


# -- full rate: what a branch can hold -------------------------------------------------------

#: Pixels a :class:`~qhw.hw.regroup.Regroup` (engine packer or width adapter) holds at most:
#: its ``capacity`` is under ``in_simd + out_simd`` codes, at most two pixels' worth.
REGROUP_PIXELS = 2


@dataclass(frozen=True)
class StageBuffer:
    """How far one engine's input can run ahead of its output (see :func:`chain_absorb`).

    ``keep`` and ``ring`` are the window generator's (per output pixel of a
    frame, the first input pixel that window or a later one reads; the line
    buffer's size in pixels): its writer takes pixel ``q`` only while
    ``q < keep(w) + ring`` for the window ``w`` it reads. ``ahead`` bounds
    the windows the reader has finished but the engine has not emitted (its
    pipeline registers, FIFOs and packer), so with ``o`` pixels emitted the
    reader is at most at window ``o + ahead``. ``latency`` bounds the cycles
    from the arrival of the last input pixel an output pixel needs to that
    pixel's last beat leaving the engine (one window queued before it, its
    own window, the pipeline); ``period`` is the fewest cycles between two
    of its output pixels.
    """

    keep: np.ndarray
    ring: int
    in_pixels: int
    ahead: int
    latency: int
    period: int

    def absorb(self, emitted: np.ndarray) -> np.ndarray:
        """Most input pixels taken while ``emitted`` output pixels have left (global over frames)."""
        per = len(self.keep)
        w = np.asarray(emitted, dtype=np.int64) + self.ahead
        keep = self.keep[w % per] + (w // per) * self.in_pixels
        return keep + self.ring


def chain_absorb(stages: Sequence[StageBuffer], need: np.ndarray, period: int, source_pixels: int,
                 frames: int = 2) -> np.ndarray:
    """Per output pixel ``p`` of a branch, the most fork pixels it can have taken before emitting ``p``.

    ``need`` (:func:`chain_need`) says what the branch must have read; this
    says what it *can* have read, the smaller of two bounds:

    * **buffers**: composed from the last engine back to the fork, each
      engine's input bounded by :meth:`StageBuffer.absorb` of what it
      emitted, plus :data:`REGROUP_PIXELS` between engines (the width adapter
      that may sit there): line buffers ahead, pipelines full;
    * **time**: output ``p`` leaves at most ``Σ latency`` cycles after the
      fork delivered pixel ``need(p) − 1``, and the fork delivers a pixel at
      most every ``period`` cycles, so it has delivered at most
      ``need(p) + ⌈Σ latency / period⌉`` by then.

    An empty chain is a wire: the fork gives it at most one pixel ahead.
    ``need`` covers ``frames`` frames of ``source_pixels`` fork pixels.
    """
    need = np.asarray(need, dtype=np.int64)
    if not stages:
        return need.copy()
    taken = np.arange(len(need), dtype=np.int64)  # before output p leaves, p have left
    for stage in reversed(stages):
        taken = stage.absorb(taken) + REGROUP_PIXELS
    slack = -(-sum(s.latency for s in stages) // period)
    return np.minimum(np.minimum(taken, need + slack), frames * source_pixels)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def stage_buffer(layer: Layer, *, simd: int, fold=None, out_simd: int | None = None) -> StageBuffer:
    """The :class:`StageBuffer` of ``layer``'s engine at input ``simd`` (and ``fold``, conv / dense).

    ``ahead`` counts, in windows, every register stage between the window
    generator's reader and the engine's output: the reader's output register
    (1); the systolic array's ``rows + cols + 1`` pipeline slots, each holding
    one of a window's ``replays·SF`` input beats (``⌈slots / beats⌉ + 1``
    windows); its output FIFO (one or two entries, counted as two), the bipolar correction and the
    requantizer, each holding one of a window's ``NF`` result beats
    (``⌈4 / NF⌉ + 1``); and the packer (:data:`REGROUP_PIXELS`). An upper
    bound: stalls can compress the pipeline that far, a flowing one holds less.
    ``latency``: two windows of ``replays·SF`` reader cycles (the one queued
    and its own; ``replays·max(SF, requant_interval)`` for a serial
    requantizer, which may pace the reader), the window generator's 2, the
    array's ``rows + cols + 1``, one each for the output FIFO, correction,
    requantizer and packer (a serial requantizer: up to ``max(SF,
    requant_interval)`` more), and the packer's ``⌈C_out / out_simd⌉`` output
    beats.
    """
    spec = layer.in_specs[0]
    px = spec.shape[1] * spec.shape[2] if spec.is_map else 1
    groups = _ceil(spec.shape[0], simd)
    out_beats = _ceil(layer.out.shape[0], out_simd or simd)
    if isinstance(layer, GlobalPool):
        return StageBuffer(np.zeros(1, dtype=np.int64), ring=px, in_pixels=px, ahead=0,
                           latency=3 + 2 * out_beats, period=px * groups)
    if isinstance(layer, Add):
        return StageBuffer(np.arange(px, dtype=np.int64), ring=1, in_pixels=px, ahead=2 + REGROUP_PIXELS,
                           latency=groups + 3 + out_beats, period=groups)
    if not isinstance(layer, (Conv, Dense, MaxPool)):
        raise TypeError(f"no buffer model for layer kind {layer.kind!r}")
    c = spec.shape[0]
    h, w = (spec.shape[1], spec.shape[2]) if spec.is_map else (1, 1)
    kernel, stride, padding = ((1, 1), (1, 1), (0, 0)) if isinstance(layer, Dense) else \
        (tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding))
    nf = _ceil(layer.out_channels, fold.cols) if fold is not None else 1
    geom = WindowGeometry(h, w, kernel, stride, padding)
    beats = nf * kernel[0] * kernel[1] * groups  # the window generator's beats_per_window
    ring = full_rate_ring(geom, groups=groups, beats=beats)
    window_cycles = beats  # reader cycles a window takes at full rate
    if fold is not None:  # conv / dense: array, output FIFO, correction, requantizer
        pipe = _ceil(fold.rows + fold.cols + 1, beats) + 1 + _ceil(4, nf) + 1
        lat = (fold.rows + fold.cols + 1) + 4
        if fold.requant == "serial":
            # a serial requantizer takes up to max(SF, requant_interval) cycles a beat (its latency is
            # that plus one), and one paced slower than SF paces the window's reader with it
            interval = max(beats // nf, fold.requant_interval)
            lat += interval
            window_cycles = nf * interval
    else:                 # max pool: one register stage
        pipe, lat = 1, 2
    # period, the fewest cycles between two output pixels, stays the array's (a paced requantizer
    # may take fewer cycles than its bound); latency takes the bound
    return StageBuffer(geom.keep.copy(), ring=ring, in_pixels=h * w, ahead=1 + pipe + REGROUP_PIXELS,
                       latency=2 * window_cycles + WindowGenerator.latency + lat + out_beats,
                       period=max(beats, out_beats))

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
fork: deadlock-free by construction. It ignores what the branch's own engines buffer (their
rings, pipeline registers), so it is an upper bound by a few beats; the
tests measure the smallest depth that still runs next to it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qhw.hw.window import WindowGeometry
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


def skip_fifo_pixels(needs: Sequence[np.ndarray]) -> list[int]:
    """Per branch, the most finished pixels it must hold while the add waits for another branch.

    While the add waits for pixel ``p`` of branch ``j``, the fork must be free
    to deliver ``need_j(p)`` pixels, and every other branch ``i`` produces
    ``out_i(need_j(p))`` pixels meanwhile, of which the add took ``p``. The
    branch the add waits for hands each pixel over as it is produced, so
    only the others count: ``max_p max_{j≠i} out_i(need_j(p)) − p``, at
    least 1 (one pixel in flight).
    """
    needs = [np.asarray(n, dtype=np.int64) for n in needs]
    n_out = min(len(n) for n in needs)
    needs = [n[:n_out] for n in needs]
    depths = []
    for i, n in enumerate(needs):
        others = [m for j, m in enumerate(needs) if j != i]
        if not others:
            depths.append(1)
            continue
        critical = np.max(np.stack(others), axis=0)
        # out_i(N): how many output pixels have need <= N (need is non-decreasing)
        produced = np.searchsorted(n, critical, side="right")
        depths.append(max(1, int(np.max(produced - np.arange(n_out)))))
    return depths

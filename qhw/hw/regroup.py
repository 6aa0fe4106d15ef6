"""Channel regrouping: the packer behind every engine, and the width adapter between engines.

A conv / dense engine's requantizer emits, per output pixel, ``ceil(C / cols)``
beats of ``cols`` codes (channel ``g·cols + c`` in slot ``c``; slots past
``C`` hold garbage); the next engine reads the :class:`qhw.net.FrameFormat`
of ``(C, H, W)`` with its own ``simd``. :class:`Regroup` turns one grouping
into the other, zeroes the padding slots and sets the frame's ``last`` flag,
so the network compiler can put it after every engine and wherever a
producer's beats differ from its consumer's.

How it works
------------
Per pixel the input has ``NI = ceil(C / in_simd)`` beats, the last carrying
``C - (NI - 1)·in_simd`` real codes; the output has ``NO = ceil(C /
out_simd)``. Two designs:

* **Pass-through** when the grouping does not change (``in_simd ==
  out_simd``, or ``C`` fits one beat on both sides): no storage, latency 0;
  the only logic is the AND that zeroes the padding slots of a pixel's last
  beat, a beat counter and a pixel counter for ``last``.
* **Buffered** otherwise: ``capacity`` code registers hold the real codes
  of the stream in order (pixels back to back), ``fill`` of them valid.
  The output is the head of the buffer, valid when it holds the current
  output beat's codes (``out_simd``, fewer in a pixel's last beat); taking
  it shifts the buffer down by that count. An input beat is written at
  slot ``fill`` (after the shift of an output taken in the same cycle) when
  its real codes fit. Every fill is a multiple of ``g = gcd(in_simd,
  out_simd, C)`` (``fill`` counts in units of ``g``), so a buffer that
  cannot emit holds at most ``out_simd - g`` codes: admitting inputs up to
  ``in_simd + out_simd - g`` codes never deadlocks, and ``capacity`` is the
  largest fill that bound reaches (at most ``in_simd + out_simd - 1``). The
  side with more beats per pixel then moves one beat per cycle (the cycle
  model checks it over every ratio up to 9 lanes in tests/test_hw_regroup.py).

The write offsets an input beat can land at are found at build time by
walking every reachable (input beat, output beat, fill) state under every
valid / ready pattern, and only those offsets get a path into a slot: 64
channels ``16 → 8`` reach one offset, ``8 → 16`` two, 10 channels ``4 →
3`` three of five. Shifts are by ``out_simd`` or a pixel's tail count only.
Slots at or past ``fill`` are never shown unmasked, so nothing is cleared:
each slot is an enable flip-flop with one data source per (shift, offset)
that reaches it (``8 → 16``: one, no mux at all).

Payloads are flat (``unsigned``, slot ``j`` at bits ``[j·bits, (j+1)·bits)``);
with ``in_last`` / ``out_last`` the top bit is the ``last`` flag (ignored on
input: engines count, they do not trust an input's flag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.ir.intmath import MAX_SIGNED_BITS, ActCode, check_bits
from qhw.net.stream import FrameFormat

from .pe.params import check_positive
from .stream_blocks import _discarded_on_error, _lut4s

__all__ = ["Regroup", "RegroupModel"]


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return bool(value)


def _counter_bits(n: int) -> int:
    """Flip-flops of a counter over ``range(n)`` (none for a single value)."""
    return 0 if n <= 1 else (n - 1).bit_length()


@dataclass
class _Schedule:
    """The buffered design's static schedule, found at build time.

    ``fills``: every reachable fill; ``offsets``: write offset -> most real
    codes an input beat written there carries; ``shifts``: shift amounts
    used when an output is taken. Reachability covers every valid / ready
    pattern, not only the ideal flow.
    """

    channels: int
    in_simd: int
    out_simd: int
    capacity: int
    fills: set = field(default_factory=set)
    offsets: dict = field(default_factory=dict)
    shifts: set = field(default_factory=set)

    def __post_init__(self):
        c, a, b = self.channels, self.in_simd, self.out_simd
        self.n_in, self.n_out = -(-c // a), -(-c // b)
        self.in_tail, self.out_tail = c - (self.n_in - 1) * a, c - (self.n_out - 1) * b
        self._explore()

    def codes_in(self, i: int) -> int:
        return self.in_tail if i == self.n_in - 1 else self.in_simd

    def codes_out(self, j: int) -> int:
        return self.out_tail if j == self.n_out - 1 else self.out_simd

    def step(self, i, j, f, valid: bool, ready: bool):
        """One cycle of the hardware: -> (i, j, f, took, emitted, write offset or None)."""
        n_in, n_out = self.codes_in(i), self.codes_out(j)
        emit = ready and f >= n_out
        base = f - n_out if emit else f
        take = valid and base + n_in <= self.capacity
        if emit:
            j = (j + 1) % self.n_out
        if take:
            i = (i + 1) % self.n_in
        return i, j, base + (n_in if take else 0), take, emit, (base if take else None)

    def _explore(self) -> None:
        seen, todo = {(0, 0, 0)}, [(0, 0, 0)]
        while todo:
            i, j, f = todo.pop()
            self.fills.add(f)
            if f < self.codes_out(j) and f + self.codes_in(i) > self.capacity:
                raise AssertionError(f"regroup schedule deadlocks at input beat {i}, output beat {j}, fill {f}")
            for valid in (False, True):
                for ready in (False, True):
                    ni, nj, nf, _, emit, w = self.step(i, j, f, valid, ready)
                    if emit:
                        self.shifts.add(self.codes_out(j))
                    if w is not None:
                        self.offsets[w] = max(self.offsets.get(w, 0), self.codes_in(i))
                    if (ni, nj, nf) not in seen:
                        seen.add((ni, nj, nf))
                        todo.append((ni, nj, nf))

    def ideal(self, n_pixels: int, *, stop_when_periodic: bool = False):
        """Always-valid source, always-ready sink over ``n_pixels`` pixels.

        Returns ``(window, period)``: cycles from the first input transfer to
        the last output transfer, and, with ``stop_when_periodic``, the cycles
        between the starts of input pixels 1 and 2 if the state there repeats
        (else None; the window is then only valid for ``n_pixels``).
        """
        total_in, total_out = n_pixels * self.n_in, n_pixels * self.n_out
        i = j = f = sent = got = cycle = 0
        starts = {}  # input pixel -> (cycle, output beat, fill) when its first beat is taken
        last = 0
        while got < total_out:
            i0, j0, f0 = i, j, f
            i, j, f, took, emitted, _ = self.step(i, j, f, sent < total_in, True)
            if took:
                if i0 == 0:
                    starts[sent // self.n_in] = (cycle, j0, f0)
                sent += 1
            if emitted:
                got += 1
                last = cycle
            cycle += 1
        period = None
        if stop_when_periodic and 1 in starts and 2 in starts and starts[1][1:] == starts[2][1:]:
            period = starts[2][0] - starts[1][0]
        return last - starts[0][0] + 1, period


class RegroupModel:
    """Everything about a :class:`Regroup` that is not hardware: checks, schedule, models.

    Pure Python, so cocotb testbenches and the network compiler use it
    without building a component. Parameters as :class:`Regroup`.

    Attributes
    ----------
    in_groups, out_groups : int
        Beats per pixel on each side, ``ceil(C / simd)``.
    passthrough : bool
        The grouping does not change (``in_simd == out_simd`` or ``C`` fits
        one beat on both sides): no storage.
    capacity : int
        Codes the buffer holds: the largest fill reachable when inputs are
        admitted up to ``in_simd + out_simd - gcd(in_simd, out_simd, C)``
        codes (0 for pass-through).
    offsets : tuple of int
        Reachable write offsets of an input beat into the buffer.
    shifts : tuple of int
        Shift amounts (codes) when an output beat is taken.
    latency : int
        0 (pass-through) or 1.
    in_format, out_format : FrameFormat
        ``(C, 1, pixels)`` with ``in_simd`` / ``out_simd`` channels per beat.
    """

    def __init__(self, *, channels: int, pixels: int, in_simd: int, out_simd: int, bits: int,
                 in_last: bool = False, out_last: bool = True):
        self.channels = check_positive("channels", channels)
        self.pixels = check_positive("pixels", pixels)
        self.in_simd = check_positive("in_simd", in_simd)
        self.out_simd = check_positive("out_simd", out_simd)
        self.bits = check_bits("bits", bits, 1, MAX_SIGNED_BITS)
        self.in_last = _check_flag("in_last", in_last)
        self.out_last = _check_flag("out_last", out_last)
        c, a, b = self.channels, self.in_simd, self.out_simd
        self.in_groups, self.out_groups = -(-c // a), -(-c // b)
        self.in_tail, self.out_tail = c - (self.in_groups - 1) * a, c - (self.out_groups - 1) * b
        self.passthrough = a == b or c <= min(a, b)
        if self.passthrough:
            self.capacity, self.schedule, self.offsets, self.shifts, self.latency = 0, None, (), (), 0
        else:
            # Every fill is a multiple of g = gcd(a, b, C): a buffer that
            # cannot emit holds at most b - g codes, so a + b - g always
            # admits the next input. The buffer is then sized to the largest
            # fill that bound actually reaches (same schedule, fewer slots).
            bound = _Schedule(c, a, b, a + b - math.gcd(a, b, c))
            self.capacity = max(bound.fills)
            self.schedule = _Schedule(c, a, b, self.capacity)
            self.offsets = tuple(sorted(self.schedule.offsets))
            self.shifts = tuple(sorted(self.schedule.shifts))
            self.latency = 1
        # FrameFormat.pack is code-agnostic; "signed" is the encoding whose
        # range admits every width 1..63 a raw code may have.
        self.in_format = FrameFormat((c, 1, self.pixels), ActCode.SIGNED, self.bits, a)
        self.out_format = FrameFormat((c, 1, self.pixels), ActCode.SIGNED, self.bits, b)

    def _codes(self, codes) -> np.ndarray:
        arr = np.asarray(codes, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != self.channels:
            raise ValueError(f"codes must have shape (n_pixels, {self.channels}), not {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= 1 << self.bits):
            raise ValueError(f"codes must be raw {self.bits}-bit codes in [0, {(1 << self.bits) - 1}]")
        return arr

    def _beats(self, fmt: FrameFormat, codes: np.ndarray, last: bool) -> list[int]:
        """Pack whole frames with ``last``, a trailing partial frame without."""
        n = len(codes)
        whole = n - n % self.pixels
        padded = np.zeros((n, fmt.groups * fmt.simd), dtype=np.int64)
        padded[:, :self.channels] = codes
        out = fmt.pack(padded[:whole].reshape(-1, self.pixels, fmt.groups, fmt.simd), last=last) if whole else []
        if whole < n:
            tail = FrameFormat((self.channels, 1, n - whole), fmt.code, fmt.bits, fmt.simd)
            out += tail.pack(padded[whole:].reshape(1, n - whole, fmt.groups, fmt.simd), last=False)
        return out

    def reference(self, codes) -> list[int]:
        """Raw codes ``(n_pixels, C)`` -> output payloads (:meth:`FrameFormat.pack` of ``out_simd``)."""
        return self._beats(self.out_format, self._codes(codes), self.out_last)

    def input_payloads(self, codes, *, rng: np.random.Generator | None = None) -> list[int]:
        """Raw codes ``(n_pixels, C)`` -> input payloads; with ``rng``, garbage in every ignored bit
        (padding slots and the ``last`` flag), else zeros there and a true ``last``."""
        beats = self._beats(self.in_format, self._codes(codes), self.in_last)
        if rng is None:
            return beats
        a, bits = self.in_simd, self.bits
        tail = self.channels - (self.in_groups - 1) * a
        width = a * bits + self.in_last
        for k in range(len(beats)):
            ignored = (1 << (a * bits)) if self.in_last else 0
            if k % self.in_groups == self.in_groups - 1:
                ignored |= ((1 << ((a - tail) * bits)) - 1) << (tail * bits)
            if ignored:
                noise = int.from_bytes(rng.bytes((width + 7) // 8), "little")
                beats[k] = (beats[k] & ~ignored) | (noise & ignored)
        return beats

    def cycles_per_frame(self) -> int:
        """Steady-state cycles per frame: the side with more beats per pixel moves one a cycle."""
        return self.pixels * max(self.in_groups, self.out_groups)

    def estimate_cycles(self, frames: int) -> int:
        """Cycles from the first input transfer to the last output transfer of ``frames`` frames,
        source always valid and sink always ready (exact: the cycle model of the hardware)."""
        n = check_positive("frames", frames) * self.pixels
        if self.passthrough:
            return n * self.in_groups
        if n <= 3:
            return self.schedule.ideal(n)[0]
        window, period = self.schedule.ideal(3, stop_when_periodic=True)
        if period is None:  # never seen in practice; the full model is still exact
            return self.schedule.ideal(n)[0]
        return window + (n - 3) * period


class Regroup(wiring.Component):
    """Regroups a pixel's channel codes from beats of ``in_simd`` into beats of ``out_simd``.

    Parameters
    ----------
    channels : int
        Channels ``C`` per pixel, >= 1.
    pixels : int
        Pixels per frame (``H·W``; 1 for a vector), >= 1; sets ``last``.
    in_simd, out_simd : int
        Codes per input / output beat, >= 1, any ratio.
    bits : int
        Bits per code, 1..63.
    in_last : bool
        The input payload has a top ``last`` bit (ignored).
    out_last : bool
        The output payload has a top ``last`` bit, set on the final beat of
        every frame of ``pixels`` pixels.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(in_simd·bits + in_last)))
        ``ceil(C / in_simd)`` beats per pixel, slot ``s`` of beat ``g`` is
        channel ``g·in_simd + s``; slots past ``C`` are ignored. ``ready``
        sees ``o_stream.ready`` through one AND-OR (a taken output frees room
        in the same cycle), never ``i_stream.valid``.
    o_stream : Out(stream.Signature(unsigned(out_simd·bits + out_last)))
        The :class:`qhw.net.FrameFormat` of ``(C, 1, pixels)`` with ``simd =
        out_simd``: slots past ``C`` are 0. Buffered: ``valid`` and
        ``payload`` come from registers (``latency`` 1 after the input
        transfer completing the beat). Pass-through: straight from the input
        (``latency`` 0).
    model : RegroupModel
        Schedule and models; its attributes ``in_groups``, ``out_groups``,
        ``passthrough``, ``capacity``, ``offsets``, ``shifts``, ``latency``
        are repeated here.
    """

    def __init__(self, *, channels: int, pixels: int, in_simd: int, out_simd: int, bits: int,
                 in_last: bool = False, out_last: bool = True):
        with _discarded_on_error(self):
            self.model = RegroupModel(channels=channels, pixels=pixels, in_simd=in_simd, out_simd=out_simd,
                                      bits=bits, in_last=in_last, out_last=out_last)
        for name in ("channels", "pixels", "in_simd", "out_simd", "bits", "in_last", "out_last", "in_groups",
                     "out_groups", "passthrough", "capacity", "offsets", "shifts", "latency"):
            setattr(self, name, getattr(self.model, name))
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.in_simd * self.bits + self.in_last))),
            "o_stream": Out(stream.Signature(unsigned(self.out_simd * self.bits + self.out_last))),
        })

    def reference(self, codes) -> list[int]:
        """Raw codes ``(n_pixels, C)`` -> output payloads (see :meth:`RegroupModel.reference`)."""
        return self.model.reference(codes)

    def cycles_per_frame(self) -> int:
        """See :meth:`RegroupModel.cycles_per_frame`."""
        return self.model.cycles_per_frame()

    def estimate_cycles(self, frames: int) -> int:
        """See :meth:`RegroupModel.estimate_cycles`."""
        return self.model.estimate_cycles(frames)

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Flip-flops (the registers :meth:`elaborate` builds) and a LUT4 count from the structure,
        in ``family``'s LUTs (:func:`qhw.hw.rom.scaled_luts`, kind ``regroup``).

        LUTs: per buffer bit, one 2:1 mux per data source beyond the first
        (each shift and each reachable write offset reaching the slot; holding
        is the enable); the zeroed padding slots; fill arithmetic, offset
        decoder, counters. Measured against yosys ``synth_ice40`` (LUT4) on
        ten shapes from pass-through to 512 channels ``1 → 64``: 0.81-1.22
        of it; Xilinx LUT6 counts are 0.4-0.9 of ice40's.
        """
        from .rom import scaled_luts

        b, bits, m = self.out_simd, self.bits, self.model
        tail_matters = m.out_tail < b
        out_beat = _counter_bits(self.out_groups) if (self.out_last or tail_matters) else 0
        out_pixel = _counter_bits(self.pixels) if self.out_last else 0
        counter_lut = (3 * (out_beat + out_pixel) + 1) // 2  # increment and wrap, on a carry chain
        if self.passthrough:
            zeroed = (min(self.in_simd, b) - m.out_tail) * bits if self.out_groups > 1 else 0
            return {"lut": scaled_luts(zeroed + counter_lut, family, "regroup"), "ff": out_beat + out_pixel,
                    "bram": 0, "dsp": 0}
        s, cap = m.schedule, self.capacity
        in_beat = _counter_bits(s.n_in) if m.in_tail != self.in_simd else 0
        fill = (cap // math.gcd(self.in_simd, b, self.channels)).bit_length()
        mux = 0
        for p in range(cap):
            # sources of one slot; holding is the flip-flop's enable, free
            sources = sum(1 for n in s.shifts if p + n < cap)
            sources += sum(1 for w, n in s.offsets.items() if 0 <= p - w < n)
            mux += bits * max(0, sources - 1) + _lut4s(sources)
        # the offset decoder shares its terms: about one LUT per offset
        decode = len(s.offsets) if len(s.offsets) > 1 else 1
        lut = mux + (b - m.out_tail) * bits + 4 * fill + decode + counter_lut + 2 * in_beat
        return {"lut": scaled_luts(lut, family, "regroup"), "ff": cap * bits + fill + in_beat + out_beat + out_pixel,
                "bram": 0, "dsp": 0}

    # -- hardware -------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        if self.passthrough:
            self._passthrough(m)
        else:
            self._buffered(m)
        return m

    def _slot(self, flat, p: int):
        return flat[p * self.bits:(p + 1) * self.bits]

    def _output_counters(self, m: Module, emit) -> tuple:
        """Beat-in-pixel and pixel-in-frame counters of the output, only where needed.

        Returns (the beat is a pixel's last, the beat is a frame's last).
        """
        groups = self.out_groups
        pixel_tail, frame_tail = Const(1, 1), Const(0, 1)
        tail_matters = self.channels - (groups - 1) * self.out_simd < self.out_simd
        if groups > 1 and (self.out_last or tail_matters):
            beat = Signal(range(groups), name="out_beat")
            pixel_tail = beat == groups - 1
            with m.If(emit):
                m.d.sync += beat.eq(Mux(pixel_tail, 0, beat + 1))
        if self.out_last:
            frame_tail = pixel_tail
            if self.pixels > 1:
                pixel = Signal(range(self.pixels), name="out_pixel")
                frame_tail = pixel_tail & (pixel == self.pixels - 1)
                with m.If(emit & pixel_tail):
                    m.d.sync += pixel.eq(Mux(pixel == self.pixels - 1, 0, pixel + 1))
        return pixel_tail, frame_tail

    def _payload(self, slots, pixel_tail, frame_tail):
        """Output payload: ``slots`` (one per output slot) with a pixel's padding zeroed, then ``last``."""
        tail = self.channels - (self.out_groups - 1) * self.out_simd
        zero = Const(0, self.bits)
        out = []
        for p, v in enumerate(slots):
            if p >= tail:  # real only in the beats before a pixel's last one
                v = zero if self.out_groups == 1 else Mux(pixel_tail, zero, v)
            out.append(v)
        if self.out_last:
            out.append(frame_tail)
        return Cat(*out)

    def _passthrough(self, m: Module) -> None:
        i, o = self.i_stream, self.o_stream
        emit = o.valid & o.ready
        pixel_tail, frame_tail = self._output_counters(m, emit)
        zero = Const(0, self.bits)
        slots = [self._slot(i.payload, p) if p < self.in_simd else zero for p in range(self.out_simd)]
        m.d.comb += [
            o.valid.eq(i.valid),
            i.ready.eq(o.ready),
            o.payload.eq(self._payload(slots, pixel_tail, frame_tail)),
        ]

    def _buffered(self, m: Module) -> None:
        i, o, s = self.i_stream, self.o_stream, self.model.schedule
        a, b, bits, cap = self.in_simd, self.out_simd, self.bits, self.capacity
        # Every count is a multiple of g: fill and its arithmetic count in
        # units of g codes (64 channels 16 -> 8: 0..2 instead of 0..16).
        g = math.gcd(a, b, self.channels)
        units = cap // g
        # One register per code slot. No reset on the data: fill = 0 after
        # reset says none of it is valid, and a reset-free register with a
        # few sources maps to an enable flip-flop and a small mux.
        slots = [Signal(bits, name=f"slot_{p}", reset_less=True) for p in range(cap)]
        fill = Signal(range(units + 1), name="fill")

        # Units in the current input / output beat: fewer in a pixel's last beat.
        n_in = Const(a // g, range(units + 1))
        if s.in_tail != a:
            in_beat = Signal(range(s.n_in), name="in_beat")
            in_tail = in_beat == s.n_in - 1
            n_in = Mux(in_tail, s.in_tail // g, a // g)
        emit = Signal(name="emit")
        pixel_tail, frame_tail = self._output_counters(m, emit)
        n_out = Mux(pixel_tail, s.out_tail // g, b // g) if s.out_tail != b else Const(b // g, range(units + 1))

        # valid and payload read registers only; ready sees o.ready through
        # one AND-OR: an output taken this cycle makes room for the input.
        m.d.comb += o.valid.eq(fill >= n_out)
        m.d.comb += emit.eq(o.valid & o.ready)
        fits_now, fits_after = Signal(name="fits_now"), Signal(name="fits_after")
        m.d.comb += [fits_now.eq(fill + n_in <= units), fits_after.eq(fill + n_in <= units + n_out)]
        m.d.comb += i.ready.eq(fits_now | (emit & fits_after))
        take = i.valid & i.ready
        base = Signal(range(units + 1), name="base")  # fill after this cycle's shift
        m.d.comb += base.eq(Mux(emit, fill - n_out, fill))

        # Shift down by the beat's code count (only the amounts the schedule
        # uses), then write the input at the reachable offsets only. Slots at
        # or past ``fill`` are never read (the output shows at most ``fill``
        # codes, the rest of a pixel's last beat is zeroed), so a slot with
        # nothing to shift in keeps its stale code and lanes past the most
        # real codes ever written at an offset are not wired.
        for n in s.shifts:
            moved = emit if len(s.shifts) == 1 else emit & (pixel_tail if n == s.out_tail else ~pixel_tail)
            with m.If(moved):
                m.d.sync += [slots[p].eq(slots[p + n]) for p in range(cap - n)]
        for w in sorted(s.offsets):
            load = Signal(name=f"load_{w}")
            m.d.comb += load.eq(take & (base == w // g))
            with m.If(load):
                m.d.sync += [slots[w + lane].eq(self._slot(i.payload, lane))
                             for lane in range(min(s.offsets[w], cap - w))]
        if s.in_tail != a:
            with m.If(take):
                m.d.sync += in_beat.eq(Mux(in_tail, 0, in_beat + 1))
        m.d.sync += fill.eq(base + Mux(take, n_in, 0))
        m.d.comb += o.payload.eq(self._payload(slots[:b], pixel_tail, frame_tail))

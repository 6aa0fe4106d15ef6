"""Streaming requantizers: per-channel accumulators in, next layer's activation codes out.

Two exact forms of :mod:`qhw.ir.intmath`:

* :class:`ThresholdRequantizer` — ``code = sum_j [sign_c·acc >= t_(c,j)]``
  (``apply_thresholds``; BN + PACT folded into thresholds, FINN-style).
  Thresholds are first clipped with ``clamp_thresholds`` to the channel's
  accumulator range, so each comparator is at most one bit wider than the
  accumulator. A negative sign costs no negation:
  ``-acc >= t  <=>  not (acc >= 1 - t)``.
* :class:`MulShiftRequantizer` — ``code = clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)``
  (``requant_mul_shift``), for outputs too wide for thresholds.

Both take beats of ``lanes`` accumulators, as the systolic array emits them:
beat ``i`` holds channels ``g·lanes + c`` with ``g = i mod groups`` and
``groups = ceil(channels / lanes)``; per-channel constants of several groups
sit in small ROMs addressed by a group counter. Channels past ``channels``
(padding of the last group) give code ``max(lo, 0)`` clipped into range
(threshold form: 0).

Payloads are flat (see :mod:`qhw.hw.array.systolic` for why): input lane
``c`` at bits ``[c·acc_width, (c+1)·acc_width)`` two's complement; output
lane ``c`` at ``[c·out_bits, (c+1)·out_bits)`` (two's complement if
``out_signed``). Latency 1: the codes are valid the cycle after the input
transfer; full rate while the output is taken.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.hw.rom import rom_read
from qhw.ir import intmath
from qhw.ir.intmath import check_bits, signed_width, unsigned_width

from .pe.datapath import adder_tree, lanes_of
from .pe.params import check_int_array, check_positive


def _channel_vector(name: str, value, channels: int) -> np.ndarray:
    arr = check_int_array(name, value, 1)
    if arr.shape != (channels,):
        raise ValueError(f"{name} must have one entry per channel ({channels}), not shape {arr.shape}")
    return arr


class _Requantizer(wiring.Component):
    """Stream plumbing and group counter shared by both forms."""

    latency = 1

    def __init__(self, *, acc_lo, acc_hi, acc_width: int, lanes: int, channels: int, out_shape):
        self.lanes = check_positive("lanes", lanes)
        self.channels = channels
        # 62 bits: thresholds one past the range and 1 - t stay inside int64.
        self.acc_width = check_bits("acc_width", acc_width, 1, 62)
        self.acc_lo = _channel_vector("acc_lo", acc_lo, channels)
        self.acc_hi = _channel_vector("acc_hi", acc_hi, channels)
        if np.any(self.acc_lo > self.acc_hi):
            raise ValueError("acc_lo must not exceed acc_hi")
        wlo, whi = -(1 << (self.acc_width - 1)), (1 << (self.acc_width - 1)) - 1
        if self.acc_lo.min() < wlo or self.acc_hi.max() > whi:
            raise ValueError(f"acc_width: {self.acc_width} bits cannot hold accumulators in "
                             f"[{self.acc_lo.min()}, {self.acc_hi.max()}]")
        self.groups = -(-channels // self.lanes)
        self.out_shape = out_shape
        self.out_bits = out_shape.width
        self.out_signed = out_shape.signed
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.lanes * self.acc_width))),
            "o_stream": Out(stream.Signature(unsigned(self.lanes * self.out_bits))),
        })

    def _pad(self, values, fill) -> np.ndarray:
        """Per-channel array padded to ``groups·lanes`` channels."""
        out = np.full((self.groups * self.lanes,) + np.shape(values)[1:], fill, dtype=np.int64)
        out[:self.channels] = values
        return out

    def elaborate(self, platform):
        m = Module()
        group = Signal(range(self.groups))
        accs = [a.as_signed() for a in lanes_of(self.i_stream.payload, self.acc_width, self.lanes)]
        codes = []
        for c, acc in enumerate(accs):
            code = Signal(self.out_shape, name=f"code_{c}")
            m.d.comb += code.eq(self._lane(m, c, acc, group))
            codes.append(code)
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [self.o_stream.payload.eq(Cat(*codes)), self.o_stream.valid.eq(1)]
            if self.groups > 1:
                m.d.sync += group.eq(Mux(group == self.groups - 1, 0, group + 1))
        return m

    def _words(self, c: int, fields) -> list[int]:
        """ROM words of lane ``c``: per group, the given (value, width) fields packed LSB first."""
        words = []
        for g in range(self.groups):
            word, pos = 0, 0
            for values, width in fields:
                for v in np.atleast_1d(values[g * self.lanes + c]):
                    word |= (int(v) & ((1 << width) - 1)) << pos
                    pos += width
            words.append(word)
        return words

    def _channels_of(self, n_beats: int) -> np.ndarray:
        return (np.arange(n_beats) % self.groups)[:, None] * self.lanes + np.arange(self.lanes)[None, :]

    def _accs(self, acc_beats) -> np.ndarray:
        acc = np.asarray(acc_beats, dtype=np.int64).reshape(-1, self.lanes)
        lo, hi = self._pad(self.acc_lo, 0), self._pad(self.acc_hi, 0)
        ch = self._channels_of(len(acc))
        if np.any((acc < lo[ch]) & (ch < self.channels)) or np.any((acc > hi[ch]) & (ch < self.channels)):
            raise ValueError("acc_beats: accumulators outside the declared acc_lo/acc_hi bounds")
        return acc

    def estimate_cycles(self, n_beats: int) -> int:
        """Cycles from the first input transfer to the last output, no stalls."""
        return n_beats + self.latency


class ThresholdRequantizer(_Requantizer):
    """Per-channel multi-threshold requantizer (intmath.apply_thresholds).

    Parameters (keyword-only)
    -------------------------
    thresholds : array-like of int, (channels, levels)
        Ascending per channel (not required: the output is the count met).
    acc_lo, acc_hi : array-like of int, (channels,)
        Exact accumulator bounds per channel (e.g.
        ``SystolicArray.mapping.channel_bounds``); thresholds are clipped to them.
    acc_width : int
        Width of each input accumulator lane.
    lanes : int
        Accumulators per beat (the array's ``cols``).
    sign : array-like of ±1, (channels,), optional
        Per-channel sign (default all +1).

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(lanes·acc_width)))
    o_stream : Out(stream.Signature(unsigned(lanes·out_bits)))
        ``out_bits = unsigned_width(levels)``: codes 0..levels.
    cmp_width : int
        Comparator width (accumulator plus at most one bit).
    latency : int
        1 (see the module docstring).
    """

    def __init__(self, *, thresholds, acc_lo, acc_hi, acc_width: int, lanes: int, sign=None):
        t = check_int_array("thresholds", thresholds, 2)
        channels, levels = t.shape
        s = np.ones(channels, dtype=np.int64) if sign is None else _channel_vector("sign", sign, channels)
        if not np.all(np.abs(s) == 1):
            raise ValueError("sign must hold only +1 and -1")
        super().__init__(acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes,
                         channels=channels, out_shape=unsigned(unsigned_width(levels)))
        self.levels, self.sign = levels, s
        self.thresholds = intmath.clamp_thresholds(t, self.acc_lo, self.acc_hi, s)
        # acc >= u, inverted for negative channels: -acc >= t  <=>  not (acc >= 1 - t).
        u = np.where(s[:, None] > 0, self.thresholds, 1 - self.thresholds)
        # Padding channels carry whatever the array computed for pad weights,
        # anything the accumulator width holds: compare against one past its
        # largest value so they never meet a threshold (code 0).
        never = 1 << (self.acc_width - 1)
        self.u = self._pad(u, never)
        self.invert = self._pad((s < 0).astype(np.int64), 0)
        lo = min(int(self.u.min()), -(1 << (self.acc_width - 1)))
        self.cmp_width = signed_width(lo, max(int(self.u.max()), (1 << (self.acc_width - 1)) - 1))

    @classmethod
    def after(cls, array, *, thresholds, sign=None) -> "ThresholdRequantizer":
        """The requantizer that takes ``array``'s output stream (a :class:`SystolicArray`)."""
        lo, hi = array.mapping.channel_bounds
        c = array.mapping.out_channels
        return cls(thresholds=thresholds, sign=sign, acc_lo=lo[:c], acc_hi=hi[:c],
                   acc_width=array.acc_width, lanes=array.cols)

    def _lane(self, m, c, acc, group):
        cw, L = self.cmp_width, self.levels
        word = rom_read(m, f"thr_{c}", self._words(c, [(self.u, cw), (self.invert, 1)]), L * cw + 1, group)
        inv = word[L * cw]
        bits = [(acc >= word[j * cw:(j + 1) * cw].as_signed()) ^ inv for j in range(L)]
        return adder_tree(bits, m, f"count_{c}")

    def reference(self, acc_beats) -> np.ndarray:
        """Codes for ``(n, lanes)`` accumulator beats, via intmath.apply_thresholds."""
        acc = self._accs(acc_beats)
        ch = self._channels_of(len(acc))
        codes = np.zeros_like(acc)  # padding channels: 0
        for k in range(self.channels):
            sel = ch == k
            codes[sel] = intmath.apply_thresholds(acc[sel][:, None], self.thresholds[k:k + 1],
                                                  self.sign[k:k + 1])[:, 0]
        return codes

    def estimate_resources(self) -> dict[str, int]:
        """Rough Xilinx LUT / FF figures: one carry-chain comparator per threshold."""
        lut = self.lanes * self.levels * (self.cmp_width // 2 + 1) + self.lanes * self.levels
        if self.groups > 1:
            lut += self.lanes * (self.levels * self.cmp_width + 1) * max(1, self.groups // 64)
        ff = self.lanes * self.out_bits + 1 + max(1, (self.groups - 1).bit_length())
        return {"lut": int(lut), "ff": int(ff), "dsp": 0, "bram": 0}


class MulShiftRequantizer(_Requantizer):
    """Fixed-point requantizer ``clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)`` (intmath.requant_mul_shift).

    Parameters (keyword-only)
    -------------------------
    mult, bias : array-like of int, (channels,)
        Per-channel multiplier and bias.
    shift : int
        Right shift ``s``, 1..62 (floor division, rounding by ``+2^(s-1)``).
    lo, hi : int
        Output code range; unsigned output if ``lo >= 0``.
    acc_lo, acc_hi, acc_width, lanes
        As in :class:`ThresholdRequantizer`.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(lanes·acc_width)))
    o_stream : Out(stream.Signature(unsigned(lanes·out_bits)))
    prod_width : int
        Exact width of ``acc·m + b + 2^(s-1)`` over the accumulator bounds.
    latency : int
        1 (see the module docstring).
    """

    def __init__(self, *, mult, bias, shift: int, lo: int, hi: int, acc_lo, acc_hi, acc_width: int, lanes: int):
        m_ = check_int_array("mult", mult, 1)
        channels = len(m_)
        b_ = _channel_vector("bias", bias, channels)
        self.shift = check_bits("shift", shift, 1, 62)
        for name, v in (("lo", lo), ("hi", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, not {v!r}")
        if lo > hi:
            raise ValueError(f"lo must not exceed hi, got [{lo}, {hi}]")
        out_shape = unsigned(unsigned_width(hi)) if lo >= 0 else signed(signed_width(lo, hi))
        if out_shape.width > 32:
            raise ValueError(f"lo/hi: output codes of {out_shape.width} bits are too wide (at most 32)")
        super().__init__(acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes,
                         channels=channels, out_shape=out_shape)
        self.mult, self.bias, self.lo, self.hi = m_, b_, int(lo), int(hi)
        # Python integers: acc·m (and bias + 2^(s-1)) can exceed int64 even when each operand fits.
        rounded_ = [int(b) + (1 << (self.shift - 1)) for b in b_]
        ends = [int(a) * int(m) + r for lo_, hi_, m, r in zip(self.acc_lo, self.acc_hi, m_, rounded_)
                for a in (lo_, hi_)]
        if max(abs(r) for r in rounded_) >= 1 << 62:
            raise ValueError("bias: bias + 2^(shift-1) does not fit in 62 bits")
        self.prod_width = signed_width(min(ends), max(ends))
        if self.prod_width > 63:
            raise ValueError(f"mult: acc·mult + bias needs {self.prod_width} bits; at most 63 are supported")
        rounded = np.array(rounded_, dtype=np.int64)
        self.m_pad, self.b_pad = self._pad(m_, 0), self._pad(rounded, 0)
        self.m_width = signed_width(int(self.m_pad.min()), int(self.m_pad.max()))
        self.b_width = signed_width(int(self.b_pad.min()), int(self.b_pad.max()))

    @classmethod
    def after(cls, array, *, mult, bias, shift: int, lo: int, hi: int) -> "MulShiftRequantizer":
        """The requantizer that takes ``array``'s output stream (a :class:`SystolicArray`)."""
        acc_lo, acc_hi = array.mapping.channel_bounds
        c = array.mapping.out_channels
        return cls(mult=mult, bias=bias, shift=shift, lo=lo, hi=hi, acc_lo=acc_lo[:c], acc_hi=acc_hi[:c],
                   acc_width=array.acc_width, lanes=array.cols)

    def _lane(self, m, c, acc, group):
        mw, bw = self.m_width, self.b_width
        word = rom_read(m, f"ms_{c}", self._words(c, [(self.m_pad, mw), (self.b_pad, bw)]), mw + bw, group)
        prod = Signal(signed(self.prod_width), name=f"prod_{c}")
        m.d.comb += prod.eq(acc * word[:mw].as_signed() + word[mw:].as_signed())
        y = prod >> self.shift  # arithmetic: floor division by 2^s
        return Mux(y < self.lo, Const(self.lo, self.out_shape),
                   Mux(y > self.hi, Const(self.hi, self.out_shape), y))

    def reference(self, acc_beats) -> np.ndarray:
        """Codes for ``(n, lanes)`` accumulator beats, via intmath.requant_mul_shift."""
        acc = self._accs(acc_beats)
        ch = self._channels_of(len(acc))
        m_, b_ = self._pad(self.mult, 0), self._pad(self.bias, 0)
        out = np.zeros_like(acc)
        for k in range(self.groups * self.lanes):
            sel = ch == k
            out[sel] = intmath.requant_mul_shift(acc[sel][:, None], m_[k:k + 1], b_[k:k + 1],
                                                 self.shift, self.lo, self.hi)[:, 0]
        return out

    def estimate_resources(self) -> dict[str, int]:
        """Rough Xilinx (no DSP) LUT / FF figures: a constant multiplier and clamp per lane."""
        per_lane = self.acc_width * self.m_width * (0.5 if self.groups == 1 else 1.0) + 3 * self.prod_width
        lut = self.lanes * per_lane
        ff = self.lanes * self.out_bits + 1 + max(1, (self.groups - 1).bit_length())
        return {"lut": int(round(lut)), "ff": int(ff), "dsp": 0, "bram": 0}

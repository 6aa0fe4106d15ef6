"""Streaming requantizers: per-channel accumulators in, next layer's activation codes out.

Two exact forms of :mod:`qhw.ir.intmath`, built from the IR's
:mod:`qhw.ir.requant` objects by :meth:`ThresholdRequantizer.from_ir`,
:meth:`MulShiftRequantizer.from_ir` or, choosing the cheaper of the two,
:func:`choose_requantizer`:

* :class:`ThresholdRequantizer` — ``level = sum_j [sign_c·acc >= t_(c,j)]``
  (``apply_thresholds``; BN + PACT folded into thresholds, FINN-style), then
  the raw code of the IR value ``level_to_value(level)``: ``level`` itself
  (unsigned, and bipolar, where level 1 is +1), or ``level XOR 2^(k-1)``
  (signed k-bit: value ``level - 2^(k-1)`` in two's complement; adding
  ``2^(k-1)`` modulo ``2^k`` flips the top bit only, so it costs no logic).
  Thresholds are first clipped with ``clamp_thresholds`` to the channel's
  accumulator range, so each comparator is at most one bit wider than the
  accumulator. A negative sign costs no negation:
  ``-acc >= t  <=>  not (acc >= 1 - t)``. A threshold a lane's channels
  always (or never) meet costs no comparator, only a constant count. At most
  :data:`MAX_THRESHOLD_LEVELS` thresholds per channel (an 8-bit output).
* :class:`MulShiftRequantizer` — ``clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)``
  (``requant_mul_shift``), for outputs too wide for thresholds; codes up to
  :data:`MAX_OUT_BITS` bits, the product as wide as its exact bounds need.
  A lane whose multiplier is the same in every group multiplies by shift-adds
  over the constant's canonical signed digits (:func:`csd`); a clamp side the
  exact bounds never reach is left out.

Two more are the same functions spread over several cycles a beat, for layers whose array emits a
beat only every SF cycles; :func:`choose_requantizer` considers them when given an ``interval`` above 1:

* :class:`qhw.hw.requant_serial.SerialMulShiftRequantizer` — the mul-shift form with the product
  formed a few multiplier bits per cycle (one adder per lane instead of a multiplier);
* :class:`qhw.hw.requant_search.SearchThresholdRequantizer` — the threshold form as a binary search
  over each channel's sorted thresholds, one comparator per lane and ``levels.bit_length()`` cycles
  a beat instead of ``levels`` comparators.

All emit the same raw codes for the same IR requantizer; ``reference()``
gives those codes, ``reference_values()`` the IR values (what
:mod:`qhw.ir.golden` computes).

Both take beats of ``lanes`` accumulators, as the systolic array emits them:
beat ``i`` holds channels ``g·lanes + c`` with ``g = i mod groups`` and
``groups = ceil(channels / lanes)``; per-channel constants of several groups
sit in small ROMs addressed by a group counter.

Padding: lanes past ``channels`` in the last group carry whatever the array
computed for its pad weights (any ``acc_width``-bit value). They are
don't-care downstream (the engine's packer zeroes them), and give, whatever
they carry: threshold form level 0, i.e. the code of the lowest value (0
unsigned, 0 = -1 bipolar, ``100..0`` signed); mul-shift form the code of
``clip(0, lo, hi)`` (multiplier and bias 0). :meth:`reference` models them so.

Payloads are flat (see :mod:`qhw.hw.array.systolic` for why): input lane
``c`` at bits ``[c·acc_width, (c+1)·acc_width)`` two's complement; output
lane ``c`` at ``[c·out_bits, (c+1)·out_bits)`` holding the raw IR code
(:func:`qhw.ir.intmath.encode_acts` of ``out_code``, ``out_bits``).
Latency 1: the codes are valid the cycle after the input transfer; full rate
while the output is taken.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.hw.rom import rom_read
from qhw.ir import intmath
from qhw.ir.intmath import ActCode, check_bits, signed_width, unsigned_width
from qhw.ir.requant import MulShift, Thresholds, level_to_value

from .array.cost import rom_luts
from .pe.datapath import adder_tree, lanes_of, pairwise_reduce
from .pe.params import check_int_array, check_positive

#: Most thresholds per channel a :class:`ThresholdRequantizer` builds (an
#: 8-bit output). Why: each costs a comparator per lane and ``cmp_width``
#: ROM bits per group; an 8-bit output already costs 500-650 LUTs per lane
#: (yosys, 16-20-bit accumulators) where a constant multiplier costs 120-180,
#: and a 12-bit one (4095 per channel) would be about 16 times that.
MAX_THRESHOLD_LEVELS = 255

#: Widest :class:`MulShiftRequantizer` output code.
MAX_OUT_BITS = 62

#: ``intmath.requant_mul_shift`` computes ``acc·m + b + 2^(s-1)`` in int64.
_INT64_LIMIT = 1 << 63

FORMS = ("auto", "thresholds", "mul_shift")

#: Extra cost per doubling of a mul-shift multiplier table past 4 words (see MulShiftRequantizer.features).
DEEP_TABLE_STEP = 0.12



def _channel_vector(name: str, value, channels: int) -> np.ndarray:
    arr = check_int_array(name, value, 1)
    if arr.shape != (channels,):
        raise ValueError(f"{name} must have one entry per channel ({channels}), not shape {arr.shape}")
    return arr


def _act_code(value) -> ActCode:
    if not isinstance(value, (str, ActCode)):
        raise TypeError(f"out_code must be 'unsigned', 'bipolar' or 'signed', not {value!r}")
    try:
        return ActCode(value)
    except ValueError:
        raise ValueError(f"out_code must be 'unsigned', 'bipolar' or 'signed', not {value!r}") from None


class _Requantizer(wiring.Component):
    """Stream plumbing, group counter and code encoding shared by both forms."""

    latency = 1

    def __init__(self, *, acc_lo, acc_hi, acc_width: int, lanes: int, channels: int, out_code: ActCode,
                 out_bits: int):
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
        self.out_code, self.out_bits = out_code, out_bits
        self.out_signed = out_code is ActCode.SIGNED
        self.out_shape = signed(out_bits) if self.out_signed else unsigned(out_bits)
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

    def _lane_channels(self, c: int) -> list[int]:
        """Real channels lane ``c`` carries (one per group; fewer if it pads the last group)."""
        return [ch for ch in range(c, self.groups * self.lanes, self.lanes) if ch < self.channels]

    def _channels_of(self, n_beats: int) -> np.ndarray:
        return (np.arange(n_beats) % self.groups)[:, None] * self.lanes + np.arange(self.lanes)[None, :]

    def _accs(self, acc_beats) -> np.ndarray:
        acc = np.asarray(acc_beats, dtype=np.int64).reshape(-1, self.lanes)
        lo, hi = self._pad(self.acc_lo, 0), self._pad(self.acc_hi, 0)
        ch = self._channels_of(len(acc))
        if np.any((acc < lo[ch]) & (ch < self.channels)) or np.any((acc > hi[ch]) & (ch < self.channels)):
            raise ValueError("acc_beats: accumulators outside the declared acc_lo/acc_hi bounds")
        return acc

    def reference(self, acc_beats) -> np.ndarray:
        """Raw output codes for ``(n, lanes)`` accumulator beats, as ``o_stream`` carries them.

        ``intmath.encode_acts(out_code, out_bits, reference_values(acc_beats))``:
        unsigned lane bit patterns (a signed code ``-1`` is ``2^out_bits - 1``).
        """
        return intmath.encode_acts(self.out_code, self.out_bits, self.reference_values(acc_beats))

    def estimate_cycles(self, n_beats: int) -> int:
        """Cycles from the first input transfer to the last output, no stalls."""
        return n_beats + self.latency

    def _ff(self) -> int:
        """Output register, valid bit and group counter."""
        return self.lanes * self.out_bits + 1 + (max(1, (self.groups - 1).bit_length()) if self.groups > 1 else 0)

    def _estimate(self, features: dict[str, float], family: str = "xilinx") -> dict[str, int]:
        weights = LUTS_PER_BIT if family == "xilinx" else LUT4_PER_BIT.get(family)
        if weights is None:
            raise ValueError(f"family must be one of xilinx, {', '.join(LUT4_PER_BIT)}, not {family!r}")
        lut = sum(weights[k] * v for k, v in features.items())
        return {"lut": int(round(lut)), "ff": int(self._ff()), "dsp": 0, "bram": 0}


#: LUT6 per counted unit of each kind of logic, Xilinx 7-series without DSPs:
#: a least-squares fit (of relative error) to yosys 0.70 ``synth_xilinx
#: -flatten -nodsp`` LUT + LUT-RAM counts of 27 two-lane requantizers
#: (thresholds 1..8-bit, mul-shift 2..12-bit, 12..20-bit accumulators, 1, 4
#: and 16 groups); on them the estimate lies within 0.67-1.31 of yosys
#: (mul-shift 0.91-1.11). On eight four-lane ones outside the fit it lies
#: within 0.84-1.34, and a 29-bit logit layer within 1.09; a constant
#: multiplier of many CSD digits in a repeating pattern (0x55555) came out
#: 2.3 times too high: yosys shares more of its adders than are counted.
#: ``rom`` (here and in LUT4_PER_BIT) was refitted, the other weights held, on the 39-52
#: requantizers per family of the digits nets at 36,864 cycles per frame (1-2 lanes, 4-64 groups:
#: tables of many words, which the calibration set above hardly had; ``qhw bench estimates
#: --target-cycles 36864 --depth 2``), where the old weights came out 0.74-0.77 of yosys in sum; the
#: features now also count the bias table of a mul-shift lane, and a multiplier table's depth
#: (:data:`DEEP_TABLE_STEP`). Weights fitted on deep tables alone (mul_var_rom 2.16 here) put
#: large-fold builds, whose tables have 2-4 words, 8-13 % higher than yosys.
LUTS_PER_BIT = {
    "cmp_const": 0.39,  # comparator bits against constants (distinct ones; dense ones share logic)
    "cmp_var": 0.94,    # comparator bits against a ROM word (ROM of up to 8 words in the same LUT)
    "rom": 1.677,       # ROM LUTs (qhw.hw.array.cost.rom_luts) of threshold / bias tables past 8 words
    "rom_small": 0.0,   # the same of tables of 3 to 8 words: they fold into the comparator LUT6
    "count": 0.62,      # popcount adder-tree bits over the comparator bits (+ the always-met offset)
    "mul_const": 0.70,  # shift-add adder bits of a constant multiplier (CSD digits)
    "mul_var": 1.69,    # partial-product bits of a multiplier by a ROM word (its small ROMs fold in)
    "mul_var_rom": 1.69,  # the same, the ROM having three words or more (not free on LUT4)
    "mul_var_rom4": 1.69,  # the same, the ROM of three or four words over at most four groups (see below)
    "add": 0.35,        # bias adder bits above the product's zero low bits
    "clamp": 0.11,      # per clamp side that can act: y bits + output bits
    "thr_table4": 0.0,  # LUT4 of a threshold table (lut4_table_luts): counted on TABLE4_FAMILIES only
}


#: The same features in the LUT sites of the 4-input-LUT families (qhw.backends.synth.lut_sites).
#: iCE40 compares on its carry chain (SB_CARRY beside the LUTs: a comparator against a constant or
#: a two-word table costs almost no LUT4), ECP5 / Gowin count the LUT4 of their carry cells. Fitted
#: like LUTS_PER_BIT on calibration requantizers (thresholds: 2 to 4 bits, 1 to 6 groups; mul-shift:
#: 4 to 8 bits, 1 to 8 groups) and the requantizers of the tiny and digits w4a4 builds.
#: ECP5 ``mul_var_rom4`` (tables over at most four groups), ``mul_const``, ``add`` and ``clamp`` were
#: refitted on the requantizers of the digits w4a4 net at 2,304 and 36,864 cycles and resnet8-mlperf at
#: 36,864 (each stage kept as a module, ``synthesize_build(depth=2)``, ``-nodsp``): a four-group table
#: counted as ``mul_var_rom`` (4.265) put those 8-lane requantizers at 1.49-1.53 of yosys, ``mul_var_rom4``
#: 2.77 at 0.98-1.01; the residual adders' requantizers went from 0.98-1.29 to 0.85-1.12.
LUT4_PER_BIT = {
    "ice40": {"cmp_const": 0.1, "cmp_var": 0.084, "rom": 2.206, "rom_small": 0.107, "count": 0.35,
              "mul_const": 0.82, "mul_var": 1.545, "mul_var_rom": 2.228, "mul_var_rom4": 2.228, "add": 1.407,
              "clamp": 0.0, "thr_table4": 1.0},
    "ecp5": {"cmp_const": 0.827, "cmp_var": 0.814, "rom": 2.527, "rom_small": 0.083, "count": 3.053,
             "mul_const": 0.815, "mul_var": 2.301, "mul_var_rom": 4.265, "mul_var_rom4": 2.77, "add": 0.294,
             "clamp": 0.863, "thr_table4": 0.0},
}
#: Gowin: ECP5's weights but for the multiplier, bias adder and tables, fitted on its own 26
#: requantizers of the digits nets at 36,864 cycles (Σ estimate/yosys was 0.60 with ECP5's weights).
#: Three of them refitted (non-negative least squares of the relative error, the threshold weights
#: and tables held) on 44 multiply-shift requantizers: those four nets re-synthesized and the
#: width-2 digits ResNet-8, all at 36,864 cycles (``qhw bench estimates --target-cycles 36864
#: --depth 2``). ``mul_var_rom4`` (tables over at most four groups, which the four nets hardly have)
#: had been ``mul_var_rom``'s 6.97, and the width-2 net's two four-group multipliers measured 1.45
#: and 1.46 of yosys; both give 4.74, 0.68 of ``mul_var_rom`` (ECP5's own pair is 0.65).
#: ``mul_const`` and ``clamp`` (0.5 and 1.0 before): the residual adders' small requantizers went
#: from up to 1.60 to 1.08. The per-net requantizer sums of the four nets moved by at most 0.01.
LUT4_PER_BIT["gowin"] = {"cmp_const": 0.827, "cmp_var": 0.814, "rom": 2.166, "rom_small": 0.083, "count": 3.053,
                         "mul_const": 0.96, "mul_var": 3.76, "mul_var_rom": 6.97, "mul_var_rom4": 4.74,
                         "add": 0.663, "clamp": 0.59, "thr_table4": 0.0}
#: Families whose threshold tables are estimated by their structure (lut4_table_luts, weight
#: ``thr_table4``) instead of the LUT6 ROM model (``rom``, ``rom_small``). On iCE40 the LUT6 model
#: put the 8- to 64-group thresholds of the digits ResNet-8 W4A4 at 36,864 cycles/frame at 0.31-0.49
#: of yosys (s1.b1.conv1, s2.b1.conv1, s3.b1.conv1: 70, 257, 524 LUT against 226, 531, 1,075); the
#: structural count at weight 1 (a least-squares fit of relative error gave 0.99) puts them and the
#: 16-group stem at 0.93-1.10. ECP5 and Gowin keep the LUT6 model until measured the same way.
TABLE4_FAMILIES = ("ice40",)
#: The families the estimates cover (a serial mul-shift form is chosen only where it is cheaper on all).
FAMILIES_ESTIMATED = ("xilinx", *LUT4_PER_BIT)


def lut4_table_luts(words: Sequence[int], bits: int) -> int:
    """LUT4 a ``len(words)``-word table of ``bits`` bits takes, bit column by bit column.

    A column that is constant, or one address bit or its complement, needs no
    LUT; equal columns are one. Each other column is one LUT4 up to 16 words,
    and ``2·ceil(depth / 16) − 1`` past that (16-word leaves and a 2:1 mux LUT4
    per pair: a LUT4 has no wide-mux primitive beside it). The exact structure
    of the words, where :func:`qhw.hw.array.cost.rom_luts` is the LUT6 model.
    """
    depth = len(words)
    if depth <= 1:
        return 0
    full = (1 << depth) - 1
    trivial = {0, full}
    for a in range((depth - 1).bit_length()):
        col = sum(((g >> a) & 1) << g for g in range(depth))
        trivial |= {col, col ^ full}
    cols = {sum(((int(w) >> b) & 1) << g for g, w in enumerate(words)) for b in range(bits)}
    per = 1 if depth <= 16 else 2 * math.ceil(depth / 16) - 1
    return per * len(cols - trivial)


def _popcount_bits(n: int) -> int:
    """Bits of the sums :func:`qhw.hw.pe.datapath.adder_tree` builds over ``n`` one-bit terms."""
    total = 0

    def add(x: int, y: int) -> int:
        nonlocal total
        total += max(x, y) + 1
        return max(x, y) + 1

    if n > 1:
        pairwise_reduce([1] * n, add)
    return total


def csd(v: int) -> list[tuple[int, int]]:
    """Canonical signed-digit form of ``v``: ``(position, ±1)`` pairs, ``v = sum(d·2^p)``.

    At most one nonzero digit in any two adjacent positions, so a constant
    multiply costs the fewest shift-adds (a run of ones is one add, one subtract).
    """
    v, neg, out, p = abs(int(v)), int(v) < 0, [], 0
    while v:
        if v & 1:
            d = 1 if v & 3 == 1 else -1  # -1 when v ≡ 3 (mod 4): the run of ones continues upward
            out.append((p, -d if neg else d))
            v -= d
        v >>= 1
        p += 1
    return out


def _shift_add_plan(mult: int):
    """The constant multiply ``acc·mult`` as the hardware builds it.

    Positive and negative CSD digits are summed in two balanced trees of
    ``acc << (p - p_min)``, then subtracted, then shifted left by ``p_min``.
    Returns ``(p_min, pos, neg)`` with ``pos``/``neg`` the relative shifts.
    """
    digits = csd(mult)
    low = min((p for p, _ in digits), default=0)
    pos = [p - low for p, d in digits if d > 0]
    neg = [p - low for p, d in digits if d < 0]
    return low, pos, neg


def _shift_add_cost(mult: int, acc_width: int, cap: int) -> tuple[int, int]:
    """``(adder bits, zero low bits of the product)`` of :func:`_shift_add` (the cost model walks its plan).

    An adder costs only its bits at and above the operands' higher run of
    zero low bits: below it one operand passes through unchanged.
    """
    low, pos, neg = _shift_add_plan(mult)
    if not pos and not neg:
        return 0, cap
    cap = max(cap - low, 1)
    bits = 0

    def add(x, y):  # (width, zero low bits) of two operands -> of their sum
        nonlocal bits
        w = min(max(x[0], y[0]) + 1, cap)
        bits += max(w - max(x[1], y[1]), 0)
        return w, min(x[1], y[1])

    sides = [pairwise_reduce([(min(acc_width + p, cap), p) for p in side], add) if side else None
             for side in (pos, neg)]
    total = sides[0]
    if sides[1] is not None:  # a subtract, or a negate when there is no positive digit
        total = add(sides[0] or (0, cap), sides[1])
    return bits, low + total[1]


def _shift_add(m: Module, acc, mult: int, cap: int, name: str):
    """``acc·mult`` for a constant ``mult``: shift-adds over its CSD digits, correct modulo ``2^cap``.

    Every sum is a kept wire (two-input adders map to carry chains, see
    :func:`qhw.hw.pe.datapath.adder_tree`) of at most ``cap - p_min`` bits:
    the caller's product fits ``cap`` bits, and two's complement sums are
    exact modulo any power of two, so the bits above cannot matter.
    """
    low, pos, neg = _shift_add_plan(mult)
    if not pos and not neg:
        return Const(0, signed(1))
    lcap = max(cap - low, 1)
    kept = itertools.count()

    def wire(value):
        w = Signal(signed(min(len(value), lcap)), name=f"{name}_{next(kept)}", attrs={"keep": 1})
        m.d.comb += w.eq(value)
        return w

    def tree(shifts):
        return pairwise_reduce([acc << p for p in shifts], lambda x, y: wire(x + y)) if shifts else None

    p_sum, n_sum = tree(pos), tree(neg)
    total = p_sum if n_sum is None else wire(-n_sum if p_sum is None else p_sum - n_sum)
    return total << low


class ThresholdRequantizer(_Requantizer):
    """Per-channel multi-threshold requantizer (intmath.apply_thresholds), raw IR codes out.

    Parameters (keyword-only)
    -------------------------
    thresholds : array-like of int, (channels, levels)
        Ascending per channel (not required: the level is the count met);
        ``levels`` at most :data:`MAX_THRESHOLD_LEVELS`.
    acc_lo, acc_hi : array-like of int, (channels,)
        Exact accumulator bounds per channel (e.g.
        ``SystolicArray.mapping.channel_bounds``); thresholds are clipped to them.
    acc_width : int
        Width of each input accumulator lane, 1..62.
    lanes : int
        Accumulators per beat (the array's ``cols``).
    sign : array-like of ±1, (channels,), optional
        Per-channel sign (default all +1).
    out_code : {"unsigned", "bipolar", "signed"}
        IR encoding of the output (default unsigned): the value of level
        ``n`` is ``qhw.ir.requant.level_to_value(out_code, out_bits, n)``.
    out_bits : int, optional
        Code width; default ``unsigned_width(levels)``. ``levels`` must be at
        most ``2^out_bits - 1`` (bipolar: one threshold, one bit).

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(lanes·acc_width)))
        Accumulator beats (see the module docstring for the lane order).
    o_stream : Out(stream.Signature(unsigned(lanes·out_bits)))
        Raw IR codes: ``level`` (unsigned, bipolar) or ``level ^ 2^(out_bits-1)`` (signed).
    levels : int
        Thresholds per channel.
    cmp_width : int
        Comparator width (accumulator plus at most one bit).
    always, active : list per lane
        Thresholds every channel of the lane meets whatever it carries (a
        constant count), and the threshold columns that need a comparator
        (the others are never met).
    latency : int
        1 (see the module docstring).
    """

    def __init__(self, *, thresholds, acc_lo, acc_hi, acc_width: int, lanes: int, sign=None,
                 out_code="unsigned", out_bits: int | None = None):
        t = check_int_array("thresholds", thresholds, 2)
        channels, levels = t.shape
        if levels > MAX_THRESHOLD_LEVELS:
            raise ValueError(f"thresholds: {levels} per channel is more than the {MAX_THRESHOLD_LEVELS} a "
                             "ThresholdRequantizer builds; use a MulShiftRequantizer")
        s = np.ones(channels, dtype=np.int64) if sign is None else _channel_vector("sign", sign, channels)
        if not np.all(np.abs(s) == 1):
            raise ValueError("sign must hold only +1 and -1")
        code = _act_code(out_code)
        bits = unsigned_width(levels) if out_bits is None else check_bits("out_bits", out_bits, 1, MAX_OUT_BITS)
        if code is ActCode.BIPOLAR and (levels != 1 or bits != 1):
            raise ValueError(f"out_code: a bipolar output has one threshold and one bit, not {levels} "
                             f"threshold(s) and out_bits={bits}")
        if code is ActCode.UNSIGNED and bits > intmath.MAX_BITS:
            raise ValueError(f"out_bits: unsigned codes are at most {intmath.MAX_BITS} bits, not {bits}")
        if levels > (1 << bits) - 1:
            raise ValueError(f"out_bits: {levels} thresholds give levels 0..{levels}, more than {bits} bits hold")
        super().__init__(acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes,
                         channels=channels, out_code=code, out_bits=bits)
        self.levels, self.sign = levels, s
        self.thresholds = intmath.clamp_thresholds(t, self.acc_lo, self.acc_hi, s)
        # acc >= u, inverted for negative channels: -acc >= t  <=>  not (acc >= 1 - t).
        u = np.where(s[:, None] > 0, self.thresholds, 1 - self.thresholds)
        # Padding channels carry whatever the array computed for pad weights,
        # anything the accumulator width holds: compare against one past its
        # largest value so they never meet a threshold (level 0).
        never = 1 << (self.acc_width - 1)
        self.u = self._pad(u, never)
        self.invert = self._pad((s < 0).astype(np.int64), 0)
        lo = min(int(self.u.min()), -(1 << (self.acc_width - 1)))
        self.cmp_width = signed_width(lo, max(int(self.u.max()), (1 << (self.acc_width - 1)) - 1))
        # A threshold at or below every value sign·acc takes is always met, one past the top never
        # (clamp_thresholds put every out-of-range one there); padding channels meet none. Per lane,
        # a threshold column that is always met in every group is a constant count, one never met
        # in any group is dropped: only the others cost a comparator.
        slo = np.where(s > 0, self.acc_lo, -self.acc_hi)[:, None]
        shi = slo + (self.acc_hi - self.acc_lo)[:, None]
        state = np.where(self.thresholds <= slo, 1, np.where(self.thresholds > shi, 0, 2))
        state = self._pad(state, 0).reshape(self.groups, self.lanes, levels)
        #: per lane, thresholds met whatever the accumulator
        self.always = [int(np.all(state[:, c] == 1, axis=0).sum()) for c in range(self.lanes)]
        #: per lane, the threshold columns that need a comparator
        self.active = [np.flatnonzero(~np.all(state[:, c] == 1, axis=0) & ~np.all(state[:, c] == 0, axis=0))
                       for c in range(self.lanes)]

    @classmethod
    def after(cls, array, *, thresholds, sign=None, out_code="unsigned",
              out_bits: int | None = None) -> "ThresholdRequantizer":
        """The requantizer that takes ``array``'s output stream (a :class:`SystolicArray`)."""
        lo, hi = array.mapping.channel_bounds
        c = array.mapping.out_channels
        return cls(thresholds=thresholds, sign=sign, out_code=out_code, out_bits=out_bits, acc_lo=lo[:c],
                   acc_hi=hi[:c], acc_width=array.acc_width, lanes=array.cols)

    @classmethod
    def from_ir(cls, rq: Thresholds, *, acc_lo, acc_hi, acc_width: int, lanes: int) -> "ThresholdRequantizer":
        """The threshold form of an IR :class:`qhw.ir.requant.Thresholds` (its encoding, raw codes out)."""
        if not isinstance(rq, Thresholds):
            raise TypeError(f"rq must be a qhw.ir.requant.Thresholds, not {rq!r}")
        return cls(thresholds=rq.thresholds, sign=rq.sign, out_code=rq.out_code, out_bits=rq.out_bits,
                   acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes)

    def _lane(self, m, c, acc, group):
        cw, cols = self.cmp_width, self.active[c]
        bits = []
        if len(cols):
            n = len(cols)
            word = rom_read(m, f"thr_{c}", self._words(c, [(self.u[:, cols], cw), (self.invert, 1)]), n * cw + 1,
                            group)
            inv = word[n * cw]
            bits = [(acc >= word[j * cw:(j + 1) * cw].as_signed()) ^ inv for j in range(n)]
        level = adder_tree(bits, m, f"count_{c}") + self.always[c] if bits else Const(self.always[c])
        if self.out_signed:  # level - 2^(k-1) in k-bit two's complement: flip the top bit
            return level ^ Const(1 << (self.out_bits - 1), self.out_bits)
        return level

    def reference_values(self, acc_beats) -> np.ndarray:
        """IR values for ``(n, lanes)`` accumulator beats: level_to_value of intmath.apply_thresholds."""
        acc = self._accs(acc_beats)
        ch = self._channels_of(len(acc))
        levels = np.zeros_like(acc)  # padding channels: level 0
        for k in range(self.channels):
            sel = ch == k
            levels[sel] = intmath.apply_thresholds(acc[sel][:, None], self.thresholds[k:k + 1],
                                                   self.sign[k:k + 1])[:, 0]
        return np.asarray(level_to_value(self.out_code, self.out_bits, levels), dtype=np.int64)

    def features(self) -> dict[str, float]:
        """Counted logic of each kind (see :data:`LUTS_PER_BIT`), walking the lanes as ``_lane`` builds them."""
        f = dict.fromkeys(LUTS_PER_BIT, 0.0)
        cw = self.cmp_width
        for c in range(self.lanes):
            cols = self.active[c]
            if not len(cols):
                continue
            words = self._words(c, [(self.u[:, cols], cw), (self.invert, 1)])
            if len(set(words)) == 1:
                # Equal constants give equal comparators, which synthesis merges; the others
                # share logic, the more the denser they are: fitted to yosys as cw - 2·log2(d)
                # bits per comparator (at least 1) for d distinct constants.
                d = len(set(self.u[c, cols].tolist()))
                f["cmp_const"] += d * max(cw - 2 * math.log2(d), 1.0)
            else:  # the same sharing, fitted as cw - 1.5·log2(count) bits per comparator
                f["cmp_var"] += len(cols) * max(cw - 1.5 * math.log2(len(cols)), 1.0)
                # Up to 8 words (3 group bits) the ROM bit shares the comparator bit's LUT6 (it has
                # inputs to spare beside the accumulator bit and the carry): the digits w4a4 8-group
                # thresholds measure 1068 LUT against 1223 without the ROM, 2526 with it. A LUT4
                # has no inputs to spare past two words (``rom_small``, free on Xilinx).
                if self.groups > 8:
                    f["rom"] += rom_luts(self.groups, len(cols) * cw + 1)
                elif self.groups > 2:
                    f["rom_small"] += rom_luts(self.groups, len(cols) * cw + 1)
                f["thr_table4"] += lut4_table_luts(words, len(cols) * cw + 1)
            f["count"] += _popcount_bits(len(cols)) + (self.out_bits if self.always[c] else 0)
        return f

    def comparator_bits(self) -> int:
        """Comparator bits built: ``cmp_width`` per active threshold column of each lane. On iCE40 each
        is a carry cell with no LUT beside it (a whole logic cell), which the LUT estimate leaves out."""
        return sum(len(cols) for cols in self.active) * self.cmp_width

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Xilinx 7-series LUT / FF figures without DSPs (see :data:`LUTS_PER_BIT` for the fit).

        Per lane: the comparators it builds, ``cmp_width`` bits each (against
        constants when the lane's thresholds are the same in every group,
        where equal ones merge and dense ones share logic; else against a ROM
        word, plus the ROM past 4 groups), and the popcount adder tree of the
        comparator bits. FF: output register, valid bit, group counter.
        """
        # features() walks every lane's ROM words, and the estimate is asked for once per family: walk once.
        if "_features" not in self.__dict__:
            self._features = self.features()
        f = self._features
        if family in TABLE4_FAMILIES:  # the threshold table counted structurally, not by the LUT6 model
            f = {**f, "rom": 0.0, "rom_small": 0.0}
        return self._estimate(f, family)


class MulShiftRequantizer(_Requantizer):
    """Fixed-point requantizer ``clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)`` (intmath.requant_mul_shift).

    Parameters (keyword-only)
    -------------------------
    mult, bias : array-like of int, (channels,)
        Per-channel multiplier and bias.
    shift : int
        Right shift ``s``, 1..62 (floor division, rounding by ``+2^(s-1)``).
    lo, hi : int
        Output value range (the clamp).
    acc_lo, acc_hi, acc_width, lanes
        As in :class:`ThresholdRequantizer`.
    out_code : {"unsigned", "signed"}, optional
        IR encoding of the output; default unsigned if ``lo >= 0`` and
        ``hi`` fits intmath's 16-bit unsigned codes, else signed.
    out_bits : int, optional
        Code width, 1..62; default the narrowest holding ``[lo, hi]``.

    ``acc·m + b + 2^(s-1)`` must stay below 2^63 in magnitude on every
    channel's accumulator range: the reference model
    (``intmath.requant_mul_shift``) computes it in int64. The hardware
    product is exactly as wide as those bounds need.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(lanes·acc_width)))
        Accumulator beats (see the module docstring for the lane order).
    o_stream : Out(stream.Signature(unsigned(lanes·out_bits)))
        Raw IR codes (two's complement if ``out_code`` is signed).
    prod_width : int
        Exact width of ``acc·m + b + 2^(s-1)`` over the accumulator bounds.
    clamps : list of (bool, bool)
        Per lane, whether the clamp at ``lo`` / ``hi`` can act (it is left
        out where the exact bounds never reach past it).
    latency : int
        1 (see the module docstring).
    """

    def __init__(self, *, mult, bias, shift: int, lo: int, hi: int, acc_lo, acc_hi, acc_width: int, lanes: int,
                 out_code=None, out_bits: int | None = None):
        m_ = check_int_array("mult", mult, 1)
        channels = len(m_)
        b_ = _channel_vector("bias", bias, channels)
        self.shift = check_bits("shift", shift, 1, 62)
        for name, v in (("lo", lo), ("hi", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, not {v!r}")
        lo, hi = int(lo), int(hi)
        if lo > hi:
            raise ValueError(f"lo must not exceed hi, got [{lo}, {hi}]")
        if out_code is None:
            fits_unsigned = lo >= 0 and unsigned_width(hi) <= intmath.MAX_BITS
            code = ActCode.UNSIGNED if fits_unsigned else ActCode.SIGNED
        else:
            code = _act_code(out_code)
        if code is ActCode.BIPOLAR:
            raise ValueError("out_code: bipolar outputs have one threshold; use a ThresholdRequantizer")
        if out_bits is None:
            out_bits = unsigned_width(hi) if code is ActCode.UNSIGNED and lo >= 0 else signed_width(lo, hi)
            if out_bits > MAX_OUT_BITS:
                raise ValueError(f"lo/hi: codes of [{lo}, {hi}] need {out_bits} bits; at most {MAX_OUT_BITS}")
        bits = check_bits("out_bits", out_bits, 1, MAX_OUT_BITS)
        if code is ActCode.UNSIGNED and bits > intmath.MAX_BITS:
            raise ValueError(f"out_bits: unsigned codes are at most {intmath.MAX_BITS} bits, not {bits} "
                             "(use out_code='signed')")
        vlo, vhi = intmath.act_value_range(code, bits)
        if not vlo <= lo <= hi <= vhi:
            raise ValueError(f"lo/hi: [{lo}, {hi}] is not within [{vlo}, {vhi}] of {bits}-bit {code.value} codes")
        super().__init__(acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes,
                         channels=channels, out_code=code, out_bits=bits)
        self.mult, self.bias, self.lo, self.hi = m_, b_, lo, hi
        # Python integers throughout: acc·m (and bias + 2^(s-1)) can exceed int64 even when each operand fits.
        half = 1 << (self.shift - 1)
        for k, (alo, ahi, m, b) in enumerate(zip(self.acc_lo, self.acc_hi, m_, b_)):
            if abs(int(b)) + half >= _INT64_LIMIT:
                raise ValueError(f"bias: |bias| + 2^(shift-1) of channel {k} reaches 2^63; "
                                 "intmath.requant_mul_shift computes in int64")
            worst = max(abs(int(alo)), abs(int(ahi))) * abs(int(m)) + abs(int(b)) + half
            if worst >= _INT64_LIMIT:
                raise ValueError(f"mult: |acc·mult| + |bias| + 2^(shift-1) of channel {k} reaches {worst}, "
                                 "beyond the int64 intmath.requant_mul_shift computes in")
        rounded = [int(b) + half for b in b_]
        ends = [[int(a) * int(m) + r for a in (alo, ahi)]
                for alo, ahi, m, r in zip(self.acc_lo, self.acc_hi, m_, rounded)]
        self.prod_width = signed_width(min(min(e) for e in ends), max(max(e) for e in ends))
        # Output range per lane (padding lanes compute 0): the clamp is built only where it can act.
        self.clamps = []
        for c in range(self.lanes):
            ys = [e >> self.shift for ch in self._lane_channels(c) for e in ends[ch]]
            if len(ys) < 2 * self.groups:
                ys.append(0)
            self.clamps.append((min(ys) < lo, max(ys) > hi))
        self.m_pad = self._pad(m_, 0)
        self.b_pad = self._pad(np.array(rounded, dtype=np.int64), 0)
        self.m_width = signed_width(int(self.m_pad.min()), int(self.m_pad.max()))
        self.b_width = signed_width(int(self.b_pad.min()), int(self.b_pad.max()))

    @classmethod
    def after(cls, array, *, mult, bias, shift: int, lo: int, hi: int, out_code=None,
              out_bits: int | None = None) -> "MulShiftRequantizer":
        """The requantizer that takes ``array``'s output stream (a :class:`SystolicArray`)."""
        acc_lo, acc_hi = array.mapping.channel_bounds
        c = array.mapping.out_channels
        return cls(mult=mult, bias=bias, shift=shift, lo=lo, hi=hi, out_code=out_code, out_bits=out_bits,
                   acc_lo=acc_lo[:c], acc_hi=acc_hi[:c], acc_width=array.acc_width, lanes=array.cols)

    @classmethod
    def from_ir(cls, rq: MulShift | Thresholds, *, acc_lo, acc_hi, acc_width: int,
                lanes: int) -> "MulShiftRequantizer":
        """The mul-shift form of an IR :class:`~qhw.ir.requant.MulShift`, or of a
        :class:`~qhw.ir.requant.Thresholds` through its equivalent ``mul_shift``.

        The equivalence is re-checked on ``[acc_lo, acc_hi]``
        (``Thresholds.check_range``, O(channels·levels)): these bounds are the
        ones the hardware will see.
        """
        if isinstance(rq, Thresholds):
            if rq.mul_shift is None:
                raise ValueError(f"rq: these {rq.out_bits}-bit {rq.out_code.value} thresholds have no "
                                 "equivalent mul_shift (bipolar, or none found at export)")
            rq.check_range(acc_lo, acc_hi)
            rq = rq.mul_shift
        if not isinstance(rq, MulShift):
            raise TypeError(f"rq must be a qhw.ir.requant.MulShift or Thresholds, not {rq!r}")
        return cls(mult=rq.mult, bias=rq.bias, shift=rq.shift, lo=rq.lo, hi=rq.hi, out_code=rq.out_code,
                   out_bits=rq.out_bits, acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes)

    def _lane(self, m, c, acc, group):
        mw, bw = self.m_width, self.b_width
        # Two tables: a multiplier that is the same in every group is a constant (shift-adds) even when
        # the biases differ.
        mwords = self._words(c, [(self.m_pad, mw)])
        if len(set(mwords)) == 1:
            scaled = _shift_add(m, acc, int(self.m_pad[c]), self.prod_width, f"mul_{c}")
        else:
            scaled = acc * rom_read(m, f"ms_m_{c}", mwords, mw, group).as_signed()
        bias = rom_read(m, f"ms_b_{c}", self._words(c, [(self.b_pad, bw)]), bw, group).as_signed()
        # The product fits prod_width exactly, so truncating the sum to it loses nothing.
        prod = Signal(signed(self.prod_width), name=f"prod_{c}")
        m.d.comb += prod.eq(scaled + bias)
        return self._shift_clamp(prod, c)

    def _shift_clamp(self, prod, c, shift: int | None = None):
        """Lane ``c``'s code from its exact sum: arithmetic shift (by ``shift``, default the layer's), then
        the clamps that can act."""
        y = prod >> (self.shift if shift is None else shift)  # arithmetic: floor division by 2^s
        clamp_lo, clamp_hi = self.clamps[c]
        if clamp_hi:
            y = Mux(y > self.hi, Const(self.hi, self.out_shape), y)
        if clamp_lo:
            y = Mux(y < self.lo, Const(self.lo, self.out_shape), y)
        return y

    def reference_values(self, acc_beats) -> np.ndarray:
        """IR values for ``(n, lanes)`` accumulator beats, via intmath.requant_mul_shift."""
        acc = self._accs(acc_beats)
        ch = self._channels_of(len(acc))
        out = np.full_like(acc, int(np.clip(0, self.lo, self.hi)))  # padding: multiplier and bias 0
        for k in range(self.channels):
            sel = ch == k
            out[sel] = intmath.requant_mul_shift(acc[sel][:, None], self.mult[k:k + 1], self.bias[k:k + 1],
                                                 self.shift, self.lo, self.hi)[:, 0]
        return out

    def features(self) -> dict[str, float]:
        """Counted logic of each kind (see :data:`LUTS_PER_BIT`), walking the lanes as ``_lane`` builds them."""
        f = dict.fromkeys(LUTS_PER_BIT, 0.0)
        mw, bw, pw = self.m_width, self.b_width, self.prod_width
        y_width = max(pw - self.shift, 1)
        for c in range(self.lanes):
            mwords = self._words(c, [(self.m_pad, mw)])
            bwords = self._words(c, [(self.b_pad, bw)])
            nonzero = {int(self.m_pad[g * self.lanes + c]) for g in range(self.groups)} - {0}
            if len(set(mwords)) == 1:
                bits, zeros = _shift_add_cost(int(self.m_pad[c]), self.acc_width, pw)
                f["mul_const"] += bits
            elif len(nonzero) == 1:
                # One multiplier or 0 (a padding channel in the other groups, e.g. a logits layer's
                # last group): the ROM bit is the group select, so synthesis keeps the constant
                # multiplier's shift-adds and folds the gating into them, no multiplier array.
                bits, zeros = _shift_add_cost(nonzero.pop(), self.acc_width, pw)
                f["mul_const"] += bits
            else:
                # A multiplier bit that is a function of more than one group bit (a table of three
                # or more words) needs a LUT4 of its own per partial product; two words fold into
                # the adders. A LUT6 absorbs either (the same cost on Xilinx).
                # A deep table costs more per partial-product bit: its bit is a wider function of the
                # group counter (the digits nets at 36,864 cycles, 8-64 groups, measure 12 % more per
                # doubling past 4 words on all three families).
                if len(set(mwords)) <= 2:
                    f["mul_var"] += self.acc_width * mw
                elif self.groups <= 4:
                    # A table over at most four groups: each multiplier bit is a function of the group
                    # counter's two bits (its own kind: on ECP5 it still fits the LUT4 of the carry cell
                    # adding the partial product, with the accumulator bit and the running sum).
                    f["mul_var_rom4"] += self.acc_width * mw
                else:
                    f["mul_var_rom"] += self.acc_width * mw * (1 + DEEP_TABLE_STEP * math.log2(max(self.groups, 4) / 4))
                zeros = 0
            if len(set(bwords)) > 1 or bwords[0]:  # the bias adder, above the product's zero low bits
                f["add"] += max(pw - zeros, 0)
            if len(set(bwords)) > 2:  # the bias table (two words fold into the adder's LUTs)
                f["rom" if self.groups > 8 else "rom_small"] += rom_luts(self.groups, bw)
            f["clamp"] += sum(self.clamps[c]) * (y_width + self.out_bits)
        return f

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Xilinx 7-series LUT / FF figures without DSPs.

        Per lane: the multiplier (a constant one, as shift-adds over the CSD
        digits of ``m``, when the lane's multiplier is the same in every
        group; else an ``acc_width × m_width`` array fed by a ROM), the bias
        adder above the product's zero low bits, and each clamp side that can
        act (comparator and output mux). FF: output register, valid bit,
        group counter.
        """
        # features() walks every lane's ROM words, and the estimate is asked for once per family: walk once.
        if "_features" not in self.__dict__:
            self._features = self.features()
        return self._estimate(self._features, family)


def _lut_of(rq) -> int:
    return rq.estimate_resources()["lut"]


def _cost(rq, family: str) -> int:
    """What choosing a form saves on ``family``: its LUTs, plus on iCE40 the threshold comparators'
    carry cells (:meth:`ThresholdRequantizer.comparator_bits`), which take a logic cell each."""
    lut = rq.estimate_resources(family)["lut"]
    if family == "ice40" and isinstance(rq, ThresholdRequantizer):
        lut += rq.comparator_bits()
    return lut


def choose_requantizer(requant, *, acc_lo, acc_hi, acc_width: int, lanes: int, form: str = "auto",
                       interval: int = 1):
    """Build the hardware requantizer of an IR requantizer, the cheaper form where both exist.

    Parameters (keyword-only after ``requant``)
    -------------------------------------------
    requant : qhw.ir.requant.Thresholds or MulShift
        The layer's requantizer. A ``Thresholds`` with a ``mul_shift`` can be
        built either way.
    acc_lo, acc_hi, acc_width, lanes
        As in :class:`ThresholdRequantizer` (the array's real channel bounds,
        ``acc_width`` and ``cols``).
    form : {"auto", "thresholds", "mul_shift"}
        ``auto`` builds every form that can be built and keeps the one with
        the lower ``estimate_resources()["lut"]`` (thresholds on a tie);
        the others force one form.
    interval : int
        Cycles the requantizer may take per beat (the engine's SF). Above 1, where the threshold form
        was built, its :class:`~qhw.hw.requant_search.SearchThresholdRequantizer` (when its ``steps``
        fit) is costed; then, where the mul-shift form exists (``auto`` or ``mul_shift``), the
        cheapest :class:`~qhw.hw.requant_serial.SerialMulShiftRequantizer` whose ``interval`` fits
        (``SerialMulShiftRequantizer.for_interval``). Each replaces the choice so far only when its
        cost is lower on every family of :data:`FAMILIES_ESTIMATED` (the LUT estimate, plus on iCE40
        the threshold comparators' carry cells: ``_cost``); at 1 nothing changes.

    Returns
    -------
    ThresholdRequantizer, SearchThresholdRequantizer, MulShiftRequantizer or SerialMulShiftRequantizer
        All emit the same raw IR codes (``reference`` agrees).

    Raises
    ------
    ValueError
        When the forced form does not exist or cannot be built, or neither
        form can be built (e.g. more than :data:`MAX_THRESHOLD_LEVELS`
        thresholds per channel and no ``mul_shift``); the message gives the
        reason for each form.
    """
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
    if not isinstance(requant, (Thresholds, MulShift)):
        raise TypeError(f"requant must be a qhw.ir.requant.Thresholds or MulShift, not {requant!r}")
    interval = check_positive("interval", interval)
    kw = dict(acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes)
    builders = {}
    if isinstance(requant, Thresholds):
        builders["thresholds"] = ThresholdRequantizer.from_ir
    if isinstance(requant, MulShift) or requant.mul_shift is not None:
        builders["mul_shift"] = MulShiftRequantizer.from_ir
    built, reasons = [], []
    for name in (FORMS[1:] if form == "auto" else [form]):
        if name not in builders:
            what = "a MulShift" if isinstance(requant, MulShift) else (
                f"{requant.out_bits}-bit {requant.out_code.value} thresholds without mul_shift")
            reasons.append(f"{name}: {what} has no {name} form")
            continue
        try:
            built.append(builders[name](requant, **kw))
        except ValueError as exc:
            reasons.append(f"{name} form: {exc}")
    if not built:
        raise ValueError(f"requant: no {'requantizer form' if form == 'auto' else form + ' form'} can be built "
                         f"({'; '.join(reasons)})")
    best = min(built, key=_lut_of)  # stable: thresholds first, so it wins a tie
    parallel = next((b for b in built if isinstance(b, MulShiftRequantizer)), None)
    thresholds = next((b for b in built if isinstance(b, ThresholdRequantizer)), None)
    # The sequential forms are there for small boards: each replaces the choice so far only where it is
    # cheaper on every family, counting the iCE40 comparators' carry cells (one logic cell a bit, no LUT
    # beside them) on both sides, so thresholds cheaper than the serial mul-shift form on Xilinx can
    # still lose to it there. The search form is tried first.
    sequential = []
    if interval > 1 and thresholds is not None:
        from .requant_search import SearchThresholdRequantizer  # imports this module

        sequential.append(SearchThresholdRequantizer.for_parallel(thresholds, interval=interval))
    if interval > 1 and parallel is not None:
        from .requant_serial import SerialMulShiftRequantizer  # imports this module

        sequential.append(SerialMulShiftRequantizer.for_parallel(parallel, interval=interval))
    for candidate in filter(None, sequential):  # None: that form cannot take this interval
        built.append(candidate)
        if all(_cost(candidate, f) < _cost(best, f) for f in FAMILIES_ESTIMATED):
            best = candidate
    for other in built:
        if other is not best:  # built only to be costed: no "never used" warning for it
            other._MustUse__silence = True
    return best


__all__ = ["ThresholdRequantizer", "MulShiftRequantizer", "choose_requantizer", "csd", "MAX_THRESHOLD_LEVELS",
           "MAX_OUT_BITS", "LUTS_PER_BIT"]

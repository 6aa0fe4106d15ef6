"""Requantizers: bit-exact vs intmath / the IR (thresholds, mul-shift) under stalls, raw IR codes out,
built from qhw.ir.requant objects, the cheaper form chosen, chained after the array."""

from __future__ import annotations

import numpy as np
import pytest
from _pe_sim import run_streams

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from qhw.backends.verilog import to_verilog
from qhw.hw.array import SystolicArray
from qhw.hw.requant import (MAX_THRESHOLD_LEVELS, MulShiftRequantizer, ThresholdRequantizer, choose_requantizer,
                            csd)
from qhw.ir import intmath
from qhw.ir.intmath import ActCode
from qhw.ir.requant import MulShift, Thresholds, affine_requant, level_to_value, logit_requant


def pack(values, width):
    return sum((int(v) & ((1 << width) - 1)) << (i * width) for i, v in enumerate(values))


def unpack(words, lanes, width):
    """Raw lane codes (unsigned bit patterns), as o_stream carries them."""
    return np.array([[(x >> (c * width)) & ((1 << width) - 1) for c in range(lanes)] for x in words],
                    dtype=np.int64)


def random_accs(rq, n, rng, pad_full_range=False):
    """Accumulator beats within each channel's bounds, the bounds themselves included; padding lanes
    carry a real channel's values, or (``pad_full_range``) anything ``acc_width`` bits hold."""
    ch = rq._channels_of(n)
    real = ch % rq.channels
    acc = rng.integers(rq.acc_lo[real], rq.acc_hi[real] + 1)
    acc[0], acc[1] = rq.acc_lo[real[0]], rq.acc_hi[real[1]]
    if pad_full_range:
        half = 1 << (rq.acc_width - 1)
        pad = ch >= rq.channels
        acc[pad] = rng.integers(-half, half, size=int(pad.sum()))
        acc[1][pad[1]] = half - 1  # the extremes of the width, too
        acc[2 % n][pad[2 % n]] = -half
    return acc


def simulate(rq, acc, **stalls):
    run = run_streams(rq, [pack(a, rq.acc_width) for a in acc], len(acc), **stalls)
    return unpack(run.outputs, rq.lanes, rq.out_bits)


def values_of(rq, raw):
    return intmath.decode_acts(rq.out_code, rq.out_bits, raw)


def per_channel(rq, acc, fn):
    """``fn(acc_of_channel_k (m,), k)`` for every real channel, as an (n, lanes) array (-999 on padding)."""
    ch = rq._channels_of(len(acc))
    out = np.full(acc.shape, -999, dtype=np.int64)
    for k in range(rq.channels):
        sel = ch == k
        out[sel] = fn(acc[sel], k)
    return out


def channel_problem(channels, levels, seed):
    rng = np.random.default_rng(seed)
    lo = rng.integers(-500, 0, size=channels)
    hi = rng.integers(1, 500, size=channels)
    # Thresholds spill past the bounds on purpose: clamping must not change any code.
    t = np.sort(rng.integers(-700, 700, size=(channels, levels)), axis=1)
    sign = rng.choice([-1, 1], size=channels)
    return lo, hi, t, sign, rng


def ir_problem(channels, acc_bits, code, bits, seed, with_mul_shift=True):
    """An IR requantizer as the exporter builds one (qhw.ir.export): ``affine_requant`` of
    ``u = a·acc + b`` with mixed-sign ``a`` spanning about the output range over the accumulator
    range. Returns (Thresholds, acc_lo, acc_hi, acc_width)."""
    rng = np.random.default_rng(seed)
    half = 1 << (acc_bits - 1)
    lo = -rng.integers(half // 2, half, size=channels)
    hi = rng.integers(half // 2, half, size=channels)
    levels = 2 if code == "bipolar" else 1 << bits
    a = rng.uniform(0.5, 1.5, size=channels) * levels / (hi - lo) * rng.choice([-1, 1], size=channels)
    b = rng.uniform(-0.3, 0.3, size=channels) * levels + (levels / 2 if code == "unsigned" else 0)
    rq = affine_requant(a, b, code, bits, lo, hi, with_mul_shift=with_mul_shift)
    return rq, lo, hi, intmath.signed_width(int(lo.min()), int(hi.max()))


# -- thresholds ---------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [1, 3, 7])
@pytest.mark.parametrize("levels", [1, 3, 15])
def test_thresholds_match_intmath_with_stalls(levels, lanes):
    lo, hi, t, sign, rng = channel_problem(7, levels, seed=levels * 10 + lanes)
    rq = ThresholdRequantizer(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=lanes)
    assert rq.out_bits == intmath.unsigned_width(levels) and rq.out_code is ActCode.UNSIGNED
    assert rq.cmp_width <= rq.acc_width + 1
    acc = random_accs(rq, 24, rng)
    got = simulate(rq, acc, valid_prob=0.7, ready_prob=0.6, seed=lanes)
    np.testing.assert_array_equal(got, rq.reference(acc))
    # ... and the reference is intmath on the *unclamped* thresholds, channel by channel.
    want = per_channel(rq, acc, lambda a, k: intmath.apply_thresholds(a[:, None], t[k:k + 1], sign[k:k + 1])[:, 0])
    ch = rq._channels_of(len(acc))
    np.testing.assert_array_equal(got[ch < rq.channels], want[ch < rq.channels])
    assert np.all(got[ch >= rq.channels] == 0)


@pytest.mark.parametrize("code,bits", [("unsigned", 2), ("unsigned", 4), ("bipolar", 1), ("signed", 5),
                                       ("signed", 8)])
def test_threshold_codes_are_the_raw_ir_codes(code, bits):
    """Output = encode_acts(level_to_value(level)): bipolar level 1 -> bit 1 (+1), signed level n -> n XOR 2^(k-1)."""
    th, lo, hi, width = ir_problem(7, 14, code, bits, seed=bits)
    rq = ThresholdRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=3)
    assert (rq.out_code.value, rq.out_bits, rq.out_signed) == (code, bits, code == "signed")
    assert rq.levels == (1 if code == "bipolar" else (1 << bits) - 1)
    rng = np.random.default_rng(bits)
    acc = random_accs(rq, 15, rng, pad_full_range=True)
    got = simulate(rq, acc, valid_prob=0.8, ready_prob=0.7, seed=bits)
    np.testing.assert_array_equal(got, rq.reference(acc))
    ch = rq._channels_of(len(acc))
    real = ch < rq.channels
    # The IR's own semantics: Thresholds.apply gives values; the stream carries their codes.
    want = per_channel(rq, acc, lambda a, k: Thresholds(thresholds=th.thresholds[k:k + 1], sign=th.sign[k:k + 1],
                                                        out_code=code, out_bits=bits).apply(a[:, None])[:, 0])
    np.testing.assert_array_equal(values_of(rq, got)[real], want[real])
    np.testing.assert_array_equal(got[real], intmath.encode_acts(code, bits, want[real]))
    level = per_channel(rq, acc, lambda a, k: intmath.apply_thresholds(a[:, None], th.thresholds[k:k + 1],
                                                                        th.sign[k:k + 1])[:, 0])
    flip = (1 << (bits - 1)) if code == "signed" else 0
    np.testing.assert_array_equal(got[real], level[real] ^ flip)
    assert len(set(want[real].tolist())) >= min(rq.levels + 1, 8)  # the codes really vary
    # Padding lanes (here carrying anything the width holds): level 0, the lowest value's code.
    assert np.all(got[~real] == intmath.encode_acts(code, bits, level_to_value(code, bits, 0)))


def test_threshold_constant_columns_cost_no_comparator():
    """Thresholds clamped to the ends of a channel's range are always / never met: no comparator."""
    lo, hi = np.array([-10, -10]), np.array([10, 10])
    t = np.array([[-50, -10, 0, 11, 40], [-10, -3, 3, 11, 50]])  # -10 <= lo: always; 11, 40 > hi: never
    rq = ThresholdRequantizer(thresholds=t, acc_lo=lo, acc_hi=hi, acc_width=6, lanes=2, out_bits=3)
    assert rq.always == [2, 1] and [c.tolist() for c in rq.active] == [[2], [1, 2]]
    acc = np.array([[-10, -10], [10, 10], [0, 3], [-1, 2], [5, -3], [-4, -4]])
    got = simulate(rq, acc, ready_prob=0.5)
    np.testing.assert_array_equal(got, intmath.apply_thresholds(acc, t))


# -- multiply-shift -------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [2, 5])
@pytest.mark.parametrize("lo_hi", [(0, 15), (0, 255), (-8, 7), (3, 3)])
def test_mul_shift_matches_intmath_with_stalls(lo_hi, lanes):
    lo, hi = lo_hi
    acc_lo, acc_hi, _, _, rng = channel_problem(5, 1, seed=lanes + hi)
    mult = rng.integers(-3000, 3000, size=5)
    bias = rng.integers(-50000, 50000, size=5)
    rq = MulShiftRequantizer(mult=mult, bias=bias, shift=9, lo=lo, hi=hi, acc_lo=acc_lo, acc_hi=acc_hi,
                             acc_width=10, lanes=lanes)
    assert rq.out_code is (ActCode.UNSIGNED if lo >= 0 else ActCode.SIGNED)
    acc = random_accs(rq, 24, rng)
    got = simulate(rq, acc, valid_prob=0.6, ready_prob=0.7, seed=hi)
    np.testing.assert_array_equal(got, rq.reference(acc))
    want = per_channel(rq, acc, lambda a, k: intmath.requant_mul_shift(a[:, None], mult[k:k + 1], bias[k:k + 1],
                                                                       9, lo, hi)[:, 0])
    ch = rq._channels_of(len(acc))
    np.testing.assert_array_equal(values_of(rq, got)[ch < rq.channels], want[ch < rq.channels])


def test_mul_shift_product_width_is_exact_at_the_extremes():
    rq = MulShiftRequantizer(mult=[32767, -32768], bias=[0, 0], shift=1, lo=-(1 << 23), hi=1 << 23,
                             acc_lo=[-512, -512], acc_hi=[511, 511], acc_width=10, lanes=2)
    acc = np.array([[-512, 511], [511, -512]])
    got = simulate(rq, acc)
    np.testing.assert_array_equal(got, rq.reference(acc))
    np.testing.assert_array_equal(values_of(rq, got), (acc * [32767, -32768] + 1) >> 1)  # never clamped
    assert rq.clamps == [(False, False), (False, False)]
    assert rq.prod_width == intmath.signed_width(-512 * 32767 + 1, 512 * 32768 + 1)


@pytest.mark.parametrize("bits", [5, 8, 12])
def test_mul_shift_signed_outputs_equal_the_ir_thresholds(bits):
    """The residual-arm case: signed k-bit thresholds built as their equivalent mul-shift."""
    th, lo, hi, width = ir_problem(5, 16, "signed", bits, seed=20 + bits)
    assert th.mul_shift is not None
    rq = MulShiftRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=2)
    assert (rq.out_code, rq.out_bits, rq.lo, rq.hi) == (ActCode.SIGNED, bits, -(1 << (bits - 1)),
                                                         (1 << (bits - 1)) - 1)
    rng = np.random.default_rng(bits)
    acc = random_accs(rq, 30, rng, pad_full_range=True)
    got = simulate(rq, acc, valid_prob=0.7, ready_prob=0.8, seed=bits)
    np.testing.assert_array_equal(got, rq.reference(acc))
    ch = rq._channels_of(len(acc))
    real = ch < rq.channels
    want = per_channel(rq, acc, lambda a, k: th.apply(np.tile(a[:, None], (1, th.channels)))[:, k])
    np.testing.assert_array_equal(values_of(rq, got)[real], want[real])
    assert np.any(want[real] < 0) and np.any(want[real] > 0)
    assert np.all(got[~real] == 0)  # padding: clip(0, lo, hi) = 0, code 0


@pytest.mark.parametrize("hi_acc,frac_bits,shift,out_bits", [((1 << 27) + 12345, 4, 16, 33),
                                                              ((1 << 29) - 7, 18, 12, 48)])
def test_mul_shift_logits_wider_than_32_bits(hi_acc, frac_bits, shift, out_bits):
    """The final FC: integer logits of 33 and 48 bits (logit_requant's exact width), no clamp needed."""
    lo = -np.array([hi_acc, hi_acc // 3, 5, hi_acc // 2])
    hi = np.array([hi_acc // 2, hi_acc, 9, hi_acc])
    ms = logit_requant(np.array([1.0, -0.7, 0.3, 0.9]) * 1e-3, [0.5, -2.0, 1.0, 0.0], lo, hi,
                       frac_bits=frac_bits, shift=shift)
    assert ms.out_bits == out_bits
    rq = MulShiftRequantizer.from_ir(ms, acc_lo=lo, acc_hi=hi, acc_width=intmath.signed_width(lo.min(), hi.max()),
                                     lanes=3)
    assert rq.out_bits == out_bits and rq.clamps == [(False, False)] * 3  # the clamp range is the exact range
    acc = random_accs(rq, 12, np.random.default_rng(out_bits), pad_full_range=True)
    got = simulate(rq, acc, ready_prob=0.6)
    np.testing.assert_array_equal(got, rq.reference(acc))
    real = rq._channels_of(len(acc)) < rq.channels
    want = per_channel(rq, acc, lambda a, k: ms.apply(np.tile(a[:, None], (1, ms.channels)))[:, k])
    np.testing.assert_array_equal(values_of(rq, got)[real], want[real])
    assert want[real].min() < -(1 << (out_bits - 2))  # the top bits are really exercised
    assert intmath.signed_width(want[real].min(), want[real].max()) == out_bits


def test_mul_shift_48_bit_output_with_clamps_and_groups():
    """A 48-bit clamp inside the product range, multipliers from a ROM (two groups) and constant."""
    rng = np.random.default_rng(4)
    acc_lo, acc_hi = -np.full(4, (1 << 35) - 3), np.full(4, (1 << 35) - 1)
    mult = np.array([(1 << 22) + 12345, -(1 << 21) - 777, (1 << 22) + 12345, (1 << 20) + 1])
    bias = rng.integers(-(1 << 40), 1 << 40, size=4)
    lo, hi = -(1 << 47), (1 << 47) - 5
    rq = MulShiftRequantizer(mult=mult, bias=bias, shift=9, lo=lo, hi=hi, acc_lo=acc_lo, acc_hi=acc_hi,
                             acc_width=36, lanes=2)
    assert rq.out_bits == 48 and rq.out_signed and rq.clamps == [(True, True), (True, True)]
    acc = random_accs(rq, 20, rng)
    got = simulate(rq, acc, valid_prob=0.7)
    np.testing.assert_array_equal(got, rq.reference(acc))
    vals = values_of(rq, got)
    want = per_channel(rq, acc, lambda a, k: intmath.requant_mul_shift(a[:, None], mult[k:k + 1], bias[k:k + 1],
                                                                       9, lo, hi)[:, 0])
    np.testing.assert_array_equal(vals, want)
    assert vals.min() == lo and vals.max() == hi and np.any((vals > lo) & (vals < hi))


def test_mul_shift_bias_up_to_what_intmath_computes():
    """|bias| + 2^(s-1) up to 2^63 - 1 is fine (was rejected at 2^62); the reference stays exact."""
    big = (1 << 62) + 12345
    rq = MulShiftRequantizer(mult=[3, -5], bias=[big, -big], shift=40, lo=-(1 << 30), hi=1 << 30,
                             acc_lo=[-100, -100], acc_hi=[100, 100], acc_width=8, lanes=2)
    acc = np.array([[-100, 100], [100, -100], [0, 7]])
    got = simulate(rq, acc)
    np.testing.assert_array_equal(got, rq.reference(acc))
    exact = [[(a * m + b + (1 << 39)) >> 40 for a, m, b in zip(row, (3, -5), (big, -big))] for row in acc.tolist()]
    np.testing.assert_array_equal(values_of(rq, got), exact)


@pytest.mark.parametrize("v", [0, 1, -1, 3, 7, -449, 4057, (1 << 40) - 1, -(1 << 33) + 5])
def test_csd_digits(v):
    digits = csd(v)
    assert sum(d << p for p, d in digits) == v
    assert all(q - p >= 2 for (p, _), (q, _) in zip(digits, digits[1:]))  # no two adjacent nonzero digits


@pytest.mark.parametrize("mult", [0, 1, -1, 64, -64, 3, -449, 4057, -(1 << 20) - 1])
def test_constant_multipliers(mult):
    """Shift-add multiply of every CSD shape: zero, one digit, negate only, add and subtract."""
    rq = MulShiftRequantizer(mult=[mult], bias=[5], shift=3, lo=-(1 << 40), hi=1 << 40, acc_lo=[-1024],
                             acc_hi=[1023], acc_width=11, lanes=1)
    acc = np.array([[-1024], [1023], [0], [1], [-1], [517]])
    np.testing.assert_array_equal(values_of(rq, simulate(rq, acc)), (acc * mult + 5 + 4) >> 3)


def test_shift_past_the_product_width():
    """``prod >> s`` with ``s`` above the product's width is its sign (floor division), as in intmath."""
    rq = MulShiftRequantizer(mult=[1], bias=[-(1 << 19)], shift=20, lo=-4, hi=3, acc_lo=[-100], acc_hi=[100],
                             acc_width=8, lanes=1)
    assert rq.prod_width < rq.shift
    acc = np.array([[-100], [100], [0], [-1], [1]])
    np.testing.assert_array_equal(values_of(rq, simulate(rq, acc)), [[-1], [0], [0], [-1], [0]])


# -- from the IR ------------------------------------------------------------------------------

def test_from_ir_rejects_what_it_cannot_build():
    th, lo, hi, width = ir_problem(3, 10, "unsigned", 2, seed=1, with_mul_shift=False)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=2)
    with pytest.raises(ValueError, match="rq: .* no equivalent mul_shift"):
        MulShiftRequantizer.from_ir(th, **kw)
    with pytest.raises(TypeError, match="rq"):
        MulShiftRequantizer.from_ir(None, **kw)
    with pytest.raises(TypeError, match="rq"):
        ThresholdRequantizer.from_ir(MulShift(mult=[1] * 3, bias=[0] * 3, shift=1, lo=0, hi=3,
                                              out_code="unsigned", out_bits=2), **kw)
    with pytest.raises(ValueError, match="acc_lo"):
        ThresholdRequantizer.from_ir(th, **{**kw, "acc_lo": lo[:2]})
    th12, lo12, hi12, w12 = ir_problem(2, 16, "signed", 12, seed=3, with_mul_shift=False)
    with pytest.raises(ValueError, match=f"thresholds: 4095 per channel .* {MAX_THRESHOLD_LEVELS}"):
        ThresholdRequantizer.from_ir(th12, acc_lo=lo12, acc_hi=hi12, acc_width=w12, lanes=2)


def test_mul_shift_from_thresholds_rechecks_the_equivalence():
    """from_ir checks the attached mul_shift against the thresholds on the bounds it is given."""
    th, lo, hi, width = ir_problem(3, 10, "unsigned", 4, seed=2)
    ms = th.mul_shift
    off = MulShift(mult=ms.mult, bias=ms.bias + (1 << (ms.shift - 1)), shift=ms.shift, lo=ms.lo, hi=ms.hi,
                   out_code=ms.out_code, out_bits=ms.out_bits)
    bad = Thresholds(thresholds=th.thresholds, sign=th.sign, out_code=th.out_code, out_bits=th.out_bits,
                     mul_shift=off)
    with pytest.raises(ValueError, match="mul_shift differs"):
        MulShiftRequantizer.from_ir(bad, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=2)


# -- choosing the form --------------------------------------------------------------------------

CHOICES = [  # (out code, bits, accumulator bits, channels, lanes) -> the form an engine should get
    ("bipolar", 1, 12, 8, 4, ThresholdRequantizer), ("unsigned", 2, 12, 8, 4, ThresholdRequantizer),
    ("unsigned", 2, 20, 32, 8, ThresholdRequantizer), ("unsigned", 4, 12, 16, 4, ThresholdRequantizer),
    ("unsigned", 4, 16, 64, 16, ThresholdRequantizer), ("unsigned", 4, 20, 8, 8, ThresholdRequantizer),
    ("unsigned", 8, 12, 8, 4, MulShiftRequantizer), ("unsigned", 8, 16, 64, 16, MulShiftRequantizer),
    ("signed", 8, 16, 16, 4, MulShiftRequantizer), ("signed", 12, 18, 16, 8, MulShiftRequantizer),
]


@pytest.mark.parametrize("code,bits,acc_bits,channels,lanes,form", CHOICES)
def test_choose_requantizer_takes_the_cheaper_form(code, bits, acc_bits, channels, lanes, form):
    th, lo, hi, width = ir_problem(channels, acc_bits, code, bits, seed=bits + acc_bits + channels)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=lanes)
    rq = choose_requantizer(th, **kw)
    assert type(rq) is form
    if code != "bipolar":
        other = (MulShiftRequantizer if form is ThresholdRequantizer else ThresholdRequantizer)
        if bits <= 8:
            alt = choose_requantizer(th, **kw, form="mul_shift" if other is MulShiftRequantizer else "thresholds")
            assert type(alt) is other
            assert rq.estimate_resources()["lut"] <= alt.estimate_resources()["lut"]
            # Either form gives the same raw codes.
            acc = random_accs(rq, 3 * rq.groups, np.random.default_rng(bits))
            np.testing.assert_array_equal(rq.reference(acc), alt.reference(acc))


def test_choose_requantizer_forced_forms_and_reasons():
    th, lo, hi, width = ir_problem(6, 14, "unsigned", 2, seed=5)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=4)
    forced = choose_requantizer(th, **kw, form="mul_shift")
    assert isinstance(forced, MulShiftRequantizer) and forced.out_code is ActCode.UNSIGNED
    acc = random_accs(forced, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(simulate(forced, acc, ready_prob=0.5),
                                  ThresholdRequantizer.from_ir(th, **kw).reference(acc))
    ms = logit_requant([0.1] * 6, [0.0] * 6, lo, hi)
    assert isinstance(choose_requantizer(ms, **kw), MulShiftRequantizer)
    with pytest.raises(ValueError, match="thresholds: a MulShift has no thresholds form"):
        choose_requantizer(ms, **kw, form="thresholds")
    bip, blo, bhi, bw = ir_problem(6, 14, "bipolar", 1, seed=5)
    with pytest.raises(ValueError, match="mul_shift: 1-bit bipolar thresholds without mul_shift"):
        choose_requantizer(bip, acc_lo=blo, acc_hi=bhi, acc_width=bw, lanes=4, form="mul_shift")
    with pytest.raises(ValueError, match="form"):
        choose_requantizer(th, **kw, form="cheapest")
    with pytest.raises(TypeError, match="requant"):
        choose_requantizer(None, **kw)


def test_choose_requantizer_never_builds_12_bit_thresholds():
    th, lo, hi, width = ir_problem(4, 16, "signed", 12, seed=7)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=4)
    assert isinstance(choose_requantizer(th, **kw), MulShiftRequantizer)
    with pytest.raises(ValueError, match="thresholds: 4095 per channel"):
        choose_requantizer(th, **kw, form="thresholds")
    bare = Thresholds(thresholds=th.thresholds, sign=th.sign, out_code=th.out_code, out_bits=th.out_bits)
    with pytest.raises(ValueError, match=r"requant: no requantizer form can be built \(thresholds form: "
                                         r"thresholds: 4095 per channel .*; "
                                         r"mul_shift: 12-bit signed thresholds without mul_shift"):
        choose_requantizer(bare, **kw)


# -- in the engine: after the array ------------------------------------------------------------

class _ArrayThenRequant(wiring.Component):
    """The array's output stream straight into a requantizer (the layer engine's core)."""

    def __init__(self, array, requant):
        self.array, self.requant = array, requant
        super().__init__({"i_stream": wiring.In(stream.Signature(len(array.i_stream.payload))),
                          "o_stream": wiring.Out(stream.Signature(len(requant.o_stream.payload)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.array, m.submodules.requant = self.array, self.requant
        wiring.connect(m, wiring.flipped(self.i_stream), self.array.i_stream)
        wiring.connect(m, self.array.o_stream, self.requant.i_stream)
        wiring.connect(m, self.requant.o_stream, wiring.flipped(self.o_stream))
        return m


def test_array_then_thresholds_is_one_layer():
    rng = np.random.default_rng(5)
    w = rng.integers(-8, 8, size=(5, 11))
    arr = SystolicArray(weights=w, rows=2, cols=3, lanes=2, weight_code="int", weight_bits=4, act_bits=3)
    lo, hi = arr.mapping.channel_bounds
    t = np.sort(rng.integers(-60, 60, size=(5, 7)), axis=1)
    sign = rng.choice([-1, 1], size=5)
    rq = ThresholdRequantizer.after(arr, thresholds=t, sign=sign)
    x = rng.integers(0, 8, size=(6, 11))
    beats = arr.mapping.vectors_to_beats(x)
    words = [pack(b, 3) for b in beats]
    run = run_streams(_ArrayThenRequant(arr, rq), words, len(beats) // arr.mapping.sf,
                      valid_prob=0.8, ready_prob=0.5)
    codes = arr.mapping.outputs_to_channels(unpack(run.outputs, 3, rq.out_bits))
    np.testing.assert_array_equal(codes, intmath.apply_thresholds(x @ w.T, t, sign))


@pytest.mark.parametrize("bits", [3, 8])
def test_array_then_chosen_signed_requantizer_is_a_residual_arm(bits):
    """A conv2 / shortcut arm: the IR's signed thresholds, the form choose_requantizer picks, the IR's values."""
    rng = np.random.default_rng(bits)
    w = rng.integers(-8, 8, size=(5, 11))
    arr = SystolicArray(weights=w, rows=2, cols=3, lanes=2, weight_code="int", weight_bits=4, act_bits=3)
    lo, hi = (b[:5] for b in arr.mapping.channel_bounds)
    a = rng.uniform(0.5, 1.5, size=5) * (1 << bits) / (hi - lo) * rng.choice([-1, 1], size=5)
    th = affine_requant(a, rng.uniform(-3, 3, size=5), "signed", bits, lo, hi)
    rq = choose_requantizer(th, acc_lo=lo, acc_hi=hi, acc_width=arr.acc_width, lanes=arr.cols)
    assert type(rq) is (ThresholdRequantizer if bits == 3 else MulShiftRequantizer)
    x = rng.integers(0, 8, size=(6, 11))
    beats = arr.mapping.vectors_to_beats(x)
    run = run_streams(_ArrayThenRequant(arr, rq), [pack(b, 3) for b in beats], len(beats) // arr.mapping.sf,
                      valid_prob=0.8, ready_prob=0.5)
    raw = arr.mapping.outputs_to_channels(unpack(run.outputs, 3, rq.out_bits))
    np.testing.assert_array_equal(intmath.decode_acts("signed", bits, raw), th.apply(x @ w.T))


# -- parameters, estimates, Verilog --------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(thresholds=[1, 2, 3]), ValueError, "thresholds"),
    (dict(thresholds=[[0.5]] * 3), TypeError, "thresholds"),
    (dict(thresholds=np.zeros((3, 256), dtype=int)), ValueError, "thresholds"),
    (dict(sign=[1, 0, -1]), ValueError, "sign"),
    (dict(sign=[1, 1]), ValueError, "sign"),
    (dict(acc_lo=[11, 0, 0]), ValueError, "acc_lo"),
    (dict(acc_hi=[10, 10]), ValueError, "acc_hi"),
    (dict(acc_width=4), ValueError, "acc_width"),
    (dict(acc_width=0), ValueError, "acc_width"),
    (dict(acc_width=64), ValueError, "acc_width"),  # was a bare OverflowError (review finding)
    (dict(lanes=0), ValueError, "lanes"),
    (dict(out_code="sign"), ValueError, "out_code"),
    (dict(out_code=3), TypeError, "out_code"),
    (dict(out_code="bipolar"), ValueError, "out_code"),  # two thresholds
    (dict(out_bits=1), ValueError, "out_bits"),  # levels 0..2 need 2 bits
    (dict(out_bits=0), ValueError, "out_bits"),
    (dict(out_bits=17), ValueError, "out_bits"),  # unsigned codes: intmath's 16 bits
])
def test_threshold_invalid_parameters(kwargs, exc, word):
    args = dict(thresholds=[[0, 5]] * 3, acc_lo=[-10] * 3, acc_hi=[10] * 3, acc_width=6, lanes=2) | kwargs
    with pytest.raises(exc, match=word):
        ThresholdRequantizer(**args)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(shift=0), ValueError, "shift"),
    (dict(lo=5, hi=1), ValueError, "lo"),
    (dict(hi=1.5), TypeError, "hi"),
    (dict(bias=[1]), ValueError, "bias"),
    (dict(mult=[[1, 2]]), ValueError, "mult"),
    (dict(lanes=-1), ValueError, "lanes"),
    (dict(hi=1 << 62), ValueError, "lo/hi"),  # 63-bit codes; 62 is the most
    (dict(lo=-(1 << 62)), ValueError, "lo/hi"),
    (dict(out_code="bipolar"), ValueError, "out_code"),
    (dict(out_code="unsigned", lo=-1), ValueError, "lo/hi"),
    (dict(out_code="signed", out_bits=4), ValueError, "lo/hi"),  # 15 needs 5 signed bits
    (dict(out_bits=63), ValueError, "out_bits"),
    (dict(out_code="unsigned", out_bits=20, hi=1 << 19), ValueError, "out_bits"),
    # acc·mult past int64: the product width used to be computed in wrapped int64 (41 bits, not 82)
    (dict(mult=[1 << 40] * 2, acc_lo=[-(1 << 40)] * 2, acc_hi=[1 << 40] * 2, acc_width=42, shift=40), ValueError,
     "mult"),
    # ... and past what intmath.requant_mul_shift computes in (int64), by one
    (dict(mult=[(1 << 59), 1], acc_lo=[-16] * 2, acc_hi=[15] * 2, acc_width=5, bias=[0, 0]), ValueError, "mult"),
    (dict(bias=[(1 << 63) - 2, 0]), ValueError, "bias"),
])
def test_mul_shift_invalid_parameters(kwargs, exc, word):
    args = dict(mult=[3, 4], bias=[0, 1], shift=2, lo=0, hi=15, acc_lo=[-10] * 2, acc_hi=[10] * 2,
                acc_width=6, lanes=2) | kwargs
    with pytest.raises(exc, match=word):
        MulShiftRequantizer(**args)


def test_mul_shift_accepts_the_int64_edge():
    """|acc·m| + |b| + 2^(s-1) = 2^63 - 1 is what intmath computes, so it is built (and exact)."""
    m = (1 << 59) - 1
    rq = MulShiftRequantizer(mult=[m], bias=[14], shift=1, lo=-(1 << 61), hi=(1 << 61) - 1, acc_lo=[-16],
                             acc_hi=[15], acc_width=5, lanes=1)
    assert 16 * m + 14 + 1 == (1 << 63) - 1 and rq.prod_width == 64
    acc = np.array([[-16], [15], [1]])
    np.testing.assert_array_equal(values_of(rq, simulate(rq, acc)),
                                  np.clip((acc * m + 15) >> 1, -(1 << 61), (1 << 61) - 1))


def test_estimates_are_dicts_of_ints_and_cycles_exact():
    th, lo, hi, width = ir_problem(6, 14, "unsigned", 4, seed=9)
    for rq in (ThresholdRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=4),
               MulShiftRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=4)):
        est = rq.estimate_resources()
        assert set(est) == {"lut", "ff", "bram", "dsp"} and all(isinstance(v, int) for v in est.values())
        assert est["lut"] > 0 and est["ff"] == 4 * rq.out_bits + 1 + 1  # payload, valid, 1-bit group counter
        acc = random_accs(rq, 10, np.random.default_rng(1))
        run = run_streams(rq, [pack(a, rq.acc_width) for a in acc], 10)
        assert run.out_cycles[-1] - run.in_cycles[0] + 1 == rq.estimate_cycles(10)


def test_verilog_is_deterministic():
    lo, hi, t, sign, _ = channel_problem(4, 3, seed=1)
    makers = [
        lambda: ThresholdRequantizer(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=2),
        lambda: ThresholdRequantizer(thresholds=np.sort(np.resize(t, (4, 7)), axis=1), sign=sign, acc_lo=lo,
                                     acc_hi=hi, acc_width=11, lanes=2, out_code="signed", out_bits=3),
        lambda: MulShiftRequantizer(mult=[3, -4, 5], bias=[0, 1, 2], shift=3, lo=0, hi=7,
                                    acc_lo=[-9] * 3, acc_hi=[9] * 3, acc_width=5, lanes=2),
        lambda: MulShiftRequantizer(mult=[3 << 30, -4], bias=[0, 1], shift=2, lo=-(1 << 40), hi=1 << 40,
                                    acc_lo=[-9] * 2, acc_hi=[9] * 2, acc_width=5, lanes=1),
    ]
    for make in makers:
        assert to_verilog(make(), name="rq") == to_verilog(make(), name="rq")


# -- the LUT4 threshold-table count -----------------------------------------------------------

def test_lut4_table_counts_only_columns_that_need_a_lut():
    from qhw.hw.requant import lut4_table_luts

    # 4 words, bit by bit: bit 0 constant 1, bit 1 = address bit 0, bit 2 = ~address bit 1, bits 3 and 4
    # the same function (a XOR: one LUT), bit 5 another (an AND): two LUTs
    cols = [[1, 1, 1, 1], [0, 1, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
    words = [sum(col[g] << b for b, col in enumerate(cols)) for g in range(4)]
    assert lut4_table_luts(words, 6) == 2
    assert lut4_table_luts([5], 3) == 0 and lut4_table_luts([0, 7], 3) == 0  # a constant; one address bit
    rng = np.random.default_rng(0)
    for depth, per in ((16, 1), (17, 3), (32, 3), (64, 7)):  # 16-word leaves and a 2:1 mux LUT4 per pair
        words = rng.integers(0, 1 << 12, depth).tolist()
        assert lut4_table_luts(words, 12) == per * 12  # random columns: all distinct and non-trivial


def test_ice40_threshold_estimate_counts_its_table_by_structure():
    """The iCE40 LUT estimate of a many-group threshold table counts its LUT4 columns (the LUT6 ROM model
    put the digits ResNet-8 W4A4's 64-group s3.b1.conv1 at 524 LUT against yosys' 1,075); Xilinx keeps its own."""
    rng = np.random.default_rng(3)
    groups, levels = 64, 15
    t = np.sort(rng.integers(-2000, 2000, (groups, levels)), axis=1)
    lo, hi = np.full(groups, -2048), np.full(groups, 2047)
    rq = ThresholdRequantizer(thresholds=t, acc_lo=lo, acc_hi=hi, acc_width=12, lanes=1, out_bits=4)
    f = rq.features()
    assert f["thr_table4"] > 0 and f["rom"] > 0
    from qhw.hw.requant import LUT4_PER_BIT, LUTS_PER_BIT

    ice = LUT4_PER_BIT["ice40"]
    want = round(sum(ice[k] * v for k, v in f.items() if k not in ("rom", "rom_small")))
    assert rq.estimate_resources("ice40")["lut"] == want
    assert rq.estimate_resources("xilinx")["lut"] == round(sum(LUTS_PER_BIT[k] * v for k, v in f.items()))

"""Requantizers: bit-exact vs intmath (thresholds, mul-shift) under stalls, chained after the array."""

from __future__ import annotations

import numpy as np
import pytest
from _pe_sim import run_streams, to_signed

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from qhw.backends.verilog import to_verilog
from qhw.hw.array import SystolicArray
from qhw.hw.requant import MulShiftRequantizer, ThresholdRequantizer
from qhw.ir import intmath


def pack(values, width):
    return sum((int(v) & ((1 << width) - 1)) << (i * width) for i, v in enumerate(values))


def unpack(words, lanes, width, signed):
    conv = to_signed if signed else (lambda x, w: x)
    return np.array([[conv((x >> (c * width)) & ((1 << width) - 1), width) for c in range(lanes)] for x in words])


def random_accs(rq, n, rng):
    """Accumulator beats within each channel's bounds, the bounds themselves included."""
    ch = rq._channels_of(n) % rq.channels  # padding lanes get any in-range value
    acc = rng.integers(rq.acc_lo[ch], rq.acc_hi[ch] + 1)
    acc[0], acc[1] = rq.acc_lo[ch[0]], rq.acc_hi[ch[1]]
    return acc


def simulate(rq, acc, **stalls):
    run = run_streams(rq, [pack(a, rq.acc_width) for a in acc], len(acc), **stalls)
    return unpack(run.outputs, rq.lanes, rq.out_bits, rq.out_signed)


def channel_problem(channels, levels, seed):
    rng = np.random.default_rng(seed)
    lo = rng.integers(-500, 0, size=channels)
    hi = rng.integers(1, 500, size=channels)
    # Thresholds spill past the bounds on purpose: clamping must not change any code.
    t = np.sort(rng.integers(-700, 700, size=(channels, levels)), axis=1)
    sign = rng.choice([-1, 1], size=channels)
    return lo, hi, t, sign, rng


@pytest.mark.parametrize("lanes", [1, 3, 7])
@pytest.mark.parametrize("levels", [1, 3, 15])
def test_thresholds_match_intmath_with_stalls(levels, lanes):
    lo, hi, t, sign, rng = channel_problem(7, levels, seed=levels * 10 + lanes)
    rq = ThresholdRequantizer(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=lanes)
    assert rq.out_bits == intmath.unsigned_width(levels)
    assert rq.cmp_width <= rq.acc_width + 1
    acc = random_accs(rq, 24, rng)
    got = simulate(rq, acc, valid_prob=0.7, ready_prob=0.6, seed=lanes)
    np.testing.assert_array_equal(got, rq.reference(acc))
    # ... and the reference is intmath on the *unclamped* thresholds, channel by channel.
    ch = rq._channels_of(len(acc))
    for k in range(rq.channels):
        sel = ch == k
        np.testing.assert_array_equal(got[sel], intmath.apply_thresholds(acc[sel][:, None], t[k:k + 1], sign[k:k + 1])[:, 0])
    assert np.all(got[ch >= rq.channels] == 0)


@pytest.mark.parametrize("lanes", [2, 5])
@pytest.mark.parametrize("lo_hi", [(0, 15), (0, 255), (-8, 7), (3, 3)])
def test_mul_shift_matches_intmath_with_stalls(lo_hi, lanes):
    lo, hi = lo_hi
    acc_lo, acc_hi, _, _, rng = channel_problem(5, 1, seed=lanes + hi)
    mult = rng.integers(-3000, 3000, size=5)
    bias = rng.integers(-50000, 50000, size=5)
    rq = MulShiftRequantizer(mult=mult, bias=bias, shift=9, lo=lo, hi=hi, acc_lo=acc_lo, acc_hi=acc_hi,
                             acc_width=10, lanes=lanes)
    acc = random_accs(rq, 24, rng)
    got = simulate(rq, acc, valid_prob=0.6, ready_prob=0.7, seed=hi)
    np.testing.assert_array_equal(got, rq.reference(acc))
    ch = rq._channels_of(len(acc))
    for k in range(rq.channels):
        sel = ch == k
        np.testing.assert_array_equal(
            got[sel], intmath.requant_mul_shift(acc[sel][:, None], mult[k:k + 1], bias[k:k + 1], 9, lo, hi)[:, 0])


def test_mul_shift_product_width_is_exact_at_the_extremes():
    rq = MulShiftRequantizer(mult=[32767, -32768], bias=[0, 0], shift=1, lo=-(1 << 20), hi=1 << 20,
                             acc_lo=[-512, -512], acc_hi=[511, 511], acc_width=10, lanes=2)
    acc = np.array([[-512, 511], [511, -512]])
    got = simulate(rq, acc)
    np.testing.assert_array_equal(got, rq.reference(acc))
    assert rq.prod_width == intmath.signed_width(-512 * 32767 + 1, 512 * 32768 + 1)


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
    arr = SystolicArray(weights=w, rows=2, cols=3, lanes=2, w_code="int", w_bits=4, a_bits=3)
    lo, hi = arr.mapping.channel_bounds
    t = np.sort(rng.integers(-60, 60, size=(5, 7)), axis=1)
    sign = rng.choice([-1, 1], size=5)
    rq = ThresholdRequantizer.after(arr, thresholds=t, sign=sign)
    x = rng.integers(0, 8, size=(6, 11))
    beats = arr.mapping.vectors_to_beats(x)
    words = [pack(b, 3) for b in beats]
    run = run_streams(_ArrayThenRequant(arr, rq), words, len(beats) // arr.mapping.sf,
                      valid_prob=0.8, ready_prob=0.5)
    codes = arr.mapping.outputs_to_channels(unpack(run.outputs, 3, rq.out_bits, False))
    np.testing.assert_array_equal(codes, intmath.apply_thresholds(x @ w.T, t, sign))


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(thresholds=[1, 2, 3]), ValueError, "thresholds"),
    (dict(thresholds=[[0.5]] * 3), TypeError, "thresholds"),
    (dict(sign=[1, 0, -1]), ValueError, "sign"),
    (dict(sign=[1, 1]), ValueError, "sign"),
    (dict(acc_lo=[11, 0, 0]), ValueError, "acc_lo"),
    (dict(acc_hi=[10, 10]), ValueError, "acc_hi"),
    (dict(acc_width=4), ValueError, "acc_width"),
    (dict(acc_width=0), ValueError, "acc_width"),
    (dict(acc_width=64), ValueError, "acc_width"),  # was a bare OverflowError (review finding)
    (dict(lanes=0), ValueError, "lanes"),
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
    (dict(hi=1 << 40), ValueError, "lo/hi"),
    # acc·mult past int64: the product width used to be computed in wrapped int64 (41 bits, not 82)
    (dict(mult=[1 << 40] * 2, acc_lo=[-(1 << 40)] * 2, acc_hi=[1 << 40] * 2, acc_width=42, shift=40), ValueError,
     "mult"),
    (dict(bias=[1 << 62, 0]), ValueError, "bias"),
])
def test_mul_shift_invalid_parameters(kwargs, exc, word):
    args = dict(mult=[3, 4], bias=[0, 1], shift=2, lo=0, hi=15, acc_lo=[-10] * 2, acc_hi=[10] * 2,
                acc_width=6, lanes=2) | kwargs
    with pytest.raises(exc, match=word):
        MulShiftRequantizer(**args)


def test_verilog_is_deterministic():
    lo, hi, t, sign, _ = channel_problem(4, 3, seed=1)
    make = lambda: ThresholdRequantizer(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=2)
    assert to_verilog(make(), name="rq") == to_verilog(make(), name="rq")
    make = lambda: MulShiftRequantizer(mult=[3, -4, 5], bias=[0, 1, 2], shift=3, lo=0, hi=7,
                                       acc_lo=[-9] * 3, acc_hi=[9] * 3, acc_width=5, lanes=2)
    assert to_verilog(make(), name="rq") == to_verilog(make(), name="rq")

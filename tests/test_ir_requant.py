"""Requantizers: exact thresholds, equivalent mul-shift, integer logits."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from qhw.ir import intmath
from qhw.ir.requant import (
    MulShift,
    Thresholds,
    affine_requant,
    affine_thresholds,
    find_mul_shift,
    logit_requant,
    mul_shift_agrees,
    reference_values,
)


def bn_pact(acc, w_scale, in_scale, gamma, beta, mean, var, eps, alpha, bits):
    """The float chain the thresholds replace, evaluated exactly in rationals:
    conv scale, BatchNorm, PACT clip to [0, alpha], round half up to k bits."""
    levels = (1 << bits) - 1
    inv = Fraction(gamma) / Fraction(math.sqrt(var + eps))
    x = Fraction(w_scale) * Fraction(in_scale) * acc * inv + Fraction(beta) - Fraction(mean) * inv
    y = min(max(x, Fraction(0)), Fraction(alpha))
    return min(math.floor(y / (Fraction(alpha) / levels) + Fraction(1, 2)), levels)


def folded(w_scale, in_scale, gamma, beta, mean, var, eps, alpha, bits):
    """(a, b) of u = a·acc + b in output steps, folded the way the exporter does."""
    inv = gamma / math.sqrt(var + eps)
    scale = alpha / ((1 << bits) - 1)
    return w_scale * in_scale * inv / scale, (beta - mean * inv) / scale


BN_CASES = [
    # w_scale, in_scale, gamma, beta, mean, var, eps, alpha, bits
    (1 / 7, 3.1 / 15, 0.8, 0.1, 0.3, 0.9, 1e-5, 2.7, 4),
    (1 / 255, 1 / 255, 1.7, -0.4, 1.2, 2.5, 1e-5, 5.0, 8),
    (0.031, 0.5, -0.6, 0.9, -0.2, 0.4, 1e-5, 1.3, 2),  # negative gamma: sign -1
    (1 / 3, 1.0, 0.25, 0.0, 0.0, 1.0, 1e-5, 0.75, 1),
]


@pytest.mark.parametrize("case", BN_CASES)
def test_threshold_boundaries_match_float_bn_pact(case):
    *params, bits = case
    a, b = folded(*params, bits)
    reach = int(((1 << bits) + abs(b)) / abs(a)) + 5  # every level is reached inside ±reach
    lo, hi = np.array([-reach]), np.array([reach])
    th = affine_thresholds([a], [b], "unsigned", bits, lo, hi)
    s = int(th.sign[0])
    assert s == (1 if case[2] > 0 else -1)
    t = th.thresholds[0]
    assert t.min() > -reach and t.max() <= reach  # all strictly inside: both sides get probed
    for j, tj in enumerate(t.tolist(), start=1):
        # acc = t - 1 gives a code below j, acc = t gives at least j (in sign·acc terms)
        assert bn_pact(s * (tj - 1), *params, bits) < j <= bn_pact(s * tj, *params, bits)
    # the integer function equals the float one at both sides of every threshold and elsewhere
    rng = np.random.default_rng(0)
    acc = np.unique(np.concatenate([s * t, s * (t - 1), rng.integers(-reach, reach + 1, 300)]))
    got = th.apply(acc[None, :], channel_axis=0)[0]
    want = np.array([bn_pact(int(x), *params, bits) for x in acc])
    np.testing.assert_array_equal(got, want)


def test_threshold_acc_t_minus_one_and_t_give_consecutive_codes():
    a, b = folded(*BN_CASES[0])
    th = affine_thresholds([a], [b], "unsigned", 4, [-5000], [5000])
    t = th.thresholds[0]
    assert np.all(np.diff(t) > 0)  # distinct: every level is reachable here
    below = th.apply(np.array([t - 1]), channel_axis=0)[0]
    at = th.apply(np.array([t]), channel_axis=0)[0]
    np.testing.assert_array_equal(below, np.arange(0, 15))
    np.testing.assert_array_equal(at, np.arange(1, 16))


@pytest.mark.parametrize("code,bits", [("unsigned", 3), ("signed", 5), ("bipolar", 1)])
def test_thresholds_equal_exact_reference_for_random_affine_maps(code, bits):
    rng = np.random.default_rng(7)
    c = 12
    a = rng.uniform(0.002, 0.2, c) * rng.choice([-1, 1], c)
    a[3] = 0.0  # constant channel
    b = rng.uniform(-4, 4, c)
    lo = -rng.integers(50, 400, c)
    hi = rng.integers(50, 400, c)
    th = affine_thresholds(a, b, code, bits, lo, hi)
    acc = np.stack([np.arange(l, l + 800).clip(l, h) for l, h in zip(lo, hi)])
    np.testing.assert_array_equal(th.apply(acc, channel_axis=0), reference_values(a, b, code, bits, acc))


def test_threshold_on_exact_tie_rounds_half_up():
    # u = acc / 4: acc = 2 is exactly 0.5, which rounds up to 1
    th = affine_thresholds([0.25], [0.0], "unsigned", 2, [-10], [10])
    assert th.thresholds[0].tolist() == [2, 6, 10]
    # sign: u = 0 counts as +1
    th = affine_thresholds([0.5], [-1.0], "bipolar", 1, [-10], [10])
    assert th.thresholds[0].tolist() == [2]
    assert th.apply(np.array([[1, 2]]), channel_axis=0).tolist() == [[-1, 1]]


def test_thresholds_are_clamped_into_the_accumulator_range():
    th = affine_thresholds([1.0], [0.0], "unsigned", 4, [3], [6])
    assert th.thresholds.min() >= 3 and th.thresholds.max() <= 7
    assert th.apply(np.array([[3, 4, 5, 6]]), channel_axis=0).tolist() == [[3, 4, 5, 6]]


@pytest.mark.parametrize("code,bits", [("unsigned", 4), ("signed", 8), ("unsigned", 8)])
def test_found_mul_shift_equals_thresholds_on_whole_range(code, bits):
    rng = np.random.default_rng(3)
    c = 16
    a = rng.uniform(0.001, 0.05, c) * rng.choice([-1, 1], c)
    b = rng.uniform(-20, 20, c)
    lo, hi = -rng.integers(500, 3000, c), rng.integers(500, 3000, c)
    th = affine_requant(a, b, code, bits, lo, hi)
    ms = th.mul_shift
    assert ms is not None and ms.shift <= 48
    assert mul_shift_agrees(th, ms, lo, hi).all()
    for ch in range(c):
        acc = np.arange(lo[ch], hi[ch] + 1)
        got = intmath.requant_mul_shift(acc[None, :], ms.mult[ch:ch + 1], ms.bias[ch:ch + 1], ms.shift,
                                        ms.lo, ms.hi, channel_axis=0)
        want = intmath.apply_thresholds(acc[None, :], th.thresholds[ch:ch + 1], th.sign[ch:ch + 1], channel_axis=0)
        np.testing.assert_array_equal(got[0], want[0] + (0 if code == "unsigned" else -(1 << (bits - 1))))


def test_mul_shift_agreement_detects_a_one_off_bias():
    a, b = np.array([0.013]), np.array([0.4])
    lo, hi = np.array([-1000]), np.array([1000])
    th = affine_requant(a, b, "unsigned", 4, lo, hi)
    ms = th.mul_shift
    for delta in (-(1 << (ms.shift - 1)), 1 << (ms.shift - 1)):  # half an output step off
        bad = MulShift(mult=ms.mult, bias=ms.bias + delta, shift=ms.shift, lo=0, hi=15,
                       out_code="unsigned", out_bits=4)
        assert not mul_shift_agrees(th, bad, lo, hi).any()
    with pytest.raises(ValueError, match="mul_shift differs from the thresholds"):
        Thresholds(thresholds=th.thresholds, sign=th.sign, out_code="unsigned", out_bits=4,
                   mul_shift=MulShift(mult=ms.mult, bias=ms.bias + (1 << ms.shift), shift=ms.shift, lo=0, hi=15,
                                      out_code="unsigned", out_bits=4)).check_range(lo, hi)


def test_bipolar_outputs_take_no_mul_shift():
    th = affine_requant([0.1], [0.2], "bipolar", 1, [-50], [50])
    assert th.mul_shift is None
    assert find_mul_shift([0.1], [0.2], th, [-50], [50]) is None


def test_logit_requant_keeps_argmax_and_never_clips():
    rng = np.random.default_rng(1)
    c = 10
    a = np.full(c, 0.0123)
    a[2] *= 1.5  # per-class scales may differ
    b = rng.normal(0, 0.3, c)
    lo, hi = -np.full(c, 4000), np.full(c, 4000)
    ms = logit_requant(a, b, lo, hi)
    acc = rng.integers(-4000, 4001, (500, c))
    y = intmath.requant_mul_shift(acc, ms.mult, ms.bias, ms.shift, ms.lo, ms.hi, channel_axis=1)
    raw = (acc * ms.mult + ms.bias + (1 << (ms.shift - 1))) >> ms.shift
    np.testing.assert_array_equal(y, raw)  # clamp never bites
    float_logits = acc * a + b
    agree = (y.argmax(1) == float_logits.argmax(1)).mean()
    assert agree == 1.0
    assert intmath.signed_width(ms.lo, ms.hi) == ms.out_bits


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(thresholds=[[1, 0]], sign=[1], out_code="unsigned", out_bits=2), "3 columns"),
        (dict(thresholds=[[2, 1, 0]], sign=[1], out_code="unsigned", out_bits=2), "ascend"),
        (dict(thresholds=[[0, 1, 2]], sign=[2], out_code="unsigned", out_bits=2), "sign must hold only"),
        (dict(thresholds=[[0, 1, 2]], sign=[1, 1], out_code="unsigned", out_bits=2), "sign has 2 channels"),
        (dict(thresholds=[[0.5, 1, 2]], sign=[1], out_code="unsigned", out_bits=2), "thresholds must hold integers"),
        (dict(thresholds=[[0] * 8191], sign=[1], out_code="signed", out_bits=13), "out_bits must be between 1 and 12"),
        (dict(thresholds=[[0, 1, 2]], sign=[1], out_code="unsigned", out_bits=17), "out_bits must be between 1 and 16"),
        (dict(thresholds=[[0, 1, 2]], sign=[1], out_code="ternary", out_bits=2), "'ternary' is not a valid ActCode"),
    ],
)
def test_thresholds_constructor_checks(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Thresholds(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mult=[1], bias=[0], shift=0, lo=0, hi=3, out_code="unsigned", out_bits=2), "shift must be between 1"),
        (dict(mult=[1], bias=[0, 1], shift=4, lo=0, hi=3, out_code="unsigned", out_bits=2), "bias has 2"),
        (dict(mult=[1], bias=[0], shift=4, lo=0, hi=4, out_code="unsigned", out_bits=2), r"clamp range \[0, 4\]"),
        (dict(mult=[1], bias=[0], shift=4, lo=0, hi=1, out_code="bipolar", out_bits=1), "bipolar outputs use Thresholds"),
    ],
)
def test_mul_shift_constructor_checks(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MulShift(**kwargs)

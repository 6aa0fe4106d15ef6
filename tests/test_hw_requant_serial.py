"""Digit-serial multiply-shift requantizer: the Amaranth simulation equals MulShiftRequantizer's reference
under stalls (lanes, groups, digit widths, output codes, clamps), multipliers of both signs, 0 and
-2^(w-1) at the exact accumulator bounds; measured interval and latency; for_interval's choices."""

from __future__ import annotations

import numpy as np
import pytest
from _pe_sim import run_streams
from test_hw_requant import pack, random_accs, unpack

from qhw.backends.verilog import to_verilog
from qhw.hw.requant import MulShiftRequantizer
from qhw.hw.requant_serial import SerialMulShiftRequantizer
from qhw.ir.requant import MulShift


def simulate(rq, acc, **stalls):
    run = run_streams(rq, [pack(a, rq.acc_width) for a in acc], len(acc), **stalls)
    return unpack(run.outputs, rq.lanes, rq.out_bits), run


def problem(lanes, groups, out_signed, clamped, seed, acc_width=12, mult_bits=8):
    """Keyword arguments of a MulShiftRequantizer: ``groups`` groups of ``lanes`` (the last one padded
    when there are several lanes), mixed-sign multipliers (non-negative ones for unclamped unsigned
    outputs), the clamps active or provably never acting."""
    rng = np.random.default_rng(seed)
    channels = groups * lanes - (1 if lanes > 1 and groups > 1 else 0)
    half = 1 << (acc_width - 1)
    nonneg = not out_signed and not clamped
    acc_lo = (rng.integers(0, half // 4, size=channels) if nonneg else -rng.integers(1, half, size=channels))
    acc_hi = rng.integers(half // 2, half, size=channels)
    mlo = 0 if nonneg else -(1 << (mult_bits - 1))
    mult = rng.integers(mlo, 1 << (mult_bits - 1), size=channels)
    shift = acc_width + mult_bits - 7  # products reach about ±32 after the shift
    bias = rng.integers(0 if nonneg else -(1 << shift), 1 << shift, size=channels)
    if clamped and not out_signed:
        bias += 8 << shift  # centred on the unsigned range: both clamps act, and codes between them
    kw = dict(mult=mult, bias=bias, shift=shift, acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes)
    if clamped:
        lo, hi = (-8, 7) if out_signed else (0, 15)
    else:  # exactly the range the product reaches (and padding's 0): no clamp can act
        probe = MulShiftRequantizer(**kw, lo=-(1 << 40), hi=1 << 40)
        probe._MustUse__silence = True
        ends = [(int(a) * int(m) + int(b) + (1 << (shift - 1))) >> shift
                for a_s in (acc_lo, acc_hi) for a, m, b in zip(a_s, mult, bias)] + [0]
        lo, hi = min(ends), max(ends)
    return {**kw, "lo": lo, "hi": hi, "out_code": "signed" if out_signed else "unsigned"}


@pytest.mark.parametrize("order", ["lsb", "msb"])
@pytest.mark.parametrize("clamped", [False, True])
@pytest.mark.parametrize("out_signed", [False, True])
@pytest.mark.parametrize("digit_bits", [1, 2, 4])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("lanes", [1, 2])
def test_serial_equals_the_parallel_reference(lanes, groups, digit_bits, out_signed, clamped, order):
    kw = problem(lanes, groups, out_signed, clamped, seed=lanes * 100 + groups * 10 + digit_bits)
    rq = SerialMulShiftRequantizer(digit_bits=digit_bits, order=order, **kw)
    assert rq.order == order
    par = MulShiftRequantizer(**kw)
    par._MustUse__silence = True
    assert (rq.prod_width, rq.clamps, rq.out_bits, rq.out_code) == (par.prod_width, par.clamps, par.out_bits,
                                                                      par.out_code)
    assert any(any(c) for c in rq.clamps) == clamped
    rng = np.random.default_rng(digit_bits)
    acc = random_accs(rq, 30, rng, pad_full_range=True)
    got, _ = simulate(rq, acc, valid_prob=0.7, ready_prob=0.6, seed=groups)
    np.testing.assert_array_equal(got, par.reference(acc))
    np.testing.assert_array_equal(rq.reference_values(acc), par.reference_values(acc))
    assert len(set(got.ravel().tolist())) > 3  # the codes really vary


@pytest.mark.parametrize("shift", [3, 8, 11])  # MSB-first (3 < 8 digit bits); LSB-first, 0 and 3 bits left
@pytest.mark.parametrize("digit_bits", [1, 2, 3, 4, 8])
def test_sign_digit_zero_and_most_negative_multiplier_at_the_bounds(digit_bits, shift):
    """m = -2^(w-1), -1, 0, 1, 2^(w-1)-1 and others, every accumulator at its exact bounds and next to them."""
    mult = [-128, 127, 0, -1, 1, -77, 64, 93]
    lo, hi = np.array([-2048, -1, 0, -2048, -1000, -5, -2048, -300]), np.array([2047, 0, 1, 2047, 3, 2047, 2047, 301])
    kw = dict(mult=mult, bias=[5, -3, 7, 0, 100, -100, 1, 0], shift=shift, lo=-(1 << 16), hi=(1 << 16) - 1,
              acc_lo=lo, acc_hi=hi, acc_width=12, lanes=2)
    rq = SerialMulShiftRequantizer(digit_bits=digit_bits, **kw)
    nd = rq.digits * digit_bits
    assert rq.order == ("lsb" if shift >= nd else "msb")
    assert rq.negative and rq.serial_width == 8 and rq.m_width == 8
    assert rq.clamps == [(False, False)] * 2  # nothing hides a wrong product
    groups = rq.groups
    beats = []
    for pick in (lo, hi, np.minimum(lo + 1, hi), np.maximum(hi - 1, lo)):  # per group: the lanes' channels
        for g in range(groups):
            beats.append(pick[g * 2:g * 2 + 2])
    acc = np.array(beats)
    got, _ = simulate(rq, acc, ready_prob=0.5, seed=digit_bits)
    np.testing.assert_array_equal(got, rq.reference(acc))
    values = rq.reference_values(acc)
    ch = rq._channels_of(len(acc))
    half = 1 << (shift - 1)
    want = (acc * np.asarray(mult)[ch] + np.asarray(kw["bias"])[ch] + half) >> shift
    np.testing.assert_array_equal(values, want)
    # m = -2^7 on channel 0 at both ends of its accumulator range: the extremes of the whole layer
    assert (values.min(), values.max()) == ((2047 * -128 + 5 + half) >> shift, (-2048 * -128 + 5 + half) >> shift)


def test_unsigned_multipliers_need_no_sign_digit():
    kw = dict(mult=[255, 3, 128], bias=[0, 9, 1], shift=4, lo=0, hi=255, acc_lo=[-100] * 3, acc_hi=[900] * 3,
              acc_width=11, lanes=1)
    rq = SerialMulShiftRequantizer(digit_bits=2, **kw)
    assert not rq.negative and rq.m_width == 9 and rq.serial_width == 8 and rq.digits == 4
    acc = random_accs(rq, 30, np.random.default_rng(3))
    got, _ = simulate(rq, acc, valid_prob=0.8, ready_prob=0.8)
    np.testing.assert_array_equal(got, rq.reference(acc))


@pytest.mark.parametrize("order", ["lsb", "msb"])
@pytest.mark.parametrize("digit_bits", [1, 3])
def test_stalls_interval_and_latency_are_measured(digit_bits, order):
    """A few hundred beats with random valid / ready stalls equal reference(); at full rate one beat is
    accepted every ``interval`` cycles and the first code is valid ``latency`` cycles after the first
    input transfer; estimate_cycles is the measured window."""
    kw = problem(2, 3, True, True, seed=7, acc_width=14)
    rq = SerialMulShiftRequantizer(digit_bits=digit_bits, order=order, **kw)
    acc = random_accs(rq, 300, np.random.default_rng(digit_bits), pad_full_range=True)
    got, run = simulate(rq, acc, valid_prob=0.5, ready_prob=0.4, seed=11)
    np.testing.assert_array_equal(got, rq.reference(acc))
    assert any(b - a > rq.interval for a, b in zip(run.in_cycles, run.in_cycles[1:]))  # stalls happened
    got, run = simulate(rq, acc[:60])
    np.testing.assert_array_equal(got, rq.reference(acc[:60]))
    gaps = set(np.diff(run.in_cycles).tolist())
    assert gaps == {rq.interval} == {rq.digits} and rq.interval == -(-8 // digit_bits)
    # run_streams samples valid on the edge that loads it: out_cycles[k] is the first cycle it is high
    assert run.out_cycles[0] - run.in_cycles[0] == rq.latency == rq.digits + 1
    assert set(np.diff(run.out_cycles).tolist()) == {rq.interval}
    assert run.out_cycles[-1] - run.in_cycles[0] + 1 == rq.estimate_cycles(60)


def test_parallel_latency_convention_is_the_same():
    """The measurement above counts latency as the parallel form's 1 is counted."""
    kw = problem(1, 3, True, True, seed=2)
    par = MulShiftRequantizer(**kw)
    acc = random_accs(par, 5, np.random.default_rng(0))
    _, run = simulate(par, acc)
    assert run.out_cycles[0] - run.in_cycles[0] == par.latency == 1


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(digit_bits=0), ValueError, "digit_bits"),
    (dict(digit_bits=5), ValueError, "digit_bits"),  # m_width is 4 (multipliers 3, -4)
    (dict(digit_bits=1.5), TypeError, "digit_bits"),
    (dict(digit_bits=True), TypeError, "digit_bits"),
    (dict(digit_bits=1, shift=0), ValueError, "shift"),  # the parallel form's checks, reused
    (dict(digit_bits=1, bias=[1]), ValueError, "bias"),
    (dict(digit_bits=1, lanes=0), ValueError, "lanes"),
    (dict(digit_bits=1, order="lsb"), ValueError, "order"),  # shift 2 < 4 digit bits: LSB-first is not exact
    (dict(digit_bits=1, order="middle"), ValueError, "order"),
])
def test_invalid_parameters(kwargs, exc, word):
    args = dict(mult=[3, -4], bias=[0, 1], shift=2, lo=0, hi=15, acc_lo=[-10] * 2, acc_hi=[10] * 2,
                acc_width=6, lanes=2) | kwargs
    with pytest.raises(exc, match=word) as info:
        SerialMulShiftRequantizer(**args)
    assert "\n" not in str(info.value)


def _ir(mult, channels=8, seed=0):
    rng = np.random.default_rng(seed)
    return MulShift(mult=np.asarray(mult), bias=rng.integers(-2000, 2000, size=channels), shift=10, lo=-128, hi=127,
                    out_code="signed", out_bits=8)


def test_for_interval_takes_the_cheapest_that_fits():
    rng = np.random.default_rng(4)
    ir = _ir(rng.integers(-128, 128, size=8))
    kw = dict(acc_lo=np.full(8, -30000), acc_hi=np.full(8, 30000), acc_width=16, lanes=1)
    assert SerialMulShiftRequantizer.for_interval(ir, **kw, interval=1) is None  # one digit: never serial
    with pytest.raises(ValueError, match="interval"):
        SerialMulShiftRequantizer.for_interval(ir, **kw, interval=0)
    every = {d: SerialMulShiftRequantizer.from_ir(ir, **kw, digit_bits=d) for d in range(1, 9)}
    for interval in (2, 3, 4, 8, 9, 36):
        rq = SerialMulShiftRequantizer.for_interval(ir, **kw, interval=interval)
        fits = [s for s in every.values() if 2 <= s.interval <= interval]
        assert rq.interval <= interval
        assert rq.estimate_resources()["lut"] == min(s.estimate_resources()["lut"] for s in fits)
        for family in ("ice40", "ecp5", "gowin"):
            fam = SerialMulShiftRequantizer.for_interval(ir, **kw, interval=interval, family=family)
            assert fam.estimate_resources(family)["lut"] == min(s.estimate_resources(family)["lut"] for s in fits)
    assert SerialMulShiftRequantizer.for_interval(ir, **kw, interval=9).digit_bits == 1
    for s in every.values():
        s._MustUse__silence = True


def test_estimates_and_verilog():
    kw = problem(2, 3, True, True, seed=5)
    rq = SerialMulShiftRequantizer(digit_bits=2, **kw)
    for family in ("xilinx", "ice40", "ecp5", "gowin"):
        est = rq.estimate_resources(family)
        assert set(est) == {"lut", "ff", "dsp", "bram"} and all(isinstance(v, int) for v in est.values())
        assert est["lut"] > 0 and est["dsp"] == est["bram"] == 0
    with pytest.raises(ValueError, match="family"):
        rq.estimate_resources("virtex")
    assert rq.estimate_cycles(1) == rq.latency + 1
    with pytest.raises(ValueError, match="n_beats"):
        rq.estimate_cycles(0)
    v = to_verilog(rq, name="rq")
    assert v == to_verilog(SerialMulShiftRequantizer(digit_bits=2, **kw), name="rq")
    assert " * " not in v  # shift-adds only, no multiplier


def test_choose_requantizer_takes_the_serial_form_only_where_it_fits_and_is_cheaper():
    from qhw.hw.requant import ThresholdRequantizer, choose_requantizer
    from test_hw_requant import ir_problem

    th, lo, hi, width = ir_problem(8, 14, "signed", 8, seed=3)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=1)
    today = choose_requantizer(th, **kw)
    assert type(today) is MulShiftRequantizer
    assert to_verilog(choose_requantizer(th, **kw, interval=1), name="rq") == to_verilog(today, name="rq")
    serial = choose_requantizer(th, **kw, interval=9)
    assert type(serial) is SerialMulShiftRequantizer and serial.interval <= 9
    assert serial.estimate_resources()["lut"] < today.estimate_resources()["lut"]
    assert isinstance(choose_requantizer(th, **kw, interval=9, form="thresholds"), ThresholdRequantizer)
    # no mul-shift form: never the serial one, whatever the interval (thresholds, searched or not:
    # test_hw_requant_search)
    th2, lo2, hi2, w2 = ir_problem(6, 12, "unsigned", 2, seed=4, with_mul_shift=False)
    kw2 = dict(acc_lo=lo2, acc_hi=hi2, acc_width=w2, lanes=2)
    assert isinstance(choose_requantizer(th2, **kw2, interval=36), ThresholdRequantizer)
    with pytest.raises(ValueError, match="interval"):
        choose_requantizer(th, **kw, interval=0)


@pytest.mark.parametrize("digit_bits", [1, 2, 3])
def test_lsb_first_adders_are_about_the_accumulator_wide_and_bounds_are_reached(digit_bits):
    """LSB-first step sums need acc_width + d + 1 bits or fewer where MSB-first needs prod_width; the
    exact tail bound is reached at the accumulator's ends (a too-narrow width would wrap there)."""
    kw = problem(1, 4, True, False, seed=3, acc_width=12, mult_bits=8)
    lsb = SerialMulShiftRequantizer(digit_bits=digit_bits, order="lsb", **kw)
    msb = SerialMulShiftRequantizer(digit_bits=digit_bits, order="msb", **kw)
    assert msb.step_width == msb.prod_width == 19
    assert lsb.step_width <= lsb.acc_width + digit_bits + 1 < msb.step_width
    assert lsb._ff() < msb._ff()
    if digit_bits == 1:  # B_k is the carry-in; wider digits add it as an operand (yosys: 91 against 90 at d = 2)
        assert lsb.estimate_resources("ice40")["lut"] <= msb.estimate_resources("ice40")["lut"]  # yosys: 66, 69
    ends = np.array([[a] for g in range(lsb.groups) for a in (kw["acc_lo"][g], kw["acc_hi"][g])])
    acc = np.concatenate([ends[0::2], ends[1::2]])  # every group at its low end, then at its high end
    got, _ = simulate(lsb, acc)
    np.testing.assert_array_equal(got, lsb.reference(acc))
    for rq in (lsb, msb):
        rq._MustUse__silence = True

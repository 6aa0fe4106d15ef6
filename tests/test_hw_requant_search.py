"""Binary-search threshold requantizer: the Amaranth simulation equals the parallel form's reference under
stalls (levels 2..31, unsigned / signed / IR codes, mixed signs, 1..3 lanes, padding, clipped thresholds);
measured interval and latency at full rate; for_parallel's None cases; choose_requantizer's rule."""

from __future__ import annotations

import numpy as np
import pytest
from _pe_sim import run_streams
from test_hw_requant import channel_problem, ir_problem, pack, random_accs, unpack

from qhw.backends.verilog import to_verilog
from qhw.hw.requant import FAMILIES_ESTIMATED, ThresholdRequantizer, _cost, choose_requantizer
from qhw.hw.requant_search import SearchThresholdRequantizer


def simulate(rq, acc, **stalls):
    run = run_streams(rq, [pack(a, rq.acc_width) for a in acc], len(acc), **stalls)
    return unpack(run.outputs, rq.lanes, rq.out_bits), run


def pair(channels, levels, lanes, seed, **kw):
    lo, hi, t, sign, _ = channel_problem(channels, levels, seed)
    args = dict(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=lanes, **kw)
    par = ThresholdRequantizer(**args)
    par._MustUse__silence = True
    return SearchThresholdRequantizer(**args), par


@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("levels", [2, 3, 7, 15, 31])
def test_search_equals_the_parallel_reference_with_stalls(levels, lanes):
    rq, par = pair(7, levels, lanes, seed=levels * 10 + lanes)
    assert rq.steps == levels.bit_length() == rq.interval == rq.latency
    assert rq.ordered.shape == (rq.groups * lanes, (1 << rq.steps) - 1)
    assert bool(np.any(rq.sign < 0)) and bool(np.any(rq.sign > 0))  # both directions searched
    acc = random_accs(rq, 40, np.random.default_rng(levels), pad_full_range=True)
    got, run = simulate(rq, acc, valid_prob=0.6, ready_prob=0.5, seed=lanes)
    np.testing.assert_array_equal(got, par.reference(acc))
    ch = rq._channels_of(len(acc))
    assert np.all(got[ch >= rq.channels] == 0)  # padding lanes: level 0
    assert len(set(got[ch < rq.channels].tolist())) >= min(levels, 4)  # the codes really vary


@pytest.mark.parametrize("code,bits", [("unsigned", 2), ("unsigned", 4), ("signed", 3), ("signed", 5)])
def test_search_gives_the_raw_ir_codes(code, bits):
    th, lo, hi, width = ir_problem(6, 13, code, bits, seed=bits + 40)
    par = ThresholdRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=2)
    rq = SearchThresholdRequantizer.for_parallel(par, interval=8)
    assert (rq.out_code, rq.out_bits) == (par.out_code, par.out_bits)
    acc = random_accs(rq, 30, np.random.default_rng(bits), pad_full_range=True)
    got, _ = simulate(rq, acc, valid_prob=0.8, ready_prob=0.6, seed=bits)
    np.testing.assert_array_equal(got, par.reference(acc))


def test_thresholds_past_the_range_and_equal_ones():
    """Clipped columns (always / never met), repeated thresholds and the accumulator's exact bounds."""
    t = np.array([[-50, -50, 0, 0, 3, 90, 90], [-9, -9, -9, -9, 200, 300, 400], [-400, -300, -5, 5, 5, 6, 7]])
    lo, hi = np.array([-20, -10, -10]), np.array([20, 100, 10])
    args = dict(thresholds=t, sign=[1, -1, 1], acc_lo=lo, acc_hi=hi, acc_width=9, lanes=1)
    rq, par = SearchThresholdRequantizer(**args), ThresholdRequantizer(**args)
    par._MustUse__silence = True
    probes = [(lo[g], hi[g], lo[g] + 1, hi[g] - 1, 0, -9, 5, 6, 3, -10) for g in range(3)]
    acc = np.array([[probes[g][r]] for r in range(10) for g in range(3)])  # stream order: channel 0, 1, 2, 0...
    got, _ = simulate(rq, acc, ready_prob=0.5)
    np.testing.assert_array_equal(got, par.reference(acc))


def test_interval_and_latency_are_measured():
    """Full rate: a transfer every ``steps`` cycles, each beat's code one cycle after its transfer (its
    last search step), ``latency = steps`` after it was first presented; estimate_cycles is the window."""
    rq, par = pair(5, 15, 2, seed=3)
    acc = random_accs(rq, 50, np.random.default_rng(9), pad_full_range=True)
    got, run = simulate(rq, acc)
    np.testing.assert_array_equal(got, par.reference(acc))
    assert set(np.diff(run.in_cycles).tolist()) == {rq.steps} == {4}
    assert run.in_cycles[0] == rq.steps - 1  # presented at cycle 0, searched in 0..steps-1
    assert run.out_cycles[0] - run.in_cycles[0] + (rq.steps - 1) == rq.latency
    assert set(np.diff(run.out_cycles).tolist()) == {rq.interval}
    assert run.out_cycles[-1] - run.in_cycles[0] + 1 == rq.estimate_cycles(50)


def test_a_held_output_stalls_the_last_step_only():
    rq, par = pair(3, 7, 1, seed=5)
    acc = random_accs(rq, 200, np.random.default_rng(2))
    got, run = simulate(rq, acc, valid_prob=0.4, ready_prob=0.2, seed=8)
    np.testing.assert_array_equal(got, par.reference(acc))
    assert any(b - a > rq.interval for a, b in zip(run.in_cycles, run.in_cycles[1:]))


def test_for_parallel_returns_none_where_there_is_nothing_to_search_or_no_time():
    lo, hi, t, sign, _ = channel_problem(4, 1, 1)
    par1 = ThresholdRequantizer(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=2)
    assert SearchThresholdRequantizer.for_parallel(par1, interval=50) is None  # one comparison
    _, par15 = pair(4, 15, 2, seed=1)
    assert SearchThresholdRequantizer.for_parallel(par15, interval=3) is None  # 4 steps > 3
    assert SearchThresholdRequantizer.for_parallel(par15, interval=4).steps == 4
    with pytest.raises(ValueError, match="interval"):
        SearchThresholdRequantizer.for_parallel(par15, interval=0)
    lo, hi, t, sign, _ = channel_problem(3, 1, 0)
    with pytest.raises(ValueError, match="at least 2") as info:
        SearchThresholdRequantizer(thresholds=t, sign=sign, acc_lo=lo, acc_hi=hi, acc_width=11, lanes=1)
    assert "\n" not in str(info.value)


def test_estimates_features_and_deterministic_verilog():
    rq, par = pair(6, 15, 2, seed=4)
    f = rq.features()
    assert f["cmp"] == 2 * rq.cmp_width and f["ctrl"] == 1 + 2 * rq.steps
    assert f["invert"] == 2 * rq.steps  # both lanes carry a negative channel (seeded)
    for family in FAMILIES_ESTIMATED:
        est = rq.estimate_resources(family)
        assert set(est) == {"lut", "ff", "dsp", "bram"} and est["lut"] > 0 and est["dsp"] == est["bram"] == 0
        assert _cost(rq, family) < _cost(par, family)  # one comparator a lane instead of 15
    assert rq.comparator_bits() == 2 * rq.cmp_width < par.comparator_bits()
    with pytest.raises(ValueError, match="family"):
        rq.estimate_resources("virtex")
    with pytest.raises(ValueError, match="n_beats"):
        rq.estimate_cycles(0)
    v = to_verilog(rq, name="rq")
    assert v == to_verilog(pair(6, 15, 2, seed=4)[0], name="rq")
    assert v.count(">=") <= 2 * 2  # one comparison a lane (Verilog may spell each once or twice)


def test_choose_requantizer_searches_only_where_steps_fit_and_it_is_cheaper_everywhere():
    th, lo, hi, width = ir_problem(6, 12, "unsigned", 4, seed=4, with_mul_shift=False)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=1)
    parallel = choose_requantizer(th, **kw)
    assert type(parallel) is ThresholdRequantizer
    # interval 1 (the default) and too short an interval: the parallel form, Verilog unchanged
    for interval in (1, 3):
        assert to_verilog(choose_requantizer(th, **kw, interval=interval), name="rq") == to_verilog(parallel, name="rq")
    search = choose_requantizer(th, **kw, interval=4)
    assert type(search) is SearchThresholdRequantizer and search.steps == 4
    assert all(_cost(search, f) < _cost(parallel, f) for f in FAMILIES_ESTIMATED)
    acc = random_accs(search, 20, np.random.default_rng(0))
    got, _ = simulate(search, acc, ready_prob=0.7)
    np.testing.assert_array_equal(got, parallel.reference(acc))
    # one threshold a channel (bipolar): nothing to search, whatever the interval
    thb, lob, hib, wb = ir_problem(6, 12, "bipolar", 1, seed=5, with_mul_shift=False)
    assert type(choose_requantizer(thb, acc_lo=lob, acc_hi=hib, acc_width=wb, lanes=2, interval=30)) \
        is ThresholdRequantizer


@pytest.mark.parametrize("top", [False, True])
def test_padded_probes_are_never_met_even_at_the_top_of_the_width(top):
    """Regression (first run of this file): 2 thresholds pad to 3 probes with "never"; 2^(w-1) wrapped to
    -2^(w-1) in an 11-bit comparator and every padded probe was met. Now "never" is acc_hi + 1, and the
    comparator is widened only when that is 2^(w-1) (an accumulator reaching the top of its width)."""
    hi = np.array([1023 if top else 300, 40])
    args = dict(thresholds=[[-100, 50], [-5, 5]], sign=[-1, 1], acc_lo=np.array([-1024, -40]), acc_hi=hi,
                acc_width=11, lanes=1)
    rq, par = SearchThresholdRequantizer(**args), ThresholdRequantizer(**args)
    par._MustUse__silence = True
    assert rq.cmp_width == par.cmp_width + (1 if top else 0) == 11 + (1 if top else 0)
    acc = np.array([[v] for r in ((1023 if top else 300, 40), (-1024, -40), (-239, 5), (101, -6), (0, 4))
                    for v in r])
    got, _ = simulate(rq, acc, ready_prob=0.6)
    np.testing.assert_array_equal(got, par.reference(acc))

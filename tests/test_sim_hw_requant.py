"""Requantizers in cocotb on Icarus and Verilator; off-by-one parameters must fail."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.requant import MulShiftRequantizer, ThresholdRequantizer
from sim_hw_support import Harness, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_requant"
TESTS = ("codes_with_stalls", "full_rate_without_stalls")


def _bounds(rng, channels: int, acc_width: int):
    lo = rng.integers(-(1 << (acc_width - 1)), 1, size=channels)
    hi = rng.integers(0, 1 << (acc_width - 1), size=channels)
    return lo, hi


def threshold_params(channels, levels, acc_width, lanes, seed, signs=True) -> dict:
    """Ascending thresholds, mixed signs: most inside the range ``sign·acc`` reaches (so every
    comparator switches), one in eight a little past either end (clipping)."""
    rng = np.random.default_rng(seed)
    lo, hi = _bounds(rng, channels, acc_width)
    sign = rng.choice([-1, 1], size=channels) if signs else np.ones(channels, dtype=np.int64)
    r_lo, r_hi = np.where(sign > 0, lo, -hi), np.where(sign > 0, hi, -lo)
    t = np.empty((channels, levels), dtype=np.int64)
    for ch in range(channels):
        inside = rng.integers(r_lo[ch], r_hi[ch] + 2, size=levels)
        past = rng.choice([r_lo[ch] - 3, r_hi[ch] + 4], size=levels) + rng.integers(0, 3, size=levels)
        t[ch] = np.where(rng.random(levels) < 0.125, past, inside)
    t = np.sort(t, axis=1)
    return {"form": "threshold", "thresholds": t, "sign": sign, "acc_lo": lo, "acc_hi": hi,
            "acc_width": acc_width, "lanes": lanes}


def mulshift_params(channels, acc_width, lanes, shift, lo, hi, seed) -> dict:
    rng = np.random.default_rng(seed)
    alo, ahi = _bounds(rng, channels, acc_width)
    mult = rng.integers(-(1 << 7), 1 << 7, size=channels)
    bias = rng.integers(-(1 << (shift + 2)), 1 << (shift + 2), size=channels)
    return {"form": "mulshift", "mult": mult, "bias": bias, "shift": shift, "lo": lo, "hi": hi,
            "acc_lo": alo, "acc_hi": ahi, "acc_width": acc_width, "lanes": lanes}


def build(p: dict):
    if p["form"] == "threshold":
        return ThresholdRequantizer(thresholds=p["thresholds"], sign=p["sign"], acc_lo=p["acc_lo"],
                                    acc_hi=p["acc_hi"], acc_width=p["acc_width"], lanes=p["lanes"])
    return MulShiftRequantizer(mult=p["mult"], bias=p["bias"], shift=p["shift"], lo=p["lo"], hi=p["hi"],
                               acc_lo=p["acc_lo"], acc_hi=p["acc_hi"], acc_width=p["acc_width"], lanes=p["lanes"])


def unit_params(name: str, p: dict, hw) -> dict:
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items() if k != "pad_full_range"}
    out["pad_full_range"] = p.get("pad_full_range", True)
    return {**out, "name": name, "out_bits": hw.out_bits, "out_signed": bool(hw.out_signed)}


# Thresholds: 1..15 levels (1..4-bit codes), 1..4 lanes, channels not a
# multiple of lanes (padding), one to several groups, accumulators 3..20 bits.
# Multiply-shift: unsigned and signed outputs, shifts 1..16.
ICARUS_UNITS = [
    threshold_params(5, 3, 8, 2, seed=1), threshold_params(3, 1, 3, 1, seed=2),
    threshold_params(7, 15, 12, 4, seed=3), threshold_params(4, 7, 20, 4, seed=4, signs=False),
    mulshift_params(6, 10, 4, 4, 0, 15, seed=5), mulshift_params(3, 16, 2, 12, -8, 7, seed=6),
    mulshift_params(2, 6, 1, 1, 0, 255, seed=7), mulshift_params(5, 20, 3, 16, -128, 127, seed=8),
]
VERILATOR_UNITS = [threshold_params(7, 15, 12, 4, seed=3), mulshift_params(5, 20, 3, 16, -128, 127, seed=8)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def run_units(cache, simulator, params_list, *, hw_params=None, valid_prob=0.6, ready_prob=0.6, seed=1,
              beats=150, long_beats=200, name="requant_harness"):
    require_simulator(simulator)
    hw_params = hw_params or params_list
    units = {f"u{k}": build({k_: v for k_, v in p.items() if k_ != "pad_full_range"}) for k, p in enumerate(hw_params)}
    views = [unit_params(n, p, units[n]) for n, p in zip(units, params_list)]
    params = {"units": views, "beats": beats, "long_beats": long_beats, "valid_prob": valid_prob,
              "ready_prob": ready_prob, "seed": seed}
    return simulate(Harness(units), name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                    parameters=params), views


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_requantizers(cache, simulator):
    # Padding lanes within the real channels' range here; the full range below.
    units = [{**u, "pad_full_range": False} for u in (ICARUS_UNITS if simulator == "icarus" else VERILATOR_UNITS)]
    r, views = run_units(cache, simulator, units)
    assert sorted(r.passed) == sorted(TESTS)
    for u in views:
        assert r.records[f"{u['name']}.checked"] == 150
        assert r.records[f"{u['name']}.steady_transfers_per_cycle"] == 1.0
        assert r.records[f"{u['name']}.cycles"] == 200 + 1  # latency 1
    assert sum(r.records[f"{u['name']}.out_stalls"] for u in views) > 0  # the handshake rules saw backpressure


def _shifted_threshold(p: dict) -> dict:
    """One threshold one too high: wrong exactly at accumulator == threshold."""
    t = p["thresholds"].copy()
    t[1, 0] += 1
    return {**p, "thresholds": t}


def _no_rounding(p: dict) -> dict:
    """Bias without the rounding constant: ``>> s`` truncates instead of rounding."""
    return {**p, "bias": p["bias"] - (1 << (p["shift"] - 1))}


@pytest.mark.parametrize("fault", ["threshold_off_by_one", "mulshift_no_rounding"])
def test_broken_requantizer_fails(cache, fault):
    good = threshold_params(4, 3, 8, 2, seed=11, signs=False) if fault.startswith("threshold") \
        else mulshift_params(4, 10, 2, 4, 0, 15, seed=12)
    bad = _shifted_threshold(good) if fault.startswith("threshold") else _no_rounding(good)
    with pytest.raises(SimulationMismatch) as exc:
        run_units(cache, "icarus", [good], hw_params=[bad], name="requant_bad")
    assert "codes_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)


def test_threshold_padding_lanes_give_code_0(cache):
    """Contract of qhw.hw.requant: padding channels "give code 0 (threshold form)" whatever they carry.

    Regression test: padding lanes once compared against
    ``max(thresholds, acc_hi) + 1``, so a padding accumulator above that (the
    array's padded channels compute the dot product of the pad weights, not
    bounded by the real channels' acc_hi) gave a non-zero code.
    """
    p = {**threshold_params(7, 15, 12, 4, seed=3), "pad_full_range": True}
    r, _ = run_units(cache, "icarus", [p], beats=60, long_beats=20, name="requant_pad")
    assert sorted(r.passed) == sorted(TESTS)

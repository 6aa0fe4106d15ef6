"""Requantizers in cocotb on Icarus and Verilator: unsigned, bipolar and signed threshold codes,
multiply-shift up to 48-bit codes; off-by-one parameters, an unflipped sign bit and a dropped high
output bit must fail."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.requant import MulShiftRequantizer, ThresholdRequantizer
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_requant"
TESTS = ("codes_with_stalls", "full_rate_without_stalls")


def _bounds(rng, channels: int, acc_width: int):
    lo = rng.integers(-(1 << (acc_width - 1)), 1, size=channels)
    hi = rng.integers(0, 1 << (acc_width - 1), size=channels)
    return lo, hi


def threshold_params(channels, levels, acc_width, lanes, seed, signs=True, out_code="unsigned",
                     out_bits=None) -> dict:
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
            "acc_width": acc_width, "lanes": lanes, "out_code": out_code, "out_bits": out_bits}


def mulshift_params(channels, acc_width, lanes, shift, lo, hi, seed, mult_bits=8) -> dict:
    rng = np.random.default_rng(seed)
    alo, ahi = _bounds(rng, channels, acc_width)
    mult = rng.integers(-(1 << (mult_bits - 1)), 1 << (mult_bits - 1), size=channels)
    bias = rng.integers(-(1 << (shift + 2)), 1 << (shift + 2), size=channels)
    return {"form": "mulshift", "mult": mult, "bias": bias, "shift": shift, "lo": lo, "hi": hi,
            "acc_lo": alo, "acc_hi": ahi, "acc_width": acc_width, "lanes": lanes}


def build(p: dict):
    if p["form"] == "threshold":
        return ThresholdRequantizer(thresholds=p["thresholds"], sign=p["sign"], acc_lo=p["acc_lo"],
                                    acc_hi=p["acc_hi"], acc_width=p["acc_width"], lanes=p["lanes"],
                                    out_code=p["out_code"], out_bits=p["out_bits"])
    return MulShiftRequantizer(mult=p["mult"], bias=p["bias"], shift=p["shift"], lo=p["lo"], hi=p["hi"],
                               acc_lo=p["acc_lo"], acc_hi=p["acc_hi"], acc_width=p["acc_width"], lanes=p["lanes"])


def unit_params(name: str, p: dict, hw) -> dict:
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items() if k != "pad_full_range"}
    out["pad_full_range"] = p.get("pad_full_range", True)
    return {**out, "name": name, "out_code": hw.out_code.value, "out_bits": hw.out_bits}


# Thresholds: 1..31 levels (1..5-bit codes; unsigned, bipolar and signed, whose
# code is level XOR 2^(k-1)), 1..4 lanes, channels not a multiple of lanes
# (padding), one to several groups, accumulators 3..20 bits.
# Multiply-shift: unsigned and signed outputs, shifts 1..16, codes up to 48
# bits (the final FC's logits run to 33), clamped and not.
SIGNED_5 = threshold_params(7, 31, 12, 3, seed=13, out_code="signed", out_bits=5)
WIDE_48 = mulshift_params(5, 30, 2, 4, -(1 << 47), (1 << 47) - 3, seed=14, mult_bits=24)  # products to 2^52
ICARUS_UNITS = [
    threshold_params(5, 3, 8, 2, seed=1), threshold_params(3, 1, 3, 1, seed=2),
    threshold_params(7, 15, 12, 4, seed=3), threshold_params(4, 7, 20, 4, seed=4, signs=False),
    SIGNED_5, threshold_params(4, 7, 10, 4, seed=15, out_code="signed", out_bits=3),
    threshold_params(5, 1, 9, 2, seed=16, out_code="bipolar"),
    mulshift_params(6, 10, 4, 4, 0, 15, seed=5), mulshift_params(3, 16, 2, 12, -8, 7, seed=6),
    mulshift_params(2, 6, 1, 1, 0, 255, seed=7), mulshift_params(5, 20, 3, 16, -128, 127, seed=8),
    WIDE_48, mulshift_params(3, 26, 3, 2, -(1 << 32), (1 << 32) - 1, seed=17, mult_bits=12),  # 33-bit codes
]
VERILATOR_UNITS = [threshold_params(7, 15, 12, 4, seed=3), SIGNED_5,
                   mulshift_params(5, 20, 3, 16, -128, 127, seed=8), WIDE_48]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def run_units(cache, simulator, params_list, *, hw_params=None, valid_prob=0.6, ready_prob=0.6, seed=1,
              beats=150, long_beats=200, name="requant_harness", wrap=None):
    require_simulator(simulator)
    hw_params = hw_params or params_list
    units = {f"u{k}": build({k_: v for k_, v in p.items() if k_ != "pad_full_range"}) for k, p in enumerate(hw_params)}
    views = [unit_params(n, p, build(p)) for n, p in zip(units, params_list)]  # the true parameters' codes
    if wrap is not None:
        units = {n: wrap(hw) for n, hw in units.items()}
    params = {"units": views, "beats": beats, "long_beats": long_beats, "valid_prob": valid_prob,
              "ready_prob": ready_prob, "seed": seed}
    return simulate(Harness(units), name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                    parameters=params), views


def test_units_cover_what_they_claim():
    hw = [build(u) for u in ICARUS_UNITS]
    codes = {(h.out_code.value, h.out_bits) for h in hw}
    assert {("signed", 5), ("signed", 3), ("bipolar", 1)} <= codes
    assert sorted(h.out_bits for h in hw if isinstance(h, MulShiftRequantizer))[-2:] == [33, 48]
    wide = build(WIDE_48)
    assert wide.prod_width > 48 and any(lo or hi for lo, hi in wide.clamps)
    verilator = [build(u) for u in VERILATOR_UNITS]
    assert ("signed", 5) in {(h.out_code.value, h.out_bits) for h in verilator}
    assert max(h.out_bits for h in verilator) == 48


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


def _unsigned_codes(p: dict) -> dict:
    """Signed thresholds emitted as the bare level: the top bit not flipped."""
    return {**p, "out_code": "unsigned"}


class _DropBit(Rewire):
    """Output bit ``bit`` of every lane forced to 0: a requantizer cut short of its code width."""

    def __init__(self, inner, bit: int):
        self.bit = bit
        super().__init__(inner)

    def corrupt(self, m, outer, inner):
        for c in range(inner.lanes):
            m.d.comb += outer.o_stream.payload[c * inner.out_bits + self.bit].eq(0)


FAULTS = {
    "threshold_off_by_one": (threshold_params(4, 3, 8, 2, seed=11, signs=False), _shifted_threshold),
    "mulshift_no_rounding": (mulshift_params(4, 10, 2, 4, 0, 15, seed=12), _no_rounding),
    "signed_threshold_not_flipped": (threshold_params(4, 7, 10, 2, seed=18, out_code="signed", out_bits=3),
                                     _unsigned_codes),
    "mulshift_bit_40_dropped": (WIDE_48, None),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_broken_requantizer_fails(cache, fault):
    good, breaks = FAULTS[fault]
    if breaks is None:  # the hardware is right inside; the Rewire breaks its output
        with pytest.raises(SimulationMismatch) as exc:
            run_units(cache, "icarus", [good], name="requant_bad", wrap=lambda hw: _DropBit(hw, 40))
    else:
        with pytest.raises(SimulationMismatch) as exc:
            run_units(cache, "icarus", [good], hw_params=[breaks(good)], name="requant_bad")
    assert "codes_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)


def test_threshold_padding_lanes_give_level_0(cache):
    """Contract of qhw.hw.requant: padding channels give level 0 (threshold form), the lowest value's code
    (0 unsigned, 100..0 signed), whatever they carry.

    Regression test: padding lanes once compared against
    ``max(thresholds, acc_hi) + 1``, so a padding accumulator above that (the
    array's padded channels compute the dot product of the pad weights, not
    bounded by the real channels' acc_hi) gave a non-zero code.
    """
    units = [{**threshold_params(7, 15, 12, 4, seed=3), "pad_full_range": True}, {**SIGNED_5, "pad_full_range": True}]
    r, _ = run_units(cache, "icarus", units, beats=60, long_beats=20, name="requant_pad")
    assert sorted(r.passed) == sorted(TESTS)

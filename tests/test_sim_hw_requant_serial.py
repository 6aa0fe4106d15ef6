"""The digit-serial requantizer in cocotb on Icarus and Verilator: the multiply-shift codes under random
stalls, the measured interval and latency at full rate; one without the sign digit's bias pay-back must
fail."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.requant_serial import SerialMulShiftRequantizer
from sim_hw_support import Harness, require_simulator, sim_cache
from test_sim_hw_requant import mulshift_params, unit_params

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_requant_serial"
TESTS = ("codes_with_stalls", "full_rate_without_stalls")

#: (parameters, digit_bits): 3 groups with a padded lane, one 4-group lane of 10-bit multipliers
#: (3 digits of 3 bits and a sign), one group of 3 lanes
UNITS = [(mulshift_params(5, 14, 2, 9, -128, 127, seed=21), 1),
         (mulshift_params(4, 16, 1, 12, 0, 255, seed=22, mult_bits=10), 3),
         (mulshift_params(3, 12, 3, 4, -8, 7, seed=23), 2)]


def build(p: dict, digit_bits: int, cls=SerialMulShiftRequantizer):
    return cls(digit_bits=digit_bits, mult=p["mult"], bias=p["bias"], shift=p["shift"], lo=p["lo"], hi=p["hi"],
               acc_lo=p["acc_lo"], acc_hi=p["acc_hi"], acc_width=p["acc_width"], lanes=p["lanes"])


class _NoPayback(SerialMulShiftRequantizer):
    """The sign bit's ~acc (= -acc - 1) not paid back through the bias: off by 2^(nd-1)·2^-s where m < 0."""

    def __init__(self, **kw):
        super().__init__(**kw)
        nd = self.digits * self.digit_bits
        self._b_lo = [int(b) & ((1 << nd) - 1) for b in self.b_pad]
        self._b_hi = [int(b) >> nd for b in self.b_pad]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def run_units(cache, simulator, hw: dict, unit_dicts: list, *, name: str, beats: int, seed: int):
    """Simulate the requantizers ``hw`` (built from ``unit_dicts``) in this module's harness, which takes
    any requantizer that accepts a beat every interval; returns the result and ``hw``."""
    views = [unit_params(n, {**p, "pad_full_range": True}, h) for n, p, h in zip(hw, unit_dicts, hw.values())]
    params = {"units": views, "beats": beats, "long_beats": 60, "valid_prob": 0.6, "ready_prob": 0.5, "seed": seed}
    return simulate(Harness(hw), name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                    parameters=params), hw


def _run(cache, simulator, units, *, cls=SerialMulShiftRequantizer, name="requant_serial", beats=120):
    require_simulator(simulator)
    hw = {f"u{k}": build(p, d, cls) for k, (p, d) in enumerate(units)}
    return run_units(cache, simulator, hw, [p for p, _ in units], name=name, beats=beats, seed=3)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_serial_requantizers(cache, simulator):
    r, hw = _run(cache, simulator, UNITS)
    assert sorted(r.passed) == sorted(TESTS)
    assert sorted(h.interval for h in hw.values()) == [4, 4, 8]  # 8 digits of 1; 10 bits in 4 of 3; 8 in 4 of 2
    for n, h in hw.items():
        assert r.records[f"{n}.checked"] == 120
        assert r.records[f"{n}.gaps"] == [h.interval]
        assert r.records[f"{n}.latency"] == h.latency
        assert r.records[f"{n}.cycles"] == h.estimate_cycles(60)
    assert sum(r.records[f"{n}.out_stalls"] for n in hw) > 0


def test_serial_requantizer_without_the_sign_payback_fails(cache):
    bad = [UNITS[0]]
    assert np.any(np.asarray(bad[0][0]["mult"]) < 0)
    with pytest.raises(SimulationMismatch) as exc:
        _run(cache, "icarus", bad, cls=_NoPayback, name="requant_serial_bad", beats=40)
    assert "codes_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)

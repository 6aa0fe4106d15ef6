"""The binary-search threshold requantizer in cocotb on Icarus and Verilator: the threshold codes of
:mod:`hw.test_requant` (unsigned, signed, mixed signs, padded lanes) under random stalls, one beat every
``steps`` cycles at full rate, each code one cycle after its transfer; one whose padded probes are
always met (the bug its first pysim run found) must fail."""

from __future__ import annotations

import pytest

from qhw.errors import SimulationMismatch
from qhw.hw.requant_search import SearchThresholdRequantizer
from sim_hw_support import require_simulator, sim_cache
from test_sim_hw_requant import threshold_params
from test_sim_hw_requant_serial import TESTS, run_units

pytestmark = pytest.mark.hdl_sim

#: 15 levels in 3 groups of 2 lanes (one padded), signed 5-bit codes over 3 lanes, 2 levels in 4 groups
#: (probes padded with "never"), 7 levels of a 20-bit accumulator, all channels positive
UNITS = [threshold_params(5, 15, 12, 2, seed=31), threshold_params(7, 31, 12, 3, seed=13, out_code="signed", out_bits=5),
         threshold_params(4, 2, 11, 1, seed=33), threshold_params(4, 7, 20, 4, seed=4, signs=False)]


def build(p: dict, cls=SearchThresholdRequantizer):
    return cls(thresholds=p["thresholds"], sign=p["sign"], acc_lo=p["acc_lo"], acc_hi=p["acc_hi"],
               acc_width=p["acc_width"], lanes=p["lanes"], out_code=p["out_code"], out_bits=p["out_bits"])


class _WrappingNever(SearchThresholdRequantizer):
    """The first version: probes padded with 2^(w-1) in a comparator no wider than the thresholds need,
    where it wraps to -2^(w-1) and is met by every accumulator."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.ordered[:, self.levels:] = 1 << (self.acc_width - 1)
        self.cmp_width = self.acc_width


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def _run(cache, simulator, units, *, cls=SearchThresholdRequantizer, name="requant_search", beats=120):
    require_simulator(simulator)
    hw = {f"u{k}": build(p, cls) for k, p in enumerate(units)}
    return run_units(cache, simulator, hw, units, name=name, beats=beats, seed=5)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_search_requantizers(cache, simulator):
    r, hw = _run(cache, simulator, UNITS)
    assert sorted(r.passed) == sorted(TESTS)
    assert [h.steps for h in hw.values()] == [4, 5, 2, 3]
    for n, h in hw.items():
        assert r.records[f"{n}.checked"] == 120
        assert r.records[f"{n}.gaps"] == [h.interval]
        # the transfer is the last search step: the code follows one cycle later, ``latency`` after the
        # beat was first presented
        assert r.records[f"{n}.latency"] == 1 == h.latency - (h.steps - 1)
        assert r.records[f"{n}.cycles"] == h.estimate_cycles(60)
    assert sum(r.records[f"{n}.out_stalls"] for n in hw) > 0


def test_search_with_wrapping_never_probes_fails(cache):
    bad = [UNITS[2]]
    assert build(bad[0]).cmp_width == 11 and 2 < (1 << build(bad[0]).steps) - 1  # padded, no wider
    with pytest.raises(SimulationMismatch) as exc:
        _run(cache, "icarus", bad, cls=_WrappingNever, name="requant_search_bad", beats=40)
    assert "codes_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)

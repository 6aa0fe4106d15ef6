"""ShiftAddPE: bit-exact vs intmath pow2 decoding under random stalls; no multiplier in the netlist."""

from __future__ import annotations

import pytest
from _pe_sim import check_stream_pe

from amaranth.back import rtlil
from qhw.backends.verilog import to_verilog
from qhw.hw.pe import MacPE, ShiftAddPE
from qhw.ir import intmath


@pytest.mark.parametrize("a_bits", [1, 3, 8])
@pytest.mark.parametrize("w_bits", [2, 3, 4, 5])
def test_matches_reference_with_stalls(w_bits, a_bits):
    pe = ShiftAddPE(lanes=4, fold=3, w_bits=w_bits, a_bits=a_bits)
    check_stream_pe(pe, seed=w_bits * 10 + a_bits)
    vlo, vhi = pe.spec.value_range()
    assert pe.acc_width == intmath.signed_width(12 * vlo, 12 * vhi)


@pytest.mark.parametrize("w_bits", [3, 6])
def test_signed_activations(w_bits):
    check_stream_pe(ShiftAddPE(lanes=3, fold=2, w_bits=w_bits, a_bits=5, a_code="signed"), seed=w_bits)


@pytest.mark.parametrize("lanes,fold", [(1, 1), (7, 1), (2, 5)])
def test_shapes(lanes, fold):
    check_stream_pe(ShiftAddPE(lanes=lanes, fold=fold, w_bits=4, a_bits=4), seed=lanes + fold)


def _netlist(component) -> str:
    return rtlil.convert(component, name="top", emit_src=False)


@pytest.mark.parametrize("w_bits", [2, 4, 5])
def test_netlist_has_no_multiplier(w_bits):
    pe = ShiftAddPE(lanes=4, fold=2, w_bits=w_bits, a_bits=4)
    assert "$mul" not in _netlist(pe)
    assert " * " not in to_verilog(pe, name="top")


def test_multiplier_check_detects_a_multiplier():
    # Control for the test above: the same check does find the MAC PE's products.
    assert "$mul" in _netlist(MacPE(lanes=4, fold=2, w_bits=4, a_bits=4))


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(w_bits=1), ValueError, "w_bits"),
    (dict(w_bits=9), ValueError, "w_bits"),
    (dict(a_bits=0), ValueError, "a_bits"),
    (dict(lanes=-1), ValueError, "lanes"),
    (dict(a_code="bipolar"), ValueError, "a_code"),
])
def test_invalid_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        ShiftAddPE(**(dict(lanes=4, fold=2, w_bits=4, a_bits=4) | kwargs))


def test_verilog_is_deterministic():
    a = to_verilog(ShiftAddPE(lanes=5, fold=3, w_bits=4, a_bits=3), name="pe")
    b = to_verilog(ShiftAddPE(lanes=5, fold=3, w_bits=4, a_bits=3), name="pe")
    assert a == b

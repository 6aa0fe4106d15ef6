"""MacPE: int and odd weights, bit-exact vs intmath under random stalls."""

from __future__ import annotations

import pytest
from _pe_sim import check_stream_pe

from qhw.backends.verilog import to_verilog
from qhw.hw.pe import MacPE
from qhw.ir import intmath


@pytest.mark.parametrize("a_bits", [1, 2, 4, 8])
@pytest.mark.parametrize("w_bits", range(1, 9))
@pytest.mark.parametrize("w_code", ["int", "odd"])
def test_matches_reference_with_stalls(w_code, w_bits, a_bits):
    pe = MacPE(lanes=3, fold=2, w_bits=w_bits, a_bits=a_bits, w_code=w_code)
    check_stream_pe(pe, vectors=5, seed=w_bits * 16 + a_bits)
    vlo, vhi = pe.spec.value_range()
    assert pe.acc_width == intmath.signed_width(6 * vlo, 6 * vhi)


@pytest.mark.parametrize("w_code", ["int", "odd"])
@pytest.mark.parametrize("a_bits", [2, 7])
def test_signed_activations(w_code, a_bits):
    check_stream_pe(MacPE(lanes=4, fold=2, w_bits=5, a_bits=a_bits, w_code=w_code, a_code="signed"), seed=a_bits)


def test_sixteen_bit_operands():
    check_stream_pe(MacPE(lanes=2, fold=3, w_bits=16, a_bits=16), vectors=4)


@pytest.mark.parametrize("lanes,fold", [(1, 1), (8, 1), (1, 6)])
def test_shapes(lanes, fold):
    check_stream_pe(MacPE(lanes=lanes, fold=fold, w_bits=4, a_bits=4), seed=lanes * fold)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(w_bits=0), ValueError, "w_bits"),
    (dict(w_bits=17), ValueError, "w_bits"),
    (dict(a_bits=17), ValueError, "a_bits"),
    (dict(lanes=0), ValueError, "lanes"),
    (dict(fold=1.5), TypeError, "fold"),
    (dict(w_code="pow2"), ValueError, "w_code"),
])
def test_invalid_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        MacPE(**(dict(lanes=4, fold=2, w_bits=4, a_bits=4) | kwargs))


def test_verilog_is_deterministic():
    a = to_verilog(MacPE(lanes=4, fold=3, w_bits=4, a_bits=3, w_code="odd"), name="pe")
    b = to_verilog(MacPE(lanes=4, fold=3, w_bits=4, a_bits=3, w_code="odd"), name="pe")
    assert a == b

"""MacPE: int and odd weights, bit-exact vs intmath under random stalls."""

from __future__ import annotations

import pytest
from _pe_sim import check_stream_pe

from qhw.backends.verilog import to_verilog
from qhw.hw.pe import MacPE, ShiftAddPE, XnorPopcountPE
from qhw.ir import intmath


@pytest.mark.parametrize("act_bits", [1, 2, 4, 8])
@pytest.mark.parametrize("weight_bits", range(1, 9))
@pytest.mark.parametrize("weight_code", ["int", "odd"])
def test_matches_reference_with_stalls(weight_code, weight_bits, act_bits):
    pe = MacPE(lanes=3, fold=2, weight_bits=weight_bits, act_bits=act_bits, weight_code=weight_code)
    check_stream_pe(pe, vectors=5, seed=weight_bits * 16 + act_bits)
    vlo, vhi = pe.spec.value_range()
    assert pe.acc_width == intmath.signed_width(6 * vlo, 6 * vhi)


@pytest.mark.parametrize("weight_code", ["int", "odd"])
@pytest.mark.parametrize("act_bits", [2, 7])
def test_signed_activations(weight_code, act_bits):
    check_stream_pe(MacPE(lanes=4, fold=2, weight_bits=5, act_bits=act_bits, weight_code=weight_code,
                          act_code="signed"), seed=act_bits)


def test_sixteen_bit_operands():
    check_stream_pe(MacPE(lanes=2, fold=3, weight_bits=16, act_bits=16), vectors=4)


@pytest.mark.parametrize("lanes,fold", [(1, 1), (8, 1), (1, 6)])
def test_shapes(lanes, fold):
    check_stream_pe(MacPE(lanes=lanes, fold=fold, weight_bits=4, act_bits=4), seed=lanes * fold)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(weight_bits=0), ValueError, "weight_bits"),
    (dict(weight_bits=17), ValueError, "weight_bits"),
    (dict(act_bits=17), ValueError, "act_bits"),
    (dict(lanes=0), ValueError, "lanes"),
    (dict(fold=1.5), TypeError, "fold"),
    (dict(weight_code="pow2"), ValueError, "weight_code"),
])
def test_invalid_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        MacPE(**(dict(lanes=4, fold=2, weight_bits=4, act_bits=4) | kwargs))


def test_verilog_is_deterministic():
    a = to_verilog(MacPE(lanes=4, fold=3, weight_bits=4, act_bits=3, weight_code="odd"), name="pe")
    b = to_verilog(MacPE(lanes=4, fold=3, weight_bits=4, act_bits=3, weight_code="odd"), name="pe")
    assert a == b


@pytest.mark.parametrize("make", [
    lambda: MacPE(lanes=3, fold=2, weight_bits=4, act_bits=5, weight_code="odd"),
    lambda: ShiftAddPE(lanes=2, fold=1, weight_bits=3, act_bits=2),
    lambda: XnorPopcountPE(lanes=4, fold=3),
])
def test_stream_pe_ports_are_flat_bit_vectors(make):
    """StreamPE (every PE kind): plain unsigned payload, activation lanes then weight lanes, no Amaranth view."""
    from amaranth.hdl import Shape

    pe = make()
    s = pe.spec
    assert (pe.act_width, pe.weight_width) == (s.lanes * s.act_bits, s.lanes * s.weight_bits)
    width = pe.act_width + pe.weight_width
    assert pe.signature.members["i_stream"].signature.members["payload"].shape == Shape(width)
    a = [(l + 1) & s.code_max for l in range(s.lanes)]
    w = [((1 << s.weight_bits) - 1 - l) % (1 << s.weight_bits) for l in range(s.lanes)]
    word = pe.pack(a, w)
    assert [(word >> (l * s.act_bits)) & s.code_max for l in range(s.lanes)] == a
    assert [(word >> (pe.act_width + l * s.weight_bits)) & ((1 << s.weight_bits) - 1) for l in range(s.lanes)] == w
    text = to_verilog(pe, name="pe")
    assert f"input [{width - 1}:0] i_stream__payload" in text and "i_stream__payload." not in text

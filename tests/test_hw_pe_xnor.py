"""XnorPopcountPE: bit-exact vs intmath (xnor_dot / and_dot) under random stalls."""

from __future__ import annotations

import pytest
from _pe_sim import check_stream_pe, run_streams, to_signed

from qhw.backends.verilog import to_verilog
from qhw.hw.pe import XnorPopcountPE
from qhw.ir import intmath


@pytest.mark.parametrize("fold", [1, 3])
@pytest.mark.parametrize("lanes", [1, 5, 16])
@pytest.mark.parametrize("act_code,act_bits", [("bipolar", 1), ("unsigned", 1), ("unsigned", 3), ("signed", 4)])
def test_matches_reference_with_stalls(act_code, act_bits, lanes, fold):
    pe = XnorPopcountPE(lanes=lanes, fold=fold, act_code=act_code, act_bits=act_bits)
    check_stream_pe(pe, seed=lanes * 7 + fold)
    vlo, vhi = pe.spec.value_range()
    assert pe.acc_width == intmath.signed_width(lanes * fold * vlo, lanes * fold * vhi)


def test_xnor_word_level_agrees_with_intmath_xnor_dot():
    # 16 lanes, fold 1: the PE output is intmath.xnor_dot of the packed words.
    pe = XnorPopcountPE(lanes=16, fold=1)
    words = [(0xFFFF, 0xFFFF), (0x0000, 0xFFFF), (0xA5A5, 0x0FF0), (0x1234, 0xFEDC)]
    run = run_streams(pe, [a | (w << 16) for a, w in words], len(words))
    got = [to_signed(x, pe.acc_width) for x in run.outputs]
    assert got == [int(intmath.xnor_dot(a, w, 16)) for a, w in words]
    assert got[:2] == [16, -16]


def test_and_word_level_agrees_with_intmath_and_dot():
    pe = XnorPopcountPE(lanes=12, fold=1, act_code="unsigned")
    words = [(0xFFF, 0xFFF), (0xFFF, 0x000), (0x5A5, 0x0F0), (0x000, 0xABC)]
    run = run_streams(pe, [a | (w << 12) for a, w in words], len(words))
    got = [to_signed(x, pe.acc_width) for x in run.outputs]
    assert got == [int(intmath.and_dot(a, w, 12)) for a, w in words]
    assert got[:2] == [12, -12]


def test_full_rate_without_stalls():
    pe = XnorPopcountPE(lanes=8, fold=2)
    n = 40
    run = run_streams(pe, list(range(n * 2)), n)
    assert run.in_cycles == list(range(2 * n))  # one transfer every cycle
    assert run.out_cycles[0] == run.in_cycles[1] + pe.latency
    assert run.out_cycles[-1] + 1 == pe.estimate_cycles(n)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(lanes=0), ValueError, "lanes"),
    (dict(fold=0), ValueError, "fold"),
    (dict(fold=-2), ValueError, "fold"),
    (dict(fold="3"), TypeError, "fold"),
    (dict(act_bits=2), ValueError, "bipolar"),
    (dict(act_code="unsigned", act_bits=17), ValueError, "act_bits"),
])
def test_invalid_parameters(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        XnorPopcountPE(**(dict(lanes=4, fold=2) | kwargs))


def test_verilog_is_deterministic():
    texts = {to_verilog(XnorPopcountPE(lanes=9, fold=4, act_code=a), name="pe") for a in ["bipolar"] * 2}
    assert len(texts) == 1


class _OffByOne(XnorPopcountPE):
    """Deliberately wrong: adds 1 to every result (proves the checker can fail)."""

    def _finish(self, p, *rest):
        return super()._finish(p, *rest) + 1


def test_checker_catches_a_wrong_pe():
    with pytest.raises(AssertionError):
        check_stream_pe(_OffByOne(lanes=4, fold=2), vectors=3)

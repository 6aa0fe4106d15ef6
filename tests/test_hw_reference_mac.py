"""The behavioural reference array in Amaranth's simulator, against the systolic array's model."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.backends.verilog import to_verilog
from qhw.hw.reference_mac import ReferenceMacArray
from qhw.ir import intmath
from stream_harness import cycles, run_streams, values

KINDS = {"xnor": ("binary", 1, "bipolar", 1), "and": ("binary", 1, "unsigned", 3),
         "shift": ("pow2", 4, "unsigned", 4), "mac": ("int", 4, "unsigned", 4), "odd": ("odd", 3, "unsigned", 2),
         "mac_signed_acts": ("int", 4, "signed", 3)}  # signed codes were read as unsigned (review finding)


def _make(kind, rows, cols, lanes, C, K, seed=0):
    weight_code, weight_bits, act_code, act_bits = KINDS[kind]
    rng = np.random.default_rng(seed)
    w = intmath.decode_weights(weight_code, weight_bits, rng.integers(0, 1 << weight_bits, size=(C, K)))
    return ReferenceMacArray(weights=w, rows=rows, cols=cols, lanes=lanes, weight_code=weight_code,
                             weight_bits=weight_bits, act_code=act_code, act_bits=act_bits)


def _pack(row, bits):
    return sum(int(v) << (j * bits) for j, v in enumerate(row))


def _unpack(word, width, n):
    out = []
    for c in range(n):
        v = (word >> (c * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("rows, cols, lanes, C, K", [(1, 1, 1, 1, 1), (2, 3, 2, 5, 7), (1, 4, 3, 8, 6), (3, 1, 1, 2, 9)])
def test_matches_the_array_model_under_stalls(kind, rows, cols, lanes, C, K):
    dut = _make(kind, rows, cols, lanes, C, K, seed=rows * 10 + cols)
    mp, act_bits = dut.mapping, dut.spec.act_bits
    rng = np.random.default_rng(K)
    x = rng.integers(0, 1 << act_bits, size=(6, K))
    beats = mp.vectors_to_beats(x)
    res = run_streams(dut, sources={dut.i_stream: [_pack(b, act_bits) for b in beats]},
                      sinks={dut.o_stream: len(beats) // mp.sf}, valid_prob=0.6, ready_prob=0.6, seed=K)
    got = np.array([_unpack(v, dut.acc_width, cols) for v in values(res, dut.o_stream)])
    want = dut.reference(beats)
    np.testing.assert_array_equal(got, want)
    # and the real channels are the intmath dot products
    y = intmath.decode_acts(dut.spec.act_code, act_bits, x) @ mp.weights.T
    np.testing.assert_array_equal(mp.outputs_to_channels(got), y)


def test_full_rate_and_latency():
    dut = _make("mac", 2, 2, 1, 4, 4)
    beats = dut.mapping.vectors_to_beats(np.arange(40).reshape(10, 4) % 16)
    res = run_streams(dut, sources={dut.i_stream: [_pack(b, 4) for b in beats]},
                      sinks={dut.o_stream: len(beats) // dut.mapping.sf})
    out = cycles(res, dut.o_stream)
    assert out[-1] == dut.estimate_cycles(10) - 1  # first beat in cycle 0


def test_uses_multipliers_not_raw_terms():
    """The yardstick must be the obvious design: a ``*`` per lane in the netlist."""
    text = to_verilog(_make("shift", 2, 2, 1, 4, 4), name="ref")
    assert text.count(" * ") >= 4


def test_parameter_checks():
    with pytest.raises(ValueError, match="^rows must be at least 1, not 0$"):
        ReferenceMacArray(weights=[[1]], rows=0, cols=1, lanes=1, weight_code="int", weight_bits=2, act_bits=2)
    with pytest.raises(TypeError, match="^cols must be an integer"):
        ReferenceMacArray(weights=[[1]], rows=1, cols="2", lanes=1, weight_code="int", weight_bits=2, act_bits=2)

"""Layer engines in Amaranth's simulator: every layer kind against the golden model, bit for bit.

Synthetic layers (tests/net_layers.py) cover shapes and encodings the
trained digits nets do not have; the trained nets' own layers run in the
cocotb tier (tests/test_sim_net_engines.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from qhw.errors import InputError
from qhw.ir.graph import MaxPool, TensorSpec
from qhw.net import Fold, FrameFormat
from qhw.net.engines import (AddEngine, ArgmaxHead, ConvEngine, GlobalPoolEngine, MaxPoolEngine,
                             build_engine)
from net_layers import add_layer, conv_layer, dense_layer, gap_layer, random_values
from stream_harness import cycles, run_streams, values


def run_engine(engine, inputs, *, valid_prob=1.0, ready_prob=1.0, seed=0):
    """Stream ``inputs`` (values, one array per input) through ``engine``; returns (payloads, cycles)."""
    beats = engine.input_beats(*inputs)
    n_out = len(inputs[0]) * engine.out_format.beats
    ports = [engine.in_port(k) for k in range(len(beats))]
    res = run_streams(engine, sources=list(zip(ports, beats)), sinks={engine.o_stream: n_out},
                      valid_prob=valid_prob, ready_prob=ready_prob, seed=seed)
    return values(res, engine.o_stream), cycles(res, engine.o_stream)


def check_engine(engine, inputs, *, seed=0):
    """Bit-exact with random stalls; exact cycles without."""
    expected = engine.reference_beats(*inputs)
    got, _ = run_engine(engine, inputs, valid_prob=0.7, ready_prob=0.6, seed=seed)
    assert got == expected
    got, when = run_engine(engine, inputs)
    assert got == expected
    # The sink counts cycles from reset; the first input transfer happens in cycle 0.
    assert when[-1] + 1 == engine.estimate_cycles(len(inputs[0]))


CONV_CASES = {
    # name: conv_layer kwargs, fold, out_simd
    "3x3_unsigned_odd_pad": (dict(c_in=5, h=5, w=4, c_out=7), Fold(2, 3), 4),
    "3x3_bipolar_xnor_pad_signed_out": (dict(c_in=6, h=4, w=5, c_out=5, weight_code="binary", weight_bits=1,
                                             in_code="bipolar", in_bits=1, out_code="signed", out_bits=5),
                                        Fold(2, 2, 2), 3),
    "3x3_bipolar_to_bipolar": (dict(c_in=3, h=3, w=3, c_out=4, weight_code="binary", weight_bits=1, in_code="bipolar",
                                    in_bits=1, out_code="bipolar", out_bits=1), Fold(1, 4, 2), 4),
    "1x1_stride2_pow2_signed8": (dict(c_in=4, h=7, w=5, c_out=6, kernel=1, stride=2, padding=0, weight_code="pow2",
                                      out_code="signed", out_bits=8), Fold(2, 6), 6),
    "5x5_pad2_int": (dict(c_in=2, h=6, w=5, c_out=3, kernel=5, padding=2, weight_code="int", weight_bits=3, in_bits=2),
                     Fold(1, 3, 2), 1),
    "3x3_stride2_odd_size": (dict(c_in=3, h=7, w=7, c_out=4, stride=2, weight_bits=2), Fold(3, 2), 2),
    "3x3_signed_in_no_requant": (dict(c_in=2, h=3, w=4, c_out=3, in_code="signed", in_bits=3, out_code=None),
                                 Fold(1, 2), 3),
    # a serial requantizer paced slower than the array (SF 4, up to 11 cycles a beat): the engine's
    # output interval is the requantizer's, and its estimate_cycles says so exactly
    "1x1_paced_serial_requant": (dict(c_in=4, h=5, w=4, c_out=3, kernel=1, padding=0, out_code="signed", out_bits=8),
                                 Fold(1, 1, requant="serial", requant_interval=11), 1),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_engine_matches_golden(case):
    kwargs, fold, out_simd = CONV_CASES[case]
    rng = np.random.default_rng(len(case))
    layer, x = conv_layer(rng, n=2, **kwargs)
    engine = ConvEngine(layer=layer, fold=fold, out_simd=out_simd)
    if fold.requant_interval:  # the case is what it says: paced past SF
        assert engine.window.sf < engine.requant.interval <= fold.requant_interval
        assert engine.beat_interval == engine.requant.interval
        assert engine.cycles_per_frame() == engine.requant.interval * 5 * 4 * 3
    check_engine(engine, [x], seed=len(case))


def test_bipolar_padding_is_exact_where_every_tap_is_padding_or_real():
    """2×2 map, 3×3 kernel, padding 1: no position sees all 9 taps (the case the IR bound used to miss)."""
    rng = np.random.default_rng(3)
    layer, x = conv_layer(rng, c_in=3, h=2, w=2, c_out=3, weight_code="binary", weight_bits=1, in_code="bipolar",
                          in_bits=1, out_code="signed", out_bits=5, n=3)
    engine = ConvEngine(layer=layer, fold=Fold(1, 3, 2))
    assert engine.correction is not None
    check_engine(engine, [x])


def test_dense_engine_logits_past_32_bits():
    rng = np.random.default_rng(1)
    layer, x = dense_layer(rng, c_in=12, c_out=5, n=3)
    assert layer.out.bits > 20
    check_engine(ConvEngine(layer=layer, fold=Fold(2, 2, 2), out_simd=5), [x])


def test_add_engine_identity_and_projection():
    rng = np.random.default_rng(2)
    specs = [TensorSpec((5, 3, 2), "signed", 6), TensorSpec((5, 3, 2), "unsigned", 4)]
    layer, xs = add_layer(rng, specs=specs, coeffs=[1, 4], n=3)
    check_engine(AddEngine(layer=layer, simd=2), xs)
    layer, xs = add_layer(rng, specs=[specs[0], specs[0]], coeffs=[[1, 1, 3, 1, 1], [1, -2, 1, 1, 5]], n=2,
                          out_code="bipolar", out_bits=1)
    check_engine(AddEngine(layer=layer, simd=3), xs)


@pytest.mark.parametrize("simd", [1, 2, 3, 7])  # 7, 4, 3 groups: sums in a RAM (one word a group); 1: a register
def test_global_pool_engine(simd):
    rng = np.random.default_rng(4)
    layer, x = gap_layer(rng, c=7, h=3, w=3, n=3)
    engine = GlobalPoolEngine(layer=layer, simd=simd)
    check_engine(engine, [x], seed=simd)
    groups = -(-7 // simd)
    if groups > 1:  # the sums' RAM is estimated where yosys' cost model puts it
        from qhw.hw.rom import ram_mapping
        placed = ram_mapping(groups, simd * engine.sum_shape.width, "ice40", sync_read=True)
        assert engine.estimate_resources("ice40")["bram"] >= placed["bram"]


@pytest.mark.parametrize("kernel, stride, padding, shape", [(2, 2, 0, (3, 6, 4)), (3, 2, 1, (2, 7, 5)),
                                                            (3, 1, 0, (4, 5, 5))])
def test_maxpool_engine(kernel, stride, padding, shape):
    rng = np.random.default_rng(kernel + stride)
    spec = TensorSpec(shape, "unsigned", 3)
    layer = MaxPool(name="pool", input="x", in_spec=spec, kernel=kernel, stride=stride, padding=padding)
    check_engine(MaxPoolEngine(layer=layer, simd=2), [random_values(rng, spec, 2)])


def test_argmax_head_ties_go_to_the_first_index():
    spec = TensorSpec((7,), "signed", 6)
    head = ArgmaxHead(spec=spec, simd=3)
    logits = np.array([[3, 9, 9, -4, 2, 9, 0], [-32, -32, -32, -32, -32, -32, -32], [0, 1, 2, 3, 4, 5, 31],
                       [-5, -7, -6, -9, -5, -8, -30]])
    expected = head.reference_beats(logits)
    assert [p & 7 for p in expected] == [1, 0, 6, 0]
    res = run_streams(head, sources={head.i_stream: head.in_format.encode(logits)}, sinks={head.o_stream: 4},
                      valid_prob=0.6, ready_prob=0.5)
    assert values(res, head.o_stream) == expected


def test_unbuildable_layers_name_the_layer():
    rng = np.random.default_rng(0)
    spec = TensorSpec((2, 4, 4), "signed", 4)
    pool = MaxPool(name="p1", input="x", in_spec=spec, kernel=3, stride=2, padding=1)
    with pytest.raises(InputError, match=r"^layer p1 \(maxpool\): cannot build hardware: .*signed"):
        build_engine(pool, simd=2)
    layer, _ = conv_layer(rng, c_in=2, h=3, w=3, c_out=2)
    with pytest.raises(InputError, match=r"^layer conv \(conv\): cannot build hardware: .*fold"):
        build_engine(layer)


EMIT = r"""
import json, sys
sys.path.insert(0, "tests")
import numpy as np
from qhw.backends.verilog import digest, to_verilog
from qhw.ir.graph import MaxPool, TensorSpec
from qhw.net import Fold
from qhw.net.engines import build_engine
from net_layers import add_layer, conv_layer, gap_layer

rng = np.random.default_rng(5)
xnor, _ = conv_layer(rng, c_in=6, h=4, w=5, c_out=5, weight_code="binary", weight_bits=1, in_code="bipolar", in_bits=1,
                     out_code="signed", out_bits=5, n=1)
mac, _ = conv_layer(rng, c_in=5, h=5, w=4, c_out=7, n=1)
spec = TensorSpec((5, 3, 2), "signed", 6)
add, _ = add_layer(rng, specs=[spec, spec], coeffs=[1, 4], n=1)
gap, _ = gap_layer(rng, c=7, h=3, w=3, n=1)
pool = MaxPool(name="pool", input="x", in_spec=TensorSpec((3, 6, 4), "unsigned", 3), kernel=2, stride=2)
engines = {"xnor": build_engine(xnor, fold=Fold(2, 2, 2), out_simd=3),
           "mac_block": build_engine(mac, fold=Fold(1, 3), weight_memory="block", buffer_memory="block"),
           "add": build_engine(add, simd=2), "gap": build_engine(gap, simd=3), "pool": build_engine(pool, simd=2)}
print(json.dumps({name: digest(to_verilog(e, name="top")) for name, e in engines.items()}))
"""


def test_same_engine_verilog_across_processes():
    """Same layer and fold, byte-identical Verilog, in interpreters with different hash seeds."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    digests = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", EMIT], env={**os.environ, "PYTHONHASHSEED": seed}, cwd=repo,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        digests.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len(digests[0]) == 5
    assert digests[0] == digests[1]


def test_a_bit_width_no_pe_supports_names_the_layer():
    """pow2 weights with an 8-bit code shift by up to 2^126: the IR holds them, no PE can."""
    rng = np.random.default_rng(1)
    layer, _ = conv_layer(rng, c_in=2, h=3, w=3, c_out=2, weight_code="pow2", weight_bits=4, out_code=None,
                          name="wide")
    from qhw.ir.graph import Conv

    weights = np.where(layer.weights != 0, np.sign(layer.weights) << 40, 0)
    wide = Conv(name="wide", input="x", in_spec=layer.in_spec, out_channels=2, kernel=3, padding=1,
                weight_code="pow2", weight_bits=8, weights=weights)
    with pytest.raises(InputError, match=r"^layer wide \(conv\): cannot build hardware: .*48-bit products"):
        build_engine(wide, fold=Fold(1, 2))

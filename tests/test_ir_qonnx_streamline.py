"""qhw.ir.qonnx.streamline on hand-made QONNX graphs: rounding modes and ties, Trunc, weight codes, adds.

Every graph is run by qonnx's executor and compared with the golden model on
the first 160 digits test images (:func:`qhw.ir.qonnx.agree.compare`): every
shared quantized tensor equal as integers, top-1 identical. The tie graph
uses power-of-two scales, so about 6 % of its quantizer inputs are exact
ties; replacing the quantizer's rounding rule with round-half-up (fault
injection) must then produce mismatches.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from brevitas_models import Graph, require_brevitas, tie_graph, tiny_cnn
from qhw.errors import InputError

MODES = ("ROUND", "HALF_UP", "HALF_DOWN", "FLOOR", "CEIL", "UP", "DOWN")
IMAGES = 160


@pytest.fixture(scope="module", autouse=True)
def _packages():
    require_brevitas()


@pytest.fixture(scope="module")
def digits():
    from qhw.quant.data import load_dataset

    ds = load_dataset("digits")
    return ds.x_test[:IMAGES], ds.y_test[:IMAGES]


def agree(path, digits):
    from qhw.ir.qonnx import import_file
    from qhw.ir.qonnx.agree import compare

    imp = import_file(path)
    return imp, compare(imp.net, path, *digits)


def assert_exact(rep, images=IMAGES):
    assert rep["images"] == images and rep["values_compared"] > 0
    assert rep["mismatches"] == 0, [r for r in rep["rows"] if r["mismatches"]]
    assert rep["same_top1_count"] == images


@pytest.mark.parametrize("mode", MODES)
def test_round_condition_is_qonnx_rounding(mode):
    from qonnx.custom_op.general.quant import resolve_rounding_mode

    from qhw.ir.qonnx.streamline import round_condition

    w = np.arange(-48, 49) / 8  # quarters and halves: every tie
    r = resolve_rounding_mode(mode)(w)
    for v in range(-6, 7):
        off, strict = round_condition(mode, v)
        edge = float(v + off)
        mine = w > edge if strict else w >= edge
        assert np.array_equal(mine, r >= v), (mode, v)


@pytest.mark.parametrize("mode", MODES)
def test_exact_ties_follow_the_quantizers_rounding_mode(tmp_path, digits, mode):
    imp, rep = agree(tie_graph(tmp_path / "tie.onnx", mode=mode), digits)
    assert_exact(rep)
    rows = {r["tensor"]: r for r in rep["rows"]}
    assert [r["kind"] for r in rep["rows"]] == ["input", "quant", "raw"]
    tie = next(r for r in rep["rows"] if r["kind"] == "quant")
    assert tie["values"] == IMAGES * 4 * 64 and rows  # every conv output compared
    conv = imp.net.layers[1]
    assert conv.kind == "conv" and conv.out.code.value == "signed" and conv.out.bits == 8


@pytest.mark.parametrize("trunc", ["FLOOR", "ROUND"])
def test_trunc_after_a_global_pool_is_a_shift_of_the_exact_sum(tmp_path, digits, trunc):
    imp, rep = agree(tie_graph(tmp_path / "trunc.onnx", mode="ROUND", trunc=trunc), digits)
    assert_exact(rep)
    gap = next(l for l in imp.net.layers if l.kind == "gap")
    assert gap.requant is not None and gap.out.code.value == "unsigned" and gap.out.bits == 6
    assert [r["kind"] for r in rep["rows"]] == ["input", "quant", "quant", "quant"]


def test_ties_decide_the_level_so_round_half_up_everywhere_must_fail(tmp_path, digits, monkeypatch):
    """Fault injection: the tie rule of the requantizers replaced by round-half-up."""
    from qhw.ir.qonnx import streamline

    path = tie_graph(tmp_path / "tie.onnx", mode="ROUND", trunc="ROUND")
    monkeypatch.setattr(streamline, "round_condition", lambda mode, v: (Fraction(-1, 2), False))
    imp, rep = agree(path, digits)
    rows = [r for r in rep["rows"] if r["kind"] == "quant"]
    assert rep["rows"][0]["mismatches"] == 0  # the input is not affected
    assert all(r["mismatches"] > 0 for r in rows), rows
    assert rows[0]["mismatches"] / rows[0]["values"] > 0.03  # the exact ties: about 6 % of the values


@pytest.mark.parametrize("variant", ["ok", "scaled_input", "pool_before_quant"])
def test_tiny_cnn_variants_are_exact(tmp_path, digits, variant):
    imp, rep = agree(tiny_cnn(tmp_path / "cnn.onnx", variant=variant), digits)
    assert_exact(rep)
    kinds = [l.kind for l in imp.net.layers]
    assert kinds == (["input", "conv", "maxpool", "conv", "gap", "dense"] if variant == "pool_before_quant"
                     else ["input", "conv", "conv", "gap", "dense"])
    inp = imp.net.input
    assert inp.bits == 8 and inp.code.value == "unsigned"
    # the Mul by 2 before the input quantizer of scale 2/255: codes of scale 1/255, the pixel codes
    want = float(Fraction(float(np.float32(2 / 255))) / 2) if variant == "scaled_input" else float(np.float32(1 / 255))
    assert inp.scale == want
    if variant == "pool_before_quant":  # the pool sits after the requantizer it was moved past
        assert imp.net.layers[2].inputs == (imp.net.layers[1].name,)
        assert imp.net.layers[2].name == "pool1"


def _conv_graph(tmp_path, q, bits, *, bipolar=False, signed=True):
    g = Graph()
    x = g.quant("x", np.float32(1 / 255), 8, signed=False)
    if bipolar:
        w = g.bipolar(g.const(np.where(np.asarray(q) > 0, 0.5, -0.5).astype(np.float32)), np.float32(0.5))
    elif signed:
        w = g.weights(q, np.float32(0.25), bits)
    else:
        w = g.quant(g.const((np.asarray(q) * 0.25).astype(np.float32)), np.float32(0.25), bits, signed=False)
    x = g.node("Conv", [x, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    # an output scale unrelated to 1/255: with 1.0 (or 0.7 = 714/(4·255)), acc = 510·odd sits within
    # float32 rounding of a tie (1/255 is not a float), and qonnx's float32 sums would decide those
    x = g.quant(g.node("Relu", [x]), np.float32(0.3719), 4, signed=False)
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    out = g.node("Gemm", [x, g.weights(np.eye(10, 4, dtype=np.int64), np.float32(1.0), 2)], transB=1)
    return g.save(out, tmp_path / "w.onnx")


@pytest.mark.parametrize("values,bits,signed,bipolar,want", [
    ([-1, 0, 1], 2, True, False, ("pow2", 2)),            # ternary: 0 / ±1, the shift PE
    ([-4, -2, -1, 0, 1, 2, 4], 4, True, False, ("pow2", 3)),
    ([-7, -3, 0, 5, 7], 4, True, False, ("int", 4)),       # 3, 5, 7 are no powers of two
    ([-1, 1], 1, True, True, ("binary", 1)),               # BipolarQuant weights
    ([0, 3, 7, 15], 4, False, False, ("int", 5)),          # unsigned 4-bit: one more bit as int
])
def test_weight_codes_come_from_the_quantizer_and_values(tmp_path, digits, values, bits, signed, bipolar, want):
    rng = np.random.default_rng(0)
    q = rng.choice(values, size=(4, 1, 3, 3))
    q.reshape(-1)[: len(values)] = values
    imp, rep = agree(_conv_graph(tmp_path, q, bits, bipolar=bipolar, signed=signed), digits)
    assert_exact(rep)
    conv = imp.net.layers[1]
    assert (conv.weight_code.value, conv.weight_bits) == want
    assert np.array_equal(conv.weights, q.reshape(4, -1))


def _residual(tmp_path, s1, s2):
    g = Graph()
    # power-of-two input scale: every product and sum is exact in float32 (with 1/255 and an arm scale of
    # 0.75, acc = 765·odd would sit within float32 rounding of a tie and qonnx's sums would decide it)
    x = g.quant("x", np.float32(2.0 ** -8), 8, signed=False)
    rng = np.random.default_rng(1)
    arms = []
    for s in (s1, s2):
        c = g.node("Conv", [x, g.weights(rng.integers(-7, 8, (4, 1, 3, 3)), np.float32(0.125), 4)],
                   kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        arms.append(g.quant(c, np.float32(s), 8, signed=True))
    y = g.quant(g.node("Relu", [g.node("Add", arms, name="residual")]), np.float32(0.5), 4, signed=False)
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])], axis=1)
    out = g.node("Gemm", [y, g.weights(rng.integers(-7, 8, (10, 4)), np.float32(0.125), 4)], transB=1)
    return g.save(out, tmp_path / "res.onnx")


def test_residual_add_coefficients_are_the_ratio_of_the_branch_scales(tmp_path, digits):
    imp, rep = agree(_residual(tmp_path, 2.0 ** -3, 2.0 ** -1), digits)
    assert_exact(rep)
    add = next(l for l in imp.net.layers if l.kind == "add")
    assert add.coeffs.tolist() == [[1] * 4, [4] * 4]  # 1/8 : 1/2 = 1 : 4, the step 1/8
    imp, rep = agree(_residual(tmp_path, 0.75, 0.5), digits)
    assert_exact(rep)
    assert next(l for l in imp.net.layers if l.kind == "add").coeffs.tolist() == [[3] * 4, [2] * 4]


def test_residual_add_of_unrelated_scales_is_refused_naming_the_node(tmp_path):
    from qhw.ir.qonnx import import_file

    with pytest.raises(InputError) as err:
        import_file(_residual(tmp_path, 0.1, 0.3))
    msg = str(err.value)
    assert msg.startswith("node 'residual' (Add): the branch scales 0.1 and 0.3 (channel 0) have no small "
                          "integer ratio") and "\n" not in msg


def test_supported_ops_are_the_ones_the_issue_lists():
    from qhw.ir.qonnx.streamline import supported_ops

    ops = set(supported_ops())
    assert {"Quant", "BipolarQuant", "Trunc", "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip",
            "HardTanh", "Add", "MaxPool", "GlobalAveragePool", "AveragePool", "ReduceMean", "Flatten", "Reshape",
            "Mul", "Div"} <= ops

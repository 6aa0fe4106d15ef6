"""The four Brevitas test models (tests/brevitas_models.py) against qonnx execution, both exporters.

Each model is trained briefly on the digits, exported with
``brevitas.export.export_qonnx`` once per session through the dynamo
exporter (``Gemm``, ``ReduceMean``, parameters as graph inputs) and through
TorchScript (``dynamo=False``: ``GlobalAveragePool``, ``Flatten``,
``MatMul`` + ``Transpose`` for a bias-free linear layer), imported, and run
on the 359 digits test images by qonnx's executor and by the golden model:
every shared quantized tensor must be equal as integers and top-1 identical
on every image. The one exception: a value whose float32 quantizer input
qonnx computed exactly on a level edge (e.g. 23.5, rounded to even) while
the exact value lies just below it; :func:`compare` counts those as
``at_edge`` (one level off, input within 1e-5 of the edge) and they must
stay below 1e-5 of the values (the mixed model has one in 396,336). A
network with one threshold moved (fault injection) must show mismatches
that are not at an edge, from that layer on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brevitas_models import MODELS, exported, require_brevitas
from qhw.errors import InputError

CASES = [(m, d) for m in MODELS for d in (True, False)]


def case_id(case):
    return f"{case[0]}-{'dynamo' if case[1] else 'torchscript'}"


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    require_brevitas()
    return tmp_path_factory.getbasetemp() / "brevitas_onnx"


@pytest.fixture(scope="module")
def digits():
    from qhw.quant.data import load_dataset

    ds = load_dataset("digits")
    return ds.x_test, ds.y_test


@pytest.fixture(scope="module")
def imported(onnx_dir):
    from qhw.ir.qonnx import import_file

    cache = {}

    def get(name, dynamo):
        if (name, dynamo) not in cache:
            path = exported(name, dynamo, onnx_dir)
            cache[name, dynamo] = path, import_file(path)
        return cache[name, dynamo]
    return get


def ops_of(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def check_structure(name: str, net) -> None:
    kinds = [l.kind for l in net.layers]
    convs = [l for l in net.layers if l.kind == "conv"]
    if name == "cnn":
        assert kinds == ["input", "conv", "maxpool", "conv", "gap", "dense"]
        assert all((l.weight_code.value, l.weight_bits) == ("int", 4) for l in convs)
        assert net[net.output].requant.kind == "mul_shift"  # float bias: integer logits
    elif name == "resnet":
        adds = [l for l in net.layers if l.kind == "add"]
        assert len(adds) == 2 and kinds.count("conv") == 6
        ident, proj = adds
        assert ident.inputs[1] == convs[0].name  # the identity shortcut reads the stem's output itself
        short = net[proj.inputs[1]]
        assert short.kind == "conv" and short.kernel == (1, 1) and short.stride == (2, 2)
        for add in adds:  # power-of-two branch scales: power-of-two integer coefficients
            c = add.coeffs
            assert np.all(c > 0) and np.all((c & (c - 1)) == 0)
            arms = [net[add.inputs[0]]] + ([short] if add is proj else [])  # requantized to signed 8-bit arms
            assert all((a.out.code.value, a.out.bits) == ("signed", 8) for a in arms)
    elif name == "binary":
        assert all(l.weight_code.value == "binary" for l in convs)
        assert [l.pe.value for l in convs] == ["and", "xnor", "xnor", "xnor"]  # the fc is a 2x2-kernel conv
        assert convs[-1].kernel == (2, 2) and convs[-1].out.shape == (10, 1, 1) and convs[-1].requant is None
        assert all(l.out.code.value == "bipolar" for l in convs[:3])
        out = net[net.output]  # the 1x1 map made a vector, the float bias in its integer logits
        assert out.kind == "gap" and out.out.shape == (10,) and out.requant.kind == "mul_shift"
    elif name == "mixed":
        assert [(l.weight_code.value, l.weight_bits) for l in convs] == [("int", 8), ("int", 4), ("pow2", 2)]
        assert [(l.out.code.value, l.out.bits) for l in convs] == [("unsigned", 8), ("signed", 4), ("unsigned", 2)]
        assert net[net.output].weight_bits == 8


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_brevitas_model_equals_qonnx_execution_on_every_shared_tensor(case, imported, digits):
    from qhw.ir.qonnx.agree import compare

    name, dynamo = case
    path, imp = imported(name, dynamo)
    ops = ops_of(path)
    if dynamo:  # the export shapes of Brevitas 0.13 on torch 2.13
        assert "Gemm" in ops and "MatMul" not in ops and "GlobalAveragePool" not in ops
        assert ("ReduceMean" in ops) == (name != "binary")
    else:
        assert "ReduceMean" not in ops and ("GlobalAveragePool" in ops) == (name != "binary")
        assert ("MatMul" in ops and "Transpose" in ops and "Gemm" not in ops) if name == "mixed" else "Gemm" in ops
    if name == "mixed":
        assert "Add" in ops and "Div" in ops
    check_structure(name, imp.net)
    rep = compare(imp.net, path, *digits)
    print(f"{case_id(case)}: {rep['tensors']} tensors, {rep['values_compared']} values, "
          f"{rep['mismatches']} mismatches ({rep['mismatches_at_edge']} at a float32 level edge); "
          f"identical top-1 {rep['same_top1']:.1f} % "
          f"({rep['same_top1_count']}/{rep['images']}); top-1 golden {rep['golden_top1']:.1f} % "
          f"qonnx {rep['qonnx_top1']:.1f} %")
    # every mismatch must be a value qonnx's float32 arithmetic put on a level edge (one level off), and rare
    assert rep["images"] == 359 and rep["mismatches"] == rep["mismatches_at_edge"], \
        [r for r in rep["rows"] if r["mismatches"]]
    assert rep["mismatches_at_edge"] <= 1e-5 * rep["values_compared"]
    assert rep["same_top1_count"] == 359 and rep["golden_top1"] == rep["qonnx_top1"] > 30
    assert rep["top1_tied_elsewhere"] == 0
    # every requantized layer's output is compared (the logits are compared through top-1)
    compared = {r["layer"] for r in rep["rows"]}
    want = {l.name for l in imp.net.layers
            if l.kind in ("input", "maxpool") or getattr(l, "requant", None) is not None} - {imp.net.output}
    assert want <= compared
    assert all(r["values"] == 359 * int(np.prod(imp.net[r["layer"]].out.shape)) for r in rep["rows"])


def test_both_exporters_give_the_same_network(imported):
    """Dynamo and TorchScript export the same trained model: identical integers, layer for layer."""
    from qhw.ir.serialize import encode_network

    for name in MODELS:
        a, b = imported(name, True)[1].net, imported(name, False)[1].net
        assert [l.kind for l in a.layers] == [l.kind for l in b.layers]
        for la, lb in zip(a.layers, b.layers):
            for field in ("weights", "coeffs"):
                if hasattr(la, field):
                    assert np.array_equal(getattr(la, field), getattr(lb, field)), (name, la.name)
            rq_a, rq_b = getattr(la, "requant", None), getattr(lb, "requant", None)
            if rq_a is not None and rq_a.kind == "thresholds":
                assert np.array_equal(rq_a.thresholds, rq_b.thresholds), (name, la.name)
        assert encode_network(a, "x.npz")[1] == encode_network(b, "x.npz")[1] or name  # arrays equal up to names


def test_a_moved_threshold_is_caught_from_that_layer_on(imported, digits):
    """Fault injection: one threshold of the first conv's channel 0 moved; compare must fail there."""
    from qhw.ir.graph import Network
    from qhw.ir.qonnx.agree import compare
    from qhw.ir.requant import Thresholds

    path, imp = imported("cnn", False)
    net = imp.net
    conv = net.layers[1]
    t = np.array(conv.requant.thresholds)
    t[0, 2:] += 25  # levels 3.. of channel 0 need a larger accumulator
    rq = Thresholds(thresholds=np.minimum(t, conv.acc_hi[0] + 1), sign=conv.requant.sign,
                    out_code=conv.requant.out_code, out_bits=conv.requant.out_bits)
    bad = Network(tuple(dataclasses.replace(conv, requant=rq) if l is conv else l for l in net.layers),
                  output=net.output, meta=net.meta)
    rep = compare(bad, path, *digits)
    rows = {r["layer"]: r for r in rep["rows"]}
    assert rows["input"]["mismatches"] == 0
    assert rows[conv.name]["mismatches"] > 0 and rep["mismatches"] > rows[conv.name]["mismatches"]
    assert rep["mismatches_at_edge"] < rep["mismatches"] / 100  # not float32 edges: whole steps off


def test_a_saved_network_compares_from_its_meta(imported, digits, tmp_path):
    from qhw.ir.golden import GoldenModel
    from qhw.ir.qonnx.agree import compare
    from qhw.ir.serialize import load_network, save_network

    path, imp = imported("resnet", False)
    loaded = load_network(save_network(imp.net, tmp_path / "net.json"))
    assert loaded.meta["qonnx"]["shared"] == [s.to_dict() for s in imp.shared]
    assert loaded.meta["source"]["onnx"] == str(path.resolve())
    x = digits[0][:20].astype(np.int64)
    a, b = GoldenModel(imp.net).run(x), GoldenModel(loaded).run(x)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    rep = compare(loaded, path, digits[0][:50], batch_size=16)  # 4 batches, the last one padded
    assert rep["images"] == 50 and rep["mismatches"] == 0 and rep["same_top1_count"] == 50


def test_compare_refuses_a_network_that_was_not_imported(imported, digits):
    from qhw.ir.graph import Network
    from qhw.ir.qonnx.agree import compare

    path, imp = imported("cnn", False)
    with pytest.raises(InputError, match="does not come from 'qhw import'"):
        compare(Network(imp.net.layers, output=imp.net.output), path, *digits)
    with pytest.raises(InputError, match=r"images of shape \[3, 8, 8\] do not fit the network input \[1, 8, 8\]"):
        compare(imp.net, path, np.zeros((2, 3, 8, 8), dtype=np.uint8))

"""qhw.ir.qonnx.load: onnx.load + qonnx's cleanup transforms; bad files are one InputError line."""

from __future__ import annotations

import pytest

from brevitas_models import Graph, exported, require_brevitas, tiny_cnn
from qhw.errors import InputError


@pytest.fixture(scope="module", autouse=True)
def _packages():
    require_brevitas()


def test_cleanup_of_a_dynamo_export_keeps_quantizers_and_names_drops_parameter_inputs(tmp_path_factory):
    import onnx

    from qhw.ir.qonnx.load import load_model

    path = exported("cnn", True, tmp_path_factory.getbasetemp() / "brevitas_onnx")
    raw = onnx.load(str(path))
    assert len(raw.graph.input) > 1  # the dynamo exporter lists every parameter as a graph input
    model = load_model(path)
    assert [i.name for i in model.graph.input] == [raw.graph.input[0].name]
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Quant") == sum(n.op_type == "Quant" for n in raw.graph.node)  # weight quantizers kept
    raw_names = {n.name for n in raw.graph.node}
    assert all(n.name in raw_names for n in model.graph.node)  # the exporter's names, for error messages
    assert all(model.get_tensor_shape(n.output[0]) is not None for n in model.graph.node)


def test_missing_names_and_an_old_domain_are_fixed(tmp_path):
    from qhw.ir.qonnx import import_file

    import onnx

    path = tiny_cnn(tmp_path / "ok.onnx")
    m = onnx.load(str(path))
    for n in m.graph.node:
        if n.op_type == "Conv":
            n.name = ""  # unnamed nodes: every node gets <op>_<i>
        if n.op_type == "Quant":
            n.domain = "onnx.brevitas"  # what older Brevitas wrote
    onnx.save(m, str(tmp_path / "renamed.onnx"))
    names = [l.name for l in import_file(tmp_path / "renamed.onnx").net.layers]
    assert names[:3] == ["input", "Conv_0", "Conv_1"]


@pytest.mark.parametrize("content,message", [
    (b"", "the graph has no nodes"),
    (b"\x12\x34garbage\xff" * 5, "is not a readable ONNX model"),
])
def test_unreadable_files_are_one_line(tmp_path, content, message):
    from qhw.ir.qonnx.load import load_model

    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        load_model(p)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="QONNX model not found"):
        load_model(tmp_path / "missing.onnx")


def test_a_graph_with_two_outputs_or_no_input_quantizer_is_refused(tmp_path):
    import numpy as np
    from onnx import TensorProto, helper

    from qhw.ir.qonnx import import_file

    g = Graph()
    q = g.quant("x", np.float32(1 / 255), 8, signed=False)
    r = g.node("Relu", [q])
    model = g.model(r, (1, 1, 8, 8))
    model.graph.output.append(helper.make_tensor_value_info(q, TensorProto.FLOAT, [1, 1, 8, 8]))
    import onnx

    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(InputError, match="the graph must have one output"):
        import_file(tmp_path / "two.onnx")
    g = Graph()
    out = g.node("Relu", ["x"], name="first")
    with pytest.raises(InputError, match=r"node 'first' \(Relu\): input 'x' is the float graph input; "
                                         "quantize it with a Quant node first"):
        import_file(g.save(out, tmp_path / "noquant.onnx", (1, 1, 8, 8)))
    g = Graph()
    out = g.node("Identity", ["x"])
    with pytest.raises(InputError, match="the graph input is never quantized"):
        import_file(g.save(out, tmp_path / "identity.onnx", (1, 1, 8, 8)))

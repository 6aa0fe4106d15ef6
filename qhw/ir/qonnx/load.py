"""Read a QONNX file into a cleaned-up :class:`qonnx.core.modelwrapper.ModelWrapper`.

The cleanup is qonnx's own (``qonnx.util.cleanup.cleanup_model`` minus the
renaming): shape inference, one tensor per parameter use, constant folding
that keeps every ``Quant`` / ``BipolarQuant`` (the weight quantizers stay
visible, so the integer weights and their scales can be read off them),
transposes folded into quantizer initializers, unused tensors and
initializer-backed graph inputs removed (the dynamo exporter lists every
parameter as a graph input). Node and tensor names are kept as the exporter
wrote them, so error messages name the node a user sees in the file;
nodes are renamed ``<op>_<i>`` only when a name is missing or repeated.

Nothing here parses protobuf by hand: ``onnx.load`` reads the file and the
transforms are qonnx's. Every failure a file can cause (missing, not ONNX,
a graph qonnx cannot clean) is one :class:`~qhw.errors.InputError` line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from qhw.errors import InputError, ToolMissingError

#: what ``pip install`` needs for the QONNX front end
INSTALL_HINT = "pip install 'qhw[qonnx]'"

#: ops qonnx executes itself (domain ``qonnx.custom_op.general``)
QONNX_OPS = ("Quant", "BipolarQuant", "Trunc")


def require_qonnx():
    """Import qonnx (and onnx), or raise :class:`ToolMissingError` saying how to install them."""
    try:
        import onnx  # noqa: F401
        import qonnx  # noqa: F401
    except ImportError:
        raise ToolMissingError("qonnx", INSTALL_HINT) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "") if text else type(exc).__name__


def read_model(path: str | os.PathLike):
    """``onnx.load`` of ``path`` as a ModelWrapper, not yet cleaned; bad files are an InputError."""
    require_qonnx()
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    p = Path(path)
    if not p.is_file():
        raise InputError(f"QONNX model not found: {p}")
    try:
        proto = onnx.load(str(p))
    except Exception as exc:  # DecodeError, truncated file, not protobuf at all
        raise InputError(f"{p} is not a readable ONNX model: {_one_line(exc)}") from None
    if not proto.graph.node:
        raise InputError(f"{p} is not a readable ONNX model: the graph has no nodes")
    return ModelWrapper(proto)


def cleanup(model, where: str = "model"):
    """qonnx's cleanup transforms (see the module docstring); returns the cleaned ModelWrapper."""
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (GiveUniqueNodeNames, GiveUniqueParameterTensors,
                                              RemoveStaticGraphInputs, RemoveUnusedTensors)
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    for node in model.graph.node:
        if node.op_type in QONNX_OPS:  # older Brevitas wrote onnx.brevitas; qonnx executes this domain
            node.domain = "qonnx.custom_op.general"
    names = [n.name for n in model.graph.node]
    if any(not n for n in names) or len(set(names)) != len(names):
        model = model.transform(GiveUniqueNodeNames())
    steps = [InferShapes(), GiveUniqueParameterTensors(),
             FoldConstants(exclude_op_types=["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]),
             FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(), InferShapes()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # qonnx / onnxruntime chatter about folded nodes
            for step in steps:
                model = model.transform(step)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{where}: qonnx cannot clean up the graph ({type(exc).__name__}: {_one_line(exc)})") from None
    return model


def load_model(path: str | os.PathLike):
    """Read and clean ``path`` (see the module docstring): the ModelWrapper import and agreement use."""
    return cleanup(read_model(path), where=str(path))

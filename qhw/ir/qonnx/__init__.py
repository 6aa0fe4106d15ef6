"""QONNX front end: Brevitas / QKeras (via qonnx) graphs -> qhw integer networks.

``qhw import MODEL.onnx --out NET`` is :func:`import_file` then
:func:`qhw.ir.serialize.save_network`:

* :mod:`.load` reads the file with ``onnx.load`` and runs qonnx's cleanup
  transforms (shape inference, constant folding that keeps the quantizers);
* :mod:`.streamline` walks the graph and builds the IR layers, folding every
  scale, bias and BatchNormalization exactly into thresholds / mul-shift;
* :mod:`.agree` runs the ONNX graph with qonnx's executor and the network
  with :class:`qhw.ir.golden.GoldenModel` and compares, as integers, every
  tensor the two share (the quantizers' outputs, max pools, raw sums) and
  the top-1 class.

The network's ``meta["qonnx"]`` records the source file and, per shared
tensor, the ONNX tensor name, the IR layer and the scale between them, so
:func:`qhw.ir.qonnx.agree.compare` works on a saved network too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from qhw.ir.graph import Network

from .load import INSTALL_HINT, load_model, require_qonnx
from .streamline import Imported, SharedTensor, import_model

__all__ = ["INSTALL_HINT", "Imported", "SharedTensor", "import_file", "import_model", "load_model",
           "require_qonnx"]


def import_file(path: str | os.PathLike, *, with_mul_shift: bool = True) -> Imported:
    """Import the QONNX file ``path``; the network's ``meta`` names the source and the shared tensors.

    Raises :class:`~qhw.errors.InputError` (one line, naming the node and its
    op type where one is at fault) for anything the importer cannot turn
    into an exact integer network.
    """
    p = Path(path)
    model = load_model(p)
    imp = import_model(model, with_mul_shift=with_mul_shift)
    proto = model.model
    meta = {
        "source": {
            "onnx": str(p.resolve()),
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        },
        "qonnx": {
            "input": imp.input_tensor,
            "output": imp.output_tensor,
            "shared": [s.to_dict() for s in imp.shared],
        },
    }
    net = Network(layers=imp.net.layers, output=imp.net.output, meta=meta)
    return Imported(net=net, input_tensor=imp.input_tensor, output_tensor=imp.output_tensor, shared=imp.shared)

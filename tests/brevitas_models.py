"""Four Brevitas networks built in code, for the QONNX import tests (not a test module).

Each reads the 1x8x8 digits (pixel codes ``d``, the float image ``d / 255``)
through an 8-bit unsigned input quantizer of constant scale 1/255, so the
network's input codes are the dataset's pixel codes:

``cnn``      QuantConv2d (4-bit weights) + BN + QuantReLU (4 bit), MaxPool2d,
             a second conv, global average pool, QuantLinear with a float bias
``resnet``   a stem, one basic block with an identity shortcut and one with a
             strided 1x1 projection shortcut; power-of-two activation scales
             so the branch scales have integer ratios (the add's coefficients)
``binary``   binary QuantConv2d weights and BipolarQuant (sign) activations
             throughout, padded binary convs, MaxPool, flatten of a 16x2x2
             map into a binary QuantLinear with a float bias
``mixed``    8-, 4- and 2-bit layers (2-bit weights are ternary: pow2 in qhw),
             a signed QuantHardTanh activation, a bias-free QuantLinear
             (TorchScript: ``MatMul`` + ``Transpose``) plus a bias (``Add``),
             logits divided by a constant (``Div``)

:func:`trained` trains a model briefly on the digits (seeded, a few seconds)
so its activations and BN statistics are those of a real network;
:func:`export` writes it with ``brevitas.export.export_qonnx`` through either
torch exporter: dynamo (Brevitas 0.13 on torch 2.13: ``Gemm``, ``ReduceMean``,
parameters repeated as graph inputs, equal constants merged) or TorchScript
(``dynamo=False``: ``GlobalAveragePool``, ``Flatten``, ``MatMul`` +
``Transpose`` for a bias-free linear layer).

:class:`Graph` writes small QONNX graphs node by node with ``onnx.helper``
for what Brevitas does not produce on demand: :func:`tiny_cnn` (and its
broken variants, the bad inputs of ``qhw import``) and :func:`tie_graph`
(power-of-two scales, so quantizer inputs hit exact ties, and ``Trunc``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import warnings
from pathlib import Path

MODELS = ("cnn", "resnet", "binary", "mixed")


def require_brevitas() -> None:
    """Skip when brevitas / qonnx are not installed, or fail when ``CI`` is set (``make test`` installs them)."""
    import pytest

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # brevitas warns at import about optional kernels
            import brevitas  # noqa: F401
            import brevitas.nn  # noqa: F401
            import onnxruntime  # noqa: F401
            import qonnx  # noqa: F401
    except ImportError as exc:
        message = f"{exc.name} not installed (pip install -e '.[dev]' installs the qonnx extra)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)


def _quantizers():
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import Uint8ActPerTensorFloat

    class PixelQuant(Uint8ActPerTensorFloat):
        """The 8-bit pixel codes: constant scale 1/255, so code = d exactly."""
        scaling_impl_type = ScalingImplType.CONST
        max_val = 1.0

    return PixelQuant


def build(name: str):
    """The untrained model ``name`` (one of :data:`MODELS`), seeded."""
    import torch
    import torch.nn as nn
    import brevitas.nn as qnn
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint,
                                SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst,
                                Uint8ActPerTensorFixedPoint)

    PixelQuant = _quantizers()
    torch.manual_seed({"cnn": 1, "resnet": 2, "binary": 3, "mixed": 4}[name])

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn1 = nn.BatchNorm2d(8)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.c2 = qnn.QuantConv2d(8, 16, 3, padding=1, bias=False, weight_bit_width=4)
            self.bn2 = nn.BatchNorm2d(16)
            self.r2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=4)

        def forward(self, x):
            x = self.pool(self.r1(self.bn1(self.c1(self.inp(x)))))
            x = self.r2(self.bn2(self.c2(x)))
            return self.fc(torch.flatten(self.gap(x), 1))

    def relu_pot(bits):
        return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits)

    def arm_pot(bits):
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits)

    def conv_pot(cin, cout, k, stride=1, padding=0):
        return qnn.QuantConv2d(cin, cout, k, stride=stride, padding=padding, bias=False,
                               weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = conv_pot(cin, cout, 3, stride, 1)
            self.bn1 = nn.BatchNorm2d(cout)
            self.act1 = relu_pot(4)
            self.conv2 = conv_pot(cout, cout, 3, 1, 1)
            self.bn2 = nn.BatchNorm2d(cout)
            self.arm = arm_pot(8)
            if stride != 1 or cin != cout:
                self.short = conv_pot(cin, cout, 1, stride)
                self.short_bn = nn.BatchNorm2d(cout)
                self.short_q = arm_pot(8)
            else:
                self.short = None
            self.act_out = relu_pot(4)

        def forward(self, x):
            m = self.arm(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
            s = x if self.short is None else self.short_q(self.short_bn(self.short(x)))
            return self.act_out(m + s)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True)
            self.stem = conv_pot(1, 8, 3, 1, 1)
            self.stem_bn = nn.BatchNorm2d(8)
            self.stem_act = relu_pot(4)
            self.b1 = Block(8, 8, 1)
            self.b2 = Block(8, 16, 2)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8)

        def forward(self, x):
            x = self.stem_act(self.stem_bn(self.stem(self.inp(x))))
            x = self.b2(self.b1(x))
            return self.fc(torch.flatten(self.gap(x), 1))

    def bconv(cin, cout, padding):
        return qnn.QuantConv2d(cin, cout, 3, padding=padding, bias=False,
                               weight_quant=SignedBinaryWeightPerTensorConst)

    def sign():
        return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True)

    class Binary(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True)
            self.c1 = bconv(1, 16, 1)
            self.bn1 = nn.BatchNorm2d(16)
            self.a1 = sign()
            self.c2 = bconv(16, 16, 1)
            self.bn2 = nn.BatchNorm2d(16)
            self.a2 = sign()
            self.pool = nn.MaxPool2d(2)
            self.c3 = bconv(16, 16, 0)
            self.bn3 = nn.BatchNorm2d(16)
            self.a3 = sign()
            # a float bias per class: binary logits alone are small integers and tie often, and qonnx's
            # float32 sums of ±0.1 then break the tie by rounding error (the exact logits are equal)
            self.fc = qnn.QuantLinear(64, 10, bias=True, weight_quant=SignedBinaryWeightPerTensorConst)

        def forward(self, x):
            x = self.a1(self.bn1(self.c1(self.inp(x))))
            x = self.pool(self.a2(self.bn2(self.c2(x))))
            x = self.a3(self.bn3(self.c3(x)))
            return self.fc(torch.flatten(x, 1))

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(1, 8, 3, padding=1, bias=False, weight_bit_width=8)
            self.bn1 = nn.BatchNorm2d(8)
            self.a1 = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(8, 16, 3, stride=2, padding=1, bias=False, weight_bit_width=4)
            self.bn2 = nn.BatchNorm2d(16)
            self.a2 = qnn.QuantHardTanh(bit_width=4, min_val=-1.0, max_val=1.0, return_quant_tensor=True)
            self.c3 = qnn.QuantConv2d(16, 16, 3, padding=1, bias=False, weight_bit_width=2)
            self.bn3 = nn.BatchNorm2d(16)
            self.a3 = qnn.QuantReLU(bit_width=2, return_quant_tensor=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            # no bias in the layer: TorchScript exports MatMul + Transpose, then the bias is an Add
            self.fc = qnn.QuantLinear(16, 10, bias=False, weight_bit_width=8)
            self.bias = nn.Parameter(torch.zeros(10))

        def forward(self, x):
            x = self.a1(self.bn1(self.c1(self.inp(x))))
            x = self.a2(self.bn2(self.c2(x)))
            x = self.a3(self.bn3(self.c3(x)))
            return (self.fc(torch.flatten(self.gap(x), 1)) + self.bias) / 4.0

    return {"cnn": CNN, "resnet": ResNet, "binary": Binary, "mixed": Mixed}[name]()


@functools.lru_cache(maxsize=None)
def digits():
    """(train images float (N,1,8,8), train labels, test pixel codes uint8, test labels)."""
    import torch

    from qhw.quant.data import load_dataset

    ds = load_dataset("digits")
    x, y = ds.float_images("train")
    return x, y, ds.x_test, ds.y_test


@functools.lru_cache(maxsize=None)
def trained(name: str, steps: int = 40, batch: int = 64):
    """Model ``name`` after ``steps`` Adam steps on the digits (seeded), in eval mode (once per session)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build(name)
    x, y, _, _ = digits()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same reduction order, so the same model in every run
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(steps):
                idx = torch.randint(0, len(y), (batch,), generator=gen)
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def export(model, path: Path, *, dynamo: bool) -> Path:
    """``export_qonnx`` of ``model`` on a 1x1x8x8 input to ``path`` (quietly)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # brevitas.export imports the deprecated brevitas.fx
        from brevitas.export import export_qonnx
    path = Path(path)
    sink = io.StringIO()
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "brevitas")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            export_qonnx(model, torch.zeros(1, 1, 8, 8), export_path=str(path), dynamo=dynamo)
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
    return path


@functools.lru_cache(maxsize=None)
def exported(name: str, dynamo: bool, root: Path) -> Path:
    """The trained model ``name`` exported once per session into ``root`` (``<name>_dynamo.onnx`` / ``_ts``)."""
    root.mkdir(parents=True, exist_ok=True)
    return export(trained(name), root / f"{name}_{'dynamo' if dynamo else 'ts'}.onnx", dynamo=dynamo)


# -- hand-made QONNX graphs (onnx.helper): exact corner cases and bad inputs ------------------

class Graph:
    """A small QONNX graph written node by node (``Quant`` in qonnx's domain, standard ops otherwise)."""

    QONNX = "qonnx.custom_op.general"

    def __init__(self, in_shape=(1, 1, 8, 8)):
        self.in_shape = tuple(in_shape)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value, stem: str = "c") -> str:
        import numpy as np
        from onnx import numpy_helper

        name = self._name(stem)
        arr = np.asarray(value)
        dtype = np.int64 if arr.dtype.kind in "iu" else np.float32
        self.inits.append(numpy_helper.from_array(arr.astype(dtype), name))
        return name

    def node(self, op: str, inputs, domain: str = "", name: str | None = None, **attrs) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name or self._name(op), domain=domain,
                                           **attrs))
        return out

    def quant(self, x: str, scale, bits: int, *, signed: bool, narrow: bool = False, mode: str = "ROUND",
              name: str | None = None) -> str:
        inputs = [x, self.const(scale, "scale"), self.const(0.0, "zp"), self.const(float(bits), "bits")]
        return self.node("Quant", inputs, domain=self.QONNX, name=name, signed=int(signed), narrow=int(narrow),
                         rounding_mode=mode)

    def bipolar(self, x: str, scale=1.0) -> str:
        return self.node("BipolarQuant", [x, self.const(scale, "scale")], domain=self.QONNX)

    def weights(self, q, scale, bits: int, *, narrow: bool = True) -> str:
        """Quantized weights whose integers are exactly ``q`` (stored as ``q · scale``)."""
        import numpy as np

        w = np.asarray(q, dtype=np.float64) * np.asarray(scale, dtype=np.float64)
        return self.quant(self.const(w.astype(np.float32), "w"), scale, bits, signed=True, narrow=narrow)

    def model(self, out: str, out_shape=(1, 10)):
        from onnx import TensorProto, helper

        graph = helper.make_graph(self.nodes, "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.in_shape)],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
                                  initializer=self.inits)
        return helper.make_model(graph, producer_name="qhw-tests",
                                 opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(self.QONNX, 2)])

    def save(self, out: str, path, out_shape=(1, 10)) -> Path:
        import onnx

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(self.model(out, out_shape), str(path))
        return path


def tiny_cnn(path, *, variant: str = "ok", seed: int = 0) -> Path:
    """Quant input -> conv + BN + ReLU -> Quant -> conv -> Quant -> GAP -> Gemm, or a broken variant.

    ``variant``: ``ok``; ``scaled_input`` (a Mul by 2 before the input quantizer);
    ``pool_before_quant`` (conv + BN -> MaxPool -> ReLU -> Quant: the pool is
    moved past the requantizer); bad inputs: ``float`` (no quantizer after the
    first ReLU), ``raw_input`` (a conv reads the float image), ``grouped``
    (group 2), ``depthwise`` (group = channels), ``unsupported`` (Tanh for the
    first ReLU).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    g = Graph()
    x = "x"
    s_in = np.float32(1 / 255)
    if variant == "scaled_input":
        x = g.node("Mul", [x, g.const(np.float32(2.0))])
        s_in = np.float32(2 / 255)
    if variant != "raw_input":
        x = g.quant(x, s_in, 8, signed=False, name="input_quant")
    w1 = g.weights(rng.integers(-7, 8, (4, 1, 3, 3)), np.float32(0.125), 4)
    x = g.node("Conv", [x, w1], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.node("BatchNormalization", [x, g.const(rng.uniform(0.5, 1.5, 4)), g.const(rng.uniform(-0.5, 0.5, 4)),
                                      g.const(rng.uniform(0, 1, 4)), g.const(rng.uniform(0.5, 2, 4))],
               name="bn1", epsilon=1e-5)
    if variant == "pool_before_quant":
        x = g.node("MaxPool", [x], name="pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Tanh" if variant == "unsupported" else "Relu", [x], name="act1")
    if variant != "float":
        x = g.quant(x, np.float32(0.25), 4, signed=False, name="act1_quant")
    group = {"grouped": 2, "depthwise": 4}.get(variant, 1)
    w2 = g.weights(rng.integers(-7, 8, (4, 4 // group, 3, 3)), np.float32(0.0625), 4)
    x = g.node("Conv", [x, w2], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group)
    x = g.node("Relu", [x], name="act2")
    x = g.quant(x, np.float32(0.5), 4, signed=False, name="act2_quant")
    x = g.node("GlobalAveragePool", [x], name="gap")
    x = g.node("Flatten", [x], name="flatten", axis=1)
    w3 = g.weights(rng.integers(-127, 128, (10, 4)), np.float32(0.01), 8)
    out = g.node("Gemm", [x, w3, g.const(rng.uniform(-1, 1, 10).astype(np.float32))], name="fc", transB=1)
    return g.save(out, path)


def tie_graph(path, *, mode: str = "ROUND", trunc: str | None = None, seed: int = 0) -> Path:
    """Power-of-two scales everywhere, so quantizer inputs hit exact ties (``u = acc / 64``).

    Input codes ``round(256·p)``, a 3x3 conv with 3-bit weights of scale 1/4,
    then a signed 8-bit ``Quant`` of scale 1/16 with rounding ``mode``: ties
    at ``acc ≡ 32 (mod 64)``. ``trunc`` (a rounding mode) adds a ReLU, a
    4-bit quantizer, a global pool and a ``Trunc`` v2 (the sum shifted right
    by 4 bits, 6 bits out) before the Gemm.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.quant("x", np.float32(2.0 ** -8), 8, signed=False, name="input_quant")
    w = g.weights(rng.integers(-3, 4, (4, 1, 3, 3)), np.float32(0.25), 3)
    x = g.node("Conv", [x, w], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = g.quant(x, np.float32(2.0 ** -4), 8, signed=True, mode=mode, name="tie_quant")
    if trunc:
        x = g.node("Relu", [x], name="relu")
        x = g.quant(x, np.float32(2.0 ** -1), 4, signed=False, mode=mode, name="act_quant")
        x = g.node("GlobalAveragePool", [x], name="gap")
        s = np.float32(2.0 ** -1 / 64)
        x = g.node("Trunc", [x, g.const(s), g.const(np.float32(0.0)), g.const(np.float32(10.0)),
                             g.const(np.float32(s * 16)), g.const(np.float32(6.0))],
                   domain=Graph.QONNX, name="trunc", rounding_mode=trunc, signed=0, narrow=0)
    else:
        x = g.node("GlobalAveragePool", [x], name="gap")
    x = g.node("Flatten", [x], name="flatten", axis=1)
    wf = g.weights(rng.integers(-7, 8, (10, 4)), np.float32(0.125), 4)
    out = g.node("Gemm", [x, wf], name="fc", transB=1)
    return g.save(out, path)

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
             map into a binary QuantLinear
``mixed``    8-, 4- and 2-bit layers (2-bit weights are ternary: pow2 in qhw),
             a signed QuantHardTanh activation, logits divided by a constant

:func:`trained` trains a model briefly on the digits (seeded, a few seconds)
so its activations and BN statistics are those of a real network;
:func:`export` writes it with ``brevitas.export.export_qonnx`` through either
torch exporter: dynamo (Brevitas 0.13 on torch 2.13: ``Gemm``, ``ReduceMean``,
parameters repeated as graph inputs, equal constants merged) or TorchScript
(``dynamo=False``: ``GlobalAveragePool``, ``Flatten``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

MODELS = ("cnn", "resnet", "binary", "mixed")


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
            self.fc = qnn.QuantLinear(64, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)

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
            self.fc = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8)

        def forward(self, x):
            x = self.a1(self.bn1(self.c1(self.inp(x))))
            x = self.a2(self.bn2(self.c2(x)))
            x = self.a3(self.bn3(self.c3(x)))
            return self.fc(torch.flatten(self.gap(x), 1)) / 4.0

    return {"cnn": CNN, "resnet": ResNet, "binary": Binary, "mixed": Mixed}[name]()


def digits():
    """(train images float (N,1,8,8), train labels, test pixel codes uint8, test labels)."""
    import torch

    from qhw.quant.data import load_dataset

    ds = load_dataset("digits")
    x, y = ds.float_images("train")
    return x, y, ds.x_test, ds.y_test


def trained(name: str, steps: int = 60, batch: int = 64):
    """Model ``name`` after ``steps`` Adam steps on the digits (seeded), in eval mode."""
    import torch

    model = build(name)
    x, y, _, _ = digits()
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            idx = torch.randint(0, len(y), (batch,), generator=gen)
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def export(model, path: Path, *, dynamo: bool) -> Path:
    """``export_qonnx`` of ``model`` on a 1x1x8x8 input to ``path`` (quietly)."""
    import torch
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

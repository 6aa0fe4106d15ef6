"""CIFAR-style quantized ResNet (He et al. 2016, basic blocks, 3 stages).

Structure, for ``depth = 6n + 2`` (ResNet-8: n = 1, ResNet-20: n = 3)::

    x0  = input_quant(x)                                 # 8-bit pixel codes / 255
    h   = stem_act(stem_bn(stem(x0)))                    # 3x3 conv, stride 1
    for block in stages[0] + stages[1] + stages[2]:      # stage i: width widths[i]
        a1 = block.act1(block.bn1(block.conv1(h)))       # 3x3, stride 1 or 2 (stage entry)
        m  = block.bn2(block.conv2(a1))                  # 3x3, stride 1
        s  = h                     if block.shortcut is None
             block.shortcut_bn(block.shortcut(h))        # 1x1 conv, stride 1 or 2
        if in_act quantized:  m, s = addq(m), addq(s)    # see "residual add" below
        h  = block.act_out(m + s)
    logits = fc(mean over H, W of h)                      # fc has a float bias; its DoReFa
                                                          # levels carry gain 1/sqrt(in_features)

Stage 1 has stride 1, stages 2 and 3 enter with stride 2; a block gets a
projection shortcut when its stride is 2 or its width changes. All convs have
no bias and are followed by BatchNorm2d; padding is 1 for 3x3 (zero = code 0).

Layer names (``model.layers()``, execution order): ``stem``,
``s{i}.b{j}.conv1``, ``s{i}.b{j}.conv2``, ``s{i}.b{j}.shortcut`` (projection
blocks only), ``fc``; i, j count from 1. Each layer is a :class:`QConv2d` or
:class:`QLinear` with ``.weight_quant`` (see ``qhw.quant.quantizers``) and
``.integer_weights() -> (int64 values, float32 scale per output channel)``.
``model.input_act(name)`` is the activation quantizer of the tensor the layer
reads (``input_quant`` for the stem; the block input's quantizer for conv1 and
shortcut; ``act1`` for conv2; the last ``act_out`` for fc).
``model.layer_geometry(name)`` gives in/out channels, kernel, stride, padding
and input/output spatial size; ``model.layer_macs()`` the MACs per layer.

Residual add (integer-exact by construction): when the block input ``h`` comes
from a quantized activation with scale ``s_in`` and ``k_in`` bits (1 for
sign), both operands are rounded to signed integers on the grid
``step = s_in / 2^ADD_FRAC_BITS`` with ``k_in + ADD_FRAC_BITS + 2`` bits
(:func:`~qhw.quant.quantizers.add_quantize`, half-up, clamped). The identity
operand is exactly ``h_int << ADD_FRAC_BITS``. The block output is then a
function of the single integer ``r + s``: ``act_out((r + s) * step)``, the
product computed once in float32 (so the act sees exactly that value).
``block.add_step(in_act)`` and ``block.add_bits(in_act)`` give both numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from qhw.quant.config import LayerQuant, QuantConfig
from qhw.quant.quantizers import (
    InputQuant,
    _ActQuantizer,
    _WeightQuantizer,
    add_quantize,
    make_act_quantizer,
    round_half_up,
    ste,
    make_weight_quantizer,
)

#: fractional bits of the residual-add grid below the block input's step
ADD_FRAC_BITS = 2

DEFAULT_LAYER = LayerQuant("uniform", 8, "uniform", 8)


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of a CIFAR-style ResNet.

    Parameters
    ----------
    depth : int
        6n + 2 (8, 14, 20, 32, ...).
    widths : tuple of 3 ints
        Channels of the three stages (the stem has ``widths[0]``).
    in_channels, in_size : int, (int, int)
        Input image shape C x (H, W).
    num_classes : int
    input_bits : int
        Bits of the unsigned pixel codes (1..8).
    """

    depth: int = 20
    widths: tuple[int, int, int] = (16, 32, 64)
    in_channels: int = 3
    in_size: tuple[int, int] = (32, 32)
    num_classes: int = 10
    input_bits: int = 8

    def __post_init__(self):
        def pos_int(name, v):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")

        pos_int("depth", self.depth)
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), not {self.depth}")
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "in_size", tuple(self.in_size))
        if len(self.widths) != 3:
            raise ValueError(f"widths must have 3 entries, not {len(self.widths)}")
        for w in self.widths:
            pos_int("widths", w)
        pos_int("in_channels", self.in_channels)
        if len(self.in_size) != 2:
            raise ValueError(f"in_size must be (height, width), not {self.in_size!r}")
        for s in self.in_size:
            pos_int("in_size", s)
        pos_int("num_classes", self.num_classes)
        if isinstance(self.input_bits, bool) or not isinstance(self.input_bits, int) or not 1 <= self.input_bits <= 8:
            raise ValueError(f"input_bits must be between 1 and 8, not {self.input_bits!r}")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    def to_dict(self) -> dict:
        return {
            "depth": self.depth,
            "widths": list(self.widths),
            "in_channels": self.in_channels,
            "in_size": list(self.in_size),
            "num_classes": self.num_classes,
            "input_bits": self.input_bits,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ResNetSpec":
        return cls(
            depth=d["depth"],
            widths=tuple(d["widths"]),
            in_channels=d["in_channels"],
            in_size=tuple(d["in_size"]),
            num_classes=d["num_classes"],
            input_bits=d.get("input_bits", 8),
        )


#: named architectures for the CLI
PRESETS: dict[str, ResNetSpec] = {
    "resnet8": ResNetSpec(depth=8, widths=(16, 32, 64), in_channels=1, in_size=(8, 8)),
    "resnet20": ResNetSpec(depth=20, widths=(16, 32, 64), in_channels=3, in_size=(32, 32)),
    # MLPerf Tiny image classification (CIFAR-10): 16-channel stem, one basic block per stage at
    # 16 / 32 / 64 channels, stages 2 and 3 entering with stride 2 through a 1x1 projection.
    "resnet8-mlperf": ResNetSpec(depth=8, widths=(16, 32, 64), in_channels=3, in_size=(32, 32)),
    # Odd shapes for the hardware: a non-square, odd-sized input (maps 9x13 -> 5x7 -> 3x4 through
    # the stride-2 stages) and widths divisible by no power of two above 2, so folds of 4 or 8
    # channels per beat leave a short last channel group.
    "resnet8-odd": ResNetSpec(depth=8, widths=(6, 10, 14), in_channels=3, in_size=(9, 13)),
}


@dataclass(frozen=True)
class LayerGeometry:
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def macs(self) -> int:
        """MACs per image: |f| * output positions (AdaQAT's |f| w_f h_f / s_f^2)."""
        return self.in_channels * self.kernel**2 * self.out_channels * self.out_hw[0] * self.out_hw[1]

    @property
    def weight_count(self) -> int:
        return self.in_channels * self.kernel**2 * self.out_channels


class QConv2d(nn.Conv2d):
    """Conv2d (no bias) whose weight goes through ``weight_quant``."""

    weight_gain = 1.0  # BatchNorm follows: the level scale does not matter

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, w_kind="uniform", w_bits=8):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.weight_quant: _WeightQuantizer = make_weight_quantizer(w_kind, w_bits, self.weight_gain)

    def forward(self, x):
        return self._conv_forward(x, self.weight_quant(self.weight), None)

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quant(self.weight).detach()

    def integer_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight_quant.integer_weights(self.weight)


class QLinear(nn.Linear):
    """Linear (float bias) whose weight goes through ``weight_quant``."""

    def __init__(self, in_features, out_features, *, w_kind="uniform", w_bits=8):
        super().__init__(in_features, out_features, bias=True)
        # DoReFa levels reach ±1; 1/sqrt(fan_in) keeps the logits at float-init size
        self.weight_gain = 1.0 / math.sqrt(in_features)
        self.weight_quant: _WeightQuantizer = make_weight_quantizer(w_kind, w_bits, self.weight_gain)

    def forward(self, x):
        return nn.functional.linear(x, self.weight_quant(self.weight), self.bias)

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quant(self.weight).detach()

    def integer_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight_quant.integer_weights(self.weight)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN, quantized residual add, output activation."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, alpha_init: float):
        super().__init__()
        self.conv1 = QConv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = make_act_quantizer("uniform", 8, alpha_init)
        self.conv2 = QConv2d(out_ch, out_ch, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = QConv2d(in_ch, out_ch, 1, stride=stride, padding=0)
            self.shortcut_bn = nn.BatchNorm2d(out_ch)
        else:
            self.shortcut = None
            self.shortcut_bn = None
        self.act_out = make_act_quantizer("uniform", 8, alpha_init)

    @staticmethod
    def add_step(in_act) -> torch.Tensor:
        """Grid of the residual-add integers: the input's scale / 2^ADD_FRAC_BITS."""
        return in_act.scale / (1 << ADD_FRAC_BITS)

    @staticmethod
    def add_bits(in_act) -> int:
        """Signed width of each residual-add operand."""
        return in_act.bits + ADD_FRAC_BITS + 2

    def forward(self, h: torch.Tensor, in_act) -> torch.Tensor:
        a1 = self.act1(self.bn1(self.conv1(h)))
        m = self.bn2(self.conv2(a1))
        s = h if self.shortcut is None else self.shortcut_bn(self.shortcut(h))
        if in_act.kind != "float":
            step, bits = self.add_step(in_act).to(m.dtype), self.add_bits(in_act)
            z = add_quantize(m, step, bits) + add_quantize(s, step, bits)
            # r*step + s*step may be off by an ulp; the act sees exactly (r + s) * step
            with torch.no_grad():
                exact = round_half_up(z.detach() / step) * step
            return self.act_out(ste(z, exact))
        return self.act_out(m + s)


class QResNet(nn.Module):
    """Quantized CIFAR-style ResNet; see the module docstring."""

    def __init__(self, spec: ResNetSpec, *, alpha_init: float = 3.0):
        super().__init__()
        if not isinstance(spec, ResNetSpec):
            raise TypeError(f"spec must be a ResNetSpec, not {type(spec).__name__}")
        self.spec = spec
        self.alpha_init = float(alpha_init)
        w0 = spec.widths[0]
        self.input_quant = InputQuant(bits=spec.input_bits)
        self.stem = QConv2d(spec.in_channels, w0, 3, stride=1, padding=1)
        self.stem_bn = nn.BatchNorm2d(w0)
        self.stem_act = make_act_quantizer("uniform", 8, alpha_init)
        stages = []
        in_ch = w0
        for i, width in enumerate(spec.widths):
            blocks = []
            for j in range(spec.blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_ch, width, stride, alpha_init))
                in_ch = width
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = QLinear(in_ch, spec.num_classes)
        self._init_weights()
        self._geometry = self._compute_geometry()
        # the stem reads image codes: its input activation is fixed
        self._set_quant("stem", LayerQuant("uniform", 8, "uniform", spec.input_bits))

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- structure ---------------------------------------------------------------

    def blocks(self) -> Iterator[tuple[str, BasicBlock]]:
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                yield f"s{i + 1}.b{j + 1}", block

    def layers(self) -> dict[str, nn.Module]:
        """Weight layers by name, in execution order."""
        out: dict[str, nn.Module] = {"stem": self.stem}
        for name, block in self.blocks():
            out[f"{name}.conv1"] = block.conv1
            out[f"{name}.conv2"] = block.conv2
            if block.shortcut is not None:
                out[f"{name}.shortcut"] = block.shortcut
        out["fc"] = self.fc
        return out

    def layer_names(self) -> list[str]:
        return list(self.layers())

    def input_act(self, name: str):
        """The activation quantizer of the tensor layer ``name`` reads."""
        if name == "stem":
            return self.input_quant
        prev = self.stem_act
        for bname, block in self.blocks():
            if name in (f"{bname}.conv1", f"{bname}.shortcut"):
                return prev
            if name == f"{bname}.conv2":
                return block.act1
            prev = block.act_out
        if name == "fc":
            return prev
        raise KeyError(f"no layer named {name!r}")

    def shared_inputs(self) -> dict[str, str]:
        """Layers reading the same activation as another layer (shortcut -> conv1)."""
        return {f"{b}.shortcut": f"{b}.conv1" for b, blk in self.blocks() if blk.shortcut is not None}

    def layer_geometry(self, name: str) -> LayerGeometry:
        return self._geometry[name]

    def layer_macs(self) -> dict[str, int]:
        return {n: g.macs for n, g in self._geometry.items()}

    def _compute_geometry(self) -> dict[str, LayerGeometry]:
        geo = {}
        hw = self.spec.in_size

        def conv(name, m, hw):
            k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
            out = tuple((d + 2 * p - k) // s + 1 for d in hw)
            geo[name] = LayerGeometry("conv", m.in_channels, m.out_channels, k, s, p, tuple(hw), out)
            return out

        hw = conv("stem", self.stem, hw)
        for bname, block in self.blocks():
            h1 = conv(f"{bname}.conv1", block.conv1, hw)
            conv(f"{bname}.conv2", block.conv2, h1)
            if block.shortcut is not None:
                conv(f"{bname}.shortcut", block.shortcut, hw)
            hw = h1
        geo["fc"] = LayerGeometry("linear", self.fc.in_features, self.fc.out_features, 1, 1, 0, (1, 1), (1, 1))
        return geo

    # -- quantization ------------------------------------------------------------

    def layer_quant(self, name: str) -> LayerQuant:
        layer = self.layers()[name]
        act = self.input_act(name)
        return LayerQuant(layer.weight_quant.kind, layer.weight_quant.bits, act.kind, act.bits)

    def quant_config(self) -> dict[str, LayerQuant]:
        return {n: self.layer_quant(n) for n in self.layers()}

    def apply_quant(self, quant: "Mapping[str, LayerQuant] | QuantConfig", source: str | None = None) -> None:
        """Set every layer's quantization from a resolved mapping or a config.

        A :class:`QuantConfig` is validated against this model's layers
        (raises :class:`~qhw.errors.InputError`); a mapping must name known
        layers and keep shared inputs consistent (raises ValueError).
        """
        if isinstance(quant, QuantConfig):
            quant = quant.resolve(
                self.layer_names(),
                first="stem",
                last="fc",
                shared_inputs=self.shared_inputs(),
                fixed_inputs={"stem": LayerQuant("uniform", 8, "uniform", self.spec.input_bits)},
                source=source,
            )
        unknown = sorted(set(quant) - set(self.layers()))
        if unknown:
            raise ValueError(f"unknown layer name(s) {', '.join(unknown)}")
        for sc, owner in self.shared_inputs().items():
            if sc in quant and owner in quant:
                a, b = quant[sc], quant[owner]
                if (a.a_kind, a.a_bits) != (b.a_kind, b.a_bits):
                    raise ValueError(f"{sc} and {owner} read the same activation; their a_kind/a_bits must agree")
        for name, lq in quant.items():
            self._set_quant(name, lq)

    def set_layer_quant(self, name: str, lq: LayerQuant) -> None:
        """Change one layer; bits-only changes keep learned parameters (alpha)."""
        if name not in self.layers():
            raise ValueError(f"name must be a layer of this model, not {name!r}")
        self._set_quant(name, lq)

    def _set_quant(self, name: str, lq: LayerQuant) -> None:
        layer = self.layers()[name]
        if layer.weight_quant.kind == lq.w_kind:
            layer.weight_quant.bits = lq.w_bits
        else:
            layer.weight_quant = make_weight_quantizer(lq.w_kind, lq.w_bits, layer.weight_gain)
        if name == "stem":
            if (lq.a_kind, lq.a_bits) != ("uniform", self.spec.input_bits):
                raise ValueError(
                    f"the stem reads {self.spec.input_bits}-bit image codes; its activation cannot be "
                    f"{lq.a_bits}-bit {lq.a_kind}"
                )
            return
        self._set_act(name, lq.a_kind, lq.a_bits)

    def _set_act(self, name: str, kind: str, bits: int) -> None:
        owner, attr = self._act_slot(name)
        current: _ActQuantizer = getattr(owner, attr)
        if current.kind == kind:
            current.bits = bits
        else:
            setattr(owner, attr, make_act_quantizer(kind, bits, self.alpha_init))

    def _act_slot(self, name: str) -> tuple[nn.Module, str]:
        """(module, attribute) holding the input activation quantizer of ``name``."""
        prev = (self, "stem_act")
        for bname, block in self.blocks():
            if name in (f"{bname}.conv1", f"{bname}.shortcut"):
                return prev
            if name == f"{bname}.conv2":
                return block, "act1"
            prev = (block, "act_out")
        if name == "fc":
            return prev
        raise KeyError(name)

    # -- forward -----------------------------------------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem_act(self.stem_bn(self.stem(self.input_quant(x))))
        in_act = self.stem_act
        for _, block in self.blocks():
            h = block(h, in_act)
            in_act = block.act_out
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_model(
    spec: ResNetSpec | str,
    quant: "Mapping[str, LayerQuant] | QuantConfig | None" = None,
    *,
    alpha_init: float = 3.0,
    source: str | None = None,
) -> QResNet:
    """A :class:`QResNet` (preset name or spec), quantized per ``quant``.

    ``quant=None`` keeps every layer at uniform W8A8.
    """
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"spec must be one of {', '.join(PRESETS)} or a ResNetSpec, not {spec!r}")
        spec = PRESETS[spec]
    model = QResNet(spec, alpha_init=alpha_init)
    if quant is not None:
        model.apply_quant(quant, source=source)
    return model

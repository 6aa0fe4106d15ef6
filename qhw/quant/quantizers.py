"""Weight and activation quantizers with straight-through gradients.

Every quantizer's forward output is *exactly* ``scale * integer_value`` (one
float32 multiply): the straight-through estimator is written as
``q + (x - x.detach())``, which adds an exact zero in the forward pass and
passes the gradient of ``x`` in the backward pass. Rounding is half-up,
``floor(v + 0.5)``, everywhere.

Public API used by the exporter (stable):

Weight quantizers (``module.weight_quant`` of every :class:`~qhw.quant.models.QConv2d`
/ :class:`~qhw.quant.models.QLinear`) have attributes

``kind``      ``"uniform" | "binary" | "pow2" | "float"``
``bits``      int (settable for uniform and pow2; AdaQAT changes it)
``encoding``  intmath ``WeightCode`` value: ``"odd" | "binary" | "pow2"`` (None for float)

and ``integer_weights(w) -> (values, scale)``: ``values`` int64, same shape as
``w``, inside ``intmath.weight_value_range(encoding, bits)``; ``scale`` float32
of shape ``(C_out,)`` (per-layer quantizers repeat one value). The quantized
float weight the network uses is ``scale[c] * values[c]`` (bit-identical to
``forward(w)``). Raw ROM codes: ``intmath.encode_weights(encoding, bits, values)``.

=========  ========================================================  ===============
kind       values                                                    scale
=========  ========================================================  ===============
uniform    2n - s, n = round(s (tanh w / (2 max|tanh w|) + 1/2)),    gain / s, per layer
           s = 2^k - 1 (odd, in [-s, s]; DoReFa, AdaQAT §III-A)    (gain 1; fc: 1/sqrt(fan_in))
binary     +1 if w >= 0 else -1                                      mean|w_c| per channel
pow2       0 or ±2^(e-1), e = round(log2(|w| / scale)) + 1 in         max|w| / 2^(emax-1),
           [1, emax], emax = 2^(k-1) - 1; 0 when |w| / scale < 1/2    per layer
=========  ========================================================  ===============

Activation quantizers (:class:`PACTAct`, :class:`SignAct`, :class:`FloatAct`,
:class:`InputQuant`) have ``kind`` (``"uniform" | "sign" | "float"``), ``bits``,
``encoding`` (intmath ``ActCode``: ``"unsigned" | "bipolar"``), ``scale``
(float32 0-d tensor, detached) and ``integer_values(x) -> int64``, with
``forward(x) == scale * integer_values(x)``:

``PACTAct``     y = clamp(x, 0, alpha); code = floor(y / scale + 1/2), scale = alpha / (2^k - 1);
                codes 0 .. 2^k - 1 (k = 1 gives {0, alpha}); learned ``alpha`` (PACT STE)
``SignAct``     +1 if x >= 0 else -1, scale 1; hard-tanh STE (gradient where |x| <= 1)
``InputQuant``  image pixels in [0, 1] -> codes floor(x (2^k - 1) + 1/2), scale 1 / (2^k - 1)
``FloatAct``    ReLU, no integer form

Residual adds use :func:`add_quantize` (see ``qhw.quant.models``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qhw.quant.config import A_BITS_RANGE, A_ENCODING, W_BITS_RANGE, W_ENCODING

__all__ = [
    "round_half_up",
    "ste",
    "DoReFaWeight",
    "BinaryWeight",
    "Pow2Weight",
    "FloatWeight",
    "PACTAct",
    "SignAct",
    "FloatAct",
    "InputQuant",
    "add_quantize",
    "make_weight_quantizer",
    "make_act_quantizer",
]


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 1/2): the one rounding rule of qhw (torch.round is half-even)."""
    return torch.floor(x + 0.5)


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward value exactly ``q``; gradient flows to ``x`` unchanged."""
    return q + (x - x.detach())


def _check_bits(name: str, kind: str, bits: int, ranges) -> int:
    lo, hi = ranges[kind]
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"{name} must be an integer, not {bits!r}")
    if not lo <= bits <= hi:
        raise ValueError(f"{name} for {kind} must be between {lo} and {hi}, not {bits}")
    return bits


# -- weights -------------------------------------------------------------------


class _WeightQuantizer(nn.Module):
    kind: str = "float"

    def __init__(self, *, bits: int):
        super().__init__()
        self._bits = _check_bits("bits", self.kind, bits, W_BITS_RANGE)

    @property
    def bits(self) -> int:
        return self._bits

    @bits.setter
    def bits(self, value: int) -> None:
        self._bits = _check_bits("bits", self.kind, value, W_BITS_RANGE)

    @property
    def encoding(self) -> str | None:
        return W_ENCODING[self.kind]

    def integer_weights(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(int64 values like ``w``, float32 scale of shape (C_out,))."""
        with torch.no_grad():
            v, scale = self._quantize(w.detach())
        return v.to(torch.int64), scale.expand(w.shape[0]).clone()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            v, scale = self._quantize(w.detach())
            q = v * scale.reshape(-1, *[1] * (w.dim() - 1))
        return ste(self._surrogate(w), q)

    def _surrogate(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def _quantize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"kind={self.kind}, bits={self.bits}"


class DoReFaWeight(_WeightQuantizer):
    """DoReFa k-bit weights: odd integer levels 2n - s, scale gain/s (k = 2..8).

    ``gain`` (default 1) is a fixed positive factor on the levels. Layers
    followed by BatchNorm do not see it; the classifier uses 1/sqrt(fan_in)
    so its initial logits are as large as with float Kaiming weights instead
    of sqrt(fan_in) times larger (DoReFa alone puts max|w| at 1).
    """

    kind = "uniform"

    def __init__(self, *, bits: int, gain: float = 1.0):
        super().__init__(bits=bits)
        if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a positive number, not {gain!r}")
        self.gain = float(gain)

    def _surrogate(self, w):
        # the gradient goes through the tanh normalization, as in DoReFa / AdaQAT
        t = torch.tanh(w)
        return t / t.abs().max().clamp_min(1e-12) * self.gain

    def _quantize(self, w):
        s = (1 << self.bits) - 1
        t = torch.tanh(w)
        unit = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5  # in [0, 1]
        n = round_half_up(unit * s).clamp(0, s)
        return 2 * n - s, torch.tensor([self.gain / s], dtype=w.dtype, device=w.device)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", gain={self.gain:g}" if self.gain != 1.0 else "")


class BinaryWeight(_WeightQuantizer):
    """sign(w) with XNOR-Net scale mean|w| per output channel; gradient where |w| <= 1."""

    kind = "binary"

    def __init__(self, *, bits: int = 1):
        super().__init__(bits=bits)

    def _surrogate(self, w):
        return w * (w.abs() <= 1).to(w.dtype)

    def _quantize(self, w):
        alpha = w.abs().reshape(w.shape[0], -1).mean(dim=1).clamp_min(1e-12)
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype), alpha


class Pow2Weight(_WeightQuantizer):
    """Sign + exponent code (code 0 = zero), per-layer scale, k = 3..5 bits.

    Magnitudes ``2^(e-1)`` for e = 1 .. emax = 2^(k-1) - 1, so the largest
    integer value is ``2^(emax-1)`` and ``scale = max|w| / 2^(emax-1)``.
    Rounding is to the nearest power in the log domain; below half the
    smallest level the weight is zero.
    """

    kind = "pow2"

    def __init__(self, *, bits: int):
        super().__init__(bits=bits)

    @property
    def max_exponent(self) -> int:
        """Largest exponent of the integer values (``2^max_exponent``)."""
        return (1 << (self.bits - 1)) - 2

    def _quantize(self, w):
        top = float(1 << self.max_exponent)
        scale = (w.abs().max().clamp_min(1e-12) / top).reshape(1)
        x = w.abs() / scale
        e = round_half_up(torch.log2(x.clamp_min(1e-30))).clamp(0, self.max_exponent)
        mag = torch.where(x >= 0.5, torch.exp2(e), torch.zeros_like(x))
        return torch.where(w < 0, -mag, mag), scale


class FloatWeight(_WeightQuantizer):
    """No quantization (float baseline)."""

    kind = "float"

    def __init__(self, *, bits: int = 32):
        super().__init__(bits=bits)

    def forward(self, w):
        return w

    def integer_weights(self, w):
        raise TypeError("float weights have no integer form; quantize the layer to export it")


def make_weight_quantizer(kind: str, bits: int, gain: float = 1.0) -> _WeightQuantizer:
    """A weight quantizer; ``gain`` applies to uniform (DoReFa) only, the
    other kinds take their scale from the weights themselves."""
    cls = {"uniform": DoReFaWeight, "binary": BinaryWeight, "pow2": Pow2Weight, "float": FloatWeight}
    if kind not in cls:
        raise ValueError(f"kind must be one of {', '.join(cls)}, not {kind!r}")
    if kind == "uniform":
        return DoReFaWeight(bits=bits, gain=gain)
    return cls[kind](bits=bits)


# -- activations ---------------------------------------------------------------


class _ActQuantizer(nn.Module):
    kind: str = "float"

    def __init__(self, *, bits: int):
        super().__init__()
        self._bits = _check_bits("bits", self.kind, bits, A_BITS_RANGE)

    @property
    def bits(self) -> int:
        return self._bits

    @bits.setter
    def bits(self, value: int) -> None:
        self._bits = _check_bits("bits", self.kind, value, A_BITS_RANGE)

    @property
    def encoding(self) -> str | None:
        return A_ENCODING[self.kind]

    @property
    def quantized(self) -> bool:
        return self.kind != "float"

    def extra_repr(self) -> str:
        return f"kind={self.kind}, bits={self.bits}"


class PACTAct(_ActQuantizer):
    """PACT: clip to [0, alpha] (alpha learned), k-bit unsigned codes (k = 1..8)."""

    kind = "uniform"

    def __init__(self, *, bits: int, alpha: float = 3.0):
        super().__init__(bits=bits)
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, not {alpha!r}")
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    @property
    def levels(self) -> int:
        """Largest code, 2^k - 1."""
        return (1 << self.bits) - 1

    @property
    def scale(self) -> torch.Tensor:
        # a learned alpha must stay positive; clamping here keeps scale > 0
        return (self.alpha.detach().clamp_min(1e-4) / self.levels)

    def integer_values(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._codes(x.detach()).to(torch.int64)

    def _codes(self, x):
        scale = self.scale
        y = torch.minimum(torch.relu(x), self.alpha.detach().clamp_min(1e-4))
        return round_half_up(y / scale).clamp(0, self.levels)

    def forward(self, x):
        # d y / d x = 1 on [0, alpha]; d y / d alpha = 1 where x > alpha (PACT)
        y = torch.minimum(torch.relu(x), self.alpha)
        with torch.no_grad():
            q = self._codes(x.detach()) * self.scale
        return ste(y, q)


class SignAct(_ActQuantizer):
    """±1 activations (x >= 0 -> +1), hard-tanh straight-through gradient."""

    kind = "sign"

    def __init__(self, *, bits: int = 1):
        super().__init__(bits=bits)

    @property
    def scale(self) -> torch.Tensor:
        return torch.tensor(1.0)

    def integer_values(self, x):
        return torch.where(x.detach() >= 0, 1, -1).to(torch.int64)

    def forward(self, x):
        q = torch.where(x.detach() >= 0, 1.0, -1.0).to(x.dtype)
        return ste(x * (x.detach().abs() <= 1).to(x.dtype), q)


class FloatAct(_ActQuantizer):
    """Plain ReLU (float baseline)."""

    kind = "float"

    def __init__(self, *, bits: int = 32):
        super().__init__(bits=bits)

    @property
    def scale(self):
        return None

    def integer_values(self, x):
        raise TypeError("float activations have no integer form; quantize the layer to export it")

    def forward(self, x):
        return torch.relu(x)


def make_act_quantizer(kind: str, bits: int, alpha: float = 3.0) -> _ActQuantizer:
    if kind == "uniform":
        return PACTAct(bits=bits, alpha=alpha)
    if kind == "sign":
        return SignAct(bits=bits)
    if kind == "float":
        return FloatAct(bits=bits)
    raise ValueError(f"kind must be one of uniform, sign, float, not {kind!r}")


class InputQuant(nn.Module):
    """Image pixels in [0, 1] as k-bit unsigned codes (k = 8 by default).

    The integer model reads the codes; the float model sees ``code * scale``
    with ``scale = 1 / (2^k - 1)``. Zero padding of the first conv is code 0.
    """

    kind = "uniform"
    encoding = "unsigned"

    def __init__(self, *, bits: int = 8):
        super().__init__()
        self.bits = _check_bits("bits", "uniform", bits, {"uniform": (1, 16)})

    @property
    def levels(self) -> int:
        return (1 << self.bits) - 1

    @property
    def scale(self) -> torch.Tensor:
        return torch.tensor(1.0 / self.levels)

    def integer_values(self, x):
        return round_half_up(x.detach() * self.levels).clamp(0, self.levels).to(torch.int64)

    def forward(self, x):
        return self.integer_values(x).to(x.dtype) * self.scale.to(x.dtype)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def add_quantize(v: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed ``bits``-bit integers on grid ``step``: residual-add operands.

    ``q = clamp(floor(v / step + 1/2), -2^(bits-1), 2^(bits-1) - 1) * step``;
    gradient passes where ``v`` is inside the range.
    """
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    with torch.no_grad():
        code = round_half_up(v.detach() / step)
        inside = ((code >= lo) & (code <= hi)).to(v.dtype)
        q = code.clamp(lo, hi) * step
    return ste(v * inside, q)

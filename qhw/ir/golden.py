"""Golden model: the integer network executed with int64 PyTorch tensors.

This is the reference the hardware must match bit for bit. The forward path
uses integer tensors only (no float anywhere): im2col by slicing, int64
matmul, requantization by ``searchsorted`` on the thresholds (counting
``t_(c,j) <= sign_c·acc``, exactly :func:`qhw.ir.intmath.apply_thresholds`) or
by multiply/add/arithmetic shift/clamp (exactly
:func:`qhw.ir.intmath.requant_mul_shift`); ``tests/test_ir_golden.py`` checks
each op against the intmath definition.

Tensors hold *values* (see :mod:`qhw.ir.graph`): unsigned codes, ±1 for
bipolar, signed integers. :func:`to_raw` gives the bit patterns a hardware
stream carries.
"""

from __future__ import annotations

import torch

from qhw.ir import intmath
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Layer, Network, TensorSpec
from qhw.ir.intmath import ActCode
from qhw.ir.requant import MulShift, Thresholds, level_offset


def _t(arr) -> torch.Tensor:
    return torch.as_tensor(arr.copy() if hasattr(arr, "copy") else arr, dtype=torch.int64)


def im2col(x: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    """(N, C, H, W) int64 -> (N, C·kh·kw, OH·OW), rows in (c, ky, kx) order; pads with 0."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = torch.nn.functional.pad(x, (pw, pw, ph, ph), value=0)
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    taps = [x[:, :, ky: ky + sh * (oh - 1) + 1: sh, kx: kx + sw * (ow - 1) + 1: sw]
            for ky in range(kh) for kx in range(kw)]
    cols = torch.stack(taps, dim=2)  # (N, C, kh·kw, OH, OW)
    return cols.reshape(n, c * kh * kw, oh * ow)


def apply_thresholds(acc: torch.Tensor, thresholds: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Levels ``sum_j [sign_c·acc >= t_(c,j)]`` for acc (N, C, ...) — intmath.apply_thresholds."""
    n, c = acc.shape[:2]
    flat = (acc * sign.reshape(1, c, *[1] * (acc.dim() - 2))).transpose(0, 1).reshape(c, -1).contiguous()
    # thresholds ascend, so the count of t <= x is the right insertion point
    levels = torch.searchsorted(thresholds.contiguous(), flat, right=True)
    return levels.reshape(c, n, *acc.shape[2:]).transpose(0, 1).contiguous()


def requant_mul_shift(acc: torch.Tensor, mult: torch.Tensor, bias: torch.Tensor, shift: int, lo: int, hi: int) -> torch.Tensor:
    """``clamp((acc·m + b + 2^(s-1)) >> s, lo, hi)`` per channel (axis 1) — intmath.requant_mul_shift."""
    shape = (1, -1, *[1] * (acc.dim() - 2))
    y = (acc * mult.reshape(shape) + bias.reshape(shape) + (1 << (shift - 1))) >> shift
    return y.clamp(lo, hi)


class _Requant:
    """A requantizer's parameters as int64 tensors."""

    def __init__(self, rq, out: TensorSpec):
        self.rq = rq
        self.bipolar = out.code is ActCode.BIPOLAR
        if isinstance(rq, Thresholds):
            self.t, self.sign = _t(rq.thresholds), _t(rq.sign)
            self.offset = level_offset(rq.out_code, rq.out_bits)
        elif isinstance(rq, MulShift):
            self.m, self.b = _t(rq.mult), _t(rq.bias)

    def __call__(self, acc: torch.Tensor) -> torch.Tensor:
        rq = self.rq
        if rq is None:
            return acc
        if isinstance(rq, MulShift):
            return requant_mul_shift(acc, self.m, self.b, rq.shift, rq.lo, rq.hi)
        level = apply_thresholds(acc, self.t, self.sign)
        return 2 * level - 1 if self.bipolar else level + self.offset


class GoldenModel:
    """Executes a :class:`~qhw.ir.graph.Network` in exact integer arithmetic.

    Parameters
    ----------
    net : Network

    ``run(x)`` takes the input values, int64 ``(N, C, H, W)`` inside the input
    spec's range, and returns ``{layer name: int64 tensor}`` for every layer
    (the input included), each ``(N, *layer.out.shape)``. Calling the model
    returns the output layer's tensor (the integer logits).
    """

    def __init__(self, net: Network):
        if not isinstance(net, Network):
            raise TypeError(f"net must be a Network, not {net!r}")
        self.net = net
        self._ops = [self._compile(layer) for layer in net.layers]

    def _compile(self, layer: Layer):
        if isinstance(layer, Input):
            return None
        rq = _Requant(getattr(layer, "requant", None), layer.out)
        if isinstance(layer, Conv):
            w = _t(layer.weights)

            def conv(xs, layer=layer, w=w, rq=rq):
                x = xs[0]
                cols = im2col(x, layer.kernel, layer.stride, layer.padding)
                acc = torch.matmul(w, cols)  # (N, C_out, OH·OW)
                return rq(acc.reshape(x.shape[0], *layer.out.shape))
            return conv
        if isinstance(layer, Dense):
            wt = _t(layer.weights).t().contiguous()
            return lambda xs, wt=wt, rq=rq: rq(torch.matmul(xs[0], wt))
        if isinstance(layer, Add):
            coeffs = _t(layer.coeffs)

            def add(xs, coeffs=coeffs, rq=rq):
                shape = (1, -1, *[1] * (xs[0].dim() - 2))
                z = sum(p.reshape(shape) * x for p, x in zip(coeffs, xs))
                return rq(z)
            return add
        if isinstance(layer, GlobalPool):
            return lambda xs, rq=rq: rq(xs[0].sum(dim=(2, 3)))
        raise TypeError(f"unknown layer type {type(layer).__name__}")

    def check_input(self, x) -> torch.Tensor:
        spec = self.net.input.out
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"input must be an integer tensor, not {x.dtype}")
        x = x.to(torch.int64)
        if tuple(x.shape[1:]) != spec.shape:
            raise ValueError(f"input must have shape (N, {', '.join(map(str, spec.shape))}), not {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < spec.lo or int(x.max()) > spec.hi):
            raise ValueError(f"input values must lie in [{spec.lo}, {spec.hi}] ({spec.bits}-bit {spec.code.value})")
        if spec.code is ActCode.BIPOLAR and bool((x == 0).any()):
            raise ValueError("bipolar input values must be +1 or -1")
        return x

    @torch.no_grad()
    def run(self, x) -> dict[str, torch.Tensor]:
        x = self.check_input(x)
        values: dict[str, torch.Tensor] = {self.net.input.name: x}
        for layer, op in zip(self.net.layers[1:], self._ops[1:]):
            values[layer.name] = op([values[n] for n in layer.inputs])
        return values

    def __call__(self, x) -> torch.Tensor:
        return self.run(x)[self.net.output]

    def predict(self, x) -> torch.Tensor:
        """Top-1 class per image: argmax of the integer logits (first index on ties)."""
        logits = self(x)
        return logits.reshape(logits.shape[0], -1).argmax(dim=1)


def to_raw(spec: TensorSpec, values) -> torch.Tensor:
    """Values -> raw bit patterns of the spec's encoding (what a hardware stream carries)."""
    arr = intmath.encode_acts(spec.code, spec.bits, torch.as_tensor(values).cpu().numpy())
    return torch.as_tensor(arr, dtype=torch.int64)

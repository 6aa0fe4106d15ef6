"""Golden model: the integer network executed with int64 PyTorch tensors.

This is the reference the hardware must match bit for bit. The forward path
uses integer tensors only (no float anywhere): im2col by slicing, int64
matmul, requantization by ``searchsorted`` on the thresholds (counting
``t_(c,j) <= sign_c·acc``, exactly :func:`qhw.ir.intmath.apply_thresholds`) or
by multiply/add/arithmetic shift/clamp (exactly
:func:`qhw.ir.intmath.requant_mul_shift`); ``tests/test_ir_golden.py`` checks
each op against the intmath definition.

Max pooling pads with a value below the input's range and takes the maximum
over the window's taps (:class:`~qhw.ir.graph.MaxPool` guarantees a real tap
in every window, so the pad value is never the result).

:func:`layer_op` is the one definition of each layer's integer op: it runs
ONE layer on int64 tensors ``(N, *in_spec.shape)`` and returns
``(N, *out.shape)``. :class:`GoldenModel` chains these ops, and the hardware
engines use them as their ``reference()``; there is no second derivation.

Tensors hold *values* (see :mod:`qhw.ir.graph`): unsigned codes, ±1 for
bipolar, signed integers. :func:`to_raw` gives the bit patterns a hardware
stream carries.
"""

from __future__ import annotations

from typing import Callable

import torch

from qhw.ir import intmath
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Layer, MaxPool, Network, TensorSpec
from qhw.ir.intmath import ActCode
from qhw.ir.requant import MulShift, Thresholds, level_offset


def _t(arr) -> torch.Tensor:
    return torch.as_tensor(arr.copy() if hasattr(arr, "copy") else arr, dtype=torch.int64)


def im2col(x: torch.Tensor, kernel, stride, padding) -> torch.Tensor:
    """(N, C, H, W) int64 -> (N, C·kh·kw, OH·OW), rows in (c, ky, kx) order; pads with 0."""
    n, c = x.shape[:2]
    cols = _windows(x, kernel, stride, padding, 0)  # (N, C, kh·kw, OH, OW)
    return cols.reshape(n, c * cols.shape[2], cols.shape[3] * cols.shape[4])


def _windows(x: torch.Tensor, kernel, stride, padding, fill: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, kh·kw, OH, OW): every tap of every window, padding = ``fill``."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        padded = torch.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
        padded[:, :, ph: ph + h, pw: pw + w] = x
        x = padded
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    taps = [x[:, :, ky: ky + sh * (oh - 1) + 1: sh, kx: kx + sw * (ow - 1) + 1: sw]
            for ky in range(kh) for kx in range(kw)]
    return torch.stack(taps, dim=2)


def maxpool(x: torch.Tensor, kernel, stride, padding, pad_value: int) -> torch.Tensor:
    """(N, C, H, W) int64 -> (N, C, OH, OW): max over each window; padded taps hold ``pad_value``.

    ``pad_value`` must lie below every input value (the layer passes
    ``in_spec.lo − 1``) and every window must hold a real tap, so padding is
    never the maximum.
    """
    return _windows(x, kernel, stride, padding, pad_value).amax(dim=2)


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


def _check_tensor(x, spec: TensorSpec, what: str) -> torch.Tensor:
    """An integer tensor ``(N, *spec.shape)`` inside the spec's value range, as int64."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{what} must be an integer tensor, not {x.dtype}")
    x = x.to(torch.int64)
    if tuple(x.shape[1:]) != spec.shape or x.dim() != len(spec.shape) + 1:
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, spec.shape))}), not {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < spec.lo or int(x.max()) > spec.hi):
        raise ValueError(f"{what} values must lie in [{spec.lo}, {spec.hi}] ({spec.bits}-bit {spec.code.value})")
    if spec.code is ActCode.BIPOLAR and bool((x == 0).any()):
        raise ValueError(f"{what} values must be +1 or -1 (bipolar)")
    return x


def _compute(layer: Layer) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """The integer computation of one layer on already-checked int64 inputs."""
    if isinstance(layer, Input):
        return lambda xs: xs[0]
    if isinstance(layer, MaxPool):
        pad = layer.in_spec.lo - 1  # below every value: a padded tap never wins
        return lambda xs: maxpool(xs[0], layer.kernel, layer.stride, layer.padding, pad)
    rq = _Requant(getattr(layer, "requant", None), layer.out)
    if isinstance(layer, Conv):
        w = _t(layer.weights)

        def conv(xs):
            x = xs[0]
            cols = im2col(x, layer.kernel, layer.stride, layer.padding)
            acc = torch.matmul(w, cols)  # (N, C_out, OH·OW)
            return rq(acc.reshape(x.shape[0], *layer.out.shape))
        return conv
    if isinstance(layer, Dense):
        wt = _t(layer.weights).t().contiguous()
        return lambda xs: rq(torch.matmul(xs[0], wt))
    if isinstance(layer, Add):
        coeffs = _t(layer.coeffs)

        def add(xs):
            shape = (1, -1, *[1] * (xs[0].dim() - 2))
            return rq(sum(p.reshape(shape) * x for p, x in zip(coeffs, xs)))
        return add
    if isinstance(layer, GlobalPool):
        return lambda xs: rq(xs[0].sum(dim=(2, 3)))
    raise TypeError(f"unknown layer type {type(layer).__name__}")


class LayerOp:
    """The golden integer op of one layer (see :func:`layer_op`)."""

    def __init__(self, layer: Layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be a qhw.ir.graph layer, not {layer!r}")
        self.layer = layer
        self._compute = _compute(layer)

    @torch.no_grad()
    def __call__(self, *inputs) -> torch.Tensor:
        layer = self.layer
        specs = (layer.out,) if isinstance(layer, Input) else layer.in_specs
        names = ("input",) if isinstance(layer, Input) else \
            tuple(f"layer {layer.name!r} input {src!r}" for src in layer.inputs)
        if len(inputs) != len(specs):
            raise TypeError(f"layer {layer.name!r} takes {len(specs)} input tensor(s), not {len(inputs)}")
        xs = [_check_tensor(x, spec, what) for x, spec, what in zip(inputs, specs, names)]
        if len({x.shape[0] for x in xs}) != 1:
            raise ValueError(f"layer {layer.name!r}: inputs have different batch sizes {[x.shape[0] for x in xs]}")
        return self._compute(xs)


def layer_op(layer: Layer) -> LayerOp:
    """The golden op of ONE layer: ``op(*inputs) -> output``.

    Each input is an integer tensor (or array) ``(N, *in_spec.shape)`` of
    values inside its spec's range (one per entry of ``layer.inputs``; an
    :class:`~qhw.ir.graph.Input` takes the network input itself and checks
    it); the result is int64 ``(N, *layer.out.shape)``. Inputs are checked
    (dtype, shape, range, bipolar ±1) and a violation raises ``TypeError`` /
    ``ValueError``. :class:`GoldenModel` runs exactly these ops.
    """
    return LayerOp(layer)


class GoldenModel:
    """Executes a :class:`~qhw.ir.graph.Network` in exact integer arithmetic.

    Parameters
    ----------
    net : Network

    ``run(x)`` takes the input values, int64 ``(N, C, H, W)`` inside the input
    spec's range, and returns ``{layer name: int64 tensor}`` for every layer
    (the input included), each ``(N, *layer.out.shape)``. Calling the model
    returns the output layer's tensor (the integer logits). Every layer runs
    through its :func:`layer_op`, which also checks that each tensor it reads
    lies inside its producer's declared range.
    """

    def __init__(self, net: Network):
        if not isinstance(net, Network):
            raise TypeError(f"net must be a Network, not {net!r}")
        self.net = net
        self.ops = {layer.name: layer_op(layer) for layer in net.layers}

    def check_input(self, x) -> torch.Tensor:
        return _check_tensor(x, self.net.input.out, "input")

    def run_layer(self, name: str, *inputs) -> torch.Tensor:
        """Run one layer of the network on its input tensors (see :func:`layer_op`)."""
        if name not in self.ops:
            raise KeyError(f"no layer {name!r} in the network")
        return self.ops[name](*inputs)

    @torch.no_grad()
    def run(self, x) -> dict[str, torch.Tensor]:
        values: dict[str, torch.Tensor] = {}
        for layer in self.net.layers:
            args = (x,) if isinstance(layer, Input) else tuple(values[n] for n in layer.inputs)
            values[layer.name] = self.ops[layer.name](*args)
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

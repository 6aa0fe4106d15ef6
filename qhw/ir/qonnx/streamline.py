"""A cleaned QONNX graph -> qhw integer :class:`~qhw.ir.graph.Network`, exactly.

The graph is walked once in topological order. Every tensor is one of

``_Const``    an initializer (weights before their quantizer, BN parameters, biases)
``_QWeight``  a quantizer applied to a constant: integer values ``q`` and a scale
``_Float``    the graph input (a float image), possibly scaled by constants
``_Grid``     a quantized activation: ``real = scale[c] · value`` where ``value`` is the
              integer output of one IR layer (its ``out`` spec)
``_Pending``  an IR layer whose accumulator is known but whose requantizer is not
              yet: ``real = clip(a[c] · acc + b[c], lo[c], hi[c])``, plus max pools
              deferred past the requantizer

and each node maps these to these:

===============================  ================================================
QONNX                            qhw
===============================  ================================================
``Quant`` on the graph input     ``input``: its codes, ``scale`` the quantizer's
``Quant`` / ``BipolarQuant`` on  the integer weights (``binary`` for bipolar, else
a constant                       ``int``, or ``pow2`` when every value is 0 or ±2^e
                                 and the pow2 code is no wider), scale per tensor
                                 or per output channel
``Conv`` (group 1), ``Gemm``,    ``conv`` / ``dense``: integer weights, the real map
``MatMul``                       ``a = w_scale · in_scale``, ``b = bias``
``BatchNormalization``,          folded into ``a``, ``b`` (exact rationals of the
``Mul`` / ``Div`` / ``Add`` by   float parameters; BN's ``1/sqrt(var + eps)`` is
constants                        taken in float64, as ``qhw export`` does)
``Relu``, ``Clip``/``HardTanh``  the clip of the requantizer's input
``Quant`` / ``BipolarQuant`` /   the requantizer: thresholds, exact for the
``Trunc`` after arithmetic       quantizer's rounding mode and clamp (+ the
                                 equivalent mul-shift :func:`requant.find_mul_shift`
                                 finds)
``Add`` of two quantized         ``add``: the branch scales' ratio as integer
tensors                          coefficients, per channel (``s1 / s2 = p / q``)
``MaxPool``                      ``maxpool`` (after a requantizer whose map is
                                 increasing, max and requantizer commute)
``GlobalAveragePool``,           ``gap``: the integer sum, ``1/(H·W)`` in ``a``
``ReduceMean``/``ReduceSum``,
``AveragePool`` over the map
``Flatten`` / ``Reshape``        nothing (a flattened C×H×W map read by ``Gemm`` is
                                 a ``conv`` with an H×W kernel)
graph output (float logits)      ``mul_shift`` integer logits of one common scale
                                 (:func:`requant.logit_requant`), or the raw
                                 accumulator when ``b = 0`` and ``a`` is one
                                 positive number (argmax exact)
===============================  ================================================

Exactness. A requantizer's thresholds are computed in rational arithmetic
from the float parameters: for output level ``v`` the quantizer's rounding
``R`` (qonnx's ``ROUND`` = half to even, ``HALF_UP``/``HALF_DOWN`` = half away
from / towards zero, ``FLOOR``, ``CEIL``, ``UP``, ``DOWN``) gives a boundary
``x ≥ β`` or ``x > β`` on the quantizer's input, clipped by the pending
``Relu``/``Clip``, mapped back through ``a·acc + b``. Ties are honoured: with
power-of-two scales they really happen (``u = acc/8``), and ``ROUND`` then
goes to the even level. :func:`qhw.ir.requant.affine_thresholds` covers only
round-half-up, hence the per-level rule here; the resulting
:class:`~qhw.ir.requant.Thresholds` and their mul-shift twin are the IR's own.

A tensor that is not quantized and not an exact integer grid (``b ≠ 0`` or a
clip pending: a BN output, a ReLU without a quantizer) cannot enter a layer:
"float tensor on the datapath". A raw accumulator with ``b = 0`` (a global
pool's sum, a conv without bias or quantizer) is an exact grid and passes on
as ``requant: null``, its scale ``a`` going into the consumer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from qhw.errors import InputError
from qhw.ir import intmath
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, MaxPool, Network, TensorSpec
from qhw.ir.intmath import ActCode, WeightCode
from qhw.ir.requant import (MAX_THRESHOLD_BITS, Thresholds, find_mul_shift, level_to_value, logit_requant,
                            n_levels)

#: largest integer coefficient a residual add may take from a ratio of branch scales
MAX_ADD_COEFF = 1 << 16
#: fractional bits of the integer logits (one common scale; argmax as the float logits up to 2^-8 of a step)
LOGIT_FRAC_BITS = 8

ALWAYS, NEVER = "always", "never"

ROUNDING_MODES = ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN", "FLOOR", "CEIL", "UP", "DOWN")
#: input quantizer roundings that give qhw's pixel -> code rule (round half up) but at exact ties
INPUT_ROUNDING = ("ROUND", "HALF_EVEN", "HALF_UP")


def round_condition(mode: str, v: int) -> tuple[Fraction, bool]:
    """qonnx rounding ``R`` (``resolve_rounding_mode``): ``R(w) >= v  <=>  w >= v + off`` (``>`` if strict)."""
    m = mode.upper()
    half = Fraction(1, 2)
    if m in ("ROUND", "HALF_EVEN"):      # np.round: a tie goes to the even neighbour
        return -half, v % 2 != 0
    if m == "HALF_UP":                   # sign(w)·floor(|w| + 1/2): ties away from zero
        return -half, v <= 0
    if m == "HALF_DOWN":                 # sign(w)·ceil(|w| − 1/2): ties towards zero
        return -half, v >= 1
    if m == "FLOOR":
        return Fraction(0), False
    if m == "CEIL":
        return Fraction(-1), True
    if m == "UP":                        # away from zero: ceil above 0, floor below
        return (Fraction(-1), True) if v >= 1 else (Fraction(0), False)
    if m == "DOWN":                      # np.fix: floor above 0, ceil below
        return (Fraction(0), False) if v >= 1 else (Fraction(-1), True)
    raise ValueError(f"rounding mode {mode!r}")


def _frac(x) -> Fraction:
    return Fraction(float(x))


def _fracs(arr) -> list[Fraction]:
    return [Fraction(float(v)) for v in np.asarray(arr, dtype=np.float64).reshape(-1)]


# -- the values flowing along the graph -----------------------------------------------------

@dataclass
class _Const:
    value: np.ndarray


@dataclass
class _QWeight:
    """A quantized constant: ``real = q · scale`` (scale broadcast to ``q``'s shape)."""
    q: np.ndarray          # int64
    scale: np.ndarray      # float, same ndim as q, broadcastable
    bits: int
    signed: bool
    narrow: bool
    bipolar: bool
    node: str

    def real(self) -> list[Fraction]:
        s = np.broadcast_to(self.scale, self.q.shape).reshape(-1)
        return [int(q) * Fraction(float(x)) for q, x in zip(self.q.reshape(-1), s)]


@dataclass
class _Float:
    """The graph input times a positive constant (normalisation before the input quantizer)."""
    factor: Fraction = Fraction(1)


@dataclass
class _Grid:
    layer: str
    spec: TensorSpec
    scale: list[Fraction]   # per channel, > 0
    flat: bool = False      # the ONNX tensor is the map flattened to (N, C·H·W)


@dataclass
class _Pending:
    name: str
    build: Callable[[Any], Any]   # requant -> IR layer
    probe: Any                    # the layer with requant None (accumulator bounds, shape)
    a: list[Fraction]
    b: list[Fraction]
    lo: list[Fraction | None] = None
    hi: list[Fraction | None] = None
    pools: list[dict] = field(default_factory=list)

    def __post_init__(self):
        c = len(self.a)
        self.lo = self.lo or [None] * c
        self.hi = self.hi or [None] * c

    @property
    def channels(self) -> int:
        return len(self.a)

    @property
    def clipped(self) -> bool:
        return any(x is not None for x in self.lo + self.hi)

    @property
    def exact_grid(self) -> bool:
        """Integer accumulator times a positive scale: passes on without a requantizer."""
        return not self.clipped and not self.pools and all(x == 0 for x in self.b) and all(x > 0 for x in self.a)


@dataclass(frozen=True)
class SharedTensor:
    """An ONNX tensor that holds an IR layer's values: ``onnx = scale[c] · golden[layer]``."""
    tensor: str
    layer: str
    kind: str               # input | quant | maxpool | raw
    scale: tuple[float, ...]
    pre: str | None = None    # a Quant's input tensor: where its float32 input lies against the levels
    edges: str | None = None  # where its rounding changes level in units of scale: half | integer | zero

    def to_dict(self) -> dict:
        d = {"tensor": self.tensor, "layer": self.layer, "kind": self.kind, "scale": list(self.scale)}
        if self.pre is not None:
            d.update(pre=self.pre, edges=self.edges)
        return d


@dataclass(frozen=True)
class Imported:
    """The result of :func:`import_model`: the network and where it meets the ONNX graph."""
    net: Network
    input_tensor: str
    output_tensor: str
    shared: tuple[SharedTensor, ...]


# -- the walk ---------------------------------------------------------------------------------

class _Importer:
    def __init__(self, model, with_mul_shift: bool = True):
        self.model = model
        self.with_mul_shift = with_mul_shift
        self.layers: list = []
        self.by_name: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.shared: list[SharedTensor] = []
        self.node = None
        self.input_tensor: str | None = None

    # .. helpers ..........................................................................

    def fail(self, message: str):
        n = self.node
        raise InputError(f"node {n.name!r} ({n.op_type}): {message}")

    def layer_name(self, base: str) -> str:
        """A fresh IR layer name from an ONNX name (``/b1/conv1/Conv`` -> ``b1.conv1.Conv``), reserved."""
        s = re.sub(r"[^A-Za-z0-9_.]", "_", base.replace("/", ".")).strip("._") or "layer"
        name, i = s, 1
        while name in self.by_name or name == "input":
            i += 1
            name = f"{s}_{i}"
        self.by_name[name] = None
        return name

    def add_layer(self, layer):
        if self.by_name.get(layer.name) is not None:
            self.fail(f"the unquantized output of layer {layer.name!r} feeds two consumers; "
                      "quantize it once, then fork")
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        return layer

    def value(self, name: str):
        if name in self.values:
            return self.values[name]
        init = self.model.get_initializer(name)
        if init is not None:
            return _Const(np.asarray(init))
        self.fail(f"input {name!r} is not produced by any node")

    def const(self, name: str, what: str) -> np.ndarray:
        v = self.value(name)
        if isinstance(v, _QWeight):
            return np.asarray([float(x) for x in v.real()]).reshape(v.q.shape)
        if not isinstance(v, _Const):
            self.fail(f"{what} ({name!r}) must be a constant")
        return v.value

    def attr(self, name: str, default=None):
        from onnx import helper

        for a in self.node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def per_channel(self, arr: np.ndarray, c: int, what: str) -> list[Fraction]:
        """A constant that broadcasts along the channel axis only: scalar, (C,), (1, C), (1, C, 1, 1), (C, 1, 1)."""
        a = np.asarray(arr, dtype=np.float64)
        if a.size == 1:
            return [_frac(a.reshape(-1)[0])] * c
        dims = [d for d in a.shape if d != 1]
        lead = a.shape[0] == 1 and a.ndim in (2, 4)
        if dims == [c] and (a.ndim == 1 or lead or (a.ndim == 3 and a.shape[0] == c)):
            return _fracs(a)
        self.fail(f"{what} of shape {list(a.shape)} is not one value per channel ({c} channels)")

    def grid(self, name: str, what: str = "input") -> _Grid:
        """The quantized tensor ``name``; an exact raw accumulator is passed on without requantizer."""
        v = self.value(name)
        if isinstance(v, _Grid):
            return v
        if isinstance(v, _Pending) and v.exact_grid:
            return self.finish_raw(v, name)
        if isinstance(v, (_Float, _Pending)):
            self.fail(f"{what} {name!r} is a float tensor (not quantized) on the datapath; "
                      "quantize it with a Quant / BipolarQuant node first")
        self.fail(f"{what} {name!r} is a constant, not an activation")

    def finish(self, p: _Pending, requant) -> tuple[str, TensorSpec]:
        try:
            layer = self.add_layer(p.build(requant))
        except (TypeError, ValueError) as exc:
            self.fail(f"cannot build layer {p.name!r}: {exc}")
        name, spec = layer.name, layer.out
        for pool in p.pools:
            mp = self.add_layer(MaxPool(name=pool["name"], input=name, in_spec=spec, kernel=pool["kernel"],
                                        stride=pool["stride"], padding=pool["padding"]))
            name, spec = mp.name, mp.out
        return name, spec

    def finish_raw(self, p: _Pending, tensor: str) -> _Grid:
        name, spec = self.finish(p, None)
        g = _Grid(name, spec, list(p.a))
        self.values[tensor] = g
        self.record(tensor, g, "raw")
        return g

    def record(self, tensor: str, g: _Grid, kind: str, pre: str | None = None, edges: str | None = None) -> None:
        self.shared.append(SharedTensor(tensor, g.layer, kind, tuple(float(s) for s in g.scale), pre, edges))

    def lift(self, g: _Grid) -> _Pending:
        """An identity 1x1 conv (or dense) on ``g``: a layer to hang a requantizer on (pow2 2-bit weights: wires)."""
        if g.flat:
            self.fail("requantizing a flattened map is not supported; quantize it before the Flatten")
        c = g.spec.channels
        eye = np.eye(c, dtype=np.int64)
        name = self.layer_name(self.node.name + ".requant")
        kw = dict(name=name, input=g.layer, in_spec=g.spec, out_channels=c, weight_code=WeightCode.POW2,
                  weight_bits=2, weights=eye)
        if g.spec.is_map:
            def build(rq):
                return Conv(kernel=(1, 1), requant=rq, **kw)
        else:
            def build(rq):
                return Dense(requant=rq, **kw)
        return _Pending(name, build, build(None), list(g.scale), [Fraction(0)] * c)

    def pending(self, name: str) -> _Pending:
        v = self.value(name)
        if isinstance(v, _Pending):
            return v
        if isinstance(v, _Grid):
            return self.lift(v)
        if isinstance(v, _Float):
            self.fail(f"input {name!r} is the float graph input; quantize it with a Quant node first")
        self.fail(f"input {name!r} is a constant, not an activation")

    def affine(self, p: _Pending, mul: list[Fraction], add: list[Fraction]) -> _Pending:
        """``y -> mul·y + add`` on a pending value (BN, Mul, Div, Add of a constant)."""
        if p.clipped:
            self.fail("arithmetic between an activation (Relu / Clip) and its quantizer is not supported")
        if p.pools and any(m <= 0 for m in mul):
            self.fail("a negative or zero scale after a MaxPool does not commute with the pool")
        return _Pending(p.name, p.build, p.probe, [a * m for a, m in zip(p.a, mul)],
                        [b * m + c for b, m, c in zip(p.b, mul, add)], list(p.lo), list(p.hi), list(p.pools))

    # .. weights ............................................................................

    def quantize_const(self, w: np.ndarray, scale, zp, bits: float | None, signed: bool, narrow: bool,
                       mode: str | None, bipolar: bool) -> _QWeight:
        """qonnx's own integer of a quantized constant (``int_quant`` / ``binary_quant`` step by step)."""
        from qonnx.custom_op.general.quant import max_int, min_int, resolve_rounding_mode

        w = np.asarray(w)
        s = np.asarray(scale, dtype=np.float64)
        s = s.reshape((1,) * (w.ndim - s.ndim) + s.shape)  # broadcastable against w, same rank
        y = w / scale
        if bipolar:  # binary_quant / int_quant with 1 signed bit: the sign, >= 0 -> +1
            return _QWeight(np.where(y >= 0, 1, -1).astype(np.int64), s, 1, True, True, True, self.node.name)
        y = np.clip(y + zp, min_int(signed, narrow, int(bits)), max_int(signed, narrow, int(bits)))
        q = resolve_rounding_mode(mode)(y)
        return _QWeight(np.asarray(q).astype(np.int64), s, int(bits), signed, narrow, False, self.node.name)

    def weight_code(self, qw: _QWeight) -> tuple[WeightCode, int]:
        """Binary for bipolar quantizers; pow2 when every value is 0 or ±2^e and no wider than int; else int."""
        if qw.bipolar:
            return WeightCode.BINARY, 1
        bits = qw.bits if qw.signed else qw.bits + 1
        if bits > intmath.MAX_BITS:
            self.fail(f"{qw.bits}-bit weights are wider than the {intmath.MAX_BITS} bits the PEs take")
        mag = np.abs(qw.q)
        if np.all((mag & (mag - 1)) == 0):
            top = int(mag.max(initial=0))
            ecode = top.bit_length()  # e code of 2^(k) is k + 1; 0 for an all-zero layer
            pbits = max(2, ecode.bit_length() + 1)
            if pbits <= bits and pbits <= 8:
                return WeightCode.POW2, pbits
        return WeightCode.INT, bits

    def weight_scale(self, qw: _QWeight, cout: int, axis: int) -> list[Fraction]:
        """Per output channel scale of weights whose output channel is ``axis``."""
        s = qw.scale
        if s.size == 1:
            return [_frac(s.reshape(-1)[0])] * cout
        if s.shape[axis] == cout and s.size == cout:
            return _fracs(s)
        self.fail(f"weight scale of shape {list(s.shape)} is not per tensor or per output channel")

    # .. requantizers ........................................................................

    def requantize(self, p: _Pending, code: ActCode, bits: int, condition, hint_scale: list[Fraction]):
        """Thresholds (+ mul-shift) of ``value = F(clip(a·acc + b))``; ``condition(c, v)`` gives F's boundaries."""
        if code is not ActCode.BIPOLAR and bits > MAX_THRESHOLD_BITS:
            self.fail(f"a {bits}-bit activation is wider than the {MAX_THRESHOLD_BITS} bits a requantizer takes")
        levels = n_levels(code, bits)
        acc_lo, acc_hi = p.probe.acc_lo, p.probe.acc_hi
        t = np.zeros((p.channels, levels), dtype=np.int64)
        sign = np.ones(p.channels, dtype=np.int64)
        for c in range(p.channels):
            a, b, clo, chi = p.a[c], p.b[c], p.lo[c], p.hi[c]
            if a < 0:
                sign[c] = -1
            xlo, xhi = (int(acc_lo[c]), int(acc_hi[c])) if a >= 0 else (-int(acc_hi[c]), -int(acc_lo[c]))
            for j in range(levels):
                cond = condition(c, int(level_to_value(code, bits, j + 1)))
                if cond == ALWAYS:
                    x = xlo
                elif cond == NEVER:
                    x = xhi + 1
                else:
                    beta, strict = cond
                    if clo is not None and (beta < clo or (beta == clo and not strict)):
                        x = xlo  # clip(y) >= clo >= beta always
                    elif chi is not None and (beta > chi or (beta == chi and strict)):
                        x = xhi + 1
                    elif a == 0:
                        x = xlo if (b > beta or (b == beta and not strict)) else xhi + 1
                    else:
                        q = (beta - b) / abs(a)  # y = |a|·(sign·acc) + b
                        x = math.floor(q) + 1 if strict else math.ceil(q)
                t[c, j] = min(max(x, xlo), xhi + 1)
        if np.any(np.diff(t, axis=1) < 0):  # a non-monotone quantizer would be a bug here
            self.fail("internal error: thresholds do not ascend")
        th = Thresholds(thresholds=t, sign=sign, out_code=code, out_bits=bits)
        if code is ActCode.BIPOLAR or not self.with_mul_shift:
            return th
        a = np.array([float(x / s) for x, s in zip(p.a, hint_scale)])
        b = np.array([float(x / s) for x, s in zip(p.b, hint_scale)])
        ms = find_mul_shift(a, b, th, acc_lo, acc_hi) if np.all(np.isfinite(a)) and np.all(np.isfinite(b)) else None
        return Thresholds(thresholds=t, sign=sign, out_code=code, out_bits=bits, mul_shift=ms)

    def quant_out(self, p: _Pending, scale: list[Fraction], code: ActCode, bits: int, condition,
                  out_tensor: str, hint: list[Fraction], pre: str | None = None, edges: str | None = None) -> None:
        if p.pools and any(a < 0 for a in p.a):
            self.fail("the map before this quantizer decreases on some channel, so it does not commute "
                      "with the MaxPool before it")
        rq = self.requantize(p, code, bits, condition, hint)
        name, spec = self.finish(p, rq)
        g = _Grid(name, spec, scale)
        self.values[out_tensor] = g
        self.record(out_tensor, g, "quant", pre, edges)

    # .. ops ....................................................................................

    def op_Quant(self, n):
        x = self.value(n.input[0])
        scale = self.const(n.input[1], "scale")
        zp = self.const(n.input[2], "zero point")
        bits_arr = self.const(n.input[3], "bit width")
        if np.any(zp != 0):
            self.fail("a non-zero zero point is not supported (qhw codes are symmetric around 0)")
        if np.asarray(bits_arr).size != 1 or float(np.asarray(bits_arr).reshape(-1)[0]) % 1:
            self.fail(f"bit width must be one integer, not {np.asarray(bits_arr).tolist()}")
        bits = int(np.asarray(bits_arr).reshape(-1)[0])
        signed, narrow = bool(self.attr("signed", 1)), bool(self.attr("narrow", 0))
        mode = self.attr("rounding_mode", "ROUND").upper()
        if mode not in ROUNDING_MODES:
            self.fail(f"rounding mode {mode!r} is not one of {', '.join(ROUNDING_MODES)}")
        if bits < 1:
            self.fail(f"bit width {bits} is below 1")
        if np.any(np.asarray(scale) <= 0) or not np.all(np.isfinite(scale)):
            self.fail("scale must be positive and finite")
        bipolar = bits == 1 and signed  # qonnx's int_quant: a 1-bit signed quantizer is the sign
        if isinstance(x, _Const):
            self.values[n.output[0]] = self.quantize_const(x.value, scale, zp, bits, signed, narrow, mode, bipolar)
            return
        qmin = -(1 << (bits - 1)) + (1 if narrow else 0) if signed else 0
        qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - (1 if narrow else 0)
        code = ActCode.BIPOLAR if bipolar else (ActCode.SIGNED if signed else ActCode.UNSIGNED)
        self.activation_quant(x, n, scale, code, 1 if bipolar else bits, qmin, qmax, mode)

    def op_BipolarQuant(self, n):
        x = self.value(n.input[0])
        scale = self.const(n.input[1], "scale")
        if np.any(np.asarray(scale) <= 0) or not np.all(np.isfinite(scale)):
            self.fail("scale must be positive and finite")
        if isinstance(x, _Const):
            self.values[n.output[0]] = self.quantize_const(x.value, scale, 0, None, True, True, None, True)
            return
        self.activation_quant(x, n, scale, ActCode.BIPOLAR, 1, -1, 1, "ROUND")

    def activation_quant(self, x, n, scale, code: ActCode, bits: int, qmin: int, qmax: int, mode: str):
        out = n.output[0]
        if isinstance(x, _Float):
            self.quant_input(x, n, scale, code, bits, mode)
            return
        c = (x.probe.out.channels if isinstance(x, _Pending) else x.spec.channels)
        s = self.per_channel(scale, c, "scale")
        if isinstance(x, _Grid) and code is x.spec.code and s == x.scale and (
                code is ActCode.BIPOLAR or qmin <= x.spec.lo and x.spec.hi <= qmax):
            self.values[out] = x  # same grid, range inside the clamp: the quantizer is the identity
            self.record(out, x, "quant")
            return
        p = x if isinstance(x, _Pending) else self.lift(self.grid(n.input[0]))

        if code is ActCode.BIPOLAR:
            def condition(ch, v):
                return Fraction(0), False  # sign: x >= 0 -> +1 (qonnx binary_quant)
        else:
            def condition(ch, v):
                if v <= qmin:
                    return ALWAYS
                if v > qmax:
                    return NEVER
                off, strict = round_condition(mode, v)
                return s[ch] * (v + off), strict
        edges = "zero" if code is ActCode.BIPOLAR else "half" if mode.startswith(("ROUND", "HALF")) else "integer"
        self.quant_out(p, s, code, bits, condition, out, s, pre=n.input[0], edges=edges)

    def quant_input(self, x: _Float, n, scale, code: ActCode, bits: int, mode: str):
        if self.by_name:
            self.fail("the graph input is quantized twice")
        if mode not in INPUT_ROUNDING:
            # qhw turns pixels into codes one way (qhw.ir.check.input_code_table: half up); ROUND and
            # HALF_UP agree with it except at exact ties of p / scale, any other mode differs everywhere
            self.fail(f"the input quantizer rounds {mode}; qhw's input codes round to nearest "
                      f"({', '.join(INPUT_ROUNDING)} accepted)")
        arr = np.asarray(scale, dtype=np.float64)
        if arr.size != 1:
            self.fail("the input quantizer must have one scale for the whole tensor")
        shape = self.model.get_tensor_shape(self.input_tensor)
        if shape is None or len(shape) != 4:
            self.fail(f"the graph input must be an (N, C, H, W) image tensor, not shape {shape}")
        s = _frac(arr.reshape(-1)[0]) / x.factor
        try:
            inp = self.add_layer(Input(name="input", shape=tuple(int(d) for d in shape[1:]), code=code,
                                       bits=bits, scale=float(s)))
        except (TypeError, ValueError) as exc:
            self.fail(f"cannot build the input layer: {exc}")
        g = _Grid("input", inp.out, [_frac(arr.reshape(-1)[0])] * inp.out.channels)
        self.values[n.output[0]] = g
        self.record(n.output[0], g, "input")

    def op_Trunc(self, n):
        x = self.value(n.input[0])
        scale = self.const(n.input[1], "scale")
        zp = self.const(n.input[2], "zero point")
        if np.any(zp != 0):
            self.fail("a non-zero zero point is not supported")
        mode = self.attr("rounding_mode", "FLOOR").upper()
        if mode not in ROUNDING_MODES:
            self.fail(f"rounding mode {mode!r} is not one of {', '.join(ROUNDING_MODES)}")
        if len(n.input) >= 6:  # Trunc v2: (x, scale, zp, in_bits, out_scale, out_bits), clamped
            out_scale = self.const(n.input[4], "output scale")
            ob = int(np.asarray(self.const(n.input[5], "output bit width")).reshape(-1)[0])
            k = np.round(np.log2(out_scale / scale))  # qonnx's trunc_scale, computed as qonnx does
            signed, narrow = bool(self.attr("signed", 1)), bool(self.attr("narrow", 0))
        else:  # Trunc v1: shift by in_bits - out_bits, no clamp
            ib = int(np.asarray(self.const(n.input[3], "input bit width")).reshape(-1)[0])
            ob = int(np.asarray(self.const(n.input[4], "output bit width")).reshape(-1)[0])
            k = np.asarray(float(ib - ob))
            out_scale = np.asarray(scale, dtype=np.float64) * 2.0 ** k
            signed, narrow = None, False
        if np.asarray(k).size != 1:
            self.fail("the truncation must be one power of two for the whole tensor")
        k = int(np.asarray(k).reshape(-1)[0])
        p = x if isinstance(x, _Pending) else self.lift(self.grid(n.input[0]))
        c = p.channels
        s_in = self.per_channel(scale, c, "scale")
        s_out = self.per_channel(out_scale, c, "output scale")
        if signed is None:  # v1 keeps the sign of its input
            signed = int(min(p.probe.acc_lo)) < 0 or any(x_ < 0 for x_ in p.b)
        code = ActCode.SIGNED if signed else ActCode.UNSIGNED
        qmin = (-(1 << (ob - 1)) + (1 if narrow else 0)) if signed else 0
        qmax = ((1 << (ob - 1)) - 1) if signed else (1 << ob) - 1 - (1 if narrow else 0)
        step = Fraction(2) ** k

        def condition(ch, v):
            # y1 = round_half_even(x / s_in) (exact integer), then R(y1 / 2^k) >= v, clamped
            if v <= qmin:
                return ALWAYS
            if v > qmax:
                return NEVER
            off, strict = round_condition(mode, v)
            edge = (v + off) * step
            t2 = math.floor(edge) + 1 if strict else math.ceil(edge)   # smallest integer y1 reaching v
            return s_in[ch] * (t2 - Fraction(1, 2)), t2 % 2 != 0        # half-even tie: up iff t2 even
        self.quant_out(p, s_out, code, ob, condition, n.output[0], [s * step for s in s_in])

    def op_Conv(self, n):
        x = self.grid(n.input[0])
        w = self.value(n.input[1])
        if not isinstance(w, _QWeight):
            self.fail("the weights are not quantized (no Quant / BipolarQuant on them)")
        group = int(self.attr("group", 1))
        if group != 1:
            self.fail(f"grouped or depthwise convolution (group={group}) is not supported; qhw convs have group 1")
        if w.q.ndim != 4:
            self.fail("only 2-D convolutions are supported")
        if any(d != 1 for d in self.attr("dilations", [1, 1])):
            self.fail(f"dilations {self.attr('dilations')} are not supported")
        if self.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            self.fail(f"auto_pad {self.attr('auto_pad')} is not supported; give explicit pads")
        if not x.spec.is_map or x.flat:
            self.fail(f"input {n.input[0]!r} is not an image-shaped (N, C, H, W) tensor")
        if len(set(x.scale)) != 1:
            self.fail("the input has one scale per channel; a conv needs one scale for its whole input")
        pads = list(self.attr("pads", [0, 0, 0, 0]))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            self.fail(f"asymmetric pads {pads} are not supported")
        cout = w.q.shape[0]
        wscale = self.weight_scale(w, cout, 0)
        bias = [Fraction(0)] * cout
        if len(n.input) > 2 and n.input[2]:
            bias = self.per_channel(self.const(n.input[2], "bias"), cout, "bias")
        wcode, wbits = self.weight_code(w)
        name = self.layer_name(n.name)
        kw = dict(name=name, input=x.layer, in_spec=x.spec, out_channels=cout, kernel=tuple(w.q.shape[2:]),
                  stride=tuple(self.attr("strides", [1, 1])), padding=(pads[0], pads[1]), weight_code=wcode,
                  weight_bits=wbits, weights=w.q)
        self.weighted(n, kw, Conv, [ws * x.scale[0] for ws in wscale], bias)

    def weighted(self, n, kw: dict, cls, a: list[Fraction], b: list[Fraction]):
        try:
            probe = cls(**kw)
        except (TypeError, ValueError) as exc:
            self.fail(f"cannot build layer {kw['name']!r}: {exc}")
        self.values[n.output[0]] = _Pending(kw["name"], lambda rq: cls(requant=rq, **kw), probe, a, b)

    def dense(self, n, x: _Grid, w: _QWeight, q: np.ndarray, wscale: list[Fraction], bias: list[Fraction]):
        """``x @ q.T`` (q is (C_out, C_in)): dense on a vector, a conv with an H×W kernel on a flattened map."""
        wcode, wbits = self.weight_code(w)
        name = self.layer_name(n.name)
        if len(set(x.scale)) != 1:
            self.fail("the input has one scale per channel; a dense layer needs one scale for its whole input")
        kw = dict(name=name, input=x.layer, in_spec=x.spec, out_channels=q.shape[0], weight_code=wcode,
                  weight_bits=wbits, weights=q)
        a = [ws * x.scale[0] for ws in wscale]
        if x.spec.is_map:
            if not x.flat:
                self.fail(f"input {n.input[0]!r} is a map; flatten it first")
            c, h, wd = x.spec.shape
            if q.shape[1] != c * h * wd:
                self.fail(f"weights read {q.shape[1]} features, the flattened input has {c * h * wd}")
            self.weighted(n, dict(kw, kernel=(h, wd), weights=q.reshape(q.shape[0], c, h, wd)), Conv, a, bias)
        else:
            self.weighted(n, kw, Dense, a, bias)

    def op_Gemm(self, n):
        x = self.grid(n.input[0])
        w = self.value(n.input[1])
        if not isinstance(w, _QWeight):
            self.fail("the weights are not quantized (no Quant / BipolarQuant on them)")
        if int(self.attr("transA", 0)):
            self.fail("transA=1 is not supported")
        alpha, beta = _frac(self.attr("alpha", 1.0)), _frac(self.attr("beta", 1.0))
        trans = bool(self.attr("transB", 0))
        q = w.q if trans else w.q.T
        wscale = [alpha * s for s in self.weight_scale(w, q.shape[0], 0 if trans else 1)]
        bias = [Fraction(0)] * q.shape[0]
        if len(n.input) > 2 and n.input[2]:
            bias = [beta * v for v in self.per_channel(self.const(n.input[2], "bias"), q.shape[0], "bias")]
        self.dense(n, x, w, q, wscale, bias)

    def op_MatMul(self, n):
        x = self.grid(n.input[0])
        w = self.value(n.input[1])
        if not isinstance(w, _QWeight) or w.q.ndim != 2:
            self.fail("the second operand must be a quantized 2-D weight matrix")
        q = w.q.T
        self.dense(n, x, w, q, self.weight_scale(w, q.shape[0], 1), [Fraction(0)] * q.shape[0])

    def op_Transpose(self, n):
        v = self.value(n.input[0])
        perm = self.attr("perm")
        if isinstance(v, _QWeight):
            perm = perm or list(range(v.q.ndim))[::-1]
            self.values[n.output[0]] = _QWeight(v.q.transpose(perm), v.scale.transpose(perm), v.bits, v.signed,
                                                v.narrow, v.bipolar, v.node)
        elif isinstance(v, _Const):
            self.values[n.output[0]] = _Const(np.transpose(v.value, perm))
        else:
            self.fail("a transpose of an activation (layout change) is not supported; qhw streams NCHW")

    def op_BatchNormalization(self, n):
        if int(self.attr("training_mode", 0)):
            self.fail("BatchNormalization in training mode; export the model in eval mode")
        p = self.pending(n.input[0])
        c = p.channels
        gamma, beta, mean, var = (self.per_channel(self.const(n.input[i], f), c, f)
                                  for i, f in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
        eps = float(self.attr("epsilon", 1e-5))
        # y = (x - mean) · g + beta, g = gamma / sqrt(var + eps) in float64 (as qhw export's bn_affine)
        g = [_frac(float(gm) / math.sqrt(float(v) + eps)) for gm, v in zip(gamma, var)]
        self.values[n.output[0]] = self.affine(p, g, [bt - m * gg for bt, m, gg in zip(beta, mean, g)])

    def scale_by(self, n, x_name: str, const_name: str, divide: bool):
        """``x · k`` or ``x / k`` for a constant ``k``: a new scale of the same integers, or an affine step."""
        x = self.value(x_name)
        kc = self.const(const_name, "the constant operand")
        if isinstance(x, _Float):
            if np.asarray(kc).size != 1 or float(np.asarray(kc).reshape(-1)[0]) <= 0:
                self.fail("the graph input may only be scaled by one positive number before its quantizer")
            f = _frac(np.asarray(kc).reshape(-1)[0])
            self.values[n.output[0]] = _Float(x.factor / f if divide else x.factor * f)
            return
        c = x.channels if isinstance(x, _Pending) else x.spec.channels if isinstance(x, _Grid) else None
        if c is None:
            self.fail("multiplies two constants (constant folding should have removed this)")
        ks = self.per_channel(kc, c, "the constant operand")
        if any(v == 0 for v in ks):
            self.fail("multiplication by zero (or division by zero) is not supported")
        ks = [1 / v for v in ks] if divide else ks
        if isinstance(x, _Grid) and all(v > 0 for v in ks):
            g = _Grid(x.layer, x.spec, [s * v for s, v in zip(x.scale, ks)], x.flat)  # same integers, new scale
            self.values[n.output[0]] = g
            return
        p = x if isinstance(x, _Pending) else self.lift(self.grid(x_name))
        if p.clipped:
            if any(v <= 0 for v in ks):
                self.fail("a negative scale between an activation and its quantizer is not supported")
            q = _Pending(p.name, p.build, p.probe, [a * v for a, v in zip(p.a, ks)], [b * v for b, v in zip(p.b, ks)],
                         [None if l is None else l * v for l, v in zip(p.lo, ks)],
                         [None if h is None else h * v for h, v in zip(p.hi, ks)], list(p.pools))
            self.values[n.output[0]] = q
            return
        self.values[n.output[0]] = self.affine(p, ks, [Fraction(0)] * c)

    def is_const(self, name: str) -> bool:
        return isinstance(self.value(name), (_Const, _QWeight))

    def const_operand(self, n) -> tuple[str, str] | None:
        a, b = n.input[0], n.input[1]
        ca, cb = self.is_const(a), self.is_const(b)
        if cb and not ca:
            return a, b
        if ca and not cb:
            return b, a
        return None

    def op_Mul(self, n):
        pair = self.const_operand(n)
        if pair is None:
            self.fail("only multiplication by a constant is supported")
        self.scale_by(n, pair[0], pair[1], divide=False)

    def op_Div(self, n):
        if not self.is_const(n.input[1]) or self.is_const(n.input[0]):
            self.fail("only division of an activation by a constant is supported")
        self.scale_by(n, n.input[0], n.input[1], divide=True)

    def op_Add(self, n):
        pair = self.const_operand(n)
        if pair is not None:  # a bias
            p = self.pending(pair[0])
            bias = self.per_channel(self.const(pair[1], "bias"), p.channels, "bias")
            self.values[n.output[0]] = self.affine(p, [Fraction(1)] * p.channels, bias)
            return
        g1, g2 = self.grid(n.input[0], "input"), self.grid(n.input[1], "input")
        if g1.spec.shape != g2.spec.shape or g1.flat != g2.flat:
            self.fail(f"the operands have different shapes {g1.spec.shape} and {g2.spec.shape}")
        c = g1.spec.channels
        coeffs = np.zeros((2, c), dtype=np.int64)
        step = []
        for ch in range(c):
            r = g1.scale[ch] / g2.scale[ch]  # = p / q in lowest terms: s1 = p·step, s2 = q·step
            if max(r.numerator, r.denominator) > MAX_ADD_COEFF:
                self.fail(f"the branch scales {float(g1.scale[ch]):.6g} and {float(g2.scale[ch]):.6g} "
                          f"(channel {ch}) have no small integer ratio; quantize both branches on related "
                          "scales (the same quantizer, or power-of-two scales)")
            coeffs[0, ch], coeffs[1, ch] = r.numerator, r.denominator
            step.append(g1.scale[ch] / r.numerator)
        name = self.layer_name(n.name)
        kw = dict(name=name, inputs=(g1.layer, g2.layer), in_specs=(g1.spec, g2.spec), coeffs=coeffs)
        try:
            probe = Add(**kw)
        except (TypeError, ValueError) as exc:
            self.fail(f"cannot build layer {name!r}: {exc}")
        p = _Pending(name, lambda rq: Add(requant=rq, **kw), probe, step, [Fraction(0)] * c)
        self.values[n.output[0]] = p

    def op_Relu(self, n):
        x = self.value(n.input[0])
        if isinstance(x, _Grid) and x.spec.lo >= 0:
            self.values[n.output[0]] = x  # already non-negative
            return
        p = self.pending(n.input[0])
        lo = [Fraction(0) if l is None else max(l, Fraction(0)) for l in p.lo]
        self.values[n.output[0]] = _Pending(p.name, p.build, p.probe, p.a, p.b, lo, list(p.hi), list(p.pools))

    def clip(self, n, lo: float | None, hi: float | None):
        x = self.value(n.input[0])
        flo = None if lo is None else _frac(lo)
        fhi = None if hi is None else _frac(hi)
        if isinstance(x, _Grid) and all((flo is None or s * x.spec.lo >= flo) and (fhi is None or s * x.spec.hi <= fhi)
                                        for s in x.scale):
            self.values[n.output[0]] = x  # the clip never bites
            return
        p = self.pending(n.input[0])
        new_lo = [l if flo is None else (flo if l is None else max(l, flo)) for l in p.lo]
        new_hi = [h if fhi is None else (fhi if h is None else min(h, fhi)) for h in p.hi]
        self.values[n.output[0]] = _Pending(p.name, p.build, p.probe, p.a, p.b, new_lo, new_hi, list(p.pools))

    def op_Clip(self, n):
        lo = self.attr("min")
        hi = self.attr("max")
        if len(n.input) > 1 and n.input[1]:
            lo = float(np.asarray(self.const(n.input[1], "min")).reshape(-1)[0])
        if len(n.input) > 2 and n.input[2]:
            hi = float(np.asarray(self.const(n.input[2], "max")).reshape(-1)[0])
        self.clip(n, lo, hi)

    def op_HardTanh(self, n):
        self.clip(n, float(self.attr("min_val", -1.0)), float(self.attr("max_val", 1.0)))

    def op_MaxPool(self, n):
        x = self.value(n.input[0])
        kernel = tuple(self.attr("kernel_shape"))
        stride = tuple(self.attr("strides", [1] * len(kernel)))
        pads = list(self.attr("pads", [0, 0, 0, 0]))
        if len(kernel) != 2:
            self.fail("only 2-D max pooling is supported")
        if any(d != 1 for d in self.attr("dilations", [1, 1])):
            self.fail(f"dilations {self.attr('dilations')} are not supported")
        if self.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            self.fail(f"auto_pad {self.attr('auto_pad')} is not supported; give explicit pads")
        if pads[0] != pads[2] or pads[1] != pads[3]:
            self.fail(f"asymmetric pads {pads} are not supported")
        if len(n.output) > 1 and n.output[1]:
            self.fail("the indices output is not supported")
        name = self.layer_name(n.name)
        pool = dict(name=name, kernel=kernel, stride=stride, padding=(pads[0], pads[1]))
        if not isinstance(x, (_Grid, _Pending)):
            self.grid(n.input[0])  # raises: float input or constant
        shape = x.spec.shape if isinstance(x, _Grid) else x.probe.out.shape
        if len(shape) != 3 or (isinstance(x, _Grid) and x.flat):
            self.fail(f"input {n.input[0]!r} is not an image-shaped (N, C, H, W) tensor")
        if int(self.attr("ceil_mode", 0)):
            _, h, w = shape
            for size, k, s, p in ((h, kernel[0], stride[0], pads[0]), (w, kernel[1], stride[1], pads[1])):
                if (size + 2 * p - k) % s:
                    self.fail("ceil_mode=1 changes the output size here; qhw max pools round down")
        if isinstance(x, _Grid):
            try:
                mp = self.add_layer(MaxPool(input=x.layer, in_spec=x.spec, **pool))
            except (TypeError, ValueError) as exc:
                self.fail(f"cannot build layer {name!r}: {exc}")
            g = _Grid(mp.name, mp.out, x.scale)
            self.values[n.output[0]] = g
            self.record(n.output[0], g, "maxpool")
            return
        if any(a <= 0 for a in x.a):
            self.fail("max pooling a pending value that decreases on some channel is not supported")
        self.values[n.output[0]] = _Pending(x.name, x.build, x.probe, x.a, x.b, x.lo, x.hi, x.pools + [pool])

    def global_pool(self, n, out_vector: bool):
        x = self.grid(n.input[0])
        if not x.spec.is_map or x.flat:
            self.fail(f"input {n.input[0]!r} is not an image-shaped (N, C, H, W) tensor")
        c, h, w = x.spec.shape
        name = self.layer_name(n.name)
        kw = dict(name=name, input=x.layer, in_spec=x.spec)
        try:
            probe = GlobalPool(**kw)
        except (TypeError, ValueError) as exc:
            self.fail(f"cannot build layer {name!r}: {exc}")
        div = Fraction(h * w) if out_vector else Fraction(1)
        self.values[n.output[0]] = _Pending(name, lambda rq: GlobalPool(requant=rq, **kw), probe,
                                            [s / div for s in x.scale], [Fraction(0)] * c)

    def op_GlobalAveragePool(self, n):
        self.global_pool(n, True)

    def reduce_axes(self, n) -> list[int] | None:
        axes = self.attr("axes")
        if axes is None and len(n.input) > 1 and n.input[1]:
            axes = np.asarray(self.const(n.input[1], "axes")).reshape(-1).tolist()
        if axes is None:
            return None
        return sorted(int(a) % 4 for a in axes)

    def op_ReduceMean(self, n):
        if self.reduce_axes(n) != [2, 3]:
            self.fail(f"only the mean over H and W (axes 2, 3) is supported, not axes {self.reduce_axes(n)}")
        self.global_pool(n, True)

    def op_ReduceSum(self, n):
        if self.reduce_axes(n) != [2, 3]:
            self.fail(f"only the sum over H and W (axes 2, 3) is supported, not axes {self.reduce_axes(n)}")
        self.global_pool(n, False)

    def op_AveragePool(self, n):
        x = self.grid(n.input[0])
        kernel = tuple(self.attr("kernel_shape"))
        pads = list(self.attr("pads", [0, 0, 0, 0]))
        if not x.spec.is_map or kernel != tuple(x.spec.shape[1:]) or any(pads) or int(self.attr("ceil_mode", 0)):
            self.fail(f"only an average pool over the whole map is supported (kernel {list(kernel)}, "
                      f"map {list(x.spec.shape[1:])}, pads {pads})")
        self.global_pool(n, True)

    def reshape_like_flatten(self, n, target: list[int] | None):
        x = self.value(n.input[0])
        if isinstance(x, (_QWeight, _Const)):
            self.fail("reshaping a constant is not supported (constant folding should have removed this)")
        if isinstance(x, _Float):
            self.fail("the graph input is reshaped before its quantizer")
        shape = x.spec.shape if isinstance(x, _Grid) else x.probe.out.shape
        total = int(np.prod(shape))
        if target is not None:  # target[0] is the batch; the rest must flatten, or add / drop 1x1
            rest = [total if d == -1 else d for d in target[1:]]
            flatten = len(rest) == 1 and rest[0] == total
            squeeze = [d for d in rest if d != 1] == [shape[0]] and (len(shape) == 1 or shape[1:] == (1, 1))
            if not (flatten or squeeze):
                self.fail(f"a reshape to {target} is not a flatten of the {list(shape)} tensor")
        if isinstance(x, _Pending):
            if len(shape) == 1:
                self.values[n.output[0]] = x  # (N, C, 1, 1) <-> (N, C): nothing to do
                return
            x = self.grid(n.input[0])
        self.values[n.output[0]] = _Grid(x.layer, x.spec, x.scale, flat=x.spec.is_map)

    def op_Flatten(self, n):
        if int(self.attr("axis", 1)) != 1:
            self.fail(f"only Flatten with axis 1 is supported, not axis {self.attr('axis')}")
        self.reshape_like_flatten(n, None)

    def op_Reshape(self, n):
        target = np.asarray(self.const(n.input[1], "shape")).reshape(-1).astype(np.int64).tolist()
        self.reshape_like_flatten(n, target)

    def op_Identity(self, n):
        self.values[n.output[0]] = self.value(n.input[0])

    op_Dropout = op_Identity

    # .. the network ............................................................................

    def output_layer(self, tensor: str) -> str:
        v = self.value(tensor)
        if isinstance(v, _Pending):
            if v.clipped or v.pools:
                self.fail("the graph output is an activation without a quantizer; end with the logits "
                          "(a Gemm / MatMul / Conv and constants) or a Quant")
            if len(v.probe.out.shape) == 3 and v.probe.out.shape[1:] != (1, 1):
                self.fail(f"the graph output is a {list(v.probe.out.shape)} map, not logits")
            uniform = v.exact_grid and len(set(v.a)) == 1
            if len(v.probe.out.shape) == 3:  # logits of a conv on a flattened map: a 1x1 map
                name, spec = self.finish(v, None)
                gap_kw = dict(name=self.layer_name(name + ".vector"), input=name, in_spec=spec)
                lo, hi = np.full(spec.channels, spec.lo), np.full(spec.channels, spec.hi)
                rq = None if uniform else self.logits(v, lo, hi)
                return self.add_layer(GlobalPool(requant=rq, **gap_kw)).name
            rq = None if uniform else self.logits(v, v.probe.acc_lo, v.probe.acc_hi)
            return self.finish(v, rq)[0]
        if isinstance(v, _Grid):
            if len(set(v.scale)) != 1:  # argmax of s_c·v_c: needs one scale
                return self.output_layer_of(self.lift(v))
            if v.spec.is_map:
                if v.spec.shape[1:] != (1, 1):
                    self.fail(f"the graph output is a {list(v.spec.shape)} map, not logits")
                return self.add_layer(GlobalPool(name=self.layer_name(v.layer + ".vector"), input=v.layer,
                                                 in_spec=v.spec)).name
            return v.layer
        self.fail("the graph output is not computed from the input")

    def output_layer_of(self, p: _Pending) -> str:
        return self.finish(p, self.logits(p, p.probe.acc_lo, p.probe.acc_hi))[0]

    def logits(self, p: _Pending, acc_lo, acc_hi):
        a = np.array([float(x) for x in p.a])
        b = np.array([float(x) for x in p.b])
        try:
            return logit_requant(a, b, acc_lo, acc_hi, frac_bits=LOGIT_FRAC_BITS)
        except ValueError as exc:
            self.fail(f"cannot build the integer logits: {exc}")

    def run(self) -> Imported:
        graph = self.model.graph
        inputs = [i.name for i in graph.input if self.model.get_initializer(i.name) is None]
        if len(inputs) != 1:
            raise InputError(f"the graph must have one input (the image), not {len(inputs)}: {inputs}")
        if len(graph.output) != 1:
            raise InputError(f"the graph must have one output (the logits), not {len(graph.output)}")
        self.input_tensor = inputs[0]
        self.values[self.input_tensor] = _Float()
        for node in graph.node:
            self.node = node
            op = getattr(self, f"op_{node.op_type}", None)
            if op is None or (node.domain not in ("", "ai.onnx", "qonnx.custom_op.general")):
                self.fail(f"unsupported op; qhw imports {', '.join(supported_ops())}")
            op(node)
        if not any(isinstance(l, Input) for l in self.layers):
            raise InputError("the graph input is never quantized: qhw needs a Quant node on the input image")
        out = graph.output[0].name
        self.node = next((n for n in graph.node if out in n.output), graph.node[-1])
        output = self.output_layer(out)
        layers = [l for l in self.layers if l is not None]
        used = {l.name for l in layers}
        shared = tuple(s for s in self.shared if s.layer in used)
        try:
            net = Network(layers=tuple(layers), output=output)
        except (TypeError, ValueError) as exc:
            raise InputError(f"the imported network is inconsistent: {exc}") from None
        return Imported(net=net, input_tensor=self.input_tensor, output_tensor=out, shared=shared)


def supported_ops() -> tuple[str, ...]:
    """The ONNX / QONNX op types the importer maps (one method ``op_<type>`` each)."""
    return tuple(sorted(n[3:] for n in dir(_Importer) if n.startswith("op_")))


def import_model(model, *, with_mul_shift: bool = True) -> Imported:
    """Streamline a cleaned QONNX ModelWrapper (:func:`qhw.ir.qonnx.load.load_model`) into the IR."""
    return _Importer(model, with_mul_shift).run()

"""Integer network description: layers, tensor specs, the network.

A :class:`Network` is a topologically ordered tuple of layers. Every layer has
a unique ``name``, the names of the layers it reads (``inputs``), the
:class:`TensorSpec` of each input (``in_specs``, checked against the producer)
and of its output (``out``). All arithmetic is on integers; see
:mod:`qhw.ir.intmath` for the encodings and ``docs/IR_FORMAT.md`` for the
exact semantics of each layer kind.

Layer kinds
-----------
``input``  :class:`Input`      network input: image codes
``conv``   :class:`Conv`       2-D convolution, integer weights, one requantizer
``dense``  :class:`Dense`      fully connected (a 1x1 conv on a vector)
``add``    :class:`Add`        integer-weighted sum of branches, one requantizer
``gap``    :class:`GlobalPool` global average pool as an integer sum (1/HW folded downstream)

Tensors hold *values*: an ``unsigned`` code is its own value, a ``bipolar``
code ``n`` is ``2n - 1``, a ``signed`` tensor holds the integer itself.
Weights are exposed as values (:attr:`Conv.weights`, int64) and as the raw bit
patterns stored in ROM (:attr:`Conv.weight_raw`).

Every constructor checks its arguments at once and raises ``TypeError`` or
``ValueError`` naming the parameter; :class:`Network` raises ``ValueError``
naming the layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import numpy as np

from qhw.ir import intmath
from qhw.ir.intmath import ActCode, WeightCode
from qhw.ir.requant import MulShift, Thresholds, int_array

Requant = Union[Thresholds, MulShift, None]


class PEKind(str, enum.Enum):
    """Which processing element computes the dot products of a layer."""

    MAC = "mac"      # integer multiply-accumulate (odd/int/binary weights, unsigned or signed inputs)
    XNOR = "xnor"    # ±1 weights and ±1 inputs: 2·popcount(xnor(w, x)) - n
    SHIFT = "shift"  # power-of-two weights: sign and shift, then add


def pe_kind(weight_code: WeightCode | str, in_code: ActCode | str) -> PEKind:
    w, a = WeightCode(weight_code), ActCode(in_code)
    if w is WeightCode.BINARY and a is ActCode.BIPOLAR:
        return PEKind.XNOR
    if w is WeightCode.POW2:
        return PEKind.SHIFT
    return PEKind.MAC


def _check_name(param: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not value.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{param} must be a non-empty name of letters, digits, '_' and '.', not {value!r}")
    return value


def _pos_int(param: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{param} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{param} must be at least {lo}, not {value}")
    return int(value)


def _pair(param: str, value: Any, lo: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{param} must be an integer or a pair of integers, not {value!r}")
    return _pos_int(param, value[0], lo), _pos_int(param, value[1], lo)


@dataclass(frozen=True)
class TensorSpec:
    """Shape and encoding of a tensor (without batch dimension).

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` feature map or ``(C,)`` vector.
    code : ActCode
        ``unsigned``, ``bipolar`` or ``signed``.
    bits : int
        Width of one element.
    lo, hi : int, optional
        Exact value range (default: the whole range of the encoding).
    """

    shape: tuple[int, ...]
    code: ActCode
    bits: int
    lo: int | None = None
    hi: int | None = None

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if shape is None or len(shape) not in (1, 3):
            raise ValueError(f"shape must be (C, H, W) or (C,), not {self.shape!r}")
        object.__setattr__(self, "shape", tuple(_pos_int("shape", d) for d in shape))
        object.__setattr__(self, "code", ActCode(self.code))
        vlo, vhi = intmath.act_value_range(self.code, self.bits)
        object.__setattr__(self, "bits", int(self.bits))
        lo = vlo if self.lo is None else self.lo
        hi = vhi if self.hi is None else self.hi
        for nm, v in (("lo", lo), ("hi", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{nm} must be an integer, not {v!r}")
        if not vlo <= lo <= hi <= vhi:
            raise ValueError(f"value range [{lo}, {hi}] is not within [{vlo}, {vhi}] of {self.bits}-bit {self.code.value}")
        object.__setattr__(self, "lo", int(lo))
        object.__setattr__(self, "hi", int(hi))

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "code": self.code.value, "bits": self.bits, "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(shape=tuple(d["shape"]), code=d["code"], bits=d["bits"], lo=d["lo"], hi=d["hi"])


def _requant_out(requant: Requant, shape: tuple[int, ...], acc_lo: np.ndarray, acc_hi: np.ndarray) -> TensorSpec:
    """Output spec of a requantizer (or of the raw accumulator when ``requant`` is None)."""
    if requant is None:
        lo, hi = int(acc_lo.min()), int(acc_hi.max())
        return TensorSpec(shape, ActCode.SIGNED, intmath.signed_width(lo, hi), lo, hi)
    if not isinstance(requant, (Thresholds, MulShift)):
        raise TypeError(f"requant must be Thresholds, MulShift or None, not {requant!r}")
    if requant.channels != shape[0]:
        raise ValueError(f"requant has {requant.channels} channels, the layer has {shape[0]}")
    requant.check_range(acc_lo, acc_hi)
    lo, hi = requant.value_range
    return TensorSpec(shape, requant.out_code, requant.out_bits, int(lo), int(hi))


class Layer:
    """Common interface: ``name``, ``kind``, ``inputs``, ``in_specs``, ``out``."""

    kind: str = ""
    name: str
    inputs: tuple[str, ...]
    in_specs: tuple[TensorSpec, ...]
    out: TensorSpec


@dataclass(frozen=True, eq=False)
class Input(Layer):
    """The network input.

    Parameters
    ----------
    name : str
    shape : (C, H, W)
    code : ActCode, bits : int
        Encoding of the input codes (image pixels: ``unsigned`` 8-bit).
    scale : float, optional
        Informational: the real value of a code is ``code · scale``. Front
        ends use it to turn images into codes; no integer path reads it.
    """

    name: str
    shape: tuple[int, int, int]
    code: ActCode = ActCode.UNSIGNED
    bits: int = 8
    scale: float | None = None

    kind = "input"

    def __post_init__(self):
        _check_name("name", self.name)
        spec = TensorSpec(tuple(self.shape), self.code, self.bits)
        if not spec.is_map:
            raise ValueError(f"shape must be (C, H, W), not {self.shape!r}")
        if self.scale is not None and not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise ValueError(f"scale must be a positive number or None, not {self.scale!r}")
        object.__setattr__(self, "shape", spec.shape)
        object.__setattr__(self, "code", spec.code)
        object.__setattr__(self, "_out", spec)

    inputs = ()
    in_specs = ()

    @property
    def out(self) -> TensorSpec:
        return self._out


class _WeightLayer(Layer):
    """Shared by :class:`Conv` and :class:`Dense`: integer weights and a requantizer."""

    def _init_weights(self, weights, in_features: int) -> None:
        code = WeightCode(self.weight_code)
        object.__setattr__(self, "weight_code", code)
        intmath.weight_value_range(code, self.weight_bits)
        w = np.asarray(weights)
        if w.dtype.kind not in "iu":
            if w.dtype.kind == "f" and w.size and np.all(w == np.round(w)):
                w = w.astype(np.int64)
            else:
                raise TypeError(f"weights must be integers, not {w.dtype}")
        w = w.astype(np.int64).reshape(w.shape[0], -1) if w.ndim >= 1 else w
        if w.ndim != 2 or w.shape != (self.out_channels, in_features):
            raise ValueError(
                f"weights must have shape ({self.out_channels}, {in_features}) after flattening, not {np.shape(weights)}"
            )
        raw = intmath.encode_weights(code, self.weight_bits, w)  # rejects unrepresentable values
        w.setflags(write=False)
        raw = raw.astype(np.int64)
        raw.setflags(write=False)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "weight_raw", raw)

    def _init_acc(self, padded: bool) -> None:
        spec = self.in_specs[0]
        lo, hi = spec.lo, spec.hi
        if padded:  # padding contributes the value 0
            lo, hi = min(lo, 0), max(hi, 0)
        acc_lo, acc_hi = intmath.accumulator_bounds(self.weights, lo, hi)
        acc_lo.setflags(write=False)
        acc_hi.setflags(write=False)
        object.__setattr__(self, "acc_lo", acc_lo)
        object.__setattr__(self, "acc_hi", acc_hi)
        if intmath.signed_width(int(acc_lo.min()), int(acc_hi.max())) > intmath.MAX_SIGNED_BITS:
            raise ValueError(f"accumulator range [{int(acc_lo.min())}, {int(acc_hi.max())}] exceeds 63 bits")

    @property
    def pe(self) -> PEKind:
        return pe_kind(self.weight_code, self.in_specs[0].code)

    @property
    def acc_bits(self) -> int:
        """Two's complement width holding every accumulator value of every channel."""
        return intmath.signed_width(int(self.acc_lo.min()), int(self.acc_hi.max()))

    @property
    def in_features(self) -> int:
        return self.weights.shape[1]


@dataclass(frozen=True, eq=False)
class Conv(_WeightLayer):
    """2-D convolution (cross-correlation as in PyTorch), groups = 1.

    Parameters
    ----------
    name : str
    input : str
        Producer layer name.
    in_spec : TensorSpec
        ``(C_in, H, W)`` input; padding positions contribute the value 0.
    out_channels : int
    kernel, stride, padding : int or (int, int)
    weight_code : WeightCode, weight_bits : int
    weights : int array ``(C_out, C_in, kh, kw)`` or ``(C_out, C_in·kh·kw)``
        Integer weight *values*; flattened in (c_in, ky, kx) order, i.e. the
        row of the im2col matrix: column ``(ci·kh + ky)·kw + kx``.
    requant : Thresholds, MulShift or None
        None outputs the raw accumulator (``signed``).

    Attributes
    ----------
    weights, weight_raw : int64 (C_out, C_in·kh·kw)
    acc_lo, acc_hi : int64 (C_out,)
        Exact accumulator range (:func:`intmath.accumulator_bounds`).
    acc_bits, pe, out
    """

    name: str
    input: str
    in_spec: TensorSpec
    out_channels: int
    kernel: tuple[int, int]
    weight_code: WeightCode
    weight_bits: int
    weights: np.ndarray
    requant: Requant = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    kind = "conv"

    def __post_init__(self):
        _check_name("name", self.name)
        _check_name("input", self.input)
        if not isinstance(self.in_spec, TensorSpec) or not self.in_spec.is_map:
            raise TypeError(f"in_spec must be a (C, H, W) TensorSpec, not {self.in_spec!r}")
        object.__setattr__(self, "out_channels", _pos_int("out_channels", self.out_channels))
        object.__setattr__(self, "kernel", _pair("kernel", self.kernel, 1))
        object.__setattr__(self, "stride", _pair("stride", self.stride, 1))
        object.__setattr__(self, "padding", _pair("padding", self.padding, 0))
        c, h, w = self.in_spec.shape
        kh, kw = self.kernel
        oh = (h + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"kernel {self.kernel} does not fit the {h}x{w} input with padding {self.padding}")
        self._init_weights(self.weights, c * kh * kw)
        self._init_acc(padded=self.padding != (0, 0))
        out = _requant_out(self.requant, (self.out_channels, oh, ow), self.acc_lo, self.acc_hi)
        object.__setattr__(self, "out", out)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def in_specs(self) -> tuple[TensorSpec, ...]:
        return (self.in_spec,)

    @property
    def in_channels(self) -> int:
        return self.in_spec.shape[0]

    @property
    def weights_4d(self) -> np.ndarray:
        return self.weights.reshape(self.out_channels, self.in_channels, *self.kernel)


@dataclass(frozen=True, eq=False)
class Dense(_WeightLayer):
    """Fully connected layer on a ``(C,)`` vector; im2col view: 1x1 kernel.

    Parameters are those of :class:`Conv` without kernel/stride/padding;
    ``weights`` is ``(C_out, C_in)``.
    """

    name: str
    input: str
    in_spec: TensorSpec
    out_channels: int
    weight_code: WeightCode
    weight_bits: int
    weights: np.ndarray
    requant: Requant = None

    kind = "dense"
    kernel = (1, 1)
    stride = (1, 1)
    padding = (0, 0)

    def __post_init__(self):
        _check_name("name", self.name)
        _check_name("input", self.input)
        if not isinstance(self.in_spec, TensorSpec) or self.in_spec.is_map:
            raise TypeError(f"in_spec must be a (C,) TensorSpec, not {self.in_spec!r}")
        object.__setattr__(self, "out_channels", _pos_int("out_channels", self.out_channels))
        self._init_weights(self.weights, self.in_spec.shape[0])
        self._init_acc(padded=False)
        out = _requant_out(self.requant, (self.out_channels,), self.acc_lo, self.acc_hi)
        object.__setattr__(self, "out", out)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def in_specs(self) -> tuple[TensorSpec, ...]:
        return (self.in_spec,)

    @property
    def in_channels(self) -> int:
        return self.in_spec.shape[0]


@dataclass(frozen=True, eq=False)
class Add(Layer):
    """Integer-weighted sum of branches, then one requantizer.

    ``z_c = sum_i coeffs[i, c] · x_i[c]`` over inputs of equal shape; ``z``
    plays the role of the accumulator (``acc_lo``/``acc_hi`` exact). This is
    the residual add: the branches have different real scales, and the
    exporter turns the ratio of those scales into the integer ``coeffs``
    (see :func:`qhw.ir.requant.integer_coefficients`).

    Parameters
    ----------
    name : str
    inputs : tuple of str
    in_specs : tuple of TensorSpec
    coeffs : int array (len(inputs), C)
    requant : Thresholds, MulShift or None
    """

    name: str
    inputs: tuple[str, ...]
    in_specs: tuple[TensorSpec, ...]
    coeffs: np.ndarray
    requant: Requant = None

    kind = "add"

    def __post_init__(self):
        _check_name("name", self.name)
        if not isinstance(self.inputs, (tuple, list)) or len(self.inputs) < 2:
            raise ValueError(f"inputs must name at least two layers, not {self.inputs!r}")
        object.__setattr__(self, "inputs", tuple(_check_name("inputs", n) for n in self.inputs))
        specs = tuple(self.in_specs) if isinstance(self.in_specs, (tuple, list)) else ()
        if len(specs) != len(self.inputs) or not all(isinstance(s, TensorSpec) for s in specs):
            raise TypeError("in_specs must be one TensorSpec per input")
        if len({s.shape for s in specs}) != 1:
            raise ValueError(f"in_specs must all have the same shape, not {[s.shape for s in specs]}")
        object.__setattr__(self, "in_specs", specs)
        coeffs = int_array("coeffs", self.coeffs, 2)
        if coeffs.shape != (len(specs), specs[0].channels):
            raise ValueError(f"coeffs must have shape ({len(specs)}, {specs[0].channels}), not {coeffs.shape}")
        object.__setattr__(self, "coeffs", coeffs)
        lo = np.zeros(coeffs.shape[1], dtype=np.int64)
        hi = np.zeros(coeffs.shape[1], dtype=np.int64)
        for p, s in zip(coeffs, specs):
            lo += np.minimum(p * s.lo, p * s.hi)
            hi += np.maximum(p * s.lo, p * s.hi)
        for arr in (lo, hi):
            arr.setflags(write=False)
        object.__setattr__(self, "acc_lo", lo)
        object.__setattr__(self, "acc_hi", hi)
        object.__setattr__(self, "out", _requant_out(self.requant, specs[0].shape, lo, hi))

    @property
    def acc_bits(self) -> int:
        return intmath.signed_width(int(self.acc_lo.min()), int(self.acc_hi.max()))


@dataclass(frozen=True, eq=False)
class GlobalPool(Layer):
    """Global average pool as an integer sum over H·W, optionally requantized.

    The output is ``sum_{h,w} x[c, h, w]`` (no division): the 1/(H·W) is
    folded into the requantizer given here or into the consumer's
    requantizer. With ``requant=None`` the output is the sum itself
    (``unsigned`` when non-negative and at most 16 bits, else ``signed``).
    """

    name: str
    input: str
    in_spec: TensorSpec
    requant: Requant = None

    kind = "gap"

    def __post_init__(self):
        _check_name("name", self.name)
        _check_name("input", self.input)
        if not isinstance(self.in_spec, TensorSpec) or not self.in_spec.is_map:
            raise TypeError(f"in_spec must be a (C, H, W) TensorSpec, not {self.in_spec!r}")
        c, h, w = self.in_spec.shape
        lo = np.full(c, self.in_spec.lo * h * w, dtype=np.int64)
        hi = np.full(c, self.in_spec.hi * h * w, dtype=np.int64)
        for arr in (lo, hi):
            arr.setflags(write=False)
        object.__setattr__(self, "acc_lo", lo)
        object.__setattr__(self, "acc_hi", hi)
        if self.requant is None and int(lo.min()) >= 0 and intmath.unsigned_width(int(hi.max())) <= intmath.MAX_BITS:
            bits = intmath.unsigned_width(int(hi.max()))
            out = TensorSpec((c,), ActCode.UNSIGNED, bits, int(lo.min()), int(hi.max()))
        else:
            out = _requant_out(self.requant, (c,), lo, hi)
        object.__setattr__(self, "out", out)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def in_specs(self) -> tuple[TensorSpec, ...]:
        return (self.in_spec,)

    @property
    def window(self) -> int:
        return self.in_spec.shape[1] * self.in_spec.shape[2]

    @property
    def acc_bits(self) -> int:
        return intmath.signed_width(int(self.acc_lo.min()), int(self.acc_hi.max()))


LAYER_KINDS: dict[str, type] = {cls.kind: cls for cls in (Input, Conv, Dense, Add, GlobalPool)}


@dataclass(frozen=True, eq=False)
class Network:
    """Topologically ordered integer network.

    Parameters
    ----------
    layers : sequence of layers
        The first is the :class:`Input`; every other layer reads only
        layers listed before it, and its ``in_specs`` equal their ``out``.
    output : str, optional
        Name of the layer whose output is the network output (the logits);
        default the last layer.
    meta : dict, optional
        JSON-serializable provenance (source checkpoint, quant config, ...).
    """

    layers: tuple[Layer, ...]
    output: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        layers = tuple(self.layers) if isinstance(self.layers, (tuple, list)) else None
        if not layers:
            raise ValueError("layers must be a non-empty sequence")
        if not isinstance(layers[0], Input):
            raise ValueError(f"the first layer must be an Input, not {type(layers[0]).__name__}")
        seen: dict[str, Layer] = {}
        for layer in layers:
            if not isinstance(layer, Layer) or type(layer) not in LAYER_KINDS.values():
                raise TypeError(f"unknown layer type {type(layer).__name__}")
            if layer.name in seen:
                raise ValueError(f"layer name {layer.name!r} is used twice")
            if isinstance(layer, Input) and layer is not layers[0]:
                raise ValueError(f"layer {layer.name!r}: only the first layer may be an Input")
            for src, spec in zip(layer.inputs, layer.in_specs):
                if src not in seen:
                    raise ValueError(f"layer {layer.name!r} reads {src!r}, which is not an earlier layer")
                if seen[src].out != spec:
                    raise ValueError(
                        f"layer {layer.name!r} expects {src!r} as {spec.to_dict()}, "
                        f"but {src!r} produces {seen[src].out.to_dict()}"
                    )
            seen[layer.name] = layer
        output = layers[-1].name if self.output is None else self.output
        if output not in seen:
            raise ValueError(f"output {output!r} is not a layer of the network")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "_by_name", seen)
        if not isinstance(self.meta, dict):
            raise TypeError("meta must be a dict")

    def __getitem__(self, name: str) -> Layer:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def input(self) -> Input:
        return self.layers[0]

    def consumers(self, name: str) -> list[Layer]:
        return [l for l in self.layers if name in l.inputs]

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer, for tables and ``--json``."""
        rows = []
        for l in self.layers:
            row: dict[str, Any] = {"name": l.name, "kind": l.kind, "inputs": ",".join(l.inputs),
                                   "out": f"{'x'.join(map(str, l.out.shape))} {l.out.code.value}:{l.out.bits}"}
            if isinstance(l, (Conv, Dense)):
                row.update(pe=l.pe.value, weights=f"{l.weight_code.value}:{l.weight_bits}", acc_bits=l.acc_bits)
            elif isinstance(l, (Add, GlobalPool)):
                row.update(acc_bits=l.acc_bits)
            rq = getattr(l, "requant", None)
            row["requant"] = "none" if rq is None else rq.kind + (
                "+mul_shift" if isinstance(rq, Thresholds) and rq.mul_shift is not None else "")
            rows.append(row)
        return rows

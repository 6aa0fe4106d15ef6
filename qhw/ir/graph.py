"""Integer network description: layers, tensor specs, the network.

A :class:`Network` is a topologically ordered tuple of layers. Every layer has
a unique ``name``, the names of the layers it reads (``inputs``), the
:class:`TensorSpec` of each input (``in_specs``, checked against the producer)
and of its output (``out``). All arithmetic is on integers; see
:mod:`qhw.ir.intmath` for the encodings and ``docs/IR_FORMAT.md`` for the
exact semantics of each layer kind.

Layer kinds
-----------
``input``    :class:`Input`      network input: image codes
``conv``     :class:`Conv`       2-D convolution, integer weights, one requantizer
``dense``    :class:`Dense`      fully connected (a 1x1 conv on a vector)
``add``      :class:`Add`        integer-weighted sum of branches, one requantizer
``gap``      :class:`GlobalPool` global average pool as an integer sum (1/HW folded downstream)
``maxpool``  :class:`MaxPool`    window maximum; padded taps are left out (never the maximum)

Tensors hold *values*: an ``unsigned`` code is its own value, a ``bipolar``
code ``n`` is ``2n - 1``, a ``signed`` tensor holds the integer itself.
Weights are exposed as values (:attr:`Conv.weights`, int64) and as the raw bit
patterns stored in ROM (:attr:`Conv.weight_raw`).

Every constructor checks its arguments at once and raises ``TypeError`` or
``ValueError`` naming the parameter; :class:`Network` raises ``ValueError``
naming the layer.

Padding patterns
----------------
:func:`padding_patterns` says, for a windowed layer (conv, maxpool), which
kernel taps of each output position fall inside the input map. Along one
axis an output index ``o`` reads input rows ``o·s − p + k`` for ``k`` in
``0..kh−1``; the in-map ones form a contiguous range, and output indices with
the same range share a *class*. A position's pattern is (row class, column
class), so there are at most (2p+1) classes per axis (fewer on small maps) and
the product of the two counts in all. Accumulator bounds are exact per
pattern (padded taps contribute exactly 0); the hardware uses the same
classes for position-dependent corrections (e.g. bipolar padding, where the
stream carries code 0 = −1 on padded taps).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import numpy as np

from qhw.ir import intmath
# PEKind / pe_kind live in intmath (one definition, shared with qhw.hw.pe.spec); re-exported here.
from qhw.ir.intmath import ActCode, PEKind, WeightCode, check_int_array, check_positive, pe_kind
from qhw.ir.requant import INT64_SAFE_BITS, MulShift, Thresholds

Requant = Union[Thresholds, MulShift, None]


def _check_name(param: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not value.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{param} must be a non-empty name of letters, digits, '_' and '.', not {value!r}")
    return value


def _pair(param: str, value: Any, lo: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{param} must be an integer or a pair of integers, not {value!r}")
    return check_positive(param, value[0], minimum=lo), check_positive(param, value[1], minimum=lo)


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
        object.__setattr__(self, "shape", tuple(check_positive("shape", d) for d in shape))
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


@dataclass(frozen=True)
class PaddingPatterns:
    """Which kernel taps of each output position lie inside the input map.

    Built by :func:`padding_patterns`. Classes are numbered in order of first
    appearance (output row 0 / column 0 first), so the numbering is
    deterministic.

    Attributes
    ----------
    row_class : tuple of int, length OH
        Class of each output row.
    col_class : tuple of int, length OW
        Class of each output column.
    row_taps : tuple of tuple of int
        Per row class, the kernel rows ``ky`` that read the map (ascending;
        empty when every tap of that row is padding).
    col_taps : tuple of tuple of int
        Per column class, the kernel columns ``kx`` that read the map.
    kernel : (kh, kw)
    """

    row_class: tuple[int, ...]
    col_class: tuple[int, ...]
    row_taps: tuple[tuple[int, ...], ...]
    col_taps: tuple[tuple[int, ...], ...]
    kernel: tuple[int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        return len(self.row_class), len(self.col_class)

    @property
    def n_row_classes(self) -> int:
        return len(self.row_taps)

    @property
    def n_col_classes(self) -> int:
        return len(self.col_taps)

    def pairs(self) -> Iterator[tuple[int, int]]:
        """Every (row class, column class); each one occurs at some output position."""
        return itertools.product(range(self.n_row_classes), range(self.n_col_classes))

    def taps(self, r: int, c: int) -> tuple[tuple[int, int], ...]:
        """In-map taps ``(ky, kx)`` of pattern (r, c), row-major."""
        return tuple((ky, kx) for ky in self.row_taps[r] for kx in self.col_taps[c])

    def mask(self, r: int, c: int) -> np.ndarray:
        """bool ``(kh, kw)``: True where the tap of pattern (r, c) reads the map."""
        m = np.zeros(self.kernel, dtype=bool)
        m[np.ix_(list(self.row_taps[r]), list(self.col_taps[c]))] = True
        return m

    def columns(self, r: int, c: int, in_channels: int) -> np.ndarray:
        """bool ``(in_channels·kh·kw,)``: the real im2col columns ``(ci·kh + ky)·kw + kx`` of pattern (r, c)."""
        return np.tile(self.mask(r, c).reshape(-1), check_positive("in_channels", in_channels))

    def position(self, oy: int, ox: int) -> tuple[int, int]:
        """Pattern (row class, column class) of output position (oy, ox)."""
        return self.row_class[oy], self.col_class[ox]


def _axis_classes(size: int, k: int, s: int, p: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    out = (size + 2 * p - k) // s + 1
    taps = [tuple(t for t in range(k) if 0 <= o * s - p + t < size) for o in range(out)]
    order: dict[tuple[int, ...], int] = {}
    for t in taps:
        order.setdefault(t, len(order))
    return tuple(order[t] for t in taps), tuple(order)


def padding_patterns(in_hw, kernel, stride, padding) -> PaddingPatterns:
    """The padding patterns of a windowed layer (see the module docstring).

    Parameters
    ----------
    in_hw : (H, W)
        Input map size.
    kernel, stride, padding : int or (int, int)
        As for :class:`Conv`; the output is ``floor((H + 2p − k)/s) + 1``
        along each axis and must be at least 1.

    Returns
    -------
    PaddingPatterns
        Per output row and column a class id; per class the in-map taps.
    """
    h, w = _pair("in_hw", in_hw, 1)
    (kh, kw), (sh, sw), (ph, pw) = _pair("kernel", kernel, 1), _pair("stride", stride, 1), _pair("padding", padding, 0)
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"kernel {(kh, kw)} does not fit the {h}x{w} input with padding {(ph, pw)}")
    rc, rt = _axis_classes(h, kh, sh, ph)
    cc, ct = _axis_classes(w, kw, sw, pw)
    return PaddingPatterns(row_class=rc, col_class=cc, row_taps=rt, col_taps=ct, kernel=(kh, kw))


def raw_spec(shape: tuple[int, ...], lo: int, hi: int) -> TensorSpec:
    """Spec of a value passed on without requantization (``requant: null``), one rule for every kind.

    ``unsigned`` with ``unsigned_width(hi)`` bits when ``lo >= 0`` and that is at
    most 16 bits, else ``signed`` with ``signed_width(lo, hi)`` bits; ``lo``/``hi``
    are kept as the exact range.
    """
    lo, hi = int(lo), int(hi)
    if lo >= 0 and intmath.unsigned_width(hi) <= intmath.MAX_BITS:
        return TensorSpec(shape, ActCode.UNSIGNED, intmath.unsigned_width(hi), lo, hi)
    return TensorSpec(shape, ActCode.SIGNED, intmath.signed_width(lo, hi), lo, hi)


def threshold_clip_range(acc_lo, acc_hi, sign) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``[min(sign·acc), max(sign·acc) + 1]``: where every stored threshold must lie.

    Outside it a threshold is always or never met (:func:`intmath.clamp_thresholds`
    clips into it without changing any output), so a comparator is at most one
    bit wider than the accumulator.
    """
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    s = np.asarray(sign, dtype=np.int64)
    return np.where(s > 0, lo, -hi), np.where(s > 0, hi, -lo) + 1


def _requant_out(requant: Requant, shape: tuple[int, ...], acc_lo: np.ndarray, acc_hi: np.ndarray) -> TensorSpec:
    """Output spec of a requantizer (or of the raw accumulator when ``requant`` is None)."""
    if requant is None:
        return raw_spec(shape, int(acc_lo.min()), int(acc_hi.max()))
    if not isinstance(requant, (Thresholds, MulShift)):
        raise TypeError(f"requant must be Thresholds, MulShift or None, not {requant!r}")
    if requant.channels != shape[0]:
        raise ValueError(f"requant has {requant.channels} channels, the layer has {shape[0]}")
    if isinstance(requant, Thresholds):
        tlo, thi = threshold_clip_range(acc_lo, acc_hi, requant.sign)
        t = requant.thresholds
        bad = np.flatnonzero(np.any((t < tlo[:, None]) | (t > thi[:, None]), axis=1))
        if bad.size:
            c = int(bad[0])
            raise ValueError(
                f"thresholds of channel(s) {bad[:8].tolist()} lie outside the clip range "
                f"[min(sign·acc), max(sign·acc) + 1] (channel {c}: [{int(t[c].min())}, {int(t[c].max())}] "
                f"not within [{int(tlo[c])}, {int(thi[c])}]); clip them with intmath.clamp_thresholds"
            )
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
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, (int, float))
                                       or not (math.isfinite(self.scale) and self.scale > 0)):
            raise ValueError(f"scale must be a finite positive number or None, not {self.scale!r}")
        object.__setattr__(self, "shape", spec.shape)
        object.__setattr__(self, "code", spec.code)
        object.__setattr__(self, "_out", spec)

    inputs = ()
    in_specs = ()

    @property
    def out(self) -> TensorSpec:
        return self._out


class _OneInput(Layer):
    """A layer that reads one producer, ``input``, described by ``in_spec``."""

    input: str
    in_spec: TensorSpec

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,)

    @property
    def in_specs(self) -> tuple[TensorSpec, ...]:
        return (self.in_spec,)



class _WeightLayer(_OneInput):
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

    def _init_acc(self, patterns: "PaddingPatterns | None") -> None:
        """Exact per-channel accumulator range: the union over padding patterns.

        A position of pattern (r, c) sums its real taps only (a padded tap adds
        exactly 0), each ranging independently over the input's [lo, hi], so
        :func:`intmath.accumulator_bounds` on those columns is attained there;
        the union over the patterns that occur is the layer's exact range.
        """
        spec = self.in_specs[0]
        if patterns is None:
            acc_lo, acc_hi = intmath.accumulator_bounds(self.weights, spec.lo, spec.hi)
        else:
            acc_lo = acc_hi = None
            for r, c in patterns.pairs():
                cols = patterns.columns(r, c, spec.channels)
                lo, hi = intmath.accumulator_bounds(self.weights[:, cols], spec.lo, spec.hi)
                acc_lo = lo if acc_lo is None else np.minimum(acc_lo, lo)
                acc_hi = hi if acc_hi is None else np.maximum(acc_hi, hi)
        acc_lo.setflags(write=False)
        acc_hi.setflags(write=False)
        object.__setattr__(self, "acc_lo", acc_lo)
        object.__setattr__(self, "acc_hi", acc_hi)
        if intmath.signed_width(int(acc_lo.min()), int(acc_hi.max())) > intmath.MAX_SIGNED_BITS:
            raise ValueError(f"accumulator range [{int(acc_lo.min())}, {int(acc_hi.max())}] exceeds 63 bits")

    @property
    def pe(self) -> PEKind:
        """The PE kind of the layer: :func:`intmath.pe_kind`, as :attr:`qhw.hw.pe.spec.PESpec.kind` (one rule)."""
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
        Exact accumulator range: the union over :attr:`patterns` of
        :func:`intmath.accumulator_bounds` on each pattern's real taps
        (padded taps contribute 0), attained by some input.
    patterns : PaddingPatterns
        Which taps of each output position read the map.
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
        object.__setattr__(self, "out_channels", check_positive("out_channels", self.out_channels))
        object.__setattr__(self, "kernel", _pair("kernel", self.kernel, 1))
        object.__setattr__(self, "stride", _pair("stride", self.stride, 1))
        object.__setattr__(self, "padding", _pair("padding", self.padding, 0))
        c, h, w = self.in_spec.shape
        kh, kw = self.kernel
        patterns = padding_patterns((h, w), self.kernel, self.stride, self.padding)
        object.__setattr__(self, "patterns", patterns)
        self._init_weights(self.weights, c * kh * kw)
        self._init_acc(patterns)
        out = _requant_out(self.requant, (self.out_channels, *patterns.out_hw), self.acc_lo, self.acc_hi)
        object.__setattr__(self, "out", out)

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
        object.__setattr__(self, "out_channels", check_positive("out_channels", self.out_channels))
        self._init_weights(self.weights, self.in_spec.shape[0])
        self._init_acc(None)
        out = _requant_out(self.requant, (self.out_channels,), self.acc_lo, self.acc_hi)
        object.__setattr__(self, "out", out)

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
        coeffs = check_int_array("coeffs", self.coeffs, 2, allow_empty=True, limit_bits=INT64_SAFE_BITS)
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
class GlobalPool(_OneInput):
    """Global average pool as an integer sum over H·W, optionally requantized.

    The output is ``sum_{h,w} x[c, h, w]`` (no division): the 1/(H·W) is
    folded into the requantizer given here or into the consumer's
    requantizer. With ``requant=None`` the output is the sum itself, encoded
    by :func:`raw_spec` like every ``requant: null`` output (``unsigned`` when
    non-negative and at most 16 bits, else ``signed``).
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
        object.__setattr__(self, "out", _requant_out(self.requant, (c,), lo, hi))

    @property
    def window(self) -> int:
        return self.in_spec.shape[1] * self.in_spec.shape[2]

    @property
    def acc_bits(self) -> int:
        return intmath.signed_width(int(self.acc_lo.min()), int(self.acc_hi.max()))


@dataclass(frozen=True, eq=False)
class MaxPool(_OneInput):
    """Window maximum per channel; padded taps are left out.

    ``out[c, oy, ox] = max x[c, oy·sh + ky − ph, ox·sw + kx − pw]`` over the taps
    ``(ky, kx)`` that lie inside the map (a padded tap acts as −∞). Every
    window must hold at least one real tap. The output has the input's
    encoding, bits and value range.

    Parameters
    ----------
    name : str
    input : str
        Producer layer name.
    in_spec : TensorSpec
        ``(C, H, W)`` input.
    kernel, stride : int or (int, int)
    padding : int or (int, int), default 0

    Attributes
    ----------
    out : TensorSpec ``(C, OH, OW)``, ``OH = floor((H + 2ph − kh)/sh) + 1``
    patterns : PaddingPatterns
    window : int
        Taps per window, ``kh·kw`` (padded ones included).
    """

    name: str
    input: str
    in_spec: TensorSpec
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)

    kind = "maxpool"

    def __post_init__(self):
        _check_name("name", self.name)
        _check_name("input", self.input)
        if not isinstance(self.in_spec, TensorSpec) or not self.in_spec.is_map:
            raise TypeError(f"in_spec must be a (C, H, W) TensorSpec, not {self.in_spec!r}")
        object.__setattr__(self, "kernel", _pair("kernel", self.kernel, 1))
        object.__setattr__(self, "stride", _pair("stride", self.stride, 1))
        object.__setattr__(self, "padding", _pair("padding", self.padding, 0))
        c, h, w = self.in_spec.shape
        patterns = padding_patterns((h, w), self.kernel, self.stride, self.padding)
        if not all(patterns.row_taps) or not all(patterns.col_taps):
            raise ValueError(f"padding {self.padding} leaves a {self.kernel} window of the {h}x{w} input "
                             "with no tap inside the map")
        object.__setattr__(self, "patterns", patterns)
        s = self.in_spec
        object.__setattr__(self, "out", TensorSpec((c, *patterns.out_hw), s.code, s.bits, s.lo, s.hi))

    @property
    def window(self) -> int:
        return self.kernel[0] * self.kernel[1]


LAYER_KINDS: dict[str, type] = {cls.kind: cls for cls in (Input, Conv, Dense, Add, GlobalPool, MaxPool)}


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
            elif isinstance(l, MaxPool):
                (kh, kw), (sh, sw), (ph, pw) = l.kernel, l.stride, l.padding
                row.update(window=f"{kh}x{kw}/{sh}x{sw} pad {ph}x{pw}")
            rq = getattr(l, "requant", None)
            row["requant"] = "none" if rq is None else rq.kind + (
                "+mul_shift" if isinstance(rq, Thresholds) and rq.mul_shift is not None else "")
            rows.append(row)
        return rows

"""Per-layer quantization spec and quantization config files.

A weight layer (conv or fc) has one :class:`LayerQuant`: the kind and bit-width
of its weights and of its *input* activation (the tensor it reads). BitOPs of
the layer are ``w_bits * a_bits * MACs`` (AdaQAT / FracBits definition).

Weight kinds (``w_kind``) and the intmath encoding the exporter uses:

``uniform``  DoReFa, odd levels 2n - s, s = 2^k - 1, k = 2..8   -> ``odd``
``binary``   sign(w) * mean|w| per output channel, 1 bit         -> ``binary``
``pow2``     0 or ±2^(e-1) times a per-layer scale, 3..5 bits    -> ``pow2``
``float``    not quantized (32 bits in cost figures; not exportable)

Activation kinds (``a_kind``):

``uniform``  PACT with learned clip alpha, k = 1..8 bits          -> ``unsigned``
``sign``     ±1 with hard-tanh STE, 1 bit                        -> ``bipolar``
``float``    plain ReLU (32 bits in cost figures; not exportable)

Config file (JSON or YAML), every key optional::

    {"format": "qhw-quant-config", "version": 1,
     "default": {"w_kind": "uniform", "w_bits": 4, "a_kind": "uniform", "a_bits": 4},
     "first_last_8bit": true,
     "layers": {"s*.b*.conv*": {"w_kind": "binary", "a_kind": "sign"},
                "s2.b1.shortcut": {"w_bits": 8}}}

``layers`` keys are layer names or fnmatch patterns, applied in file order on
top of ``default`` and the first/last rule (stem weights and fc weights and
input at 8 bits). A key matching no layer, an unknown kind or key, or a
bit-width out of range raises one :class:`~qhw.errors.InputError`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from qhw.errors import FormatVersionError, InputError

CONFIG_FORMAT = "qhw-quant-config"
CONFIG_VERSION = 1

#: weight kind -> (smallest, largest) bit-width
W_BITS_RANGE: dict[str, tuple[int, int]] = {
    "uniform": (2, 8),
    "binary": (1, 1),
    "pow2": (3, 5),
    "float": (32, 32),
}
#: activation kind -> (smallest, largest) bit-width
A_BITS_RANGE: dict[str, tuple[int, int]] = {
    "uniform": (1, 8),
    "sign": (1, 1),
    "float": (32, 32),
}
#: weight kind -> intmath.WeightCode value
W_ENCODING = {"uniform": "odd", "binary": "binary", "pow2": "pow2", "float": None}
#: activation kind -> intmath.ActCode value
A_ENCODING = {"uniform": "unsigned", "sign": "bipolar", "float": None}

_KEYS = ("w_kind", "w_bits", "a_kind", "a_bits")


@dataclass(frozen=True)
class LayerQuant:
    """Quantization of one weight layer: its weights and its input activation.

    Parameters
    ----------
    w_kind, a_kind : str
        See the module docstring.
    w_bits, a_bits : int
        Bit-widths; fixed-width kinds (binary, sign, float) take their only
        legal value when given ``None``.
    """

    w_kind: str = "uniform"
    w_bits: int | None = 8
    a_kind: str = "uniform"
    a_bits: int | None = 8

    def __post_init__(self):
        object.__setattr__(self, "w_bits", _check("w", self.w_kind, self.w_bits, W_BITS_RANGE))
        object.__setattr__(self, "a_bits", _check("a", self.a_kind, self.a_bits, A_BITS_RANGE))

    @property
    def w_encoding(self) -> str | None:
        return W_ENCODING[self.w_kind]

    @property
    def a_encoding(self) -> str | None:
        return A_ENCODING[self.a_kind]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        """E.g. ``uniform W4 / uniform A4``."""
        return f"{self.w_kind} W{self.w_bits} / {self.a_kind} A{self.a_bits}"


def _check(prefix: str, kind: Any, bits: Any, ranges: Mapping[str, tuple[int, int]]) -> int:
    if kind not in ranges:
        raise ValueError(f"{prefix}_kind must be one of {', '.join(ranges)}, not {kind!r}")
    lo, hi = ranges[kind]
    if bits is None and lo == hi:
        return lo
    if bits is None:
        raise ValueError(f"{prefix}_bits must be given for {kind} (between {lo} and {hi})")
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"{prefix}_bits must be an integer, not {bits!r}")
    if not lo <= bits <= hi:
        span = f"{lo}" if lo == hi else f"between {lo} and {hi}"
        raise ValueError(f"{prefix}_bits for {kind} must be {span}, not {bits}")
    return bits


def _merge(base: LayerQuant, entry: Mapping[str, Any], where: str) -> LayerQuant:
    """Apply a partial entry; a changed kind drops the old kind's bit-width."""
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; use {', '.join(_KEYS)}")
    fields = asdict(base)
    for side in ("w", "a"):
        if f"{side}_kind" in entry and entry[f"{side}_kind"] != fields[f"{side}_kind"]:
            fields[f"{side}_kind"] = entry[f"{side}_kind"]
            ranges = W_BITS_RANGE if side == "w" else A_BITS_RANGE
            kind = fields[f"{side}_kind"]
            old = fields[f"{side}_bits"]
            # keep the bit-width only if it is still legal for the new kind
            lo, hi = ranges.get(kind, (0, -1))
            fields[f"{side}_bits"] = old if lo <= (old or 0) <= hi else (hi if lo == hi else None)
        if f"{side}_bits" in entry:
            fields[f"{side}_bits"] = entry[f"{side}_bits"]
    try:
        return LayerQuant(**fields)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class QuantConfig:
    """A parsed, not yet resolved config file (see the module docstring)."""

    default: Mapping[str, Any]
    first_last_8bit: bool = True
    layers: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    source: str = field(default="quant config", compare=False)  # names the file in messages

    @classmethod
    def from_dict(cls, doc: Any, source: str = "quant config") -> "QuantConfig":
        if not isinstance(doc, dict):
            raise InputError(f"{source}: expected a mapping at top level, not {type(doc).__name__}")
        unknown = sorted(set(doc) - {"format", "version", "default", "first_last_8bit", "layers", "comment"})
        if unknown:
            raise InputError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}")
        if "format" in doc and doc["format"] != CONFIG_FORMAT:
            raise InputError(f"{source}: format is {doc['format']!r}, expected {CONFIG_FORMAT!r}")
        if "version" in doc and doc["version"] != CONFIG_VERSION:
            raise FormatVersionError(
                f"{source}: quant config version {doc['version']!r} is not supported (this qhw reads {CONFIG_VERSION})"
            )
        default = doc.get("default", {})
        layers = doc.get("layers", {})
        if not isinstance(default, dict):
            raise InputError(f"{source}: 'default' must be a mapping")
        if not isinstance(layers, dict) or not all(isinstance(v, dict) for v in layers.values()):
            raise InputError(f"{source}: 'layers' must map layer names or patterns to mappings")
        fl = doc.get("first_last_8bit", True)
        if not isinstance(fl, bool):
            raise InputError(f"{source}: 'first_last_8bit' must be true or false")
        cfg = cls(
            default=dict(default),
            first_last_8bit=fl,
            layers=tuple((str(k), dict(v)) for k, v in layers.items()),
            source=source,
        )
        _merge(LayerQuant(), cfg.default, f"{source}: default")  # validate early
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "default": dict(self.default),
            "first_last_8bit": self.first_last_8bit,
            "layers": {k: dict(v) for k, v in self.layers},
        }

    def resolve(
        self,
        layer_names: Iterable[str],
        first: str,
        last: str,
        shared_inputs: Mapping[str, str] = {},
        fixed_inputs: Mapping[str, LayerQuant] = {},
        source: str | None = None,
    ) -> dict[str, LayerQuant]:
        """Per-layer :class:`LayerQuant` for the given model layers.

        ``shared_inputs`` maps a layer to the layer whose input activation it
        reads too (a projection shortcut shares its block's conv1 input): both
        must end with the same activation spec. ``fixed_inputs`` pins the
        input activation of a layer (the stem reads 8-bit image codes).
        """
        source = source or self.source
        names = list(layer_names)
        base = _merge(LayerQuant(), self.default, f"{source}: default")
        out = {n: base for n in names}
        if self.first_last_8bit:
            out[first] = replace(out[first], w_kind="uniform", w_bits=8)
            out[last] = replace(out[last], w_kind="uniform", w_bits=8, a_kind="uniform", a_bits=8)
        for pattern, entry in self.layers:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise InputError(
                    f"{source}: layer {pattern!r} matches no layer of this model (layers: {', '.join(names)})"
                )
            for n in hits:
                out[n] = _merge(out[n], entry, f"{source}: layer {n}")
        for n, pinned in fixed_inputs.items():
            a = (out[n].a_kind, out[n].a_bits)
            explicit = any(fnmatch.fnmatchcase(n, p) and ({"a_kind", "a_bits"} & set(e)) for p, e in self.layers)
            if explicit and a != (pinned.a_kind, pinned.a_bits):
                raise InputError(
                    f"{source}: layer {n} reads the input image as {pinned.a_bits}-bit {pinned.a_kind} codes; "
                    f"its activation cannot be {a[1]}-bit {a[0]}"
                )
            out[n] = replace(out[n], a_kind=pinned.a_kind, a_bits=pinned.a_bits)
        for n, owner in shared_inputs.items():
            if (out[n].a_kind, out[n].a_bits) != (out[owner].a_kind, out[owner].a_bits):
                raise InputError(
                    f"{source}: layer {n} reads the same activation as {owner}; their activation specs differ "
                    f"({out[n].a_bits}-bit {out[n].a_kind} vs {out[owner].a_bits}-bit {out[owner].a_kind})"
                )
        return out


def load_quant_config(path: str | Path) -> QuantConfig:
    """Read a JSON (``.json``) or YAML (anything else) quant config file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"quant config not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"quant config {path} is not UTF-8 text: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"quant config {path} is not valid JSON: {exc}") from None
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            msg = str(exc).replace("\n", " ")
            raise InputError(f"quant config {path} is not valid YAML: {msg}") from None
    return QuantConfig.from_dict(doc, source=f"quant config {path}")


def uniform_config(w_bits: int, a_bits: int, first_last_8bit: bool = True) -> QuantConfig:
    """``W{w_bits}A{a_bits}`` everywhere (first/last at 8 bits by default)."""
    return QuantConfig(
        default={"w_kind": "uniform", "w_bits": w_bits, "a_kind": "uniform", "a_bits": a_bits},
        first_last_8bit=first_last_8bit,
    )


def float_config() -> QuantConfig:
    """No quantization at all (the float baseline)."""
    return QuantConfig(default={"w_kind": "float", "a_kind": "float"}, first_last_8bit=False)

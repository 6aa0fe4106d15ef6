"""The on-disk network format: ``NAME.json`` (description) + ``NAME.npz`` (arrays).

Format ``qhw-net``, version 2 (full description: ``docs/IR_FORMAT.md``)::

    {
      "format": "qhw-net",
      "format_version": 2,
      "arrays": {"file": "NAME.npz", "sha256": "<hex digest of that file>"},
      "output": "<layer name>",
      "meta": {...},                          # provenance, free-form object
      "layers": [ {layer}, ... ]              # topological order, input first
    }

Every layer has ``name``, ``kind`` and ``inputs`` (list of names). Array
fields hold the *key* of an int64 array in the ``.npz``; the loader reads
them with ``allow_pickle=False``. Per kind:

``input``    ``shape``, ``code``, ``bits``, ``scale`` (float or null)
``conv``     ``in_spec``, ``out_channels``, ``kernel``, ``stride``, ``padding``,
             ``weight_code``, ``weight_bits``, ``weight_raw`` (array: raw ROM
             codes, (C_out, C_in·kh·kw)), ``requant``
``dense``    as conv without kernel/stride/padding; ``weight_raw`` (C_out, C_in)
``add``      ``in_specs``, ``coeffs`` (array (inputs, C)), ``requant``
``gap``      ``in_spec``, ``requant``
``maxpool``  ``in_spec``, ``kernel``, ``stride``, ``padding`` (new in version 2)

``requant`` is ``null`` (raw accumulator out) or
``{"kind": "thresholds", "out_code", "out_bits", "thresholds": (C, L), "sign": (C,), "mul_shift": null | {...}}``
or ``{"kind": "mul_shift", "out_code", "out_bits", "mult": (C,), "bias": (C,), "shift", "lo", "hi"}``.

Derived fields are written for readers that do not run qhw (``out``,
``acc_lo``/``acc_hi`` arrays, ``acc_bits``, ``pe``, the decoded ``weights``
array); version 2 requires them, and they are re-derived and compared on
load: a mismatch means the files were edited or damaged and is reported as
an :class:`~qhw.errors.InputError`. One exception: ``pe`` is
:func:`qhw.ir.intmath.pe_kind`, which calls binary weights on unsigned or
signed inputs ``and``; files from an older qhw say ``mac`` there, and that
stored value is accepted as informational. Version-1 files still load (see
:func:`load_network`).

Writes are atomic per file, arrays first, and only after the whole network
has been encoded; the JSON records the arrays' SHA-256, so a description
paired with the wrong arrays is detected on load.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from qhw.errors import FormatVersionError, InputError
from qhw.fileio import atomic_write_bytes, atomic_write_json, read_json
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, LAYER_KINDS, MaxPool, Network, TensorSpec
from qhw.ir import intmath
from qhw.ir.requant import MulShift, Thresholds

FORMAT = "qhw-net"
#: the version this qhw writes
FORMAT_VERSION = 2
#: the versions this qhw reads (1: no maxpool, padding-unaware conv bounds; see load_network)
READ_VERSIONS = (1, 2)
#: the layer kinds of format_version 1
V1_LAYER_KINDS = ("input", "conv", "dense", "add", "gap")


def paths_for(path: str | os.PathLike) -> tuple[Path, Path]:
    """``NAME.json`` and its ``NAME.npz`` (a path without ``.json`` gets it appended)."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        p = p.with_name(p.name + ".json")
    return p, p.with_suffix(".npz")


# -- encoding ----------------------------------------------------------------------------

class _Arrays:
    def __init__(self):
        self.items: dict[str, np.ndarray] = {}

    def put(self, key: str, arr) -> str:
        self.items[key] = np.ascontiguousarray(np.asarray(arr, dtype=np.int64))
        return key

    def npz_bytes(self) -> bytes:
        """A valid ``.npz`` with fixed timestamps, so equal networks give equal bytes."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key in sorted(self.items):
                info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                body = io.BytesIO()
                np.lib.format.write_array(body, self.items[key], allow_pickle=False)
                zf.writestr(info, body.getvalue())
        return buf.getvalue()


def _requant_doc(rq, key: str, arrays: _Arrays):
    if rq is None:
        return None
    if isinstance(rq, Thresholds):
        return {
            "kind": "thresholds",
            "out_code": rq.out_code.value,
            "out_bits": rq.out_bits,
            "thresholds": arrays.put(f"{key}.thresholds", rq.thresholds),
            "sign": arrays.put(f"{key}.sign", rq.sign),
            "mul_shift": _requant_doc(rq.mul_shift, f"{key}.mul_shift", arrays),
        }
    return {
        "kind": "mul_shift",
        "out_code": rq.out_code.value,
        "out_bits": rq.out_bits,
        "mult": arrays.put(f"{key}.mult", rq.mult),
        "bias": arrays.put(f"{key}.bias", rq.bias),
        "shift": rq.shift,
        "lo": rq.lo,
        "hi": rq.hi,
    }


def _layer_doc(layer, arrays: _Arrays) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs)}
    if isinstance(layer, Input):
        doc.update(shape=list(layer.shape), code=layer.code.value, bits=layer.bits, scale=layer.scale)
    elif isinstance(layer, (Conv, Dense)):
        doc.update(in_spec=layer.in_spec.to_dict(), out_channels=layer.out_channels)
        if isinstance(layer, Conv):
            doc.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=list(layer.padding))
        doc.update(
            weight_code=layer.weight_code.value,
            weight_bits=layer.weight_bits,
            weight_raw=arrays.put(f"{layer.name}.weight_raw", layer.weight_raw),
            weights=arrays.put(f"{layer.name}.weights", layer.weights),
            pe=layer.pe.value,
        )
    elif isinstance(layer, Add):
        doc.update(in_specs=[s.to_dict() for s in layer.in_specs], coeffs=arrays.put(f"{layer.name}.coeffs", layer.coeffs))
    elif isinstance(layer, GlobalPool):
        doc.update(in_spec=layer.in_spec.to_dict())
    elif isinstance(layer, MaxPool):
        doc.update(in_spec=layer.in_spec.to_dict(), kernel=list(layer.kernel), stride=list(layer.stride),
                   padding=list(layer.padding))
    if not isinstance(layer, (Input, MaxPool)):
        doc["requant"] = _requant_doc(layer.requant, f"{layer.name}.requant", arrays)
        doc["acc_lo"] = arrays.put(f"{layer.name}.acc_lo", layer.acc_lo)
        doc["acc_hi"] = arrays.put(f"{layer.name}.acc_hi", layer.acc_hi)
        doc["acc_bits"] = layer.acc_bits
    doc["out"] = layer.out.to_dict()
    return doc


def encode_network(net: Network, arrays_name: str) -> tuple[dict[str, Any], bytes]:
    """(JSON document, npz bytes) of a network, without touching the disk."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a Network, not {net!r}")
    arrays = _Arrays()
    layers = [_layer_doc(layer, arrays) for layer in net.layers]
    blob = arrays.npz_bytes()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arrays": {"file": arrays_name, "sha256": hashlib.sha256(blob).hexdigest()},
        "output": net.output,
        "meta": net.meta,
        "layers": layers,
    }
    return doc, blob


def save_network(net: Network, path: str | os.PathLike) -> Path:
    """Write ``NAME.json`` + ``NAME.npz`` atomically; returns the JSON path."""
    json_path, npz_path = paths_for(path)
    doc, blob = encode_network(net, npz_path.name)
    atomic_write_bytes(npz_path, blob)
    atomic_write_json(json_path, doc)
    return json_path


# -- decoding ----------------------------------------------------------------------------

class _Reader:
    def __init__(self, npz, where: str):
        self.npz = npz
        self.where = where

    def array(self, doc: dict, field: str) -> np.ndarray:
        key = doc.get(field)
        if not isinstance(key, str):
            raise InputError(f"{self.where}: field {field!r} must name an array")
        if key not in self.npz.files:
            raise InputError(f"{self.where}: array {key!r} is missing from the arrays file")
        try:
            arr = self.npz[key]
        except Exception as exc:  # zipfile/format errors of one member
            raise InputError(f"{self.where}: array {key!r} is unreadable: {exc}") from None
        if arr.dtype != np.int64:
            raise InputError(f"{self.where}: array {key!r} must be int64, not {arr.dtype}")
        return arr


def _requant_from(doc, rd: _Reader, where: str):
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: requant must be an object or null")
    kind = doc.get("kind")
    if kind == "thresholds":
        ms = _requant_from(doc.get("mul_shift"), rd, where)
        if ms is not None and not isinstance(ms, MulShift):
            raise InputError(f"{where}: thresholds.mul_shift must be a mul_shift requant")
        return Thresholds(thresholds=rd.array(doc, "thresholds"), sign=rd.array(doc, "sign"),
                          out_code=doc["out_code"], out_bits=doc["out_bits"], mul_shift=ms)
    if kind == "mul_shift":
        return MulShift(mult=rd.array(doc, "mult"), bias=rd.array(doc, "bias"), shift=doc["shift"],
                        lo=doc["lo"], hi=doc["hi"], out_code=doc["out_code"], out_bits=doc["out_bits"])
    raise InputError(f"{where}: unknown requant kind {kind!r} (expected thresholds, mul_shift or null)")


def _spec_field(doc: dict, field: str) -> TensorSpec:
    d = doc[field]
    if not isinstance(d, dict):
        raise ValueError(f"{field} must be a tensor spec object, not {d!r}")
    return TensorSpec.from_dict(d)


def _pair_field(doc: dict, field: str) -> tuple[int, int]:
    v = doc[field]
    if not isinstance(v, list) or len(v) != 2:
        raise ValueError(f"{field} must be a list of two integers, not {v!r}")
    return tuple(v)


class _Fields:
    """What a layer's JSON gives, before the layer is built (so it can be built twice)."""

    def __init__(self, kind: str, doc: dict, name: str, inputs: list, rd: _Reader, where: str, version: int):
        self.kind, self.doc, self.name, self.inputs, self.version = kind, doc, name, inputs, version
        if kind == "input":
            self.specs: tuple[TensorSpec, ...] = ()
        elif kind == "add":
            if not isinstance(doc["in_specs"], list):
                raise ValueError(f"in_specs must be a list of tensor spec objects, not {doc['in_specs']!r}")
            self.specs = tuple(_spec_field({"in_specs": s}, "in_specs") for s in doc["in_specs"])
        else:
            self.specs = (_spec_field(doc, "in_spec"),)
        self.requant = None if kind in ("input", "maxpool") else _requant_from(doc["requant"], rd, where)
        self.raw = None
        if kind in ("conv", "dense"):
            self.wcode, self.wbits = intmath.WeightCode(doc["weight_code"]), doc["weight_bits"]
            self.raw = rd.array(doc, "weight_raw")
            if self.raw.ndim != 2:
                raise ValueError(f"weight_raw must be a 2-D array (C_out, C_in·kh·kw), not shape {self.raw.shape}")
            self.weights = intmath.decode_weights(self.wcode, self.wbits, self.raw)
        if kind == "add":
            self.coeffs = rd.array(doc, "coeffs")

    def build(self, specs: tuple[TensorSpec, ...], requant):
        d, kind = self.doc, self.kind
        if kind == "input":
            scale = d["scale"] if self.version >= 2 else d.get("scale")  # version 1 did not require it
            return Input(name=self.name, shape=tuple(d["shape"]), code=d["code"], bits=d["bits"], scale=scale)
        if kind == "add":
            return Add(name=self.name, inputs=tuple(self.inputs), in_specs=specs, coeffs=self.coeffs, requant=requant)
        one = dict(name=self.name, input=self.inputs[0], in_spec=specs[0])
        if kind == "gap":
            return GlobalPool(requant=requant, **one)
        if kind == "maxpool":
            return MaxPool(kernel=_pair_field(d, "kernel"), stride=_pair_field(d, "stride"),
                           padding=_pair_field(d, "padding"), **one)
        common = dict(out_channels=d["out_channels"], weight_code=self.wcode, weight_bits=self.wbits,
                      weights=self.weights, requant=requant, **one)
        if kind == "dense":
            return Dense(**common)
        return Conv(kernel=_pair_field(d, "kernel"), stride=_pair_field(d, "stride"),
                    padding=_pair_field(d, "padding"), **common)


def _reclip(requant, layer):
    """A v1 requantizer with its thresholds clipped to the layer's (v2) accumulator range.

    ``intmath.clamp_thresholds`` changes no output: below the range a threshold
    is always met, past it never.
    """
    if not isinstance(requant, Thresholds):
        return requant
    t = intmath.clamp_thresholds(requant.thresholds, layer.acc_lo, layer.acc_hi, requant.sign)
    return Thresholds(thresholds=t, sign=requant.sign, out_code=requant.out_code, out_bits=requant.out_bits,
                      mul_shift=requant.mul_shift)


def _v1_derived(f: _Fields, layer) -> dict[str, Any]:
    """The derived fields a version-1 writer stored for this layer (the v1 bound rule).

    Version 1 bounded a padded conv as if every position saw all kh·kw taps,
    padding widening the input range to include 0; its ``requant: null``
    outputs of conv, dense and add were always ``signed``. Everything else is
    computed as in version 2, on the specs the file itself stores.
    """
    if f.kind == "input":
        return {"out": layer.out}
    probe = f.build(f.specs, None)  # on the stored (v1) input specs
    lo, hi = probe.acc_lo, probe.acc_hi
    if f.kind == "conv" and probe.padding != (0, 0):
        s = f.specs[0]
        lo, hi = intmath.accumulator_bounds(probe.weights, min(s.lo, 0), max(s.hi, 0))
    amin, amax = int(lo.min()), int(hi.max())
    if f.requant is not None:
        out = layer.out  # a requantizer's output spec does not depend on the bounds
    elif f.kind == "gap":
        out = probe.out
    else:
        out = TensorSpec(probe.out.shape, "signed", intmath.signed_width(amin, amax), amin, amax)
    return {"out": out, "acc_lo": lo, "acc_hi": hi, "acc_bits": intmath.signed_width(amin, amax)}


#: derived fields per kind: written for readers that do not run qhw, recomputed on load
_DERIVED = {
    "input": ("out",),
    "conv": ("out", "acc_lo", "acc_hi", "acc_bits", "pe", "weights"),
    "dense": ("out", "acc_lo", "acc_hi", "acc_bits", "pe", "weights"),
    "add": ("out", "acc_lo", "acc_hi", "acc_bits"),
    "gap": ("out", "acc_lo", "acc_hi", "acc_bits"),
    "maxpool": ("out",),
}

#: ``pe`` values an older qhw wrote for the same layer: before the one PEKind of intmath, binary
#: weights on unsigned / signed inputs were classed ``mac`` (the hardware always built the AND
#: popcount). Such a stored value is informational and accepted; any other mismatch is damage.
_OLDER_PE = {intmath.PEKind.AND: ("mac",)}


def _stored_pe_values(pe: intmath.PEKind) -> tuple[str, ...]:
    """What a file may store as ``pe`` for a layer whose PE kind is ``pe``."""
    return (pe.value, *_OLDER_PE.get(pe, ()))


#: inputs per kind (None: two or more)
_ARITY = {"input": 0, "conv": 1, "dense": 1, "gap": 1, "maxpool": 1, "add": None}


def _layer_from(doc: Any, rd: _Reader, index: int, version: int, built: dict, stored_out: dict):
    if not isinstance(doc, dict):
        raise InputError(f"{rd.where}: layer #{index} must be an object")
    name = doc.get("name", f"#{index}")
    where = f"{rd.where}: layer {name!r}"
    rd_l = _Reader(rd.npz, where)
    kind = doc.get("kind")
    kinds = LAYER_KINDS if version >= 2 else V1_LAYER_KINDS
    if kind not in kinds:
        raise InputError(f"{where}: unknown layer kind {kind!r} "
                         f"(format_version {version} knows {', '.join(kinds)})")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
        raise InputError(f"{where}: 'inputs' must be a list of layer names")
    arity = _ARITY[kind]
    if kind == "input" and inputs:
        raise InputError(f"{where}: an input layer reads nothing, but 'inputs' is {inputs}")
    if arity is not None and len(inputs) != arity:
        raise InputError(f"{where}: a {kind} layer reads exactly {arity} layer, not {len(inputs)}")
    if version >= 2:
        for field in _DERIVED[kind]:
            if field not in doc:
                raise InputError(f"{where}: missing field {field!r}")
    try:
        f = _Fields(kind, doc, name, inputs, rd_l, where, version)
        specs = f.specs
        if version == 1:
            # v1: each in_spec equals its producer's stored out; read with the
            # producer's re-derived (v2) out, which may be narrower
            for src, spec in zip(inputs, f.specs):
                if src in stored_out and stored_out[src] != spec:
                    raise InputError(f"{where} expects {src!r} as {spec.to_dict()}, "
                                     f"but {src!r} stores out {stored_out[src].to_dict()}")
            specs = tuple(built[src].out if src in built else spec for src, spec in zip(inputs, f.specs))
            requant = f.requant
            if isinstance(requant, Thresholds):
                requant = _reclip(requant, f.build(specs, None))
            layer = f.build(specs, requant)
            expect = _v1_derived(f, layer)
        else:
            layer = f.build(specs, f.requant)
            expect = {"out": layer.out}
            if kind not in ("input", "maxpool"):
                expect.update(acc_lo=layer.acc_lo, acc_hi=layer.acc_hi, acc_bits=layer.acc_bits)
        if f.raw is not None and f.raw.shape != layer.weight_raw.shape:
            raise InputError(f"{where}: weight_raw must have shape {layer.weight_raw.shape}, not {f.raw.shape}")
    except InputError:
        raise
    except KeyError as exc:
        raise InputError(f"{where}: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None
    has_weights = kind in ("conv", "dense")
    if has_weights and "weights" in doc and not np.array_equal(rd_l.array(doc, "weights"), layer.weights):
        raise InputError(f"{where}: stored weight values do not decode from the raw weight codes")
    if has_weights and "pe" in doc and doc["pe"] not in _stored_pe_values(layer.pe):
        raise InputError(f"{where}: stored pe {doc['pe']!r} differs from {layer.pe.value!r}")
    for field in ("acc_lo", "acc_hi"):
        if field in doc and field in expect and not np.array_equal(rd_l.array(doc, field), expect[field]):
            raise InputError(f"{where}: stored {field} differs from the exact bound of its weights and inputs")
    if "acc_bits" in doc and "acc_bits" in expect and (
            type(doc["acc_bits"]) is not int or doc["acc_bits"] != expect["acc_bits"]):
        raise InputError(f"{where}: stored acc_bits {doc['acc_bits']!r} differs from {expect['acc_bits']}")
    if "out" in doc:
        try:
            stored = _spec_field(doc, "out")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: bad 'out' spec: {exc}") from None
        if stored != expect["out"]:
            raise InputError(f"{where}: stored output spec {doc['out']} differs from {expect['out'].to_dict()}")
        stored_out[layer.name] = stored
    else:
        stored_out[layer.name] = expect["out"]
    built[layer.name] = layer
    return layer


def load_network(path: str | os.PathLike) -> Network:
    """Read and fully validate a network; every problem is one :class:`InputError`.

    Reads ``format_version`` 2 and 1. A version-1 file is checked with the
    version-1 rules where they differ (its stored accumulator bounds, output
    specs of ``requant: null`` layers, no ``maxpool``) and comes back as the
    version-2 network: bounds re-derived, thresholds clipped to them with
    :func:`intmath.clamp_thresholds` (which changes no output). Any other
    version is a :class:`FormatVersionError`.
    """
    json_path, _ = paths_for(path)
    where = f"network {json_path}"
    doc = read_json(json_path, "network description")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{where} is not a qhw network description (format must be {FORMAT!r})")
    version = doc.get("format_version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise FormatVersionError(
            f"{where} has format_version {version!r}; this qhw reads format_version "
            f"{' and '.join(map(str, READ_VERSIONS))} (writes {FORMAT_VERSION}): re-export it with this qhw"
        )
    arrays = doc.get("arrays")
    if not isinstance(arrays, dict) or not isinstance(arrays.get("file"), str):
        raise InputError(f"{where}: 'arrays' must give the arrays file name")
    npz_path = json_path.parent / arrays["file"]
    if Path(arrays["file"]).name != arrays["file"]:
        raise InputError(f"{where}: arrays file must be a plain file name next to the description")
    if not npz_path.is_file():
        raise InputError(f"{where}: arrays file not found: {npz_path}")
    blob = npz_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != arrays.get("sha256"):
        raise InputError(f"{where}: arrays file {npz_path} does not match the description (SHA-256 differs)")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise InputError(f"{where}: 'meta' must be an object")
    output = doc.get("output")
    if version >= 2 and not isinstance(output, str):
        raise InputError(f"{where}: 'output' must name a layer, not {output!r}")
    try:
        npz = np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{where}: arrays file {npz_path} is not a readable .npz: {exc}") from None
    with npz:
        rd = _Reader(npz, where)
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise InputError(f"{where}: 'layers' must be a non-empty list")
        built: dict = {}
        stored_out: dict = {}
        layer_list = [_layer_from(l, rd, i, version, built, stored_out) for i, l in enumerate(layers)]
    try:
        return Network(layers=tuple(layer_list), output=output, meta=meta)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None

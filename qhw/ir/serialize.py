"""The on-disk network format: ``NAME.json`` (description) + ``NAME.npz`` (arrays).

Format ``qhw-net``, version 1 (full description: ``docs/IR_FORMAT.md``)::

    {
      "format": "qhw-net",
      "format_version": 1,
      "arrays": {"file": "NAME.npz", "sha256": "<hex digest of that file>"},
      "output": "<layer name>",
      "meta": {...},                          # provenance, free-form
      "layers": [ {layer}, ... ]              # topological order, input first
    }

Every layer has ``name``, ``kind`` and ``inputs`` (list of names). Array
fields hold the *key* of an int64 array in the ``.npz``; the loader reads
them with ``allow_pickle=False``. Per kind:

``input``  ``shape``, ``code``, ``bits``, ``scale`` (float or null)
``conv``   ``in_spec``, ``out_channels``, ``kernel``, ``stride``, ``padding``,
           ``weight_code``, ``weight_bits``, ``weight_raw`` (array: raw ROM
           codes, (C_out, C_in·kh·kw)), ``requant``
``dense``  as conv without kernel/stride/padding; ``weight_raw`` (C_out, C_in)
``add``    ``in_specs``, ``coeffs`` (array (inputs, C)), ``requant``
``gap``    ``in_spec``, ``requant``

``requant`` is ``null`` (raw accumulator out) or
``{"kind": "thresholds", "out_code", "out_bits", "thresholds": (C, L), "sign": (C,), "mul_shift": null | {...}}``
or ``{"kind": "mul_shift", "out_code", "out_bits", "mult": (C,), "bias": (C,), "shift", "lo", "hi"}``.

Derived fields are written for readers that do not run qhw (``out``,
``acc_lo``/``acc_hi`` arrays, ``acc_bits``, ``pe``, the decoded ``weights``
array) and are re-derived and compared on load: a mismatch means the files
were edited or damaged and is reported as an :class:`~qhw.errors.InputError`.

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
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, LAYER_KINDS, Network, TensorSpec
from qhw.ir import intmath
from qhw.ir.requant import MulShift, Thresholds

FORMAT = "qhw-net"
FORMAT_VERSION = 1


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
    if not isinstance(layer, Input):
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


def _layer_from(doc: Any, rd: _Reader, index: int):
    if not isinstance(doc, dict):
        raise InputError(f"{rd.where}: layer #{index} must be an object")
    name = doc.get("name", f"#{index}")
    where = f"{rd.where}: layer {name!r}"
    rd_l = _Reader(rd.npz, where)
    kind = doc.get("kind")
    if kind not in LAYER_KINDS:
        raise InputError(f"{where}: unknown layer kind {kind!r} (this qhw knows {', '.join(LAYER_KINDS)})")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise InputError(f"{where}: 'inputs' must be a list of layer names")
    try:
        if kind == "input":
            layer = Input(name=name, shape=tuple(doc["shape"]), code=doc["code"], bits=doc["bits"], scale=doc.get("scale"))
        elif kind in ("conv", "dense"):
            if len(inputs) != 1:
                raise ValueError(f"a {kind} layer has exactly one input, not {len(inputs)}")
            wcode, wbits = intmath.WeightCode(doc["weight_code"]), doc["weight_bits"]
            weights = intmath.decode_weights(wcode, wbits, rd_l.array(doc, "weight_raw"))
            common = dict(name=name, input=inputs[0], in_spec=TensorSpec.from_dict(doc["in_spec"]),
                          out_channels=doc["out_channels"], weight_code=wcode, weight_bits=wbits,
                          weights=weights, requant=_requant_from(doc["requant"], rd_l, where))
            if kind == "conv":
                layer = Conv(kernel=tuple(doc["kernel"]), stride=tuple(doc["stride"]),
                             padding=tuple(doc["padding"]), **common)
            else:
                layer = Dense(**common)
            if "weights" in doc and not np.array_equal(rd_l.array(doc, "weights"), layer.weights):
                raise InputError(f"{where}: stored weight values do not decode from the raw weight codes")
            if "pe" in doc and doc["pe"] != layer.pe.value:
                raise InputError(f"{where}: stored pe {doc['pe']!r} differs from {layer.pe.value!r}")
        elif kind == "add":
            layer = Add(name=name, inputs=tuple(inputs), in_specs=tuple(TensorSpec.from_dict(s) for s in doc["in_specs"]),
                        coeffs=rd_l.array(doc, "coeffs"), requant=_requant_from(doc["requant"], rd_l, where))
        else:
            if len(inputs) != 1:
                raise ValueError(f"a gap layer has exactly one input, not {len(inputs)}")
            layer = GlobalPool(name=name, input=inputs[0], in_spec=TensorSpec.from_dict(doc["in_spec"]),
                               requant=_requant_from(doc["requant"], rd_l, where))
    except InputError:
        raise
    except KeyError as exc:
        raise InputError(f"{where}: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None
    if kind != "input":
        for field in ("acc_lo", "acc_hi"):
            if field in doc and not np.array_equal(rd_l.array(doc, field), getattr(layer, field)):
                raise InputError(f"{where}: stored {field} differs from the exact bound of its weights and inputs")
        if "acc_bits" in doc and doc["acc_bits"] != layer.acc_bits:
            raise InputError(f"{where}: stored acc_bits {doc['acc_bits']} differs from {layer.acc_bits}")
    if "out" in doc:
        try:
            stored = TensorSpec.from_dict(doc["out"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: bad 'out' spec: {exc}") from None
        if stored != layer.out:
            raise InputError(f"{where}: stored output spec {doc['out']} differs from {layer.out.to_dict()}")
    return layer


def load_network(path: str | os.PathLike) -> Network:
    """Read and fully validate a network; every problem is one :class:`InputError`."""
    json_path, _ = paths_for(path)
    where = f"network {json_path}"
    doc = read_json(json_path, "network description")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{where} is not a qhw network description (format must be {FORMAT!r})")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{where} has format_version {version!r}; this qhw reads format_version {FORMAT_VERSION} only "
            f"(re-export it with this qhw)"
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
    try:
        npz = np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{where}: arrays file {npz_path} is not a readable .npz: {exc}") from None
    with npz:
        rd = _Reader(npz, where)
        layers = doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise InputError(f"{where}: 'layers' must be a non-empty list")
        built = [_layer_from(l, rd, i) for i, l in enumerate(layers)]
    meta = doc.get("meta", {})
    try:
        return Network(layers=tuple(built), output=doc.get("output"), meta=meta if isinstance(meta, dict) else {})
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None

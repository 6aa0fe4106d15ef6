"""``qhw build``: a network file → a build directory (Verilog + ``manifest.json``), atomically.

A build directory holds

``<top>.v``        the whole accelerator, top module ``<top>`` (``qhw_<network file stem>``)
``manifest.json``  network digest, folds, FIFO depths, per-layer and total estimates, the port map
                   and, per layer, the Verilog instance whose ``o_stream`` ``qhw sim`` monitors; a build
                   for a board (``qhw fit``, ``qhw build --board``) also its ``fit`` section
``passes/``        with ``keep=True``: every compile pass's output as JSON

It is written into a temporary sibling directory and renamed over ``out``
only when everything succeeded, so a failed build leaves an earlier build
intact. The same network and folds give byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from qhw.errors import InputError
from qhw.fileio import atomic_write_json, atomic_write_text, read_json
from qhw.ir.graph import Network

from .compile import Compiled, compile_network, instance_name, network_digest, parse_fold_config
from .fold import Fold

MANIFEST = "manifest.json"
BUILD_FORMAT = "qhw-build"
BUILD_VERSION = 2  # 2: m_axis streams one logit a beat, then the class
FAMILIES = ("xilinx", "ecp5", "ice40", "gowin")


@dataclass(frozen=True)
class BuildResult:
    out: Path
    verilog: Path
    manifest: dict


def top_name(stem: str) -> str:
    name = "qhw_" + "".join(ch if ch.isalnum() else "_" for ch in stem)
    return name


def manifest_for(compiled: Compiled, acc, *, top: str, network_path: str | None) -> dict:
    """The build's description (see the module docstring)."""
    plan, net = compiled.plan, compiled.net
    layers = []
    est = {f: acc.estimate_resources(f) for f in FAMILIES}
    for layer in net.layers[1:]:
        eng = acc.engines[layer.name]
        fold = compiled.folded.folds.get(layer.name)
        layers.append({
            "name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs), "instance": instance_name(layer.name),
            "fold": fold.to_dict() if fold is not None else {"simd": compiled.folded.simd[layer.name]},
            "in_formats": [f.to_dict() for f in eng.in_formats], "out_format": eng.out_format.to_dict(),
            "pe": getattr(getattr(layer, "pe", None), "value", None),
            "cycles_per_frame": eng.cycles_per_frame(),
            "estimate": {f: est[f]["layers"][layer.name] for f in FAMILIES},
        })
    out = net[net.output]
    return {
        "format": BUILD_FORMAT, "version": BUILD_VERSION, "top": top, "verilog": f"{top}.v",
        "network": {"path": network_path, "digest": network_digest(net), "output": net.output,
                    "input": net.input.name},
        "ports": {
            "clock": "clk", "reset": "rst (synchronous, active high)",
            "s_axis": {"tdata": "s_axis_tdata", "tvalid": "s_axis_tvalid", "tready": "s_axis_tready",
                       "tlast": "s_axis_tlast", "width": acc.in_format.data_width,
                       "format": acc.in_format.to_dict()},
            # channels + 1 beats an image: each logit, then the class index (tlast); see qhw.net.top
            "m_axis": {"tdata": "m_axis_tdata", "tvalid": "m_axis_tvalid", "tready": "m_axis_tready",
                       "tlast": "m_axis_tlast", "width": acc.result_width, "beats": out.out.channels + 1,
                       "logits": {"channels": out.out.channels, "bits": acc.logit_bits, "code": out.out.code.value,
                                  "lsb": 0, "extended": "sign" if acc.logit_signed else "zero"},
                       "class_index": {"bits": acc.index_bits, "lsb": 0}},
        },
        "layers": layers,
        "fifos": plan.to_dict()["fifos"],
        "adapters": [e.to_dict() for e in plan.edges if e.adapter],
        "cycles_per_frame": acc.cycles_per_frame(),
        "bottleneck": acc.bottleneck(),
        "estimate": {f: est[f]["total"] for f in FAMILIES},
        # forks, adapters, skip FIFOs and the result head, by instance name (the total includes them)
        "glue_estimate": {f: est[f]["glue"] for f in FAMILIES},
    }


def load_folds(path: str | os.PathLike, net: Network) -> dict[str, Fold | int]:
    return parse_fold_config(read_json(path, "fold config"), net)


def build(net: Network, out: str | os.PathLike, *, folds: Mapping[str, Fold | int] | None = None,
          top: str | None = None, network_path: str | None = None, keep: bool = False,
          fifo_scale: float = 1.0, extra: Mapping[str, object] | None = None,
          progress: Callable[[str], None] = lambda _: None) -> BuildResult:
    """Compile ``net`` and write the build directory ``out`` (see the module docstring).

    ``extra``: more top-level manifest sections (e.g. ``fit`` from :func:`qhw.net.fit.fit`); none may
    replace one the build writes.
    """
    from qhw.backends.verilog import to_verilog

    from .top import Accelerator

    out = Path(out)
    top = top or top_name(Path(network_path).stem if network_path else "net")
    from .compile import PASSES

    progress("compiling: " + ", ".join(name for name, _ in PASSES))
    compiled = compile_network(net, folds, fifo_scale=fifo_scale)
    try:
        acc = Accelerator(plan=compiled.plan)
    except InputError:
        raise
    progress(f"generating Verilog for {len(acc.engines)} engines ...")
    verilog = to_verilog(acc, name=top)
    manifest = manifest_for(compiled, acc, top=top, network_path=network_path)
    clash = sorted(set(extra or {}) & set(manifest))
    if clash:
        raise ValueError(f"extra manifest sections {clash} would replace the build's own")
    manifest.update(extra or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        atomic_write_text(tmp / f"{top}.v", verilog)
        atomic_write_json(tmp / MANIFEST, manifest)
        if keep:
            for name, doc in compiled.intermediates().items():
                atomic_write_json(tmp / "passes" / f"{name}.json", doc)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(out, out / f"{top}.v", manifest)


def load_build(path: str | os.PathLike) -> dict:
    """A build directory's manifest, checked."""
    path = Path(path)
    doc = read_json(path / MANIFEST, "build manifest")
    if doc.get("format") != BUILD_FORMAT:
        raise InputError(f"{path} is not a qhw build (no {MANIFEST} of format {BUILD_FORMAT})")
    if doc.get("version") != BUILD_VERSION:
        raise InputError(f"{path}: build version {doc.get('version')!r}; this qhw reads {BUILD_VERSION}: rebuild it")
    if not (path / doc["verilog"]).is_file():
        raise InputError(f"{path}: {doc['verilog']} is missing")
    return doc

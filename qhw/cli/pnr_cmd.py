"""qhw pnr: nextpnr place and route for iCE40 / ECP5, Fmax and utilization."""

from __future__ import annotations

from pathlib import Path

from qhw.cli import Result, progress, table

HELP = "place and route Verilog with yowasp-nextpnr (iCE40, ECP5): achieved Fmax and utilization"


def add_arguments(p) -> None:
    p.add_argument("sources", nargs="+", metavar="FILE.v", help="Verilog source files")
    p.add_argument("--top", required=True, help="top module name")
    p.add_argument("--device", required=True, action="append",
                   help="board from boards/ (icebreaker, ulx3s_85f) or nextpnr device (up5k, 85k); repeatable")
    p.add_argument("--freq", type=float, default=None, help="target clock in MHz (default: the board's)")
    p.add_argument("--no-harness", action="store_true",
                   help="place the block's own ports on pins instead of wrapping it in the I/O harness")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--work-dir", default="rtl_out/pnr", help="where logs and reports go (default: %(default)s)")


def run(args) -> Result:
    from qhw.backends.pnr import place_and_route
    from qhw.fileio import require_file

    for s in args.sources:
        require_file(s, "Verilog source")
    reports = []
    for dev in args.device:
        progress(f"placing and routing {args.top} on {dev} ...")
        reports.append(place_and_route(args.sources, top=args.top, device=dev, freq_mhz=args.freq,
                                       harness=not args.no_harness, seed=args.seed,
                                       work_dir=Path(args.work_dir) / args.top / dev))
    rows = []
    for r in reports:
        used = {k: v for k, v in r.utilization.items() if v["used"]}
        rows.append({"device": r.device, "fmax_mhz": r.fmax_mhz,
                     "utilization": ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in used.items())})
    text = table(rows, ["device", "fmax_mhz", "utilization"])
    return Result({"top": args.top, "reports": [r.to_dict() for r in reports]}, text)

"""``qhw fit``: the fastest folds of an integer network that fit a board, confirmed with yosys."""

from __future__ import annotations

HELP = ("pick the fastest folds whose LUT / FF / BRAM / DSP estimates fit a board within margins, confirm "
        "with yosys for the board's family (stepping to slower folds if needed) and optionally write the build")


def add_fit_options(p, *, board_required: bool) -> None:
    """The board options ``qhw fit`` and ``qhw build --board`` share (defaults None: 'not given')."""
    p.add_argument("--board", required=board_required, default=None, metavar="B",
                   help="board name (see boards/) or a board JSON file's path")
    p.add_argument("--lut-margin", type=float, default=None, metavar="F",
                   help="fraction of the board's LUTs and FFs a fit may use (default 0.85)")
    p.add_argument("--bram-margin", type=float, default=None, metavar="F",
                   help="fraction of the board's block RAMs and DSPs a fit may use (default 0.90)")
    p.add_argument("--no-confirm", action="store_true",
                   help="trust the estimate: skip the yosys synthesis that confirms the chosen folds")


def add_fold_style_options(p) -> None:
    """How every conv / dense engine is built, whatever its fold (``qhw build`` and ``qhw fit``)."""
    p.add_argument("--requant-style", choices=("parallel", "serial"), default="parallel",
                   help="serial: every conv / dense layer may build its requantizer over several cycles a beat "
                        "(multiply-shift digit-serially, thresholds by binary search) where that fits its SF cycles "
                        "per output beat and costs fewer LUTs (the layer's cycles do not change; recorded per layer "
                        "in the manifest's fold); default parallel")
    p.add_argument("--weight-memory", choices=("auto", "block"), default="auto",
                   help="block: every conv / dense layer keeps its weight ROMs in block RAM (LUTs traded for block "
                        "RAM, same cycles; recorded per layer in the manifest's fold); default auto (by table size)")


def fold_style_of(args) -> dict[str, str]:
    return {"requant": args.requant_style, "weights": args.weight_memory}


def add_arguments(p) -> None:
    p.add_argument("network", metavar="NET.json", help="integer network written by 'qhw export'")
    add_fit_options(p, board_required=True)
    add_fold_style_options(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write the build of the chosen folds here (as 'qhw build', with a 'fit' section "
                        "in manifest.json); nothing is written when no fold fits")
    p.add_argument("--top", default=None, help="top module name (default qhw_<network file stem>)")


def margins_of(args):
    from qhw.net.fit import Margins

    kw = {k: v for k, v in (("lut", args.lut_margin), ("bram", args.bram_margin)) if v is not None}
    return Margins(**kw)


def run_fit(args, *, out, keep: bool = False):
    """Load the network and board and run :func:`qhw.net.fit.fit` (shared with ``qhw build --board``)."""
    from pathlib import Path

    from qhw.backends.boards import load_board
    from qhw.cli import progress
    from qhw.ir.serialize import load_network
    from qhw.net.fit import fit

    board = load_board(args.board)
    margins = margins_of(args)
    net = load_network(args.network)
    return fit(net, board=board, margins=margins, confirm=not args.no_confirm, out=out, top=args.top,
               network_path=str(Path(args.network).resolve()), keep=keep, progress=progress,
               fold_options=fold_style_of(args))


def format_fit(section: dict) -> str:
    """The readable summary of a ``fit`` section."""
    from qhw.cli import table
    from qhw.net.fit import LABELS, RESOURCES

    b = section["board"]
    est, ys = section["estimate"], section["yosys"]
    rows = []
    for r in RESOURCES:
        row = {"resource": LABELS[r], "capacity": b["resources"][r], "margin": f"{section['margins'][r]:.2f}",
               "limit": section["limits"][r], "estimate": est[r],
               "est %": _pct(section["estimate_utilization"][r])}
        if ys:
            row.update({"yosys": ys[r], "yosys %": _pct(section["yosys_utilization"][r])})
        rows.append(row)
    cols = ["resource", "capacity", "margin", "limit", "estimate", "est %"] + (["yosys", "yosys %"] if ys else [])
    text = (f"board {b['name']} ({b['family']} {b['device']}, {b['clock_mhz']:g} MHz): "
            f"{section['cycles_per_frame']:,} cycles/frame -> {section['frames_per_s']:,.1f} frames/s\n")
    text += table(rows, cols)
    text += "\n" + ("confirmed with yosys (flat, multipliers in logic as the estimate counts them, "
                    f"{ys['seconds']:.0f} s)" if ys else "not confirmed with yosys (--no-confirm): estimate only")
    for rej in section["rejected_by_yosys"]:
        over = ", ".join(f"{LABELS[r]} {rej['yosys'][r]:,} > {section['limits'][r]:,}" for r in rej["over"])
        text += f"\nrejected by yosys: {rej['cycles_per_frame']:,} cycles/frame ({over})"
    n_fit = sum(c["fits"] for c in section["candidates"])
    text += f"\ncandidates estimated: {len(section['candidates'])} ({n_fit} fit by estimate)"
    return text


def _pct(x) -> str:
    return "" if x is None else f"{x * 100:.1f}"


def run(args):
    from qhw.cli import Result

    res = run_fit(args, out=args.out)
    text = format_fit(res.section)
    text += f"\nwrote {res.build.verilog} and {res.build.out / 'manifest.json'}" if res.build else \
        "\nno --out: nothing written"
    return Result({"board": res.section["board"]["name"], "fit": res.section,
                   "build": str(res.build.out) if res.build else None}, text)

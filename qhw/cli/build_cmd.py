"""``qhw build``: integer network → Verilog accelerator + manifest, in a build directory."""

from __future__ import annotations

HELP = ("generate the streaming accelerator of an integer network: one engine per layer, skip FIFOs sized "
        "without simulation, AXI4-Stream ports; writes <top>.v and manifest.json into --out (atomically); "
        "--board B: the fastest folds that fit board B, as 'qhw fit'")


def add_arguments(p) -> None:
    from qhw.cli.fit_cmd import add_fit_options, add_fold_style_options

    p.add_argument("network", metavar="NET.json", help="integer network written by 'qhw export'")
    p.add_argument("--out", required=True, metavar="DIR", help="build directory, e.g. rtl_out/<name>")
    p.add_argument("--fold", metavar="FILE|auto", default=None,
                   help='fold config JSON {"layers": {name: {"rows", "cols", "lanes"[, "requant"]} | {"simd"}}} (layers it '
                        "does not name get the default fold), or 'auto' with --target-cycles or --lut-budget")
    p.add_argument("--target-cycles", type=int, default=None, metavar="N",
                   help="--fold auto: the cheapest folds with every layer at most N cycles per frame")
    p.add_argument("--lut-budget", type=int, default=None, metavar="N",
                   help="--fold auto: the fastest folds whose LUT estimate fits N")
    add_fit_options(p, board_required=False)  # --board: the folds 'qhw fit' picks (conflicts with --fold)
    add_fold_style_options(p)
    p.add_argument("--top", default=None, help="top module name (default qhw_<network file stem>)")
    p.add_argument("--keep", action="store_true", help="also write every compile pass's output under DIR/passes/")


def run(args):
    from pathlib import Path

    from qhw.cli import progress
    from qhw.errors import InputError
    from qhw.ir.serialize import load_network
    from qhw.net.build import build, load_folds
    from qhw.cli.fit_cmd import fold_style_of
    from qhw.net.folding import auto_folds, with_fold_options

    board_opts = [o for o, v in (("--lut-margin", args.lut_margin), ("--bram-margin", args.bram_margin),
                                 ("--no-confirm", args.no_confirm)) if v not in (None, False)]
    if args.board is not None:
        clash = [o for o, v in (("--fold", args.fold), ("--target-cycles", args.target_cycles),
                                ("--lut-budget", args.lut_budget)) if v is not None]
        if clash:
            raise InputError(f"--board conflicts with {', '.join(clash)}: --board picks the folds itself "
                             "(the fastest that fit the board); give one or the other")
        return _run_board(args)
    if board_opts:
        raise InputError(f"{', '.join(board_opts)} go with --board")
    net = load_network(args.network)
    if args.fold == "auto":
        folds = auto_folds(net, target_cycles=args.target_cycles, lut_budget=args.lut_budget, progress=progress)
    elif args.target_cycles is not None or args.lut_budget is not None:
        raise InputError("--target-cycles and --lut-budget go with --fold auto")
    else:
        folds = load_folds(args.fold, net) if args.fold else None
    folds = with_fold_options(net, folds, **fold_style_of(args))
    res = build(net, args.out, folds=folds, top=args.top, network_path=str(Path(args.network).resolve()),
                keep=args.keep, progress=progress)
    return _result(res)


def _run_board(args):
    from qhw.cli.fit_cmd import format_fit, run_fit

    fitted = run_fit(args, out=args.out, keep=args.keep)
    result = _result(fitted.build)
    result.text = format_fit(fitted.section) + "\n\n" + result.text
    result.data["fit"] = fitted.section
    return result


def _result(res):
    from qhw.cli import Result, table

    man = res.manifest
    rows = [{"layer": l["name"], "kind": l["kind"], "pe": l["pe"] or "",
             "fold": " ".join(f"{k}={v}" for k, v in l["fold"].items()), "cycles/frame": l["cycles_per_frame"],
             "lut": l["estimate"]["xilinx"]["lut"], "ff": l["estimate"]["xilinx"]["ff"],
             "bram": l["estimate"]["xilinx"]["bram"]} for l in man["layers"]]
    tot = man["estimate"]["xilinx"]
    text = table(rows, ["layer", "kind", "pe", "fold", "cycles/frame", "lut", "ff", "bram"])
    text += (f"\n\ncycles per frame {man['cycles_per_frame']} (bottleneck {man['bottleneck']}); estimate (Xilinx 7, "
             f"RAMB18): {tot['lut']} LUT, {tot['ff']} FF, {tot['bram']} BRAM")
    text += "\nskip FIFOs: " + (", ".join(f"{f['dst']}[{f['port']}] {f['depth']}" for f in man["fifos"]) or "none")
    text += f"\nwrote {res.verilog} and {res.out / 'manifest.json'}"
    return Result({"build": str(res.out), "verilog": str(res.verilog), "manifest": man}, text)

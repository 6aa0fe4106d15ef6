"""``qhw bench``: benchmark scripts (not timed tests).

``qhw bench hw`` sweeps the PE arrays; ``qhw bench bram`` compares designs
with weights (and line buffers) in LUTs against block RAM on every family,
through :mod:`qhw.bench.bram`; ``qhw bench net`` builds, simulates and
synthesizes whole accelerators per network and fold, through
:mod:`qhw.bench.net`; with ``--boards``, per network and board (fit,
resources, nextpnr Fmax, frames/s, published peers), through
:mod:`qhw.bench.boards`.
"""

from __future__ import annotations

import argparse

from qhw.cli import Result, progress, table

HELP = ("benchmarks: `qhw bench hw` synthesizes PE arrays of every kind and size and tabulates LUTs/lane, Fmax, "
        "utilization; `qhw bench bram` tabulates LUT / FF / BRAM per family, LUT memories against block RAM; "
        "`qhw bench net` builds, simulates and synthesizes whole accelerators per network and fold (MACs, lanes, "
        "bottleneck bound, cycles per frame, MAC utilization, LUT / FF / BRAM, tool times); `qhw bench net "
        "--boards B,B` fits each network to each board (resources, nextpnr Fmax, frames/s, published peers)")

#: ``qhw bench net``: synthesis families when ``--targets`` is not given.
NET_TARGETS = ("xilinx", "ecp5")
#: ``qhw bench bram --design``: what each name benchmarks.
BRAM_DESIGNS = {
    "array": "8x8 systolic array of a 3x3 64->64 int4 conv's weights (576 fold steps), weight ROMs in LUTs / block RAM",
    "conv64": "whole 3x3 64->64 conv engine on an 8x8 map (odd4 weights, unsigned 4-bit in/out, fitted requantizer, "
              "Fold(8, 8, 1)), weights and line buffer in LUTs / block RAM",
}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _fold_arg(text: str) -> int | str:
    """``--fold``: an integer for ``hw`` (fold steps), ``default`` / ``auto`` / a fold file for ``net``."""
    try:
        return int(text)
    except ValueError:
        return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    from qhw.bench.hw import KINDS, SIZES, TARGETS  # numpy only; no amaranth

    p.add_argument("what", choices=["hw", "bram", "net", "estimates"],
                   help="what to benchmark (hw: the PE arrays; bram: LUT memories against block RAM; "
                        "net: whole accelerators per network and fold)")
    p.add_argument("--sizes", type=_int_list, default=SIZES, metavar="N,N",
                   help=f"hw: array sizes N (N×N PEs), default {','.join(map(str, SIZES))}")
    p.add_argument("--kinds", type=_name_list, default=tuple(KINDS), metavar="K,K",
                   help=f"hw: PE kinds, default all: {','.join(KINDS)}")
    p.add_argument("--targets", type=_name_list, default=TARGETS, metavar="T,T",
                   help=f"synthesis targets, default {','.join(TARGETS)} (net: {','.join(NET_TARGETS)})")
    p.add_argument("--lanes", type=int, default=1, help="hw: SIMD lanes per PE (default 1)")
    p.add_argument("--fold", type=_fold_arg, default=None, metavar="N|default|auto|FILE",
                   help="hw: neuron and synapse fold: each PE steps through fold² ROM words (default 4); "
                        "net: default (the default fold), auto (one point per --lut-budget / --target-cycles "
                        "value) or a fold config file (default: default)")
    p.add_argument("--jobs", type=int, default=1, help="hw: synthesis / place-and-route runs in parallel (default 1)")
    p.add_argument("--no-pnr", action="store_true", help="hw, net --boards: skip nextpnr (Fmax)")
    p.add_argument("--no-util", action="store_true", help="hw: skip the cocotb utilization runs")
    p.add_argument("--no-reference", action="store_true", help="hw: skip the behavioural reference designs")
    p.add_argument("--design", choices=sorted(BRAM_DESIGNS), default="array",
                   help="bram: " + "; ".join(f"{k}: {v}" for k, v in BRAM_DESIGNS.items()) + " (default array)")
    p.add_argument("--net", action="append", default=[], metavar="[LABEL=]NET.json",
                   help="net: a network written by 'qhw export' (repeat for several); label default: the "
                        "directory name of .../NAME/net.json")
    p.add_argument("--lut-budget", type=_int_list, default=(), metavar="N,N",
                   help="net, --fold auto: one point per budget, the fastest folds whose LUT estimate fits it")
    p.add_argument("--target-cycles", type=_int_list, default=(), metavar="N,N",
                   help="net, --fold auto: one point per target, the cheapest folds with every layer at most N "
                        "cycles per frame")
    p.add_argument("--images", type=int, default=4, metavar="N", help="net: images simulated per point (default 4)")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                   help="net: simulator (default verilator)")
    p.add_argument("--stall", type=float, default=0.2, metavar="P",
                   help="net: probability that s_axis withholds valid / m_axis withholds ready (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="net: seed of the stalls and synthetic images (default 0)")
    p.add_argument("--dataset", choices=("auto", "digits", "synthetic"), default="auto",
                   help="net: images: digits test set, random valid codes, or auto (digits when the network reads "
                        "1x8x8 8-bit images, else synthetic; default)")
    p.add_argument("--no-sim", action="store_true", help="net: skip the simulations")
    p.add_argument("--no-synth", action="store_true", help="net: skip yosys")
    p.add_argument("--dsp", action="store_true", help="net: let yosys use DSP blocks (default off, as estimated)")
    p.add_argument("--synth-timeout", type=float, default=7200.0, metavar="S",
                   help="net: give up on one yosys run after S seconds (default 7200)")
    p.add_argument("--fifo-scale", type=float, default=1.0, metavar="X",
                   help="net: multiply the computed skip-FIFO depths (default 1: as computed)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="net: builds, simulator builds and cached results (default OUT/net)")
    p.add_argument("--boards", type=_name_list, default=(), metavar="B,B",
                   help="net: per network and board (names in boards/ or board files): the fastest folds that fit "
                        "(qhw fit, yosys-confirmed unless --no-synth), LUT / FF / BRAM / DSP and %% of the board, "
                        "nextpnr Fmax of the UART-wrapped build on iCE40 / ECP5 boards (unless --no-pnr), frames/s "
                        "at Fmax, 100 MHz and the board clock, frames/s per kLUT, and published peers; "
                        "writes OUT/boards.md and OUT/boards.json (no simulation)")
    p.add_argument("--bitstream", action="store_true",
                   help="net --boards: also pack the bitstream (icepack / ecppack) next to the P&R results")
    p.add_argument("--baud", type=float, default=115200.0,
                   help="net --boards: the UART wrapper's baud rate (default %(default)g)")
    p.add_argument("--depth", type=int, choices=(1, 2), default=1,
                   help="estimates: 1 keeps each engine as a module (per-layer counts), 2 also its stages (window, "
                        "array, requantizer, packer: per-stage counts for calibration; slower)")
    p.add_argument("--flat", action="store_true",
                   help="estimates: also synthesize every network flat, to compare with the per-layer total")
    p.add_argument("--out", default="rtl_out/bench", help="output and cache directory (default rtl_out/bench)")


def run(args) -> Result:
    if args.what == "bram":
        return run_bram(args)
    if args.what == "estimates":  # estimate / yosys per network, layer and family (qhw.bench.estimates)
        from qhw.bench.estimates import run_cli

        return run_cli(args, progress)
    if args.what == "net":
        return run_net(args)
    from pathlib import Path

    from qhw.bench.hw import BenchConfig, run_bench

    cfg = BenchConfig(kinds=tuple(args.kinds), sizes=tuple(args.sizes), targets=tuple(args.targets),
                      lanes=args.lanes, fold=4 if args.fold is None else args.fold, pnr=not args.no_pnr,
                      utilization=not args.no_util,
                      reference=not args.no_reference, jobs=args.jobs, out_dir=Path(args.out))
    doc = run_bench(cfg, progress)
    rows = []
    for r in doc["summary"]:
        rows.append({
            "kind": r["kind"], "N": r["n"],
            "LUT/lane xilinx": _f(r.get("xilinx_nodsp_lut_per_lane")),
            "ref LUT/lane": _f(r.get("xilinx_nodsp_ref_lut_per_lane")),
            "FINN-R": r["finn_r_lut_per_lane"] or "",
            "UP5K MHz": _fmax(r["pnr_ice40"]), "85F MHz": _fmax(r["pnr_ecp5"]),
            "util %": _f(100 * r["util"]["utilization"]) if "utilization" in r.get("util", {}) else "",
        })
    out = Path(args.out)
    text = table(rows, list(rows[0]) if rows else ["kind"]) + f"\n\nwritten: {out / 'hw.json'}, {out / 'hw.md'}"
    return Result(data={"json": str(out / "hw.json"), "markdown": str(out / "hw.md"), "summary": doc["summary"]},
                  text=text)


# -- qhw bench bram -----------------------------------------------------------------------

def conv64_layer(seed: int = 0):
    """The ``conv64`` layer: 3×3 conv, 64 → 64 channels on an 8×8 map, odd4 weights, unsigned 4-bit in and out.

    Weights are uniform over the 16 odd codes. The requantizer is an affine
    map fitted to the accumulators of four random input maps (5th to 95th
    percentile of each channel onto the 15 output levels, a quarter of the
    channels with a negative scale, as a folded BN would give), exported as
    exact thresholds plus their equivalent multiply-shift, so most
    thresholds switch on real data and the engine may build either form.
    """
    import numpy as np
    import torch

    from qhw.ir import intmath
    from qhw.ir.golden import layer_op
    from qhw.ir.graph import Conv, TensorSpec
    from qhw.ir.requant import affine_requant

    rng = np.random.default_rng(seed)
    spec = TensorSpec((64, 8, 8), "unsigned", 4)
    weights = intmath.decode_weights("odd", 4, rng.integers(0, 16, size=(64, 64 * 9)))
    args = dict(name="conv64", input="x", in_spec=spec, out_channels=64, kernel=(3, 3), stride=1, padding=1,
                weight_code="odd", weight_bits=4, weights=weights)
    probe = Conv(**args)
    x = rng.integers(spec.lo, spec.hi + 1, size=(4, *spec.shape)).astype(np.int64)
    acc = layer_op(probe)(torch.as_tensor(x)).numpy()
    acc = np.moveaxis(acc, 1, -1).reshape(-1, acc.shape[1])
    lo, hi = np.percentile(acc, 5, axis=0), np.percentile(acc, 95, axis=0)
    levels = 15
    a = levels / np.maximum(hi - lo, 1.0)
    b = -a * lo
    flip = rng.random(len(a)) < 0.25  # a negative BN scale: level = 15 - (the positive map)
    a, b = np.where(flip, -a, a), np.where(flip, levels - b, b)
    return Conv(**args, requant=affine_requant(a, b, "unsigned", 4, probe.acc_lo, probe.acc_hi))


def conv64_designs() -> dict:
    """``conv64_lut`` and ``conv64_block``: the :func:`conv64_layer` engine with its weight ROMs and line
    buffer in LUTs (``weight_memory="lut", buffer_memory="lut"``) and in block RAM (``"block", "block"``)."""
    from qhw.net.engines import ConvEngine
    from qhw.net.fold import Fold

    layer = conv64_layer()
    return {f"conv64_{mem}": ConvEngine(layer=layer, fold=Fold(rows=8, cols=8, lanes=1), weight_memory=mem,
                                        buffer_memory=mem)
            for mem in ("lut", "block")}


def run_bram(args) -> Result:
    """``qhw bench bram``: :func:`qhw.bench.bram.bram_table` of the chosen designs; markdown and JSON under ``--out``."""
    import warnings
    from pathlib import Path

    from amaranth.hdl import UnusedElaboratable

    from qhw.backends.synth import TARGETS
    from qhw.bench import bram
    from qhw.errors import InputError
    from qhw.fileio import atomic_write_json, atomic_write_text

    targets = tuple(args.targets)
    bad = [t for t in targets if t not in TARGETS]
    if bad:  # before any elaboration: a typo costs nothing
        raise InputError(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS)}")
    out = Path(args.out)
    progress(f"bench bram: elaborating the {args.design} designs")
    with warnings.catch_warnings():
        # choose_requantizer builds both forms and drops the dearer one unelaborated: not a mistake here.
        warnings.simplefilter("ignore", UnusedElaboratable)
        designs = bram.default_designs() if args.design == "array" else conv64_designs()
    rows = bram.bram_table(designs, targets, out / "bram", progress=progress)
    stem = "bram" if args.design == "array" else f"bram_{args.design}"
    text = bram.markdown(rows)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    atomic_write_text(md, f"# qhw bench bram --design {args.design}\n\n{BRAM_DESIGNS[args.design]}.\n\n{text}\n")
    atomic_write_json(js, {"design": args.design, "targets": list(targets), "rows": rows})
    missing = [f"{r['design']} on {r['target']}" for r in rows if r["design"].endswith("_block") and not r["bram"]]
    note = f"\n\nno block RAM cells in: {', '.join(missing)}" if missing else ""
    return Result(data={"json": str(js), "markdown": str(md), "rows": rows, "no_bram": missing},
                  text=f"{text}{note}\n\nwritten: {js}, {md}")


# -- qhw bench net ------------------------------------------------------------------------

def net_folds(args):
    """The fold points of ``qhw bench net``: ``--fold`` with its ``--lut-budget`` / ``--target-cycles`` values."""
    from qhw.bench.net import FoldSpec
    from qhw.errors import InputError

    fold = "default" if args.fold is None else args.fold
    if fold != "auto" and (args.lut_budget or args.target_cycles):
        raise InputError("--lut-budget and --target-cycles go with --fold auto")
    if fold == "auto":
        if not (args.lut_budget or args.target_cycles):
            raise InputError("--fold auto needs --lut-budget N[,N] or --target-cycles N[,N]")
        return tuple([FoldSpec("lut", n) for n in args.lut_budget] + [FoldSpec("cycles", n) for n in args.target_cycles])
    if fold == "default":
        return (FoldSpec("default"),)
    if isinstance(fold, int):
        raise InputError(f"--fold {fold}: qhw bench net takes default, auto or a fold config file")
    from qhw.fileio import require_file

    require_file(fold, "fold config")
    return (FoldSpec("file", fold),)


def run_net(args) -> Result:
    """``qhw bench net``: :func:`qhw.bench.net.run_bench`; ``net.md`` and ``net.json`` under ``--out``."""
    import gc
    import warnings
    from pathlib import Path

    from amaranth.hdl import UnusedElaboratable

    from qhw.bench.hw import TARGETS
    from qhw.bench.net import NetBenchConfig, NetSpec, run_bench

    # --targets' default object is hw's four families (argparse keeps it as is): net then reports Xilinx 7 and ECP5.
    targets = NET_TARGETS if args.targets is TARGETS else tuple(args.targets)
    boards = tuple(getattr(args, "boards", ()))
    if boards and (args.fold is not None or args.lut_budget or args.target_cycles):
        from qhw.errors import InputError

        raise InputError("--boards picks the folds itself (qhw fit): drop --fold, --lut-budget, --target-cycles")
    cfg = NetBenchConfig(nets=tuple(NetSpec.parse(n) for n in args.net), folds=net_folds(args), targets=targets,
                         dsp=args.dsp, synth=not args.no_synth, sim=not args.no_sim, images=args.images,
                         simulator=args.simulator, stall=args.stall, seed=args.seed, dataset=args.dataset,
                         fifo_scale=args.fifo_scale, synth_timeout=args.synth_timeout, out_dir=Path(args.out),
                         cache_dir=Path(args.cache_dir) if args.cache_dir else None, boards=boards,
                         pnr=not getattr(args, "no_pnr", False), bitstream=getattr(args, "bitstream", False),
                         baud=getattr(args, "baud", 115200.0))
    with warnings.catch_warnings():
        # fold auto under a LUT budget elaborates candidate engines for their estimates only and drops them
        # (qhw.net.folding): not a mistake here, and hundreds of lines of noise on stderr.
        warnings.simplefilter("ignore", UnusedElaboratable)
        doc = run_bench(cfg, progress)
        gc.collect()  # the dropped candidates warn when collected: inside the filter
    out = Path(args.out)
    if boards:
        text = (out / "boards.md").read_text() + f"\nwritten: {out / 'boards.json'}, {out / 'boards.md'}"
        failed = [f"{r['net']} / {r['board']}" for r in doc["rows"]
                  if r.get("failed") or "error" in r.get("pnr", {})]
        return Result(data={"json": str(out / "boards.json"), "markdown": str(out / "boards.md"),
                            "rows": doc["rows"], "peers": doc["peers"], "failed": failed}, text=text,
                      exit_code=5 if failed else 0)
    text = (out / "net.md").read_text() + f"\nwritten: {out / 'net.json'}, {out / 'net.md'}"
    failed = [f"{r['net']} / {r['fold']}" for r in doc["rows"]
              if "error" in r or "error" in r.get("sim", {}) or not r.get("sim", {}).get("ok", True)
              or any("error" in s for s in r.get("synth", {}).values())]
    return Result(data={"json": str(out / "net.json"), "markdown": str(out / "net.md"), "rows": doc["rows"],
                        "failed": failed}, text=text, exit_code=5 if failed else 0)


def _f(v) -> str:
    return "" if v is None else f"{v:.1f}"


def _fmax(r: dict) -> str:
    if not r:
        return ""
    if "error" in r:
        return "error"
    return f"{r['fmax_mhz']:.1f}" if r.get("fits") else "no fit"

"""``qhw bench``: benchmark scripts (not timed tests); ``qhw bench hw`` sweeps the arrays."""

from __future__ import annotations

import argparse

from qhw.cli import Result, progress, table

HELP = "benchmarks: `qhw bench hw` synthesizes PE arrays of every kind and size and tabulates LUTs/lane, Fmax, utilization"


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    from qhw.bench.hw import KINDS, SIZES, TARGETS  # numpy only; no amaranth

    p.add_argument("what", choices=["hw"], help="what to benchmark (hw: the PE arrays)")
    p.add_argument("--sizes", type=_int_list, default=SIZES, metavar="N,N",
                   help=f"array sizes N (N×N PEs), default {','.join(map(str, SIZES))}")
    p.add_argument("--kinds", type=_name_list, default=tuple(KINDS), metavar="K,K",
                   help=f"PE kinds, default all: {','.join(KINDS)}")
    p.add_argument("--targets", type=_name_list, default=TARGETS, metavar="T,T",
                   help=f"synthesis targets, default {','.join(TARGETS)}")
    p.add_argument("--lanes", type=int, default=1, help="SIMD lanes per PE (default 1)")
    p.add_argument("--fold", type=int, default=4,
                   help="neuron and synapse fold: each PE steps through fold² ROM words (default 4)")
    p.add_argument("--jobs", type=int, default=1, help="synthesis / place-and-route runs in parallel (default 1)")
    p.add_argument("--no-pnr", action="store_true", help="skip nextpnr (Fmax)")
    p.add_argument("--no-util", action="store_true", help="skip the cocotb utilization runs")
    p.add_argument("--no-reference", action="store_true", help="skip the behavioural reference designs")
    p.add_argument("--out", default="rtl_out/bench", help="output and cache directory (default rtl_out/bench)")


def run(args) -> Result:
    from pathlib import Path

    from qhw.bench.hw import BenchConfig, run_bench

    cfg = BenchConfig(kinds=tuple(args.kinds), sizes=tuple(args.sizes), targets=tuple(args.targets),
                      lanes=args.lanes, fold=args.fold, pnr=not args.no_pnr, utilization=not args.no_util,
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


def _f(v) -> str:
    return "" if v is None else f"{v:.1f}"


def _fmax(r: dict) -> str:
    if not r:
        return ""
    if "error" in r:
        return "error"
    return f"{r['fmax_mhz']:.1f}" if r.get("fits") else "no fit"

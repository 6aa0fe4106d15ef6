"""cocotb tests of the streaming PEs (qhw.hw.pe): XNOR-popcount, AND, shift-add, MAC.

The top level holds one or more PEs as *units* (tests/sim_hw_support.Harness):
unit ``u``'s ports are ``u_i_stream`` / ``u_o_stream``. All units run
concurrently, each with its own driver, monitor and scoreboard.

Parameters (``tb_params``)
--------------------------
units : list of {name, weight_code, weight_bits, act_code, act_bits, lanes, fold, acc_width}
vectors : dot products per unit in the stall test
long_vectors : dot products per unit in the utilization test
valid_prob, ready_prob, seed

The expected dot products come from :mod:`qhw.ir.intmath` decoding alone
(``sum decode_weights(w) · decode_acts(a)``), never from the design's code.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from qhw.backends.sim import record, tb_params
from qhw.ir import intmath
from qhw_tb import StreamUnit, pack_fields, pack_lanes, run_units, to_signed


def expected_dot(u: dict, act_codes, weight_codes) -> int:
    w = intmath.decode_weights(u["weight_code"], u["weight_bits"], weight_codes)
    a = intmath.decode_acts(u["act_code"], u["act_bits"], act_codes)
    return int(np.sum(w * a))


def _extreme_weight_codes(u: dict) -> tuple[int, int]:
    lo, hi = intmath.weight_value_range(u["weight_code"], u["weight_bits"])
    codes = intmath.encode_weights(u["weight_code"], u["weight_bits"], [lo, hi])
    return int(codes[0]), int(codes[1])


def make_vectors(u: dict, n: int, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """``n`` dot products of ``lanes · fold`` (activation, weight) code pairs.

    The first four are the extremes of the accumulator (every activation at
    its smallest / largest value, every weight at the most negative /
    positive value); every third is drawn from extreme codes only; the rest
    are uniform over all codes.
    """
    length = u["lanes"] * u["fold"]
    a_lo, a_hi = intmath.act_extreme_codes(u["act_code"], u["act_bits"])
    w_lo, w_hi = _extreme_weight_codes(u)
    out = []
    for k in range(n):
        if k < 4:
            a, w = [(a_hi, a_lo)[k // 2]] * length, [(w_lo, w_hi)[k % 2]] * length
        elif k % 3 == 0:
            a = [rng.choice((a_lo, a_hi)) for _ in range(length)]
            w = [rng.choice((w_lo, w_hi)) for _ in range(length)]
        else:
            a = [rng.randrange(1 << u["act_bits"]) for _ in range(length)]
            w = [rng.randrange(1 << u["weight_bits"]) for _ in range(length)]
        out.append((a, w))
    return out


def beats(u: dict, a: list[int], w: list[int]) -> list[int]:
    """Input payloads of one dot product: ``fold`` beats of ``lanes`` pairs.

    StreamPE's flat beat: the activation lanes in the low ``lanes·act_bits``
    bits, the weight lanes above them.
    """
    lanes, out = u["lanes"], []
    for f in range(u["fold"]):
        sl = slice(f * lanes, (f + 1) * lanes)
        out.append(pack_fields([(pack_lanes(a[sl], u["act_bits"]), lanes * u["act_bits"]),
                                (pack_lanes(w[sl], u["weight_bits"]), lanes * u["weight_bits"])]))
    return out


class Unit(StreamUnit):
    """Driver, monitor, probe and scoreboard of one PE in the harness."""

    def __init__(self, dut, u: dict, rng: random.Random, valid_prob: float, ready_prob: float):
        self.u = u
        width = u["acc_width"]
        super().__init__(dut, f"{u['name']}_", rng=rng, valid_prob=valid_prob, ready_prob=ready_prob,
                         label=f"{u['name']} ({u['weight_code']} w{u['weight_bits']} {u['act_code']} a{u['act_bits']} "
                               f"x{u['lanes']} fold {u['fold']})",
                         decode=lambda v: to_signed(v, width))

    async def run(self, vectors, timeout_cycles: int) -> None:
        payloads = [p for a, w in vectors for p in beats(self.u, a, w)]
        await self.play(payloads, [expected_dot(self.u, a, w) for a, w in vectors], timeout_cycles=timeout_cycles)


async def _run_units(dut, p, *, n_vectors: int, valid_prob: float, ready_prob: float, seed: int):
    rng = random.Random(seed)
    units = [Unit(dut, u, rng, valid_prob, ready_prob) for u in p["units"]]

    def job(unit: Unit):
        vectors = make_vectors(unit.u, n_vectors, random.Random(rng.random()))
        return unit.run(vectors, int(8 * n_vectors * unit.u["fold"] / (valid_prob * ready_prob)) + 100)

    await run_units(dut, units, [job(unit) for unit in units])
    return units


@cocotb.test()
async def dot_products_with_stalls(dut):
    p = tb_params()
    units = await _run_units(dut, p, n_vectors=p.get("vectors", 60), valid_prob=p["valid_prob"],
                             ready_prob=p["ready_prob"], seed=p.get("seed", 1))
    for unit in units:
        record(f"{unit.u['name']}.checked", unit.board.matched)
        record(f"{unit.u['name']}.out_stalls", unit.sink.rules.stalls)  # cycles the handshake rules were tested


@cocotb.test()
async def utilization_long_stream(dut):
    """No stalls: useful MAC cycles / all cycles from first input to last output."""
    p = tb_params()
    n = p.get("long_vectors", 200)
    units = await _run_units(dut, p, n_vectors=n, valid_prob=1.0, ready_prob=1.0, seed=p.get("seed", 1) + 99)
    for unit in units:
        window = unit.window()
        transfers = unit.in_probe.transfers
        name = unit.u["name"]
        # Every transfer feeds every lane with a real (activation, weight) pair.
        record(f"{name}.utilization", transfers / window)
        record(f"{name}.cycles", window)
        record(f"{name}.macs", transfers * unit.u["lanes"])
        record(f"{name}.steady_transfers_per_cycle", unit.in_probe.busy_fraction())

"""cocotb tests of the systolic array (qhw.hw.array) and of the behavioural reference.

Any component with the array's stream contract can be tested here
(``SystolicArray`` and ``qhw.hw.reference_mac.ReferenceMacArray``): input
beats of ``rows·lanes`` activation codes, output beats of ``cols`` signed
accumulators, beat order ``(vector, nf, sf)`` as in
``qhw.hw.array.mapping``. Units sit side by side in one top level
(tests/sim_hw_support.Harness), ports ``<unit>_i_stream`` / ``<unit>_o_stream``.

Parameters (``tb_params``)
--------------------------
units : list of {name, weights, rows, cols, lanes, weight_code, weight_bits, act_code, act_bits, acc_width}
    ``weights`` are the integer values the outputs must be computed with
    (a fault-injection test builds the hardware from other ones). An
    optional ``prefix`` (default ``"<name>_"``) names the unit's ports, so
    ``prefix=""`` tests a bare array as the top level.
vectors, long_vectors, valid_prob, ready_prob, seed

Expected values: ``sum_k W[ch, k] · decode_acts(x[k])`` with intmath
decoding, computed here; the mapping's own reference model is checked
against it on the way. Padded output channels (past ``C`` in the last
neuron group) are don't-care; padded input features carry random codes
that must not matter.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from qhw.backends.sim import record, tb_params
from qhw.hw.array.mapping import ArrayMapping
from qhw.hw.pe.spec import PESpec
from qhw.ir import intmath
from qhw_tb import StreamUnit, pack_lanes, run_units, unpack_lanes


def _mapping(u: dict) -> ArrayMapping:
    spec = PESpec(weight_code=u["weight_code"], weight_bits=u["weight_bits"], act_code=u["act_code"],
                  act_bits=u["act_bits"], lanes=u["lanes"])
    return ArrayMapping(weights=np.array(u["weights"], dtype=np.int64), rows=u["rows"], cols=u["cols"], spec=spec)


def make_vectors(u: dict, n: int, rng: random.Random) -> np.ndarray:
    """(n, K) activation codes: all at the largest value, all at the smallest, then extremes-only
    and uniform ones (extremes from intmath, so signed codes get 011..1 and 100..0)."""
    K = len(u["weights"][0])
    a_lo, a_hi = intmath.act_extreme_codes(u["act_code"], u["act_bits"])
    a_max = (1 << u["act_bits"]) - 1
    x = np.zeros((n, K), dtype=np.int64)
    for v in range(n):
        if v == 0:
            x[v] = a_hi
        elif v == 1:
            x[v] = a_lo
        elif v % 3 == 0:
            x[v] = [rng.choice((a_lo, a_hi)) for _ in range(K)]
        else:
            x[v] = [rng.randrange(a_max + 1) for _ in range(K)]
    return x


class Unit(StreamUnit):
    def __init__(self, dut, u: dict, rng: random.Random, valid_prob: float, ready_prob: float):
        self.u = u
        self.mp = _mapping(u)
        self.rng = random.Random(rng.random())
        self.outputs = 0
        acc, cols = u["acc_width"], u["cols"]
        super().__init__(dut, u.get("prefix", f"{u['name']}_"), rng=rng, valid_prob=valid_prob,
                         ready_prob=ready_prob,
                         label=f"{u['name']} ({u['weight_code']} w{u['weight_bits']} {u['act_code']} a{u['act_bits']} "
                               f"{u['rows']}x{u['cols']}x{u['lanes']})",
                         decode=lambda v: self._mask(unpack_lanes(v, acc, cols, signed=True)))

    def _mask(self, columns) -> tuple:
        """Padded channels of output beat ``k`` (neuron group ``k % NF``) become None."""
        nf = self.outputs % self.mp.nf
        self.outputs += 1
        return tuple(None if nf * self.mp.cols + c >= self.mp.out_channels else v for c, v in enumerate(columns))

    def expected(self, x: np.ndarray) -> list[tuple]:
        mp, u = self.mp, self.u
        w = np.array(u["weights"], dtype=np.int64)
        a = intmath.decode_acts(u["act_code"], u["act_bits"], x)
        y = a @ w.T  # (n, C)
        out = []
        for v in range(len(x)):
            for nf in range(mp.nf):
                ch = [nf * mp.cols + c for c in range(mp.cols)]
                out.append(tuple(int(y[v, k]) if k < mp.out_channels else None for k in ch))
        return out

    def beats(self, x: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Input payloads (and their codes); padded features of the last fold step get random codes."""
        mp = self.mp
        b = mp.vectors_to_beats(x)
        pads = mp.pad_lanes()
        a_max = (1 << self.u["act_bits"]) - 1
        for i in range(mp.sf - 1, len(b), mp.sf):
            for j in pads:
                b[i, j] = self.rng.randrange(a_max + 1)
        return [pack_lanes(row, self.u["act_bits"]) for row in b], b

    async def run(self, x: np.ndarray, timeout_cycles: int) -> None:
        want = self.expected(x)
        payloads, b = self.beats(x)
        # The design's own model must agree with intmath on the real channels.
        model = self.mp.reference(b)
        for k, (row, exp) in enumerate(zip(model, want)):
            real = [(int(m), e) for m, e in zip(row, exp) if e is not None]
            assert all(m == e for m, e in real), f"{self.board.name}: mapping.reference differs at beat {k}"
        await self.play(payloads, want, timeout_cycles=timeout_cycles)


async def _run_units(dut, p, *, n_vectors: int, valid_prob: float, ready_prob: float, seed: int):
    rng = random.Random(seed)
    units = [Unit(dut, u, rng, valid_prob, ready_prob) for u in p["units"]]

    def job(unit: Unit):
        x = make_vectors(unit.u, n_vectors, random.Random(rng.random()))
        beats = n_vectors * unit.mp.steps
        timeout = int(6 * beats / (valid_prob * ready_prob)) + 4 * (unit.u["rows"] + unit.u["cols"]) + 100
        return unit.run(x, timeout)

    await run_units(dut, units, [job(unit) for unit in units])
    return units


@cocotb.test()
async def matrix_vector_products_with_stalls(dut):
    p = tb_params()
    units = await _run_units(dut, p, n_vectors=p.get("vectors", 20), valid_prob=p["valid_prob"],
                             ready_prob=p["ready_prob"], seed=p.get("seed", 1))
    for unit in units:
        record(f"{unit.u['name']}.checked", unit.board.matched)
        record(f"{unit.u['name']}.out_stalls", unit.sink.rules.stalls)  # cycles the handshake rules were tested


@cocotb.test()
async def utilization_long_stream(dut):
    """No stalls: useful MACs / (rows·cols·lanes · cycles from first input to last output)."""
    p = tb_params()
    n = p.get("long_vectors", 100)
    units = await _run_units(dut, p, n_vectors=n, valid_prob=1.0, ready_prob=1.0, seed=p.get("seed", 1) + 99)
    for unit in units:
        u, mp = unit.u, unit.mp
        window = unit.window()
        useful = n * mp.out_channels * mp.in_features
        lanes = u["rows"] * u["cols"] * u["lanes"]
        name = u["name"]
        record(f"{name}.utilization", useful / (lanes * window))
        record(f"{name}.cycles", window)
        record(f"{name}.useful_macs", useful)
        record(f"{name}.steady_transfers_per_cycle", unit.in_probe.busy_fraction())

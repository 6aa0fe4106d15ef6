"""cocotb tests of the channel regrouper (qhw.hw.regroup.Regroup), several units in one top level.

Units sit side by side (tests/sim_hw_support.Harness), ports
``<unit>_i_stream`` / ``<unit>_o_stream``. Each unit's input carries
random raw codes with garbage in every bit the block must ignore (padding
slots of a pixel's last beat, the input ``last`` flag); the expected
output is :meth:`qhw.hw.regroup.RegroupModel.reference` (the
:class:`qhw.net.FrameFormat` packing), compared beat by beat including
the ``last`` flag; the monitors check the handshake rules.

Parameters (``tb_params``)
--------------------------
units : list of dicts, each with name, channels, pixels, in_simd, out_simd,
    bits, in_last, out_last (the true parameters; a fault-injection test
    builds other hardware).
frames, long_frames, valid_prob, ready_prob, seed
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from qhw.backends.sim import record, tb_params
from qhw.hw.regroup import RegroupModel
from qhw_tb import StreamUnit, run_units

_MODEL_KEYS = ("channels", "pixels", "in_simd", "out_simd", "bits", "in_last", "out_last")


class Unit(StreamUnit):
    def __init__(self, dut, u: dict, rng: random.Random, valid_prob: float, ready_prob: float):
        self.u = u
        self.model = RegroupModel(**{k: u[k] for k in _MODEL_KEYS})
        m = self.model
        super().__init__(dut, f"{u['name']}_", rng=rng, valid_prob=valid_prob, ready_prob=ready_prob,
                         label=f"{u['name']} (C={m.channels}, {m.in_simd} -> {m.out_simd}, {m.bits} bits)",
                         decode=lambda v: v)
        assert len(self.sink.payload) == m.out_simd * m.bits + m.out_last, "output payload width"
        assert len(self.src.payload) == m.in_simd * m.bits + m.in_last, "input payload width"

    async def run(self, frames: int, seed: int, timeout_cycles: int):
        m = self.model
        rng = np.random.default_rng(seed)
        codes = rng.integers(0, 1 << m.bits, size=(frames * m.pixels, m.channels), dtype=np.int64)
        await self.play(m.input_payloads(codes, rng=rng), m.reference(codes), timeout_cycles=timeout_cycles)


async def _run_units(dut, p, *, frames: int, valid_prob: float, ready_prob: float, seed: int):
    rng = random.Random(seed)
    units = [Unit(dut, u, rng, valid_prob, ready_prob) for u in p["units"]]
    jobs = []
    for unit in units:
        m = unit.model
        beats = frames * m.pixels * max(m.in_groups, m.out_groups)
        jobs.append(unit.run(frames, rng.randrange(1 << 30), int(4 * beats / (valid_prob * ready_prob)) + 100))
    await run_units(dut, units, jobs)
    return units


@cocotb.test()
async def regroup_with_stalls(dut):
    p = tb_params()
    units = await _run_units(dut, p, frames=p.get("frames", 3), valid_prob=p["valid_prob"],
                             ready_prob=p["ready_prob"], seed=p.get("seed", 1))
    for unit in units:
        record(f"{unit.u['name']}.checked", unit.board.matched)
        record(f"{unit.u['name']}.out_stalls", unit.sink.rules.stalls)  # cycles the handshake rules were tested


@cocotb.test()
async def full_rate_without_stalls(dut):
    p = tb_params()
    units = await _run_units(dut, p, frames=p.get("long_frames", 4), valid_prob=1.0, ready_prob=1.0,
                             seed=p.get("seed", 1) + 99)
    for unit in units:
        name = unit.u["name"]
        record(f"{name}.cycles", unit.window())
        # the busier side moves one beat per cycle from its first transfer to its last
        busy = unit.in_probe if unit.model.in_groups >= unit.model.out_groups else unit.sink
        cycles = busy.cycles
        record(f"{name}.busy_transfers_per_cycle", len(cycles) / (cycles[-1] - cycles[0] + 1))

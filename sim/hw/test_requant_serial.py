"""cocotb tests of the digit-serial requantizer (qhw.hw.requant_serial): the multiply-shift codes of
:mod:`hw.test_requant` (same parameters, expected values, stimulus and handshake checks), at one beat
per ``interval`` cycles.

Parameters (``tb_params``): as :mod:`hw.test_requant` (``form`` "mulshift" units).
Records per unit: ``checked``, ``out_stalls`` (with stalls); ``cycles`` (first input transfer to last
output transfer), ``gaps`` (the distinct cycle counts between input transfers) and ``latency`` (first
input transfer to first output transfer, the sink always ready) at full rate.
"""

from __future__ import annotations

import cocotb

from hw import test_requant as base
from qhw.backends.sim import record, tb_params


@cocotb.test()
async def codes_with_stalls(dut):
    p = tb_params()
    units = await base._run_units(dut, p, n=p.get("beats", 150), valid_prob=p["valid_prob"],
                                  ready_prob=p["ready_prob"], seed=p.get("seed", 1))
    for unit in units:
        record(f"{unit.u['name']}.checked", unit.board.matched)
        record(f"{unit.u['name']}.out_stalls", unit.sink.rules.stalls)


@cocotb.test()
async def full_rate_without_stalls(dut):
    p = tb_params()
    units = await base._run_units(dut, p, n=p.get("long_beats", 100), valid_prob=1.0, ready_prob=1.0,
                                  seed=p.get("seed", 1) + 99)
    for unit in units:
        c = unit.in_probe.cycles
        record(f"{unit.u['name']}.cycles", unit.window())
        record(f"{unit.u['name']}.gaps", sorted({b - a for a, b in zip(c, c[1:])}))
        record(f"{unit.u['name']}.latency", unit.sink.cycles[0] - c[0])

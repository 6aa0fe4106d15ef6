"""cocotb test of layer engines side by side (qhw.net.engines), against the golden model.

Units sit in one top level (tests/sim_hw_support.Harness): unit ``u`` has
input ports ``u_<in_port>`` (``i_stream`` or ``i_stream_0`` …) and output
``u_o_stream``. Each input port has its own driver with random valid
stalls, the output a monitor with random ready stalls that also checks the
handshake rules; every output beat is compared with the golden model's,
and a mismatch names the layer, frame, pixel, channel, expected and got.

Parameters (``tb_params``)
--------------------------
stimulus : path of a JSON file ``{"units": [{"name", "layer", "in_ports": [...],
    "in_beats": [[int, ...], ...], "out_beats": [int, ...], "out_format": FrameFormat.to_dict()}]}``
valid_prob, ready_prob, seed
"""

from __future__ import annotations

import json
import random

import cocotb

from qhw.backends.sim import record, tb_params
from qhw_tb import StreamDriver, StreamMonitor, reset, start_clock
from qhw_tb.frames import FrameChecker, frame_format


@cocotb.test()
async def engines_match_golden(dut):
    p = tb_params()
    with open(p["stimulus"]) as f:
        units = json.load(f)["units"]
    rng = random.Random(p.get("seed", 1))
    drivers, monitors, checkers = [], [], []
    for u in units:
        drivers.append([StreamDriver(dut, f"{u['name']}_{port}", rng=random.Random(rng.random()),
                                     valid_prob=p["valid_prob"]) for port in u["in_ports"]])
        checker = FrameChecker(u["layer"], frame_format(u["out_format"]), u["out_beats"])
        checkers.append(checker)
        monitors.append(StreamMonitor(dut, f"{u['name']}_o_stream", rng=random.Random(rng.random()),
                                      ready_prob=p["ready_prob"], on_transfer=checker))
    start_clock(dut)
    await reset(dut)
    for mon in monitors:
        cocotb.start_soon(mon.run())
    tasks = [cocotb.start_soon(d.send_all(beats)) for ds, u in zip(drivers, units)
             for d, beats in zip(ds, u["in_beats"])]
    longest = max(sum(len(b) for b in u["in_beats"]) + len(u["out_beats"]) for u in units)
    timeout = int(50 * longest / max(0.05, min(p["valid_prob"], p["ready_prob"]))) + 10_000
    for mon, u in zip(monitors, units):
        await mon.wait_for(len(u["out_beats"]), timeout_cycles=timeout)
    for t in tasks:
        await t
    for u, c, mon in zip(units, checkers, monitors):
        if c.seen != len(u["out_beats"]):
            raise AssertionError(f"layer {u['layer']}: {c.seen} of {len(u['out_beats'])} beats checked")
        record(f"{u['name']}.beats", c.seen)
        record(f"{u['name']}.out_stalls", mon.rules.stalls)
        record(f"{u['name']}.cycles", mon.cycles[-1] + 1 if mon.cycles else 0)

"""cocotb tests of qhw.hw.window.WindowGenerator, several generators in one top level.

Units sit side by side (tests/sim_hw_support.Harness), ports
``<unit>_i_stream`` / ``<unit>_o_stream``. Each unit gets random input codes
as the :class:`qhw.net.stream.FrameFormat` payloads of its ``(C, H, W)``
map, frames back to back (``last`` set as the format says, and ignored by
the design), and the scoreboard compares every output beat, as a raw
integer, with ``WindowGenerator.reference`` (built on ``golden.im2col``);
the monitor also enforces the handshake rules.

Parameters (``tb_params``)
--------------------------
units : list of {name, gen, frames, long_frames}
    ``gen``: the WindowGenerator keyword arguments; ``frames``: frames in
    the test with stalls (0 = sit it out); ``long_frames``: frames in the
    stall-free cycles/utilization test (0 = sit it out).
valid_prob, ready_prob, seed
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from qhw.backends.sim import record, tb_params
from qhw.hw.window import WindowGenerator
from qhw.net.stream import FrameFormat
from qhw_tb import StreamUnit, idle_inputs, run_units


def _model(u: dict) -> WindowGenerator:
    gen = WindowGenerator(**u["gen"])
    gen._MustUse__silence = True  # the model only: never elaborated here
    return gen


class Unit(StreamUnit):
    def __init__(self, dut, u: dict, rng: random.Random, valid_prob: float, ready_prob: float):
        self.u, self.gen = u, _model(u)
        g = u["gen"]
        label = (f"{u['name']} ({g['channels']}x{g['height']}x{g['width']} simd {g['simd']} k{g['kernel']} "
                 f"s{g.get('stride', 1)} p{g.get('padding', 0)} r{g.get('replays', 1)})")
        super().__init__(dut, f"{u['name']}_", label=label, rng=rng, valid_prob=valid_prob,
                         ready_prob=ready_prob, decode=int)
        self.rng = np.random.default_rng(int(rng.random() * 2**32))

    def stimulus(self, frames: int) -> tuple[list[int], list[int]]:
        gen = self.gen
        x = self.rng.integers(0, 1 << gen.bits, size=(frames, gen.channels, gen.height, gen.width))
        x[0, :, 0] = (1 << gen.bits) - 1  # the all-ones code reaches every slot of the first row
        fmt = FrameFormat((gen.channels, gen.height, gen.width), "unsigned", gen.bits, gen.simd)
        return fmt.encode(x), gen.pack(gen.reference(x))

    async def run(self, frames: int, valid_prob: float, ready_prob: float) -> None:
        payloads, expected = self.stimulus(frames)
        timeout = int(4 * (len(payloads) + len(expected)) / (valid_prob * ready_prob)) + 2000
        await self.play(payloads, expected, timeout_cycles=timeout)


def _silence_others(dut, units: list[dict], active: list[dict]) -> None:
    idle = [u["name"] for u in units if u not in active]
    idle_inputs(dut, sources=[f"{n}_i_stream" for n in idle], sinks=[f"{n}_o_stream" for n in idle])


@cocotb.test()
async def windows_match_reference_with_stalls(dut):
    p = tb_params()
    vp, rp = p["valid_prob"], p["ready_prob"]
    rng = random.Random(p.get("seed", 1))
    active = [u for u in p["units"] if u.get("frames", 2)]
    _silence_others(dut, p["units"], active)
    units = [Unit(dut, u, rng, vp, rp) for u in active]
    await run_units(dut, units, [unit.run(unit.u.get("frames", 2), vp, rp) for unit in units])
    for unit in units:
        record(f"{unit.u['name']}.checked", unit.board.matched)
        record(f"{unit.u['name']}.out_stalls", unit.sink.rules.stalls)


@cocotb.test()
async def cycles_and_utilization(dut):
    """No stalls, frames back to back: cycles first input -> last output, and per-frame utilization."""
    p = tb_params()
    rng = random.Random(p.get("seed", 1) + 7)
    active = [u for u in p["units"] if u.get("long_frames", 0)]
    _silence_others(dut, p["units"], active)
    units = [Unit(dut, u, rng, 1.0, 1.0) for u in active]
    await run_units(dut, units, [unit.run(unit.u["long_frames"], 1.0, 1.0) for unit in units])
    for unit in units:
        gen, name, frames = unit.gen, unit.u["name"], unit.u["long_frames"]
        per = gen.out_height * gen.out_width * gen.beats_per_window
        cyc = unit.sink.cycles
        utils = []
        for f in range(frames):
            c = cyc[f * per:(f + 1) * per]
            utils.append(len(c) / (c[-1] - c[0] + 1))
        record(f"{name}.cycles", unit.window())
        record(f"{name}.estimate", gen.estimate_cycles(frames))
        record(f"{name}.utilization", utils)
        record(f"{name}.frame_ends", [cyc[(f + 1) * per - 1] - cyc[per - 1] for f in range(frames)])

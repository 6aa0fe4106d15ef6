"""Amaranth-simulator stream harness: drive and collect ``lib.stream`` ports with random stalls.

Used by the fast tests of the stream blocks and the behavioural reference
array (the PE helpers have their own ``_pe_sim``). Payloads are raw integers
(``Value.cast(payload)``), so any payload shape works.
"""

from __future__ import annotations

import random

from amaranth.hdl import ClockDomain, Module, Value
from amaranth.sim import Simulator

TIMEOUT_CYCLES = 5000


def run_streams(dut, *, sources, sinks, valid_prob=1.0, ready_prob=1.0, seed=0):
    """Drive ``sources`` {stream: [raw payloads]} and collect ``sinks`` {stream: count}.

    Each source and sink has its own random generator, so stalls on different
    streams are independent. Returns {stream: [(cycle, raw payload), ...]}.
    """
    top = Module()  # a sync domain even for purely combinational blocks
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    got = {id(s): [] for s in sinks}

    def make_source(stream, payloads, rng):
        async def source(ctx):
            for p in payloads:
                while rng.random() >= valid_prob:
                    ctx.set(stream.valid, 0)
                    await ctx.tick()
                ctx.set(Value.cast(stream.payload), p)
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
                # Scramble the payload while nothing is offered: a block that
                # reads it without valid shows up as a mismatch.
                ctx.set(Value.cast(stream.payload), rng.randrange(1 << len(Value.cast(stream.payload))))
            ctx.set(stream.valid, 0)
        return source

    def make_sink(stream, count, rng):
        async def sink(ctx):
            cycle = 0
            while len(got[id(stream)]) < count:
                ready = rng.random() < ready_prob
                ctx.set(stream.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(stream.valid, Value.cast(stream.payload))
                if ready and valid:
                    got[id(stream)].append((cycle, payload))
                cycle += 1
                assert cycle < TIMEOUT_CYCLES, f"timeout: {len(got[id(stream)])} of {count} outputs"
            ctx.set(stream.ready, 0)
        return sink

    for n, (stream, payloads) in enumerate(sources.items() if isinstance(sources, dict) else sources):
        sim.add_testbench(make_source(stream, payloads, random.Random(f"{seed}-src-{n}")))
    for n, (stream, count) in enumerate(sinks.items() if isinstance(sinks, dict) else sinks):
        sim.add_testbench(make_sink(stream, count, random.Random(f"{seed}-sink-{n}")))
    sim.run()
    return {k: v for k, v in got.items()}


def values(result, stream):
    return [p for _, p in result[id(stream)]]


def cycles(result, stream):
    return [c for c, _ in result[id(stream)]]

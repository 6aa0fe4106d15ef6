"""Amaranth-simulator stream harness for the PE / array / requantizer tests.

``run_streams`` pushes integer payloads into ``dut.i_stream`` with random
valid gaps, takes ``n_out`` payloads from ``dut.o_stream`` with random ready
gaps, and returns the outputs with the cycle of every transfer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amaranth.hdl import Value
from amaranth.sim import Simulator


@dataclass
class StreamRun:
    outputs: list[int] = field(default_factory=list)
    in_cycles: list[int] = field(default_factory=list)
    out_cycles: list[int] = field(default_factory=list)


def to_signed(value: int, width: int) -> int:
    return value - (1 << width) if value >> (width - 1) & 1 else value


def run_streams(dut, payloads, n_out: int, *, valid_prob: float = 1.0, ready_prob: float = 1.0,
                seed: int = 0, timeout: int = 10_000) -> StreamRun:
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    run = StreamRun()
    i_s, o_s = dut.i_stream, dut.o_stream
    i_payload, o_payload = Value.cast(i_s.payload), Value.cast(o_s.payload)
    mask = (1 << len(o_payload)) - 1

    async def source(ctx):
        cycle = 0
        for word in payloads:
            while rng_in.random() >= valid_prob:
                await ctx.tick()
                cycle += 1
            ctx.set(i_payload, word)
            ctx.set(i_s.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(i_s.ready)
                cycle += 1
                if ready:
                    break
            run.in_cycles.append(cycle - 1)
            ctx.set(i_s.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(run.outputs) < n_out:
            ready = rng_out.random() < ready_prob
            ctx.set(o_s.ready, ready)
            _, _, valid, word = await ctx.tick().sample(o_s.valid, o_payload)
            cycle += 1
            if ready and valid:
                run.outputs.append(word & mask)  # raw bits, even for signed payloads
                run.out_cycles.append(cycle - 1)
            if cycle > timeout:
                raise TimeoutError(f"only {len(run.outputs)} of {n_out} outputs after {timeout} cycles")
        ctx.set(o_s.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return run


# -- PE / array checks shared by the test files ------------------------------------

def extreme_codes(spec):
    """Raw (weight, activation) codes of the largest and of the smallest product, and the two products."""
    from qhw.ir import intmath

    wlo, whi = intmath.weight_value_range(spec.weight_code, spec.weight_bits)
    alo, ahi = spec.act_range
    pairs = [(w, a) for w in (wlo, whi) for a in (alo, ahi)]
    best = max(pairs, key=lambda p: p[0] * p[1])
    worst = min(pairs, key=lambda p: p[0] * p[1])

    def codes(p):
        return (int(spec.encode([p[0]])[0]), int(intmath.encode_acts(spec.act_code, spec.act_bits, [p[1]])[0]))

    return codes(best), codes(worst), best[0] * best[1], worst[0] * worst[1]


def check_stream_pe(pe, *, vectors: int = 6, seed: int = 0, valid_prob: float = 0.6,
                    ready_prob: float = 0.6) -> list[int]:
    """Random (a, w) lanes with stalls; the first two dot products are the extremes."""
    import numpy as np

    spec, fold = pe.spec, pe.fold
    rng = np.random.default_rng(seed)
    n = vectors * fold
    a = rng.integers(0, spec.code_max + 1, size=(n, spec.lanes))
    w = rng.integers(0, 1 << spec.weight_bits, size=(n, spec.lanes))
    (w_hi, a_hi), (w_lo, a_lo), v_hi, v_lo = extreme_codes(spec)
    w[:fold], a[:fold] = w_hi, a_hi
    w[fold:2 * fold], a[fold:2 * fold] = w_lo, a_lo
    expected = [int(x) for x in pe.reference(a, w)]
    terms = spec.lanes * fold
    assert expected[:2] == [terms * v_hi, terms * v_lo]  # the bounds are attained
    run = run_streams(pe, [pe.pack(x, y) for x, y in zip(a, w)], len(expected),
                      valid_prob=valid_prob, ready_prob=ready_prob, seed=seed)
    got = [to_signed(x, pe.acc_width) for x in run.outputs]
    assert got == expected
    return got

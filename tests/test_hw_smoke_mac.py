"""SmokeMac in Amaranth's simulator: exact dot products under random stalls."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from qhw.backends.verilog import to_verilog
from qhw.hw.smoke_mac import BrokenSmokeMac, SmokeMac, reference_dot


def _simulate(dut: SmokeMac, vectors: list[list[tuple[int, int]]], seed: int) -> list[int]:
    rng = random.Random(seed)
    results: list[int] = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def source(ctx):
        for terms in vectors:
            for i, (a, w) in enumerate(terms):
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.i_stream.payload, {"a": a, "w": w, "last": int(i == len(terms) - 1)})
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
                ctx.set(dut.i_stream.valid, 0)

    async def sink(ctx):
        while len(results) < len(vectors):
            ctx.set(dut.o_stream.ready, rng.random() < 0.6)
            await ctx.tick()
            # sample what was transferred on that edge
        return

    async def monitor(ctx):
        async for clk_edge, rst, valid, ready, payload in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload):
            if valid and ready:
                results.append(payload)
            if len(results) == len(vectors):
                return

    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_process(monitor)
    sim.run_until(1e-6 * 20000)
    return results


@pytest.mark.parametrize("a_width, w_width", [(1, 2), (4, 4), (8, 3)])
def test_dot_products_are_exact_under_stalls(a_width, w_width):
    rng = random.Random(a_width * 100 + w_width)
    dut = SmokeMac(a_width=a_width, w_width=w_width, max_length=12)
    lo, hi = -(1 << (w_width - 1)), (1 << (w_width - 1)) - 1
    vectors = [[((1 << a_width) - 1, lo)] * 12]  # worst case first
    vectors += [[(rng.randrange(1 << a_width), rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))]
                for _ in range(15)]
    assert _simulate(dut, vectors, seed=7) == [reference_dot(v) for v in vectors]


def test_broken_variant_is_caught():
    vectors = [[(3, 2), (5, -1)], [(1, 1)]]
    got = _simulate(BrokenSmokeMac(a_width=4, w_width=4, max_length=4), vectors, seed=1)
    assert got != [reference_dot(v) for v in vectors]


def test_accumulator_width_is_exact():
    # 16 terms of 15 · -8 = -1920 needs 12 bits; 15·7·16 = 1680 fits too.
    assert SmokeMac(a_width=4, w_width=4, max_length=16).acc_width == 12
    assert SmokeMac(a_width=1, w_width=1, max_length=1).acc_width == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"a_width": 0, "w_width": 4, "max_length": 4}, "a_width must be between 1 and 16, not 0"),
    ({"a_width": 4, "w_width": 17, "max_length": 4}, "w_width must be between 1 and 16, not 17"),
    ({"a_width": 4, "w_width": 4, "max_length": -2}, "max_length must be at least 1, not -2"),
])
def test_invalid_parameters_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError) as exc:
        SmokeMac(**kwargs)
    assert str(exc.value) == message


def test_verilog_is_deterministic():
    a = to_verilog(SmokeMac(a_width=4, w_width=4, max_length=16), name="smoke_mac")
    b = to_verilog(SmokeMac(a_width=4, w_width=4, max_length=16), name="smoke_mac")
    assert a == b and "module smoke_mac" in a

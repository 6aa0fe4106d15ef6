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
                ctx.set(dut.i_stream.payload, dut.pack(a, w, i == len(terms) - 1))
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


@pytest.mark.parametrize("act_bits, weight_bits", [(1, 2), (4, 4), (8, 3)])
def test_dot_products_are_exact_under_stalls(act_bits, weight_bits):
    rng = random.Random(act_bits * 100 + weight_bits)
    dut = SmokeMac(act_bits=act_bits, weight_bits=weight_bits, max_length=12)
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    vectors = [[((1 << act_bits) - 1, lo)] * 12]  # worst case first
    vectors += [[(rng.randrange(1 << act_bits), rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))]
                for _ in range(15)]
    assert _simulate(dut, vectors, seed=7) == [reference_dot(v) for v in vectors]


def test_broken_variant_is_caught():
    vectors = [[(3, 2), (5, -1)], [(1, 1)]]
    got = _simulate(BrokenSmokeMac(act_bits=4, weight_bits=4, max_length=4), vectors, seed=1)
    assert got != [reference_dot(v) for v in vectors]


def test_accumulator_width_is_exact():
    # 16 terms of 15 · -8 = -1920 needs 12 bits; 15·7·16 = 1680 fits too.
    assert SmokeMac(act_bits=4, weight_bits=4, max_length=16).acc_width == 12
    assert SmokeMac(act_bits=1, weight_bits=1, max_length=1).acc_width == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"act_bits": 0, "weight_bits": 4, "max_length": 4}, "act_bits must be between 1 and 16, not 0"),
    ({"act_bits": 4, "weight_bits": 17, "max_length": 4}, "weight_bits must be between 1 and 16, not 17"),
    ({"act_bits": 4, "weight_bits": 4, "max_length": -2}, "max_length must be at least 1, not -2"),
])
def test_invalid_parameters_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError) as exc:
        SmokeMac(**kwargs)
    assert str(exc.value) == message


def test_verilog_is_deterministic():
    a = to_verilog(SmokeMac(act_bits=4, weight_bits=4, max_length=16), name="smoke_mac")
    b = to_verilog(SmokeMac(act_bits=4, weight_bits=4, max_length=16), name="smoke_mac")
    assert a == b and "module smoke_mac" in a


def test_ports_are_flat_bit_vectors():
    """Plain unsigned payloads, no Amaranth views (yosys abc9 crashes on view wire names), fields as documented."""
    from amaranth.hdl import Shape

    dut = SmokeMac(act_bits=5, weight_bits=3, max_length=9)
    assert dut.signature.members["i_stream"].signature.members["payload"].shape == Shape(9)
    assert dut.pack(31, -4, True) == 31 | (0b100 << 5) | (1 << 8) and dut.pack(0, 3, False) == 3 << 5
    text = to_verilog(dut, name="smoke_mac")
    assert "input [8:0] i_stream__payload" in text and "i_stream__payload.a" not in text

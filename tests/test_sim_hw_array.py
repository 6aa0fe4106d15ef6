"""The systolic array in cocotb on Icarus and Verilator: kinds, widths, shapes, faults.

Shapes include 1×1, 1×N, N×1 and non-square; in/out sizes are chosen so
that most points have padded features and channels and several fold steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.hw.array import SystolicArray
from qhw.hw.reference_mac import ReferenceMacArray
from qhw.ir import intmath
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "hw.test_array"
TESTS = ("matrix_vector_products_with_stalls", "utilization_long_stream")


def random_weights(weight_code: str, weight_bits: int, C: int, K: int, seed: int) -> np.ndarray:
    """Integer weight values uniform over every code of the encoding."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << weight_bits, size=(C, K))
    return intmath.decode_weights(weight_code, weight_bits, codes)


def array(kind: str, weight_bits: int, act_bits: int, rows: int, cols: int, lanes: int, C: int, K: int, seed: int = 0,
          cls=SystolicArray, **kwargs):
    weight_code, act_code = {"xnor": ("binary", "bipolar"), "and": ("binary", "unsigned"),
                             "shift": ("pow2", "unsigned"), "mac": ("int", "unsigned"), "odd": ("odd", "unsigned"),
                             "and_s": ("binary", "signed"), "shift_s": ("pow2", "signed"), "mac_s": ("int", "signed"),
                             "odd_s": ("odd", "signed")}[kind]
    w = random_weights(weight_code, weight_bits, C, K, seed + 7 * rows + cols)
    return cls(weights=w, rows=rows, cols=cols, lanes=lanes, weight_code=weight_code, weight_bits=weight_bits,
               act_code=act_code, act_bits=act_bits, **kwargs)


def unit_params(name: str, arr, weights=None) -> dict:
    s, mp = arr.spec, arr.mapping
    return {"name": name, "weights": (mp.weights if weights is None else weights).tolist(), "rows": arr.rows,
            "cols": arr.cols, "lanes": s.lanes, "weight_code": s.weight_code.value, "weight_bits": s.weight_bits,
            "act_code": s.act_code.value, "act_bits": s.act_bits, "acc_width": arr.acc_width}


# kind, weight_bits, act_bits, rows, cols, lanes, C (out channels), K (in features)
ICARUS_GROUPS = {
    "xnor_and": ([("xnor", 1, 1, 1, 1, 8, 3, 20), ("xnor", 1, 1, 2, 3, 4, 7, 24), ("and", 1, 2, 3, 2, 2, 4, 11),
                  ("and", 1, 1, 1, 4, 3, 8, 6)], 0.5, 0.5),
    "shift": ([("shift", 3, 4, 1, 4, 2, 6, 5), ("shift", 4, 8, 4, 1, 1, 2, 9),
               ("shift", 5, 2, 2, 3, 2, 6, 8), ("shift", 2, 1, 3, 3, 1, 5, 7),
               ("shift", 4, 4, 4, 4, 1, 4, 4)], 0.8, 0.4),
    "mac": ([("mac", 8, 8, 2, 2, 2, 3, 9), ("mac", 2, 2, 1, 4, 1, 8, 3), ("mac", 4, 4, 3, 2, 3, 5, 20),
             ("mac", 1, 1, 4, 4, 1, 4, 16), ("mac", 6, 3, 1, 1, 1, 1, 5), ("mac", 7, 5, 2, 1, 2, 3, 4)], 0.4, 0.8),
    "odd": ([("odd", 4, 4, 2, 3, 1, 5, 7), ("odd", 1, 6, 3, 1, 2, 2, 12), ("odd", 8, 8, 1, 2, 1, 4, 3)], 0.6, 0.6),
    "signed_acts": ([("mac_s", 8, 8, 2, 2, 2, 3, 9), ("odd_s", 3, 4, 1, 3, 2, 4, 6), ("shift_s", 4, 5, 2, 2, 1, 3, 5),
                     ("and_s", 1, 3, 2, 1, 3, 2, 10)], 0.7, 0.6),
}
VERILATOR_UNITS = [("xnor", 1, 1, 2, 3, 4, 7, 24), ("shift", 4, 4, 3, 2, 2, 5, 13), ("mac", 8, 8, 1, 4, 1, 8, 5),
                   ("odd", 2, 3, 2, 2, 2, 3, 8)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


def run_arrays(cache, simulator, arrays, *, valid_prob, ready_prob, seed=1, vectors=12, long_vectors=40,
               views=None, name="array_harness"):
    require_simulator(simulator)
    units = {f"u{k}": a for k, a in enumerate(arrays)}
    unit_list = views or [unit_params(n, a) for n, a in units.items()]
    params = {"units": unit_list, "vectors": vectors, "long_vectors": long_vectors,
              "valid_prob": valid_prob, "ready_prob": ready_prob, "seed": seed}
    r = simulate(Harness(units), name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                 parameters=params)
    return r, unit_list


@pytest.mark.parametrize("group", sorted(ICARUS_GROUPS))
def test_array_sweep_icarus(cache, group):
    points, valid_prob, ready_prob = ICARUS_GROUPS[group]
    r, units = run_arrays(cache, "icarus", [array(*p) for p in points], valid_prob=valid_prob,
                          ready_prob=ready_prob, seed=len(group))
    assert sorted(r.passed) == sorted(TESTS)
    for u in units:
        nf = -(-len(u["weights"]) // u["cols"])
        assert r.records[f"{u['name']}.checked"] == 12 * nf
        assert r.records[f"{u['name']}.steady_transfers_per_cycle"] == 1.0
    assert sum(r.records[f"{u['name']}.out_stalls"] for u in units) > 0  # the handshake rules saw backpressure


def test_array_every_kind_verilator(cache):
    r, units = run_arrays(cache, "verilator", [array(*p) for p in VERILATOR_UNITS], valid_prob=0.6,
                          ready_prob=0.6, seed=3, vectors=20, long_vectors=60)
    assert sorted(r.passed) == sorted(TESTS)


UTIL_POINTS = [(kind, w, a, rows, cols) for kind, w, a in [("xnor", 1, 1), ("shift", 4, 4), ("mac", 4, 4)]
               for rows, cols in [(4, 4), (2, 6)]]


def test_array_utilization_icarus(cache):
    """Long stream, no padding (C = 2·cols, K = 2·rows·lanes): at least 95 % of MAC slots busy."""
    lanes = 2
    arrays = [array(kind, w, a, rows, cols, lanes, 2 * cols, 2 * rows * lanes) for kind, w, a, rows, cols in UTIL_POINTS]
    r, units = run_arrays(cache, "icarus", arrays, valid_prob=1.0, ready_prob=1.0, vectors=4, long_vectors=150,
                          name="array_util")
    for u, arr in zip(units, arrays):
        util = r.records[f"{u['name']}.utilization"]
        assert util >= 0.95, (u["weight_code"], u["rows"], u["cols"], util)
        # All slots busy except the pipeline fill: 4·150 beats in 4·150 + latency cycles.
        assert r.records[f"{u['name']}.cycles"] == 4 * 150 + arr.latency


def test_reference_mac_icarus(cache):
    """The benchmarks' behavioural yardstick passes the same testbench as the array."""
    points = [("xnor", 1, 1, 2, 3, 4, 7, 24), ("shift", 4, 4, 3, 2, 2, 5, 13), ("mac", 8, 8, 1, 4, 1, 8, 5),
              ("odd", 2, 3, 2, 2, 2, 3, 8), ("and", 1, 2, 1, 1, 1, 1, 1)]
    r, units = run_arrays(cache, "icarus", [array(*p, cls=ReferenceMacArray) for p in points], valid_prob=0.6,
                          ready_prob=0.6, seed=9, name="reference_mac")
    assert sorted(r.passed) == sorted(TESTS)
    for u in units:
        assert r.records[f"{u['name']}.steady_transfers_per_cycle"] == 1.0


# -- weights in block ROMs (weight_memory="block") ----------------------------------------------

# Every kind, 1..4 rows (weight-delay lines of 0..3 stages), folds up to 60 steps.
BLOCK_UNITS = [("xnor", 1, 1, 3, 2, 4, 5, 40), ("and", 1, 2, 2, 3, 2, 7, 20), ("shift", 4, 4, 4, 2, 1, 3, 30),
               ("mac", 4, 4, 3, 3, 1, 8, 25), ("odd", 3, 3, 2, 2, 2, 3, 13), ("mac_s", 6, 5, 2, 1, 2, 2, 9),
               ("mac", 4, 4, 2, 2, 1, 4, 60), ("and_s", 1, 3, 1, 4, 2, 6, 11)]


def block_arrays(points):
    arrays = [array(*p, weight_memory="block") for p in points]
    assert all(a.block_columns for a in arrays)
    return arrays


def check_block_run(r, units, arrays, long_vectors):
    assert sorted(r.passed) == sorted(TESTS)
    for u, arr in zip(units, arrays):
        name = u["name"]
        assert r.records[f"{name}.checked"] == 12 * arr.mapping.nf
        assert r.records[f"{name}.steady_transfers_per_cycle"] == 1.0
        # No stalls: the exact cycle estimate, the same latency as the LUT path.
        assert r.records[f"{name}.cycles"] == arr.estimate_cycles(long_vectors) == long_vectors * arr.mapping.steps + arr.latency
    assert sum(r.records[f"{u['name']}.out_stalls"] for u in units) > 0


def test_array_block_weights_icarus(cache):
    arrays = block_arrays(BLOCK_UNITS)
    r, units = run_arrays(cache, "icarus", arrays, valid_prob=0.6, ready_prob=0.5, seed=4, long_vectors=20,
                          name="array_block")
    check_block_run(r, units, arrays, 20)


def test_array_block_weights_verilator(cache):
    arrays = block_arrays(BLOCK_UNITS)
    r, units = run_arrays(cache, "verilator", arrays, valid_prob=0.5, ready_prob=0.6, seed=5, long_vectors=20,
                          name="array_block")
    check_block_run(r, units, arrays, 20)


class _LateWeightRead(SystolicArray):
    """Block ROMs addressed at the PE's own stage instead of one stage early: weights a beat late."""

    def _column_rom(self, m, en, line, c):
        late = list(line)
        late[c] = line[c + 1]
        return super()._column_rom(m, en, late, c)


def test_array_block_weights_read_a_cycle_late_fails(cache):
    good = array("mac", 4, 4, 2, 3, 2, 5, 13, seed=2, weight_memory="block")
    bad = array("mac", 4, 4, 2, 3, 2, 5, 13, seed=2, weight_memory="block", cls=_LateWeightRead)
    with pytest.raises(SimulationMismatch) as exc:
        run_arrays(cache, "icarus", [bad], valid_prob=0.7, ready_prob=0.7, views=[unit_params("u0", good)],
                   name="array_bad")
    assert "matrix_vector_products_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)


# -- broken arrays must fail -------------------------------------------------------------------

def test_array_with_one_corrupted_weight_fails(cache):
    """Hardware built from weights with one entry changed; the testbench checks the true ones."""
    good = array("mac", 4, 4, 2, 3, 2, 5, 9, seed=3)
    w = good.mapping.weights.copy()
    w[4, 7] = w[4, 7] + 1 if w[4, 7] < 7 else w[4, 7] - 1
    bad = SystolicArray(weights=w, rows=2, cols=3, lanes=2, weight_code="int", weight_bits=4, act_code="unsigned",
                        act_bits=4)
    with pytest.raises(SimulationMismatch) as exc:
        run_arrays(cache, "icarus", [bad], valid_prob=0.7, ready_prob=0.7,
                   views=[unit_params("u0", bad, weights=good.mapping.weights)], name="array_bad")
    assert "matrix_vector_products_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)


class _DropFeature(Rewire):
    """Drops a term: feature ``j`` of every input beat reads as code 0."""

    j = 1

    def corrupt(self, m, outer, inner):
        a = inner.spec.act_bits
        keep = ((1 << len(inner.i_stream.payload)) - 1) ^ (((1 << a) - 1) << (self.j * a))
        m.d.comb += inner.i_stream.payload.eq(outer.i_stream.payload & keep)


@pytest.mark.parametrize("kind, weight_bits, act_bits", [("xnor", 1, 1), ("shift", 3, 4)])
def test_array_with_dropped_term_fails(cache, kind, weight_bits, act_bits):
    good = array(kind, weight_bits, act_bits, 2, 2, 2, 4, 8, seed=5)
    bad = _DropFeature(good)
    with pytest.raises(SimulationMismatch) as exc:
        run_arrays(cache, "icarus", [bad], valid_prob=0.7, ready_prob=0.7, views=[unit_params("u0", good)],
                   name="array_bad")
    assert "matrix_vector_products_with_stalls" in str(exc.value) and "mismatch" in str(exc.value)

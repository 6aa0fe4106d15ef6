"""SystolicArray: bit-exact vs its reference and the golden W·x, shapes, throughput, bounds, errors."""

from __future__ import annotations

import numpy as np
import pytest
from _pe_sim import run_streams, to_signed

from qhw.backends.verilog import to_verilog
from qhw.hw.array import ArrayMapping, SystolicArray
from qhw.ir import intmath

#: name -> (weight_code, weight_bits, act_code, act_bits, weight sampler)
KINDS = {
    "xnor": ("binary", 1, "bipolar", 1, lambda r, s: r.choice([-1, 1], size=s)),
    "and1": ("binary", 1, "unsigned", 1, lambda r, s: r.choice([-1, 1], size=s)),
    "and3s": ("binary", 1, "signed", 3, lambda r, s: r.choice([-1, 1], size=s)),
    "pow2": ("pow2", 4, "unsigned", 3, lambda r, s: r.choice([-64, -4, -1, 0, 1, 2, 32], size=s)),
    "int4": ("int", 4, "unsigned", 4, lambda r, s: r.integers(-8, 8, size=s)),
    "int2s": ("int", 2, "signed", 5, lambda r, s: r.integers(-2, 2, size=s)),
    "odd3": ("odd", 3, "unsigned", 2, lambda r, s: 2 * r.integers(-4, 4, size=s) + 1),
}


def make_array(kind, out_ch, in_feat, rows, cols, lanes, seed=0, weights=None, weight_memory="auto"):
    weight_code, weight_bits, act_code, act_bits, sample = KINDS[kind]
    rng = np.random.default_rng(seed)
    w = sample(rng, (out_ch, in_feat)) if weights is None else weights
    return SystolicArray(weights=w, rows=rows, cols=cols, lanes=lanes, weight_code=weight_code, weight_bits=weight_bits,
                         act_code=act_code, act_bits=act_bits, weight_memory=weight_memory)


def pack_beats(arr, beats):
    b = arr.spec.act_bits
    return [sum(int(v) << (j * b) for j, v in enumerate(beat)) for beat in beats]


def unpack_outputs(arr, words):
    w = arr.acc_width
    return np.array([[to_signed((x >> (c * w)) & ((1 << w) - 1), w) for c in range(arr.cols)] for x in words])


def simulate(arr, vectors, *, valid_prob=1.0, ready_prob=1.0, seed=0, garbage_padding=True):
    mp = arr.mapping
    beats = mp.vectors_to_beats(vectors)
    if garbage_padding and mp.pad_lanes():  # padded lanes must be ignored whatever they hold
        rng = np.random.default_rng(seed + 99)
        last = np.arange(mp.sf - 1, len(beats), mp.sf)
        beats[np.ix_(last, mp.pad_lanes())] = rng.integers(0, mp.spec.code_max + 1, size=(len(last), len(mp.pad_lanes())))
    expected = arr.reference(beats)
    run = run_streams(arr, pack_beats(arr, beats), len(expected), valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=seed)
    return unpack_outputs(arr, run.outputs), expected, run


def golden(arr, vectors):
    spec = arr.spec
    return intmath.decode_acts(spec.act_code, spec.act_bits, vectors) @ np.asarray(arr.mapping.weights).T


SHAPES = [  # (out_ch, in_feat, rows, cols, lanes): folds, padding, 1×N, N×1, non-square
    (3, 4, 1, 3, 4),       # SF = NF = 1, constant weights
    (5, 13, 2, 3, 2),      # SF = 4, NF = 2, padded lanes and channels
    (4, 9, 3, 1, 2),       # one column, SF = 2
    (7, 6, 1, 4, 1),       # one row, one lane, NF = 2
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_reference_and_golden_with_stalls(kind, shape):
    out_ch, in_feat, rows, cols, lanes = shape
    arr = make_array(kind, out_ch, in_feat, rows, cols, lanes, seed=len(kind))
    rng = np.random.default_rng(7)
    x = rng.integers(0, arr.spec.code_max + 1, size=(5, in_feat))
    got, expected, _ = simulate(arr, x, valid_prob=0.7, ready_prob=0.6, seed=3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(arr.mapping.outputs_to_channels(got), golden(arr, x))


BLOCK_SHAPES = [  # (out_ch, in_feat, rows, cols, lanes), all with fold steps
    (5, 13, 2, 3, 2),      # SF = 4, NF = 2, padded lanes and channels (a padding-only column word)
    (4, 9, 3, 1, 2),       # one column, SF = 2
    (7, 6, 1, 4, 1),       # one row, NF = 2
    (6, 40, 4, 3, 1),      # four rows: delay lines of 0..3 stages, SF = 10, NF = 2
]


@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", list(KINDS))
def test_block_weights_match_reference_and_lut_path_with_stalls(kind, shape):
    out_ch, in_feat, rows, cols, lanes = shape
    block = make_array(kind, out_ch, in_feat, rows, cols, lanes, seed=len(kind), weight_memory="block")
    lut = make_array(kind, out_ch, in_feat, rows, cols, lanes, seed=len(kind), weight_memory="lut")
    assert block.block_columns and not lut.block_columns
    x = np.random.default_rng(8).integers(0, block.spec.code_max + 1, size=(5, in_feat))
    got, expected, _ = simulate(block, x, valid_prob=0.7, ready_prob=0.6, seed=4)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(block.mapping.outputs_to_channels(got), golden(block, x))
    got_lut, _, _ = simulate(lut, x, valid_prob=0.5, ready_prob=0.8, seed=5)
    np.testing.assert_array_equal(got_lut, got)


@pytest.mark.parametrize("memory", ["lut", "block"])
def test_both_weight_paths_are_full_rate_with_the_same_latency(memory):
    arr = make_array("int4", 6, 24, 3, 2, 2, seed=1, weight_memory=memory)
    assert bool(arr.block_columns) == (memory == "block")
    n = 20
    x = np.random.default_rng(2).integers(0, 16, size=(n, 24))
    got, expected, run = simulate(arr, x)
    np.testing.assert_array_equal(got, expected)
    assert run.in_cycles == list(range(n * arr.mapping.steps))
    assert run.out_cycles[0] - run.in_cycles[arr.mapping.sf - 1] == arr.latency == 3 + 2 + 1
    assert run.out_cycles[-1] + 1 == arr.estimate_cycles(n)


def test_block_path_without_the_early_address_is_wrong():
    """The read must be one stage early: reading at the PE's own stage (a cycle late) breaks the result."""
    class Late(SystolicArray):
        def _column_rom(self, m, en, line, c):  # the address of stage c + 1: a cycle late
            late = [dict(st) for st in line]
            late[c] = line[c + 1]
            return super()._column_rom(m, en, late, c)

    arr = Late(weights=np.random.default_rng(0).integers(-8, 8, size=(5, 13)), rows=2, cols=3, lanes=2,
               weight_code="int", weight_bits=4, act_bits=4, weight_memory="block")
    assert arr.block_columns == (0, 1, 2)
    x = np.random.default_rng(1).integers(0, 16, size=(6, 13))
    got, expected, _ = simulate(arr, x, valid_prob=0.8, ready_prob=0.8, seed=2)
    assert not np.array_equal(got, expected)


def test_auto_follows_the_threshold_per_column():
    from qhw.hw.rom import use_block_ram

    deep = make_array("int4", 64, 576, 8, 8, 1, seed=3)  # 576 steps x 8 rows x 6 bits per column
    assert deep.column_rom_shape(0) == (576, 48) and use_block_ram(576, 48)
    assert deep.block_columns == tuple(range(8))
    shallow = make_array("int4", 5, 13, 2, 3, 2)  # 8 steps
    assert shallow.block_columns == ()
    # A column of constant (padding) PEs has no ROM in either path.
    pad = make_array("int4", 3, 130, 2, 4, 1, weight_memory="block")  # NF = 1: column 3 is padding
    assert pad.column_rows[3] == () and pad.block_columns == (0, 1, 2)


def test_block_estimates_move_rom_luts_to_bram_per_family():
    from qhw.hw.array import cost
    from qhw.hw.rom import bram_blocks

    lut = make_array("int4", 64, 576, 8, 8, 1, seed=3, weight_memory="lut")
    block = make_array("int4", 64, 576, 8, 8, 1, seed=3, weight_memory="block")
    assert all(lut.estimate_resources(family)["bram"] == 0 for family in ("ice40", "ecp5", "xilinx", "gowin"))
    for family, per_column in {"ice40": 9, "ecp5": 3, "xilinx": 3, "gowin": 3}.items():
        assert bram_blocks(576, 48, family) == per_column
        assert block.estimate_resources(family)["bram"] == 8 * per_column
    f_lut, f_block = cost.array_features(lut), cost.array_features(block)
    assert f_lut["rom"] == 64 * 6 * 9 and f_block["rom"] == 0  # 576 words: ceil(576/64) LUTs per bit
    assert f_block["wdelay"] == 8 * 6 * sum(1 for r in range(8) if r >= 3)
    assert block.estimate_resources()["lut"] < lut.estimate_resources()["lut"]
    assert block.estimate_resources()["ff"] - lut.estimate_resources()["ff"] == block.weight_delay_bits() == 8 * 6 * 28
    with pytest.raises(ValueError, match="family"):
        block.estimate_resources("virtex2")


@pytest.mark.parametrize("act_bits", [1, 8])
@pytest.mark.parametrize("weight_bits", [2, 8])
def test_int_bit_width_sweep(weight_bits, act_bits):
    rng = np.random.default_rng(weight_bits + act_bits)
    w = rng.integers(-(1 << (weight_bits - 1)), 1 << (weight_bits - 1), size=(5, 13))
    arr = SystolicArray(weights=w, rows=2, cols=3, lanes=2, weight_code="int", weight_bits=weight_bits,
                        act_bits=act_bits)
    x = rng.integers(0, 1 << act_bits, size=(4, 13))
    got, expected, _ = simulate(arr, x, valid_prob=0.8, ready_prob=0.7, seed=weight_bits)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(arr.mapping.outputs_to_channels(got), golden(arr, x))


def test_padded_channels_do_not_widen_the_output():
    """Pad weights decode to +1 for binary codes, so a padded channel can exceed every real one; it
    wraps (don't-care) and the width comes from the real channels (review finding)."""
    w = np.full((3, 8), -1)  # real channels in [-8, 0]: 4 bits; the padded one reaches +8: 5 bits
    arr = make_array("and1", 3, 8, 2, 2, 1, weights=w)
    assert arr.acc_width == 4
    x = np.ones((4, 8), dtype=np.int64)
    got, expected, _ = simulate(arr, x, valid_prob=0.7, ready_prob=0.8, seed=2)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(arr.mapping.outputs_to_channels(got), golden(arr, x))


@pytest.mark.parametrize("kind", ["xnor", "int4", "pow2", "odd3"])
def test_worst_case_inputs_reach_the_exact_bounds(kind):
    arr = make_array(kind, 6, 40, 2, 3, 4, seed=11)
    lo, hi = intmath.accumulator_bounds(arr.mapping.weights, *arr.spec.act_range)
    assert arr.acc_width == intmath.signed_width(lo.min(), hi.max())
    # Per channel, the activation vectors that attain its lower and upper bound.
    a_lo, a_hi = arr.spec.act_range
    w = arr.mapping.weights
    to_codes = lambda v: intmath.encode_acts(arr.spec.act_code, arr.spec.act_bits, v)
    x = np.concatenate([to_codes(np.where(w > 0, a_hi, a_lo)), to_codes(np.where(w > 0, a_lo, a_hi))])
    got, expected, _ = simulate(arr, x, ready_prob=0.5, seed=5)
    np.testing.assert_array_equal(got, expected)
    y = arr.mapping.outputs_to_channels(got)
    np.testing.assert_array_equal(np.diag(y[:6]), hi)
    np.testing.assert_array_equal(np.diag(y[6:]), lo)


def test_full_rate_latency_and_cycle_estimate():
    arr = make_array("int4", 6, 24, 3, 2, 2, seed=1)  # SF = 4, NF = 3: 12 beats per vector
    n = 20
    x = np.random.default_rng(2).integers(0, 16, size=(n, 24))
    got, expected, run = simulate(arr, x)
    np.testing.assert_array_equal(got, expected)
    beats = n * arr.mapping.steps
    assert run.in_cycles == list(range(beats))  # one beat accepted every cycle
    assert run.out_cycles[0] - run.in_cycles[arr.mapping.sf - 1] == arr.latency == 3 + 2 + 1
    assert run.out_cycles[-1] + 1 == arr.estimate_cycles(n)


def test_utilization_with_a_slow_sink():
    # One result per 4 beats; a sink ready half the time keeps up, and the
    # output FIFO absorbs its gaps without stalling the array.
    arr = make_array("xnor", 2, 32, 2, 2, 4, seed=4)  # SF = 4, NF = 1
    x = np.random.default_rng(3).integers(0, 2, size=(100, 32))
    got, expected, run = simulate(arr, x, ready_prob=0.5, seed=9)
    np.testing.assert_array_equal(got, expected)
    utilization = len(run.in_cycles) / (run.in_cycles[-1] - run.in_cycles[0] + 1)
    assert utilization >= 0.95


@pytest.mark.parametrize("kind", ["int4", "xnor", "pow2", "odd3"])  # gammas; odd3 also a Q line
def test_held_output_is_exact_under_stalls_and_full_rate_into_a_ready_sink(kind):
    """No output FIFO (hold_output): the accumulators are the output register. Exact under random
    valid / ready stalls (with gammas where the kind has them, indexed by the group leaving); one
    beat a cycle and the same latency and cycle estimate into an always-ready sink; fewer FFs."""
    arr = make_array(kind, 6, 24, 3, 2, 2, seed=6)  # SF = 4, NF = 3
    fifo = make_array(kind, 6, 24, 3, 2, 2, seed=6)
    arr.hold_output()
    assert arr.out_fifo_depth == 0 and fifo.out_fifo_depth == 1
    x = np.random.default_rng(4).integers(0, arr.spec.code_max + 1, size=(30, 24))
    got, expected, run = simulate(arr, x, valid_prob=0.7, ready_prob=0.4, seed=3)
    np.testing.assert_array_equal(got, expected)
    got, expected, run = simulate(arr, x)
    np.testing.assert_array_equal(got, expected)
    assert run.in_cycles == list(range(len(x) * arr.mapping.steps))
    assert run.out_cycles[0] - run.in_cycles[arr.mapping.sf - 1] == arr.latency
    assert run.out_cycles[-1] + 1 == arr.estimate_cycles(len(x))
    for family in ("ice40", "xilinx"):
        held, kept = arr.estimate_resources(family), fifo.estimate_resources(family)
        assert held["ff"] == kept["ff"] - arr.out_layout.size and held["lut"] < kept["lut"]
    one = make_array("int4", 3, 4, 1, 1, 4)  # SF = 1: no accumulators to hold a result
    with pytest.raises(ValueError, match="SF"):
        one.hold_output()
    with pytest.raises(ValueError, match="out_fifo_depth"):
        make_array("int4", 3, 4, 1, 1, 4).__class__(weights=np.ones((3, 4), dtype=np.int64), rows=1, cols=1,
                                                     lanes=4, weight_code="int", weight_bits=4, act_bits=4,
                                                     out_fifo_depth=0)
    for a in (fifo, one):
        a._MustUse__silence = True


def test_mapping_layout():
    w = np.arange(-6, 6).reshape(3, 4)  # C = 3, K = 4
    mp = ArrayMapping(weights=w, rows=1, cols=2, spec=make_array("int4", 3, 4, 1, 2, 3).spec)
    assert (mp.beat_features, mp.sf, mp.nf, mp.steps) == (3, 2, 2, 4)
    assert mp.pad_lanes() == (1, 2)
    assert mp.booth and mp.lane_word_bits == 6  # ROM-resident MAC weights are Booth-coded
    codes = mp.spec.booth_codes(mp.raw)
    # PE (0, 1), word nf·SF + sf = 1·2 + 0: channel 3 (padding, code 0) ...
    assert mp.rom_words(0, 1)[2] == 0
    # ... word 0·2 + 1 of PE (0, 0): channel 0, features 3, 4, 5 -> w[0, 3], pad, pad.
    assert mp.rom_words(0, 0)[1] == int(codes[0, 3])
    assert int(mp.raw[0, 3]) == (w[0, 3] & 0xF)
    # With one fold step the weights are constants, kept as plain codes.
    const = ArrayMapping(weights=w, rows=2, cols=3, spec=mp.spec)
    assert not const.booth and const.rom_words(1, 2) == (int(const.raw[2, 3]),)
    beats = mp.vectors_to_beats(np.arange(8).reshape(2, 4))
    np.testing.assert_array_equal(beats, [[0, 1, 2], [3, 0, 0]] * 2 + [[4, 5, 6], [7, 0, 0]] * 2)


@pytest.mark.parametrize("memory", ["lut", "block"])
def test_verilog_is_deterministic_and_names_the_pes(memory):
    a = to_verilog(make_array("pow2", 5, 13, 2, 3, 2, seed=3, weight_memory=memory), name="arr")
    b = to_verilog(make_array("pow2", 5, 13, 2, 3, 2, seed=3, weight_memory=memory), name="arr")
    assert a == b
    for r in range(2):
        for c in range(3):
            assert f"arr.pe_{r}_{c}" in a
    assert a.count('rom_style = "block"') == (3 if memory == "block" else 0)


def test_estimates_are_positive_and_grow_with_the_array():
    small, big = make_array("int4", 4, 16, 2, 2, 4), make_array("int4", 8, 32, 4, 4, 4)
    for key in ("lut", "ff", "dsp", "bram"):
        assert small.estimate_resources()[key] >= 0
    assert big.estimate_resources()["lut"] > small.estimate_resources()["lut"] > 0
    assert small.estimate_cycles(10) == 10 * small.mapping.steps + small.latency


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(rows=0), ValueError, "rows"),
    (dict(cols=-2), ValueError, "cols"),
    (dict(lanes=0), ValueError, "lanes"),
    (dict(rows=2.5), TypeError, "rows"),
    (dict(weight_bits=0), ValueError, "weight_bits"),
    (dict(weight_bits=17), ValueError, "weight_bits"),
    (dict(act_bits=0), ValueError, "act_bits"),
    (dict(act_bits=17), ValueError, "act_bits"),
    (dict(out_fifo_depth=0), ValueError, "out_fifo_depth"),
    (dict(weight_memory="bram"), ValueError, "weight_memory"),
    (dict(weights=[[8, 0]]), ValueError, "weights"),            # out of range for 4-bit int
    (dict(weights=[1, 2, 3]), ValueError, "weights"),           # not 2-D
    (dict(weights=np.zeros((0, 3))), ValueError, "weights"),    # empty
    (dict(weights=[[0.5, 1.0]]), TypeError, "weights"),         # not integers
    (dict(weights="abc"), TypeError, "weights"),
    (dict(weight_code="binary", weight_bits=1, weights=[[1, 0]]), ValueError, "weights"),
    (dict(weight_code="odd", weight_bits=2, weights=[[1, 2]]), ValueError, "weights"),
    (dict(weight_code="pow2", weight_bits=3, weights=[[3, 1]]), ValueError, "weights"),
])
def test_invalid_parameters(kwargs, exc, word):
    args = dict(weights=[[1, -2], [3, 4]], rows=1, cols=1, lanes=2, weight_code="int", weight_bits=4,
                act_code="unsigned", act_bits=4) | kwargs
    with pytest.raises(exc, match=word):
        SystolicArray(**args)


def test_reference_rejects_codes_out_of_range():
    arr = make_array("int4", 2, 4, 1, 2, 4)
    with pytest.raises(ValueError, match="beats"):
        arr.reference([[0, 1, 2, 16]])


@pytest.mark.parametrize("kind", ["xnor", "and1", "pow2"])
def test_multiplier_free_kinds_have_no_multiplier(kind):
    from amaranth.back import rtlil

    for shape in [(3, 4, 1, 3, 4), (5, 13, 2, 3, 2)]:  # constant weights and ROM weights
        assert "$mul" not in rtlil.convert(make_array(kind, *shape), name="top", emit_src=False)


def test_rom_weight_mac_uses_booth_muxes_not_multipliers():
    from amaranth.back import rtlil

    rom = make_array("int4", 5, 13, 2, 3, 2)  # 8 fold steps: weights in ROMs
    assert rom.mapping.booth and "$mul" not in rtlil.convert(rom, name="top", emit_src=False)
    const = make_array("int4", 3, 4, 1, 3, 4)  # constant weights: constant multipliers
    assert not const.mapping.booth and "$mul" in rtlil.convert(const, name="top", emit_src=False)

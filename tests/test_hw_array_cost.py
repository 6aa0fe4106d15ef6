"""Structural LUT estimate of the systolic array (qhw.hw.array.cost)."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.hw.array import SystolicArray
from qhw.hw.array import cost
from qhw.hw.pe.params import shape_for


def _array(weight_code, weight_bits, act_bits, weights, rows=1, cols=1, lanes=1):
    return SystolicArray(weights=np.array(weights), rows=rows, cols=cols, lanes=lanes, weight_code=weight_code,
                         weight_bits=weight_bits, act_code="unsigned", act_bits=act_bits)


@pytest.mark.parametrize("inputs, luts", [(1, 0), (2, 1), (4, 1), (5, 2), (8, 2), (9, 4), (16, 4), (17, 8)])
def test_mux_luts(inputs, luts):
    assert cost.mux_luts(inputs) == luts


@pytest.mark.parametrize("depth, bits, luts", [(1, 12, 0), (2, 12, 6), (32, 12, 6), (33, 12, 12), (64, 5, 5),
                                               (65, 5, 10), (200, 3, 12)])
def test_rom_luts(depth, bits, luts):
    assert cost.rom_luts(depth, bits) == luts


def test_shift_add_cell_counts_the_exponents_each_bit_sees():
    # pow2 4-bit weights {1, 2, 4}: exponent codes 1..3, so max_exp = 3; 2-bit activations.
    # Output bit j of (a << (e-1)) sees a[j-k] for k < 3 with 0 <= j-k < 2, plus the zero input:
    # j=0: 2 inputs, j=1: 3, j=2: 3, j=3: 2 -> one LUT each.
    arr = _array("pow2", 4, 2, [[1, 2, 4, 1]], rows=1, cols=1)  # one PE, a 4-step ROM
    assert arr.mapping.max_exps(0, 0) == (3,)
    f = cost.cell_features(arr, 0, 0)
    assert f["mux"] == 4 and f["rom"] == cost.rom_luts(4, 4) and "psum" not in f


def test_booth_cell_counts_digits_and_tree():
    # W8 Booth: 4 digits of (act_bits + 2)-bit partial products per lane, two lanes.
    arr = _array("int", 8, 3, np.arange(-8, 8).reshape(2, 8), rows=2, cols=1, lanes=2)
    assert arr.mapping.booth
    f = cost.cell_features(arr, 1, 0)
    assert f["booth"] == 2 * 4 * (3 + 2)
    assert f["psum"] == shape_for(*arr.mapping.psum_bounds[1][0]).width
    assert f["add"] > 0 and f["rom"] == cost.rom_luts(2, 2 * 12)


def test_constant_weights_cost_no_rom():
    arr = _array("int", 4, 4, [[3, -2], [1, 5]], rows=2, cols=2)  # one step: weights are constants
    f = cost.array_features(arr)
    assert f["rom"] == 0 and f["booth"] == 0 and f["const"] > 0


def test_estimate_grows_with_bits_and_size():
    rng = np.random.default_rng(0)
    small = _array("int", 4, 4, rng.integers(-8, 8, (8, 32)), rows=4, cols=4)
    wide = _array("int", 8, 8, rng.integers(-128, 128, (8, 32)), rows=4, cols=4)
    big = _array("int", 4, 4, rng.integers(-8, 8, (16, 64)), rows=8, cols=8)
    assert cost.array_luts(wide) > cost.array_luts(small) and cost.array_luts(big) > 3 * cost.array_luts(small)
    assert small.estimate_resources()["lut"] == cost.array_luts(small)


def test_popcount_leaves_count_as_narrow_sums():
    # four 1-bit xnor terms: two 2-bit sums and one 3-bit sum, all below KEEP_WIDTH
    w = np.where(np.arange(16).reshape(2, 8) % 3, 1, -1)
    arr = SystolicArray(weights=w, rows=2, cols=1, lanes=4, weight_code="binary", weight_bits=1, act_code="bipolar",
                        act_bits=1)
    f = cost.cell_features(arr, 0, 0)
    assert f["narrow"] == 2 + 2 + 3 and f["add"] == 0

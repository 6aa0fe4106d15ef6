"""intmath additions made for the IR: the ``signed`` activation encoding."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.ir import intmath
from qhw.ir.intmath import ActCode


@pytest.mark.parametrize("bits", [1, 2, 8, 12, 33, 63])
def test_signed_round_trip_over_the_whole_range(bits):
    lo, hi = intmath.act_value_range("signed", bits)
    assert (lo, hi) == (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    values = np.unique(np.array([lo, lo + 1, -1 if bits > 1 else lo, 0, hi - 1, hi], dtype=np.int64))
    raw = intmath.encode_acts("signed", bits, values)
    assert raw.min() >= 0 and (bits == 63 or raw.max() < (1 << bits))
    np.testing.assert_array_equal(intmath.decode_acts("signed", bits, raw), values)


def test_signed_raw_is_twos_complement():
    assert intmath.encode_acts("signed", 4, [-8, -1, 0, 7]).tolist() == [8, 15, 0, 7]


def test_signed_range_checks():
    with pytest.raises(ValueError, match="activations out of range for 4-bit signed"):
        intmath.encode_acts("signed", 4, [8])
    with pytest.raises(ValueError, match="act_bits must be between 1 and 63, not 64"):
        intmath.act_value_range(ActCode.SIGNED, 64)
    with pytest.raises(ValueError, match="act_bits must be between 1 and 16, not 17"):
        intmath.act_value_range(ActCode.UNSIGNED, 17)  # unchanged for the other encodings


def test_bounds_and_requant_refuse_what_int64_cannot_hold():
    # 2^40 · 2^40 wrapped silently in int64 before (review finding): now one clear error.
    with pytest.raises(ValueError, match="overflow"):
        intmath.accumulator_bounds(np.full((1, 4), 3), -(1 << 61), 1 << 61)
    with pytest.raises(ValueError, match="int64"):
        intmath.requant_mul_shift(np.array([[1 << 40]]), [1 << 40], [0], 40, -128, 127)
    lo, hi = intmath.accumulator_bounds(np.array([[3, -2]]), -(1 << 40), 1 << 40)
    assert (int(lo[0]), int(hi[0])) == (-5 << 40, 5 << 40)

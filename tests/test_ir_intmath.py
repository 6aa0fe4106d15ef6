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


# -- the shared parameter checks (one definition for qhw.ir and qhw.hw) --------------------

def test_parameter_checks_are_defined_once():
    from qhw.hw.pe import params
    from qhw.ir import graph, requant

    assert params.check_positive is graph.check_positive is intmath.check_positive
    assert params.check_int_array is graph.check_int_array is intmath.check_int_array
    assert not hasattr(requant, "int_array") and not hasattr(graph, "_pos_int")


@pytest.mark.parametrize("value, minimum, exc, message", [
    (0, 1, ValueError, "lanes must be at least 1, not 0"),
    (-1, 0, ValueError, "lanes must be at least 0, not -1"),
    (2.0, 1, TypeError, "lanes must be an integer, not 2.0"),
    (True, 1, TypeError, "lanes must be an integer, not True"),
    ("3", 1, TypeError, "lanes must be an integer, not '3'"),
])
def test_check_positive_names_the_parameter(value, minimum, exc, message):
    with pytest.raises(exc) as info:
        intmath.check_positive("lanes", value, minimum=minimum)
    assert str(info.value) == message


def test_check_positive_returns_python_ints():
    assert intmath.check_positive("n", np.int16(3)) == 3 and type(intmath.check_positive("n", np.int16(3))) is int
    assert intmath.check_positive("padding", 0, minimum=0) == 0


@pytest.mark.parametrize("value, kwargs, exc, message", [
    ([1, 2], {}, ValueError, "w must be 2-dimensional, not shape (2,)"),
    (np.zeros((0, 3), dtype=np.int64), {}, ValueError, "w must not be empty, got shape (0, 3)"),
    ([[1.5, 2]], {}, TypeError, "w must hold integers, not float64"),
    ([[True, False]], {}, TypeError, "w must hold integers, not booleans"),
    ("12", {}, TypeError, "w must be an array of integers, not '12'"),
    ([[1 << 62, 0]], {"limit_bits": 62}, ValueError, "w has values beyond ±2^62"),
    ([[0, -(1 << 62)]], {"limit_bits": 62}, ValueError, "w has values beyond ±2^62"),
])
def test_check_int_array_refuses_with_a_message_naming_the_parameter(value, kwargs, exc, message):
    with pytest.raises(exc) as info:
        intmath.check_int_array("w", value, 2, **kwargs)
    assert str(info.value) == message


def test_check_int_array_returns_a_read_only_int64_copy():
    src = np.array([[1, -2]], dtype=np.int32)
    out = intmath.check_int_array("w", src, 2, limit_bits=62)
    assert out.dtype == np.int64 and not out.flags.writeable and out.tolist() == [[1, -2]]
    src[0, 0] = 7
    assert out[0, 0] == 1  # a copy
    assert intmath.check_int_array("w", [[3.0, -4.0]], 2).tolist() == [[3, -4]]  # integral floats (JSON)
    assert intmath.check_int_array("w", [[(1 << 62) - 1]], 2, limit_bits=62)[0, 0] == (1 << 62) - 1
    empty = intmath.check_int_array("w", np.zeros((2, 0)), 2, allow_empty=True)
    assert empty.shape == (2, 0) and empty.dtype == np.int64

"""PESpec: the raw form of every PE kind equals intmath's dot product; parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.hw.pe import PESpec
from qhw.ir import intmath

KINDS = [  # (w_code, w_bits, a_code, a_bits, kind)
    ("binary", 1, "bipolar", 1, "xnor"),
    ("binary", 1, "unsigned", 1, "and"),
    ("binary", 1, "unsigned", 4, "and"),
    ("pow2", 2, "unsigned", 3, "shift_add"),
    ("pow2", 4, "unsigned", 5, "shift_add"),
    ("pow2", 5, "unsigned", 2, "shift_add"),
    ("int", 1, "unsigned", 2, "mac"),
    ("int", 4, "unsigned", 4, "mac"),
    ("int", 8, "unsigned", 8, "mac"),
    ("odd", 1, "unsigned", 3, "mac"),
    ("odd", 3, "unsigned", 4, "mac"),
    ("binary", 1, "signed", 3, "and"),
    ("pow2", 4, "signed", 4, "shift_add"),
    ("int", 5, "signed", 6, "mac"),
    ("odd", 2, "signed", 1, "mac"),
]


@pytest.mark.parametrize("w_code,w_bits,a_code,a_bits,kind", KINDS)
def test_raw_form_equals_intmath_dot(w_code, w_bits, a_code, a_bits, kind):
    spec = PESpec(w_code=w_code, w_bits=w_bits, a_code=a_code, a_bits=a_bits, lanes=1)
    assert spec.kind == kind
    rng = np.random.default_rng(w_bits * 31 + a_bits)
    n = 37
    w = rng.integers(0, 1 << w_bits, size=(200, n))
    a = rng.integers(0, 1 << a_bits, size=(200, n))
    p = spec.raw_term(w, a).sum(axis=1)
    q = intmath.decode_acts(a_code, a_bits, a).sum(axis=1)  # Q sums activation values
    gamma = np.array([spec.gamma(row, n) for row in w])
    expected = spec.value_dot(w, a)
    np.testing.assert_array_equal(spec.alpha * p + spec.beta * q + gamma, expected)
    if kind == "xnor":
        np.testing.assert_array_equal(expected, [intmath.xnor_dot(_pack(x), _pack(y), n) for x, y in zip(a, w)])
    if kind == "and" and a_bits == 1:
        np.testing.assert_array_equal(expected, [intmath.and_dot(_pack(x), _pack(y), n) for x, y in zip(a, w)])


def _pack(bits) -> int:
    return sum(int(b) << i for i, b in enumerate(bits))


@pytest.mark.parametrize("w_code,w_bits,a_code,a_bits,kind", KINDS)
def test_term_range_covers_every_code(w_code, w_bits, a_code, a_bits, kind):
    spec = PESpec(w_code=w_code, w_bits=w_bits, a_code=a_code, a_bits=a_bits, lanes=1)
    w = spec.all_codes()
    lo, hi = spec.term_range(w)
    terms = np.stack([spec.raw_term(w, a) for a in range(spec.code_max + 1)])
    np.testing.assert_array_equal(terms.min(axis=0), lo)
    np.testing.assert_array_equal(terms.max(axis=0), hi)
    assert spec.raw_term(spec.pad_code(), 0) == 0


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(lanes=0), ValueError, "lanes"),
    (dict(lanes=-3), ValueError, "lanes"),
    (dict(lanes=2.0), TypeError, "lanes"),
    (dict(a_bits=0), ValueError, "a_bits"),
    (dict(a_bits=17), ValueError, "a_bits"),
    (dict(w_bits=0), ValueError, "w_bits"),
    (dict(w_bits=17), ValueError, "w_bits"),
    (dict(w_bits=True), TypeError, "w_bits"),
    (dict(w_code="ternary"), ValueError, "w_code"),
    (dict(a_code="twos"), ValueError, "a_code"),
    (dict(a_code="bipolar", a_bits=1), ValueError, "a_code"),
    (dict(w_code="binary", w_bits=2), ValueError, "w_bits"),
    (dict(w_code="pow2", w_bits=9), ValueError, "w_bits"),
    (dict(w_code="pow2", w_bits=8), ValueError, "w_bits"),
])
def test_invalid_parameters_name_the_parameter(kwargs, exc, word):
    args = dict(w_code="int", w_bits=4, a_code="unsigned", a_bits=4, lanes=4) | kwargs
    with pytest.raises(exc, match=word):
        PESpec(**args)


@pytest.mark.parametrize("w_code", ["int", "odd"])
@pytest.mark.parametrize("w_bits", range(1, 10))
def test_booth_recoding(w_code, w_bits):
    spec = PESpec(w_code=w_code, w_bits=w_bits, a_code="signed", a_bits=5, lanes=1)
    w = spec.all_codes()
    c = np.where(w >= (1 << (w_bits - 1)), w - (1 << w_bits), w)
    digits = spec.booth_digits(w)
    assert digits.shape == (len(w), (w_bits + 1) // 2)
    assert digits.min() >= -2 and digits.max() <= 2
    np.testing.assert_array_equal((digits * 4 ** np.arange(digits.shape[1])).sum(axis=1), c)
    # The partial products (neg ? ~m : m) << 2d sum to c·a − offset, for every a.
    codes = spec.booth_codes(w)
    for a in range(-16, 16):
        pp = 0
        for d in range(digits.shape[1]):
            one, two, neg = (codes >> 3 * d) & 1, (codes >> 3 * d + 1) & 1, (codes >> 3 * d + 2) & 1
            mag = np.where(two == 1, 2 * a, np.where(one == 1, a, 0))
            pp = pp + (np.where(neg == 1, ~mag, mag) << 2 * d)
        np.testing.assert_array_equal(pp, c * a - spec.booth_offset(w))

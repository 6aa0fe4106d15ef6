"""PESpec: the raw form of every PE kind equals intmath's dot product; parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.hw.pe import PESpec
from qhw.hw.pe.spec import KINDS as PE_KINDS
from qhw.ir import intmath
from qhw.ir.graph import Dense, TensorSpec
from qhw.ir.intmath import PEKind

KINDS = [  # (weight_code, weight_bits, act_code, act_bits, kind)
    ("binary", 1, "bipolar", 1, "xnor"),
    ("binary", 1, "unsigned", 1, "and"),
    ("binary", 1, "unsigned", 4, "and"),
    ("pow2", 2, "unsigned", 3, "shift"),
    ("pow2", 4, "unsigned", 5, "shift"),
    ("pow2", 5, "unsigned", 2, "shift"),
    ("int", 1, "unsigned", 2, "mac"),
    ("int", 4, "unsigned", 4, "mac"),
    ("int", 8, "unsigned", 8, "mac"),
    ("odd", 1, "unsigned", 3, "mac"),
    ("odd", 3, "unsigned", 4, "mac"),
    ("binary", 1, "signed", 3, "and"),
    ("pow2", 4, "signed", 4, "shift"),
    ("int", 5, "signed", 6, "mac"),
    ("odd", 2, "signed", 1, "mac"),
]


@pytest.mark.parametrize("weight_code,weight_bits,act_code,act_bits,kind", KINDS)
def test_raw_form_equals_intmath_dot(weight_code, weight_bits, act_code, act_bits, kind):
    spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code=act_code, act_bits=act_bits, lanes=1)
    assert spec.kind == kind
    rng = np.random.default_rng(weight_bits * 31 + act_bits)
    n = 37
    w = rng.integers(0, 1 << weight_bits, size=(200, n))
    a = rng.integers(0, 1 << act_bits, size=(200, n))
    p = spec.raw_term(w, a).sum(axis=1)
    q = intmath.decode_acts(act_code, act_bits, a).sum(axis=1)  # Q sums activation values
    gamma = np.array([spec.gamma(row, n) for row in w])
    expected = spec.value_dot(w, a)
    np.testing.assert_array_equal(spec.alpha * p + spec.beta * q + gamma, expected)
    if kind == "xnor":
        np.testing.assert_array_equal(expected, [intmath.xnor_dot(_pack(x), _pack(y), n) for x, y in zip(a, w)])
    if kind == "and" and act_bits == 1:
        np.testing.assert_array_equal(expected, [intmath.and_dot(_pack(x), _pack(y), n) for x, y in zip(a, w)])


def test_kind_is_the_ir_layers_pe():
    """``PESpec.kind`` and an IR layer's ``pe`` are one classification (intmath.pe_kind), for every buildable pair."""
    seen = set()
    for weight_code, weight_bits, act_code, act_bits, kind in KINDS:
        spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code=act_code, act_bits=act_bits, lanes=1)
        w = intmath.decode_weights(weight_code, weight_bits, np.zeros((1, 3), dtype=np.int64))
        layer = Dense(name="fc", input="x", in_spec=TensorSpec((3,), act_code, act_bits), out_channels=1,
                      weight_code=weight_code, weight_bits=weight_bits, weights=w)
        assert spec.kind is layer.pe is PEKind(kind), (weight_code, act_code)
        seen.add(spec.kind)
    assert seen == set(PE_KINDS) == set(PEKind)


def _pack(bits) -> int:
    return sum(int(b) << i for i, b in enumerate(bits))


@pytest.mark.parametrize("weight_code,weight_bits,act_code,act_bits,kind", KINDS)
def test_term_range_covers_every_code(weight_code, weight_bits, act_code, act_bits, kind):
    spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code=act_code, act_bits=act_bits, lanes=1)
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
    (dict(act_bits=0), ValueError, "act_bits"),
    (dict(act_bits=17), ValueError, "act_bits"),
    (dict(weight_bits=0), ValueError, "weight_bits"),
    (dict(weight_bits=17), ValueError, "weight_bits"),
    (dict(weight_bits=True), TypeError, "weight_bits"),
    (dict(weight_code="ternary"), ValueError, "weight_code"),
    (dict(act_code="twos"), ValueError, "act_code"),
    (dict(act_code="bipolar", act_bits=1), ValueError, "act_code"),
    (dict(weight_code="binary", weight_bits=2), ValueError, "weight_bits"),
    (dict(weight_code="pow2", weight_bits=9), ValueError, "weight_bits"),
    (dict(weight_code="pow2", weight_bits=8), ValueError, "weight_bits"),
])
def test_invalid_parameters_name_the_parameter(kwargs, exc, word):
    args = dict(weight_code="int", weight_bits=4, act_code="unsigned", act_bits=4, lanes=4) | kwargs
    with pytest.raises(exc, match=word):
        PESpec(**args)


@pytest.mark.parametrize("weight_code", ["int", "odd"])
@pytest.mark.parametrize("weight_bits", range(1, 10))
def test_booth_recoding(weight_code, weight_bits):
    spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code="signed", act_bits=5, lanes=1)
    w = spec.all_codes()
    c = np.where(w >= (1 << (weight_bits - 1)), w - (1 << weight_bits), w)
    digits = spec.booth_digits(w)
    assert digits.shape == (len(w), (weight_bits + 1) // 2)
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

"""Layers and networks: parameter checks, exact accumulator bounds, topology checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qhw.ir import intmath
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Network, PEKind, TensorSpec, pe_kind
from qhw.ir.requant import MulShift, affine_thresholds


def u(shape, bits=4, lo=None, hi=None):
    return TensorSpec(shape, "unsigned", bits, lo, hi)


def small_conv(**over):
    kw = dict(name="c", input="input", in_spec=u((2, 5, 5), 8), out_channels=3, kernel=3, padding=1,
              weight_code="odd", weight_bits=3, weights=np.ones((3, 2, 3, 3), dtype=np.int64))
    kw.update(over)
    return Conv(**kw)


def test_conv_exposes_im2col_geometry_and_flattened_weights():
    rng = np.random.default_rng(0)
    w = 2 * rng.integers(-4, 4, (3, 2, 3, 3)) + 1
    c = small_conv(weights=w, stride=2)
    assert (c.in_channels, c.out_channels, c.kernel, c.stride, c.padding) == (2, 3, (3, 3), (2, 2), (1, 1))
    assert c.out.shape == (3, 3, 3)
    assert c.weights.shape == (3, 18) and c.weights.dtype == np.int64
    np.testing.assert_array_equal(c.weights, w.reshape(3, -1))  # (ci, ky, kx) column order
    np.testing.assert_array_equal(c.weights_4d, w)
    np.testing.assert_array_equal(intmath.decode_weights("odd", 3, c.weight_raw), c.weights)
    assert c.pe is PEKind.MAC and c.out.code.value == "signed"


def test_accumulator_bounds_are_exact_and_attained():
    w = np.array([[3, -5, 1], [-1, -1, -7]]).reshape(2, 3, 1, 1)
    c = Conv(name="c", input="input", in_spec=u((3, 2, 2), 4), out_channels=2, kernel=1,
             weight_code="odd", weight_bits=3, weights=w)
    # brute force over every input vector in {0..15}^3
    accs = np.array([w.reshape(2, 3) @ np.array(x) for x in itertools.product(range(16), repeat=3)])
    np.testing.assert_array_equal(c.acc_lo, accs.min(0))
    np.testing.assert_array_equal(c.acc_hi, accs.max(0))
    assert c.acc_bits == intmath.signed_width(accs.min(), accs.max())


def test_padding_value_zero_widens_bounds_for_inputs_excluding_zero():
    spec = TensorSpec((1, 3, 3), "signed", 4, 2, 5)  # values never 0, but padding is
    w = np.ones((1, 1, 3, 3), dtype=np.int64)
    c = Conv(name="c", input="input", in_spec=spec, out_channels=1, kernel=3, padding=1,
             weight_code="int", weight_bits=2, weights=w)
    assert (int(c.acc_lo[0]), int(c.acc_hi[0])) == (0, 45)
    c = Conv(name="c", input="input", in_spec=spec, out_channels=1, kernel=3, padding=0,
             weight_code="int", weight_bits=2, weights=w)
    assert (int(c.acc_lo[0]), int(c.acc_hi[0])) == (18, 45)


@pytest.mark.parametrize(
    "wcode,acode,pe",
    [("binary", "bipolar", PEKind.XNOR), ("binary", "unsigned", PEKind.MAC), ("pow2", "unsigned", PEKind.SHIFT),
     ("pow2", "bipolar", PEKind.SHIFT), ("odd", "bipolar", PEKind.MAC), ("odd", "unsigned", PEKind.MAC)],
)
def test_pe_kind(wcode, acode, pe):
    assert pe_kind(wcode, acode) is pe


@pytest.mark.parametrize(
    "over,exc,match",
    [
        (dict(name=""), ValueError, "name must be a non-empty name"),
        (dict(name="a b"), ValueError, "name must be"),
        (dict(out_channels=0), ValueError, "out_channels must be at least 1"),
        (dict(kernel=(3,)), TypeError, "kernel must be an integer or a pair"),
        (dict(stride=0), ValueError, "stride must be at least 1"),
        (dict(padding=-1), ValueError, "padding must be at least 0"),
        (dict(kernel=7, padding=0), ValueError, "does not fit the 5x5 input"),
        (dict(weight_bits=0), ValueError, "weight_bits must be between 1 and 16"),
        (dict(weight_bits=17), ValueError, "weight_bits must be between 1 and 16"),
        (dict(weight_code="ternary"), ValueError, "'ternary' is not a valid WeightCode"),
        (dict(weights=np.ones((3, 2, 3, 3)) * 2), ValueError, "odd-level weights must be odd"),
        (dict(weights=np.ones((3, 2, 3, 3), dtype=np.int64) * 9), ValueError, "weights out of range for 3-bit odd"),
        (dict(weights=np.ones((3, 2, 2, 2), dtype=np.int64)), ValueError, r"weights must have shape \(3, 18\)"),
        (dict(weights=np.full((3, 2, 3, 3), 0.5)), TypeError, "weights must be integers"),
        (dict(in_spec=u((2,))), TypeError, "in_spec must be a"),
        (dict(requant="thresholds"), TypeError, "requant must be Thresholds, MulShift or None"),
    ],
)
def test_conv_parameter_checks(over, exc, match):
    with pytest.raises(exc, match=match):
        small_conv(**over)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(shape=(1, 2), code="unsigned", bits=4), r"shape must be \(C, H, W\) or \(C,\)"),
        (dict(shape=(1,), code="unsigned", bits=0), "act_bits must be between 1 and 16"),
        (dict(shape=(1,), code="bipolar", bits=2), "bipolar activations are 1 bit wide"),
        (dict(shape=(1,), code="unsigned", bits=4, lo=0, hi=16), r"value range \[0, 16\] is not within \[0, 15\]"),
        (dict(shape=(1,), code="signed", bits=64), "act_bits must be between 1 and 63"),
    ],
)
def test_tensor_spec_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorSpec(**kwargs)


def test_requant_must_match_channels_and_fit_int64():
    th = affine_thresholds(np.full(2, 0.1), np.zeros(2), "unsigned", 4, [-10, -10], [10, 10])
    with pytest.raises(ValueError, match="requant has 2 channels, the layer has 3"):
        small_conv(requant=th)
    huge = MulShift(mult=np.full(3, 1 << 55), bias=np.zeros(3), shift=4, lo=-8, hi=7, out_code="signed", out_bits=4)
    with pytest.raises(ValueError, match="beyond the int64-safe bound"):
        small_conv(requant=huge)


def test_add_bounds_and_checks():
    a = TensorSpec((2, 4, 4), "signed", 6)
    b = u((2, 4, 4), 4)
    add = Add(name="add", inputs=("a", "b"), in_specs=(a, b), coeffs=[[1, 1], [4, -4]])
    np.testing.assert_array_equal(add.acc_lo, [-32 + 0, -32 - 60])
    np.testing.assert_array_equal(add.acc_hi, [31 + 60, 31 + 0])
    with pytest.raises(ValueError, match="same shape"):
        Add(name="add", inputs=("a", "b"), in_specs=(a, u((2, 2, 2))), coeffs=[[1, 1], [1, 1]])
    with pytest.raises(ValueError, match=r"coeffs must have shape \(2, 2\)"):
        Add(name="add", inputs=("a", "b"), in_specs=(a, b), coeffs=[[1, 1]])
    with pytest.raises(ValueError, match="at least two layers"):
        Add(name="add", inputs=("a",), in_specs=(a,), coeffs=[[1, 1]])


def test_global_pool_sums_and_picks_output_encoding():
    gp = GlobalPool(name="gap", input="x", in_spec=u((3, 4, 4), 8))
    assert (gp.out.code.value, gp.out.bits, gp.out.lo, gp.out.hi, gp.window) == ("unsigned", 12, 0, 4080, 16)
    gp = GlobalPool(name="gap", input="x", in_spec=TensorSpec((3, 4, 4), "bipolar", 1))
    assert (gp.out.code.value, gp.out.lo, gp.out.hi) == ("signed", -16, 16)


def tiny_network():
    inp = Input(name="input", shape=(1, 4, 4), bits=4)
    conv = Conv(name="conv", input="input", in_spec=inp.out, out_channels=2, kernel=3, padding=1,
                weight_code="binary", weight_bits=1, weights=np.ones((2, 1, 3, 3), dtype=np.int64))
    gap = GlobalPool(name="gap", input="conv", in_spec=conv.out)
    fc = Dense(name="fc", input="gap", in_spec=gap.out, out_channels=3, weight_code="int", weight_bits=4,
               weights=np.arange(6).reshape(3, 2) - 3)
    return inp, conv, gap, fc


def test_network_topology_checks():
    inp, conv, gap, fc = tiny_network()
    net = Network(layers=(inp, conv, gap, fc))
    assert net.output == "fc" and net.input is inp and [l.name for l in net.consumers("conv")] == ["gap"]
    assert len(net.summary()) == 4
    with pytest.raises(ValueError, match="first layer must be an Input"):
        Network(layers=(conv, gap))
    with pytest.raises(ValueError, match="reads 'gap', which is not an earlier layer"):
        Network(layers=(inp, conv, fc, gap))
    with pytest.raises(ValueError, match="used twice"):
        Network(layers=(inp, conv, conv))
    with pytest.raises(ValueError, match="output 'nope' is not a layer"):
        Network(layers=(inp, conv), output="nope")
    with pytest.raises(TypeError, match="unknown layer type str"):
        Network(layers=(inp, "pool"))
    other = Input(name="input", shape=(1, 4, 4), bits=8)
    with pytest.raises(ValueError, match="layer 'conv' expects 'input' as"):
        Network(layers=(other, conv))

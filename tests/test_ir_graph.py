"""Layers and networks: parameter checks, exact accumulator bounds, topology checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qhw.ir import intmath
from qhw.ir.graph import (Add, Conv, Dense, GlobalPool, Input, MaxPool, Network, PEKind, TensorSpec, padding_patterns,
                          pe_kind, raw_spec, threshold_clip_range)
from qhw.ir.requant import MulShift, Thresholds, affine_thresholds


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


def test_padding_aware_bounds_for_inputs_excluding_zero():
    spec = TensorSpec((1, 3, 3), "signed", 4, 2, 5)  # values never 0, but padding is
    w = np.ones((1, 1, 3, 3), dtype=np.int64)
    c = Conv(name="c", input="input", in_spec=spec, out_channels=1, kernel=3, padding=1,
             weight_code="int", weight_bits=2, weights=w)
    # corner 4 taps: [8, 20]; edge 6: [12, 30]; centre 9: [18, 45] -> union [8, 45] (not [0, 45])
    assert (int(c.acc_lo[0]), int(c.acc_hi[0])) == (8, 45)
    c = Conv(name="c", input="input", in_spec=spec, out_channels=1, kernel=3, padding=0,
             weight_code="int", weight_bits=2, weights=w)
    assert (int(c.acc_lo[0]), int(c.acc_hi[0])) == (18, 45)


def test_padding_patterns_by_row_and_column_class():
    pp = padding_patterns((2, 2), 3, 1, 1)
    assert pp.row_class == pp.col_class == (0, 1) and pp.row_taps == pp.col_taps == ((1, 2), (0, 1))
    assert pp.taps(0, 1) == ((1, 0), (1, 1), (2, 0), (2, 1))
    np.testing.assert_array_equal(pp.mask(0, 1), [[0, 0, 0], [1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(pp.columns(0, 1, 2), np.tile(pp.mask(0, 1).reshape(-1), 2))
    pp = padding_patterns((9, 7), (3, 5), (1, 2), (1, 2))
    assert pp.out_hw == (9, 4) and pp.n_row_classes == 3 and pp.position(8, 3) == (2, pp.col_class[3])
    assert pp.row_taps == ((1, 2), (0, 1, 2), (0, 1))  # top, interior, bottom
    assert pp.col_class == (0, 1, 1, 2) and pp.col_taps == ((2, 3, 4), (0, 1, 2, 3, 4), (0, 1, 2))
    assert padding_patterns((8, 8), 3, 2, 1).row_taps == ((1, 2), (0, 1, 2))  # stride 2 never reaches the bottom pad
    assert padding_patterns((3, 3), 1, 1, 1).row_taps == ((), (0,))  # a row of padding only
    for p in range(4):  # at most 2p + 1 classes per axis
        assert padding_patterns((20, 20), 2 * p + 1, 1, p).n_row_classes == 2 * p + 1
    with pytest.raises(ValueError, match="does not fit the 2x2 input"):
        padding_patterns((2, 2), 5, 1, 1)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        padding_patterns((2, 2), 1, 0, 0)


def test_small_map_bounds_are_one_bit_narrower_than_all_taps():
    """2x2 map, 3x3 kernel, padding 1: no position sees more than 4 of the 9 taps."""
    w = np.full((1, 1, 3, 3), 7, dtype=np.int64)
    c = Conv(name="c", input="input", in_spec=u((1, 2, 2), 4), out_channels=1, kernel=3, padding=1,
             weight_code="odd", weight_bits=3, weights=w)
    assert (int(c.acc_lo[0]), int(c.acc_hi[0]), c.acc_bits) == (0, 4 * 7 * 15, 10)
    all_taps = intmath.accumulator_bounds(w, 0, 15)[1][0]  # what the padding-unaware rule gave
    assert intmath.signed_width(0, int(all_taps)) == 11


BRUTE_CASES = [
    # (in_spec, out_channels, kernel, stride, padding): every input of the spec's range is tried
    (u((1, 2, 2), 2), 3, 3, 1, 1),
    (TensorSpec((1, 3, 3), "bipolar", 1), 3, 3, 2, 1),
    (TensorSpec((1, 2, 3), "signed", 3, 2, 3), 2, (3, 2), 1, (1, 0)),
    (TensorSpec((2, 2, 2), "signed", 2), 2, 3, 2, 1),
    (u((1, 3, 2), 1), 4, (2, 3), (2, 1), (1, 2)),
]


@pytest.mark.parametrize("case", range(len(BRUTE_CASES)))
def test_bounds_equal_brute_force_over_every_input(case):
    import torch

    from qhw.ir.golden import layer_op

    spec, cout, kernel, stride, padding = BRUTE_CASES[case]
    rng = np.random.default_rng(case)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = rng.integers(-3, 4, (cout, spec.channels, kh, kw))
    w[0] = np.abs(w[0])  # one channel that never goes negative on non-negative inputs
    conv = Conv(name="c", input="input", in_spec=spec, out_channels=cout, kernel=kernel, stride=stride,
                padding=padding, weight_code="int", weight_bits=3, weights=w)
    values = [-1, 1] if spec.code.value == "bipolar" else list(range(spec.lo, spec.hi + 1))
    n = int(np.prod(spec.shape))
    xs = np.array(list(itertools.product(values, repeat=n))).reshape(-1, *spec.shape)
    acc = layer_op(conv)(torch.from_numpy(xs)).numpy()  # (N, cout, OH, OW)
    got_lo, got_hi = acc.min(axis=(0, 2, 3)), acc.max(axis=(0, 2, 3))
    np.testing.assert_array_equal(conv.acc_lo, got_lo)
    np.testing.assert_array_equal(conv.acc_hi, got_hi)
    assert conv.out.lo == got_lo.min() and conv.out.hi == got_hi.max()


def test_bounds_attained_by_the_extreme_input_of_each_position():
    """A conv too big to brute-force: each channel's extreme is reached by the input built for it."""
    import torch

    from qhw.ir.golden import layer_op

    rng = np.random.default_rng(4)
    spec = TensorSpec((3, 5, 4), "signed", 5, -9, 12)
    w = rng.integers(-7, 8, (4, 3, 3, 3))
    conv = Conv(name="c", input="input", in_spec=spec, out_channels=4, kernel=3, stride=2, padding=1,
                weight_code="int", weight_bits=4, weights=w)
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    _, oh, ow = conv.out.shape
    for co in range(4):
        for want_max, bound in ((True, conv.acc_hi[co]), (False, conv.acc_lo[co])):
            xs = np.full((oh * ow, *spec.shape), spec.lo, dtype=np.int64)
            for b, (oy, ox) in enumerate(itertools.product(range(oh), range(ow))):
                for ci, ky, kx in itertools.product(range(3), range(3), range(3)):
                    iy, ix = oy * sh + ky - ph, ox * sw + kx - pw
                    if 0 <= iy < 5 and 0 <= ix < 4:
                        xs[b, ci, iy, ix] = spec.hi if (w[co, ci, ky, kx] > 0) == want_max else spec.lo
            acc = layer_op(conv)(torch.from_numpy(xs)).numpy()[:, co]
            got = acc.max() if want_max else acc.min()
            assert got == bound, (co, want_max)
    rand = torch.from_numpy(rng.integers(spec.lo, spec.hi + 1, (64, *spec.shape)))
    acc = layer_op(conv)(rand).numpy()
    assert np.all(acc.min(axis=(0, 2, 3)) >= conv.acc_lo) and np.all(acc.max(axis=(0, 2, 3)) <= conv.acc_hi)


def test_raw_outputs_follow_one_rule_for_every_kind():
    pos = small_conv()  # all-positive weights on unsigned inputs: a non-negative accumulator
    assert (pos.out.code.value, pos.out.bits, pos.out.lo) == ("unsigned", intmath.unsigned_width(pos.out.hi), 0)
    mixed = small_conv(weights=np.where(np.arange(54).reshape(3, 2, 3, 3) % 2, 1, -1))
    assert mixed.out.code.value == "signed" and mixed.out.bits == mixed.acc_bits
    assert raw_spec((2,), 0, 65535) == TensorSpec((2,), "unsigned", 16, 0, 65535)
    assert raw_spec((2,), 0, 65536) == TensorSpec((2,), "signed", 18, 0, 65536)
    assert raw_spec((2,), -1, 5) == TensorSpec((2,), "signed", 4, -1, 5)
    gp = GlobalPool(name="gap", input="x", in_spec=u((1, 16, 16), 8))
    assert gp.out == raw_spec((1,), 0, 255 * 256) and gp.out.code.value == "unsigned"
    add = Add(name="add", inputs=("a", "b"), in_specs=(u((1, 2, 2)), u((1, 2, 2))), coeffs=[[1], [2]])
    assert add.out == raw_spec((1, 2, 2), 0, 45)


def test_thresholds_outside_the_clip_range_are_refused():
    probe = small_conv(weights=2 * np.random.default_rng(0).integers(-4, 4, (3, 2, 3, 3)) + 1)
    th = affine_thresholds(np.full(3, 0.01), np.zeros(3), "unsigned", 2, probe.acc_lo, probe.acc_hi)
    assert small_conv(weights=probe.weights_4d, requant=th).out.bits == 2
    lo, hi = threshold_clip_range(probe.acc_lo, probe.acc_hi, th.sign)
    assert np.all(th.thresholds >= lo[:, None]) and np.all(th.thresholds <= hi[:, None])
    for t0 in (int(lo[1]) - 1, int(hi[1]) + 1):  # one step outside either end
        t = th.thresholds.copy()
        t[1] = np.sort([t0, *t[1, 1:]]) if t0 < lo[1] else np.sort([*t[1, :-1], t0])
        bad = Thresholds(thresholds=t, sign=th.sign, out_code="unsigned", out_bits=2)
        with pytest.raises(ValueError, match=r"thresholds of channel\(s\) \[1\] lie outside the clip range"):
            small_conv(weights=probe.weights_4d, requant=bad)
        clipped = Thresholds(thresholds=intmath.clamp_thresholds(t, probe.acc_lo, probe.acc_hi), sign=th.sign,
                             out_code="unsigned", out_bits=2)
        small_conv(weights=probe.weights_4d, requant=clipped)  # clipping makes it valid again


def test_maxpool_geometry_and_checks():
    spec = TensorSpec((3, 7, 6), "signed", 6, -20, 9)
    mp = MaxPool(name="mp", input="x", in_spec=spec, kernel=3, stride=2, padding=1)
    assert (mp.kind, mp.kernel, mp.stride, mp.padding, mp.window) == ("maxpool", (3, 3), (2, 2), (1, 1), 9)
    assert mp.out == TensorSpec((3, 4, 3), "signed", 6, -20, 9)  # encoding, bits and range of the input
    assert MaxPool(name="mp", input="x", in_spec=spec, kernel=2, stride=2).out.shape == (3, 3, 3)
    assert mp.patterns == padding_patterns((7, 6), 3, 2, 1)
    with pytest.raises(ValueError, match=r"leaves a \(1, 1\) window of the 7x6 input with no tap inside the map"):
        MaxPool(name="mp", input="x", in_spec=spec, kernel=1, stride=1, padding=1)
    with pytest.raises(ValueError, match="no tap inside the map"):
        MaxPool(name="mp", input="x", in_spec=spec, kernel=(2, 3), stride=2, padding=(2, 0))
    with pytest.raises(TypeError, match=r"in_spec must be a \(C, H, W\) TensorSpec"):
        MaxPool(name="mp", input="x", in_spec=u((3,)), kernel=2, stride=2)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        MaxPool(name="mp", input="x", in_spec=spec, kernel=2, stride=0)
    with pytest.raises(ValueError, match="does not fit the 7x6 input"):
        MaxPool(name="mp", input="x", in_spec=spec, kernel=8, stride=1)
    inp = Input(name="input", shape=(3, 7, 6), code="signed", bits=6)
    net = Network(layers=(inp, MaxPool(name="mp", input="input", in_spec=inp.out, kernel=3, stride=2, padding=1)))
    row = net.summary()[1]
    assert row["kind"] == "maxpool" and row["out"] == "3x4x3 signed:6" and row["window"] == "3x3/2x2 pad 1x1"


def test_input_scale_must_be_a_finite_positive_number():
    for bad in (True, 0.0, -1.0, float("inf"), float("nan"), "1/255"):
        with pytest.raises(ValueError, match="scale must be a finite positive number or None"):
            Input(name="input", shape=(1, 2, 2), scale=bad)


@pytest.mark.parametrize(
    "wcode,acode,pe",
    [("binary", "bipolar", PEKind.XNOR), ("binary", "unsigned", PEKind.AND), ("binary", "signed", PEKind.AND),
     ("pow2", "unsigned", PEKind.SHIFT), ("pow2", "bipolar", PEKind.SHIFT), ("odd", "bipolar", PEKind.MAC),
     ("odd", "unsigned", PEKind.MAC), ("int", "signed", PEKind.MAC)],
)
def test_pe_kind(wcode, acode, pe):
    assert pe_kind(wcode, acode) is pe
    assert PEKind is intmath.PEKind and pe_kind is intmath.pe_kind  # one definition, re-exported


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

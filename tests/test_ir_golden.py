"""Golden model: hand-computed networks, each op against its intmath definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from qhw.ir import intmath
from qhw.ir.golden import GoldenModel, apply_thresholds, im2col, requant_mul_shift, to_raw
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Network, TensorSpec
from qhw.ir.requant import MulShift, Thresholds




def hand_network():
    inp = Input(name="input", shape=(1, 3, 3), bits=4)
    conv = Conv(
        name="conv", input="input", in_spec=inp.out, out_channels=2, kernel=2,
        weight_code="int", weight_bits=3, weights=np.array([[[[1, -1], [2, 0]]], [[[0, 1], [0, 0]]]]),
        requant=Thresholds(thresholds=[[8, 10, 14], [-5, -3, 0]], sign=[1, -1], out_code="unsigned", out_bits=2),
    )
    gap = GlobalPool(name="gap", input="conv", in_spec=conv.out)
    fc = Dense(
        name="fc", input="gap", in_spec=gap.out, out_channels=2, weight_code="int", weight_bits=3,
        weights=np.array([[1, 2], [-3, 1]]),
        requant=MulShift(mult=[3, 1], bias=[1, 0], shift=1, lo=-1000, hi=1000, out_code="signed", out_bits=11),
    )
    return Network(layers=(inp, conv, gap, fc))


def test_tiny_network_matches_hand_computation():
    x = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]]).reshape(1, 1, 3, 3)
    out = GoldenModel(hand_network()).run(x)
    # channel 0: acc = x00 - x01 + 2·x10 = 7, 9, 13, 15 against thresholds 8, 10, 14 -> 0, 1, 2, 3
    # channel 1: acc = x01 = 2, 3, 5, 6; sign -1: -acc >= -5, -3, 0 -> 2, 2, 1, 0
    assert out["conv"].tolist() == [[[[0, 1], [2, 3]], [[2, 2], [1, 0]]]]
    assert out["gap"].tolist() == [[6, 5]]
    # fc acc = [6 + 2·5, -18 + 5] = [16, -13]; (16·3 + 1 + 1) >> 1 = 25, (-13 + 0 + 1) >> 1 = -6
    assert out["fc"].tolist() == [[25, -6]]
    assert all(t.dtype == torch.int64 for t in out.values())


def test_residual_add_semantics():
    """z = 1·m + 4·h (identity arm on the add grid), then sign thresholds."""
    inp = Input(name="input", shape=(2, 1, 2), bits=2)
    conv = Conv(name="m", input="input", in_spec=inp.out, out_channels=2, kernel=1, weight_code="int",
                weight_bits=3, weights=np.array([[-3, 0], [0, -2]]).reshape(2, 2, 1, 1),
                requant=None)
    add = Add(name="add", inputs=("m", "input"), in_specs=(conv.out, inp.out), coeffs=[[1, 1], [4, 4]],
              requant=Thresholds(thresholds=[[0], [5]], sign=[1, 1], out_code="bipolar", out_bits=1))
    net = Network(layers=(inp, conv, add))
    x = torch.tensor([[[[1, 3]], [[2, 0]]]])  # (1, 2, 1, 2)
    out = GoldenModel(net).run(x)
    m = out["m"]
    assert m.tolist() == [[[[-3, -9]], [[-4, 0]]]]
    z = m + 4 * x  # ch0: 1, 3; ch1: 4, 0
    assert z.tolist() == [[[[1, 3]], [[4, 0]]]]
    assert out["add"].tolist() == [[[[1, 1]], [[-1, -1]]]]  # ch0: z >= 0 -> +1; ch1: z >= 5 never
    assert out["m"].dtype == torch.int64 and net["add"].acc_lo.tolist() == [-9, -9]  # the tensor range, not per channel


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 3), (1, 2, (3, 2))])
def test_conv_matches_reference_convolution(stride, padding, kernel):
    rng = np.random.default_rng(5)
    inp = Input(name="input", shape=(3, 7, 6), bits=8)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = 2 * rng.integers(-8, 8, (4, 3, kh, kw)) + 1
    conv = Conv(name="c", input="input", in_spec=inp.out, out_channels=4, kernel=kernel, stride=stride,
                padding=padding, weight_code="odd", weight_bits=4, weights=w)
    x = torch.from_numpy(rng.integers(0, 256, (2, 3, 7, 6)))
    got = GoldenModel(Network(layers=(inp, conv))).run(x)["c"]
    # float64 is exact here (|acc| < 2^53); this is only the test's independent reference
    want = torch.nn.functional.conv2d(x.double(), torch.from_numpy(w).double(), stride=stride, padding=padding)
    assert torch.equal(got, want.round().long())
    assert int(got.min()) >= int(conv.acc_lo.min()) and int(got.max()) <= int(conv.acc_hi.max())


def test_xnor_layer_equals_popcount_with_padding_masked():
    rng = np.random.default_rng(11)
    inp = Input(name="input", shape=(3, 4, 4), code="bipolar", bits=1)
    w = rng.choice([-1, 1], (2, 3, 3, 3))
    conv = Conv(name="c", input="input", in_spec=inp.out, out_channels=2, kernel=3, padding=1,
                weight_code="binary", weight_bits=1, weights=w)
    assert conv.pe.value == "xnor"
    x = torch.from_numpy(rng.choice([-1, 1], (1, 3, 4, 4)))
    acc = GoldenModel(Network(layers=(inp, conv))).run(x)["c"][0].numpy()
    xb = intmath.encode_acts("bipolar", 1, x[0].numpy())
    wb = intmath.encode_weights("binary", 1, w)
    for co in range(2):
        for oy in range(4):
            for ox in range(4):
                a_bits = w_bits = n = 0
                for ci in range(3):
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = oy + ky - 1, ox + kx - 1
                            if 0 <= iy < 4 and 0 <= ix < 4:  # padded taps are left out
                                a_bits |= int(xb[ci, iy, ix]) << n
                                w_bits |= int(wb[co, ci, ky, kx]) << n
                                n += 1
                assert acc[co, oy, ox] == int(intmath.xnor_dot(a_bits, w_bits, n))


def test_pow2_layer_equals_shift_and_add():
    rng = np.random.default_rng(2)
    inp = Input(name="input", shape=(2, 3, 3), bits=4)
    raw = rng.integers(0, 16, (3, 2, 1, 1))
    w = intmath.decode_weights("pow2", 4, raw)
    dense_in = TensorSpec((2,), "unsigned", 4)
    conv = Conv(name="c", input="input", in_spec=inp.out, out_channels=3, kernel=1, weight_code="pow2",
                weight_bits=4, weights=w)
    assert conv.pe.value == "shift"
    x = torch.from_numpy(rng.integers(0, 16, (1, 2, 3, 3)))
    acc = GoldenModel(Network(layers=(inp, conv))).run(x)["c"][0]
    for co in range(3):
        want = torch.zeros(3, 3, dtype=torch.int64)
        for ci in range(2):
            r = int(raw[co, ci, 0, 0])
            sign, e = r >> 3, r & 7
            if e:
                term = x[0, ci] << (e - 1)
                want += -term if sign else term
        assert torch.equal(acc[co], want)
    assert dense_in.channels == 2


def test_thresholds_and_mul_shift_match_intmath():
    rng = np.random.default_rng(9)
    acc = rng.integers(-5000, 5000, (3, 4, 5, 5))
    t = np.sort(rng.integers(-5000, 5000, (4, 15)), axis=1)
    s = rng.choice([-1, 1], 4)
    got = apply_thresholds(torch.from_numpy(acc), torch.from_numpy(t), torch.from_numpy(s))
    np.testing.assert_array_equal(got.numpy(), intmath.apply_thresholds(acc, t, s))
    m, b = rng.integers(-300, 300, 4), rng.integers(-(1 << 12), 1 << 12, 4)
    for shift in (1, 7, 13):
        got = requant_mul_shift(torch.from_numpy(acc), torch.from_numpy(m), torch.from_numpy(b), shift, -40, 90)
        np.testing.assert_array_equal(got.numpy(), intmath.requant_mul_shift(acc, m, b, shift, -40, 90))


def test_im2col_orders_rows_like_flattened_weights():
    x = torch.arange(2 * 3 * 3).reshape(1, 2, 3, 3)
    cols = im2col(x, (2, 2), (1, 1), (0, 0))
    # first output position: channel 0 taps (0,0),(0,1),(1,0),(1,1), then channel 1
    assert cols[0, :, 0].tolist() == [0, 1, 3, 4, 9, 10, 12, 13]


class _DtypeSpy(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.dtypes.add(t.dtype)
        return out


def test_forward_path_uses_no_float_tensor():
    net = hand_network()
    golden = GoldenModel(net)
    x = torch.randint(0, 16, (4, 1, 3, 3))
    with _DtypeSpy() as spy:
        golden.run(x)
    assert spy.dtypes and not any(d.is_floating_point for d in spy.dtypes), spy.dtypes


def test_input_is_checked():
    golden = GoldenModel(hand_network())
    with pytest.raises(TypeError, match="input must be an integer tensor, not torch.float32"):
        golden.run(torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"input must have shape \(N, 1, 3, 3\)"):
        golden.run(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"input values must lie in \[0, 15\]"):
        golden.run(torch.full((1, 1, 3, 3), 16))
    with pytest.raises(TypeError, match="net must be a Network"):
        GoldenModel("net.json")


def test_predict_and_raw_encoding():
    golden = GoldenModel(hand_network())
    x = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]]).reshape(1, 1, 3, 3)
    assert golden.predict(x).tolist() == [0]
    spec = TensorSpec((2,), "bipolar", 1)
    assert to_raw(spec, torch.tensor([-1, 1])).tolist() == [0, 1]
    assert to_raw(TensorSpec((2,), "signed", 4), torch.tensor([-1, 3])).tolist() == [15, 3]


def test_global_pool_with_folded_average_requantizer():
    """gap sums; a requantizer with a = 1/(H·W) turns the sum into the rounded mean."""
    from qhw.ir.requant import affine_requant

    inp = Input(name="input", shape=(2, 2, 2), bits=4)
    probe = GlobalPool(name="gap", input="input", in_spec=inp.out)
    rq = affine_requant(np.full(2, 1 / 4), np.zeros(2), "unsigned", 4, probe.acc_lo, probe.acc_hi)
    gap = GlobalPool(name="gap", input="input", in_spec=inp.out, requant=rq)
    x = torch.tensor([[[[0, 1], [4, 5]], [[15, 15], [15, 14]]], [[[1, 1], [1, 0]], [[2, 2], [2, 3]]]])
    out = GoldenModel(Network(layers=(inp, gap))).run(x)
    # sums 10, 59 | 3, 9; means 2.5, 14.75 | 0.75, 2.25 round half up to 3, 15 | 1, 2
    assert out["gap"].tolist() == [[3, 15], [1, 2]]
    assert (gap.out.code.value, gap.out.bits, gap.out.hi) == ("unsigned", 4, 15)

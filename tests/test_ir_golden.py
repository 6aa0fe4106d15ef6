"""Golden model: hand-computed networks, each op against its intmath definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from qhw.ir import intmath
from qhw.ir.golden import GoldenModel, apply_thresholds, im2col, layer_op, requant_mul_shift, to_raw
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, MaxPool, Network, TensorSpec
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
                a_word = w_word = n = 0
                for ci in range(3):
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = oy + ky - 1, ox + kx - 1
                            if 0 <= iy < 4 and 0 <= ix < 4:  # padded taps are left out
                                a_word |= int(xb[ci, iy, ix]) << n
                                w_word |= int(wb[co, ci, ky, kx]) << n
                                n += 1
                assert acc[co, oy, ox] == int(intmath.xnor_dot(a_word, w_word, n))


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


MAXPOOL_CASES = [  # (H, W, kernel, stride, padding)
    (6, 6, 2, 2, 0),
    (7, 5, 2, 2, 0),   # odd sizes: the last row / column is dropped (floor)
    (7, 7, 3, 2, 1),
    (8, 6, 3, 2, 1),
    (5, 7, 3, 1, 0),
    (5, 7, 3, 1, 1),
    (4, 5, (3, 2), (1, 2), (1, 1)),
]


@pytest.mark.parametrize("h,w,kernel,stride,padding", MAXPOOL_CASES)
def test_maxpool_matches_torch_max_pool2d(h, w, kernel, stride, padding):
    rng = np.random.default_rng(h * 100 + w)
    # all-negative values: a pad value of 0 (or any in-range value) would win at the border
    inp = Input(name="input", shape=(3, h, w), code="signed", bits=7)
    mp = MaxPool(name="mp", input="input", in_spec=inp.out, kernel=kernel, stride=stride, padding=padding)
    x = torch.from_numpy(rng.integers(-64, 0, (2, 3, h, w)))
    x[0, 1] = -64  # a channel at the very bottom of the range
    got = GoldenModel(Network(layers=(inp, mp))).run(x)["mp"]
    # max_pool2d pads with -inf; float64 is exact on these integers
    want = torch.nn.functional.max_pool2d(x.double(), kernel, stride, padding)
    assert got.dtype == torch.int64 and tuple(got.shape[1:]) == mp.out.shape
    assert torch.equal(got, want.long())
    assert int(got.max()) < 0 and bool((got[0, 1] == -64).all())


def test_maxpool_on_bipolar_and_unsigned_values():
    for code, bits, lo, hi in (("bipolar", 1, -1, 1), ("unsigned", 4, 0, 15)):
        inp = Input(name="input", shape=(2, 5, 5), code=code, bits=bits)
        mp = MaxPool(name="mp", input="input", in_spec=inp.out, kernel=3, stride=2, padding=1)
        values = torch.tensor([-1, 1]) if code == "bipolar" else torch.arange(16)
        x = values[torch.from_numpy(np.random.default_rng(1).integers(0, len(values), (3, 2, 5, 5)))]
        got = layer_op(mp)(x)
        want = torch.nn.functional.max_pool2d(x.double(), 3, 2, 1).long()
        assert torch.equal(got, want) and mp.out.code.value == code and (mp.out.lo, mp.out.hi) == (lo, hi)


def test_layer_op_runs_one_layer_and_checks_its_inputs():
    net = hand_network()
    golden = GoldenModel(net)
    x = torch.randint(0, 16, (5, 1, 3, 3))
    out = golden.run(x)
    for layer in net.layers[1:]:
        args = [out[n] for n in layer.inputs]
        assert torch.equal(layer_op(layer)(*args), out[layer.name])
        assert torch.equal(golden.run_layer(layer.name, *args), out[layer.name])
        # numpy arrays are accepted too, and give (N, *out.shape)
        assert tuple(layer_op(layer)(*[a.numpy() for a in args]).shape) == (5, *layer.out.shape)
    conv, fc = net["conv"], net["fc"]
    with pytest.raises(ValueError, match=r"layer 'conv' input 'input' must have shape \(N, 1, 3, 3\)"):
        layer_op(conv)(torch.zeros(2, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"layer 'fc' input 'gap' values must lie in \[0, 12\]"):
        layer_op(fc)(torch.tensor([[13, 0]]))
    with pytest.raises(TypeError, match="layer 'conv' takes 1 input tensor"):
        layer_op(conv)(x, x)
    with pytest.raises(TypeError, match="must be an integer tensor, not torch.float32"):
        layer_op(conv)(x.float())
    with pytest.raises(TypeError, match="layer must be a qhw.ir.graph layer"):
        layer_op("conv")
    with pytest.raises(KeyError, match="no layer 'nope'"):
        golden.run_layer("nope", x)
    add = Add(name="add", inputs=("a", "b"), in_specs=(fc.out, fc.out), coeffs=[[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="different batch sizes"):
        layer_op(add)(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64))
    bip = Dense(name="d", input="x", in_spec=TensorSpec((2,), "bipolar", 1), out_channels=1, weight_code="binary",
                weight_bits=1, weights=[[1, -1]])
    with pytest.raises(ValueError, match="values must be \\+1 or -1"):
        layer_op(bip)(torch.tensor([[1, 0]]))


def test_golden_model_runs_exactly_the_layer_ops(monkeypatch):
    """GoldenModel has no op of its own: replacing layer_op's computation changes the model's output."""
    import qhw.ir.golden as golden_mod

    net = hand_network()
    x = torch.randint(0, 16, (3, 1, 3, 3))
    before = GoldenModel(net).run(x)
    built = []
    real = golden_mod.layer_op

    def spy(layer, fault):
        op = real(layer)
        built.append(layer.name)
        if layer.name == "gap":
            inner = op._compute
            op._compute = lambda xs: fault(inner(xs))
        return op

    monkeypatch.setattr(golden_mod, "layer_op", lambda layer: spy(layer, lambda y: y.flip(1)))
    after = GoldenModel(net).run(x)  # fault: the two pooled channels swapped (values stay in range)
    assert built == [l.name for l in net]
    assert torch.equal(after["conv"], before["conv"]) and torch.equal(after["gap"], before["gap"].flip(1))
    assert not torch.equal(after["fc"], before["fc"])
    # a producer that leaves its declared range is caught by its consumer's op
    monkeypatch.setattr(golden_mod, "layer_op", lambda layer: spy(layer, lambda y: y + 13))
    with pytest.raises(ValueError, match=r"layer 'fc' input 'gap' values must lie in \[0, 12\]"):
        GoldenModel(net).run(x)


def test_maxpool_forward_path_uses_no_float_tensor():
    inp = Input(name="input", shape=(2, 5, 5), code="signed", bits=5)
    net = Network(layers=(inp, MaxPool(name="mp", input="input", in_spec=inp.out, kernel=3, stride=2, padding=1)))
    golden = GoldenModel(net)
    x = torch.randint(-16, 16, (2, 2, 5, 5))
    with _DtypeSpy() as spy:
        golden.run(x)
    assert spy.dtypes and not any(d.is_floating_point for d in spy.dtypes), spy.dtypes

import numpy as np
import pytest
import torch

from qhw.ir import intmath
from qhw.quant.quantizers import (
    BinaryWeight,
    DoReFaWeight,
    InputQuant,
    PACTAct,
    Pow2Weight,
    SignAct,
    add_quantize,
    round_half_up,
)




def _weights(seed=0, shape=(6, 3, 3, 3), std=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * std


# -- DoReFa --------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_dorefa_levels_are_odd_integers_times_one_over_s(bits):
    w = _weights()
    q = DoReFaWeight(bits=bits)
    v, scale = q.integer_weights(w)
    s = 2**bits - 1
    assert v.dtype == torch.int64 and v.shape == w.shape
    assert torch.all(v % 2 != 0) and v.min() >= -s and v.max() <= s
    assert torch.all(scale == torch.tensor(1.0 / s))
    # the forward value is exactly scale * value
    assert torch.equal(q(w), v.float() * scale.reshape(-1, 1, 1, 1))
    # matches the paper's formula 2 q(f(w) + 1/2) - 1 with q(x) = round(x s) / s
    t = torch.tanh(w)
    ref = 2 * torch.floor((t / (2 * t.abs().max()) + 0.5) * s + 0.5) / s - 1
    assert torch.allclose(q(w), ref, atol=1e-6)
    # the largest weight hits the top level
    assert v.abs().max() == s
    raw = intmath.encode_weights("odd", bits, v.numpy())
    assert np.array_equal(intmath.decode_weights("odd", bits, raw), v.numpy())


def test_dorefa_ste_gradient_is_that_of_the_tanh_normalization():
    w = _weights().requires_grad_(True)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
    (DoReFaWeight(bits=3)(w) * g).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    t = torch.tanh(w2)
    (t / t.abs().max() * g).sum().backward()
    assert torch.allclose(w.grad, w2.grad)
    assert w.grad.abs().sum() > 0


def test_weight_bits_are_checked():
    with pytest.raises(ValueError, match="bits for uniform must be between 2 and 8, not 1"):
        DoReFaWeight(bits=1)
    q = DoReFaWeight(bits=4)
    with pytest.raises(ValueError, match="not 9"):
        q.bits = 9
    with pytest.raises(ValueError, match="bits for pow2 must be between 3 and 5"):
        Pow2Weight(bits=6)
    with pytest.raises(TypeError, match="bits must be an integer"):
        DoReFaWeight(bits=4.0)


# -- binary --------------------------------------------------------------------


def test_binary_weights_sign_and_per_channel_mean_scale():
    w = _weights()
    w[0, 0, 0, 0] = 0.0  # zero maps to +1 (intmath binary has no zero)
    q = BinaryWeight()
    v, scale = q.integer_weights(w)
    assert set(v.unique().tolist()) == {-1, 1}
    assert v[0, 0, 0, 0] == 1
    assert torch.equal(v, torch.where(w >= 0, 1, -1))
    assert torch.allclose(scale, w.abs().mean(dim=(1, 2, 3)))
    assert torch.equal(q(w), v.float() * scale.reshape(-1, 1, 1, 1))


def test_binary_weight_gradient_is_clipped_identity():
    w = torch.tensor([[-2.0, -0.5, 0.3, 1.5]]).requires_grad_(True)
    BinaryWeight()(w).sum().backward()
    assert w.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]


# -- power of two ----------------------------------------------------------------


def test_pow2_hand_example_3_bits():
    # 3 bits: values 0, ±1, ±2, ±4; scale = max|w| / 4 = 0.25
    w = torch.tensor([[1.0, -0.5, 0.3, 0.2, 0.1, -0.07, 0.0, -1.0]])
    q = Pow2Weight(bits=3)
    v, scale = q.integer_weights(w)
    assert scale.item() == 0.25
    # |w|/scale = 4, 2, 1.2, 0.8, 0.4, 0.28, 0, 4 -> 4, 2, 1, 1, 0, 0, 0, 4
    assert v.tolist() == [[4, -2, 1, 1, 0, 0, 0, -4]]
    raw = intmath.encode_weights("pow2", 3, v.numpy())
    # sign bit 2, exponent code e with magnitude 2^(e-1)
    assert raw.tolist() == [[0b011, 0b110, 0b001, 0b001, 0, 0, 0, 0b111]]
    assert torch.equal(q(w), v.float() * scale.reshape(-1, 1))


@pytest.mark.parametrize("bits", [3, 4, 5])
def test_pow2_values_are_representable(bits):
    w = _weights(std=0.1)
    v, _ = Pow2Weight(bits=bits).integer_weights(w)
    lo, hi = intmath.weight_value_range("pow2", bits)
    mag = v.abs()
    assert v.min() >= lo and v.max() <= hi and v.abs().max() == hi
    assert torch.all((mag & (mag - 1)) == 0)
    raw = intmath.encode_weights("pow2", bits, v.numpy())
    assert np.array_equal(intmath.decode_weights("pow2", bits, raw), v.numpy())


def test_pow2_gradient_is_identity():
    w = _weights().requires_grad_(True)
    Pow2Weight(bits=4)(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


# -- activations -------------------------------------------------------------------


def test_pact_codes_and_scale():
    q = PACTAct(bits=2, alpha=3.0)  # levels 0, 1, 2, 3 times scale 1
    x = torch.tensor([-1.0, 0.49, 0.5, 1.2, 2.5, 2.9, 3.0, 7.0])
    assert q.scale.item() == 1.0
    assert q.integer_values(x).tolist() == [0, 0, 1, 1, 3, 3, 3, 3]
    assert torch.equal(q(x), q.integer_values(x).float() * q.scale)


def test_pact_one_bit_is_zero_or_alpha():
    q = PACTAct(bits=1, alpha=2.0)
    x = torch.tensor([-3.0, 0.9, 1.0, 5.0])
    assert q(x).tolist() == [0.0, 0.0, 2.0, 2.0]


def test_pact_gradients_follow_the_paper():
    q = PACTAct(bits=3, alpha=2.0)
    x = torch.tensor([-1.0, 0.5, 1.5, 2.5, 4.0]).requires_grad_(True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]  # dL/dx = I(0 <= x <= alpha)
    assert q.alpha.grad.item() == 2.0  # d y_q / d alpha = I(x > alpha), two elements


def test_sign_activation_values_and_hardtanh_ste():
    q = SignAct()
    x = torch.tensor([-2.0, -0.3, 0.0, 0.7, 1.5]).requires_grad_(True)
    y = q(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert q.integer_values(x).tolist() == [-1, -1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    raw = intmath.encode_acts("bipolar", 1, q.integer_values(x).numpy())
    assert raw.tolist() == [0, 0, 1, 1, 1]


def test_input_quant_maps_pixels_to_8_bit_codes():
    q = InputQuant(bits=8)
    codes = torch.arange(256)
    x = codes.float() / 255.0
    assert torch.equal(q.integer_values(x), codes)
    assert torch.equal(q(x), codes.float() * q.scale)
    assert q.integer_values(torch.tensor([-0.1, 1.2])).tolist() == [0, 255]


def test_round_half_up_differs_from_bankers_rounding():
    assert round_half_up(torch.tensor([0.5, 1.5, 2.5, -0.5])).tolist() == [1.0, 2.0, 3.0, 0.0]


def test_add_quantize_grid_clamp_and_gradient():
    step = torch.tensor(0.25)
    v = torch.tensor([0.1, 0.13, -0.37, 100.0, -100.0]).requires_grad_(True)
    q = add_quantize(v, step, bits=4)  # codes in [-8, 7]
    assert (q / step).tolist() == [0.0, 1.0, -1.0, 7.0, -8.0]
    q.sum().backward()
    assert v.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]

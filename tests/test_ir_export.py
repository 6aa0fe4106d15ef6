"""Export of fake-quant QResNets: golden model vs fake-quant model, layer by layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from qhw.errors import InputError
from qhw.ir import intmath
from qhw.ir.check import PIXEL_MAX, compare, input_code_table, input_codes
from qhw.ir.export import export_model
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Add, Conv, Input
from qhw.quant.config import QuantConfig
from qhw.quant.data import synthetic_dataset
from qhw.quant.models import PRESETS, build_model
from qhw.quant.quantizers import PACTAct

CONFIGS = {
    "w4a4": {"default": {"w_kind": "uniform", "w_bits": 4, "a_kind": "uniform", "a_bits": 4}},
    "binary_body": {
        "default": {"w_kind": "uniform", "w_bits": 8, "a_kind": "uniform", "a_bits": 8},
        "layers": {"s*.b*.conv*": {"w_kind": "binary", "a_kind": "sign"},
                   "s*.b*.shortcut": {"w_kind": "uniform", "w_bits": 4, "a_kind": "sign"}},
    },
    "pow2": {"default": {"w_kind": "pow2", "w_bits": 4, "a_kind": "uniform", "a_bits": 4}},
    "mixed": {  # what AdaQAT's per-layer mode produces: different bits everywhere
        "default": {"w_kind": "uniform", "w_bits": 5, "a_kind": "uniform", "a_bits": 3},
        "layers": {"s1.b1.conv2": {"w_bits": 2, "a_bits": 6}, "s2.*": {"w_bits": 3, "a_bits": 2},
                   "s3.b1.conv1": {"a_bits": 1}, "s3.b1.shortcut": {"a_bits": 1}},
    },
}


def calibrated_model(config: dict, spec=None, seed: int = 0):
    """A random QResNet with realistic BN statistics, varied PACT clips and some negative BN scales."""
    torch.manual_seed(seed)
    spec = spec or replace(PRESETS["resnet8"], widths=(8, 16, 32))
    model = build_model(spec, QuantConfig.from_dict(config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, PACTAct):
                m.alpha.fill_(float(torch.empty(1).uniform_(1.0, 4.0, generator=gen)))
            if isinstance(m, torch.nn.BatchNorm2d):
                flip = torch.rand(m.num_features, generator=gen) < 0.2
                m.weight.copy_(torch.where(flip, -1.0, 1.0) * (0.5 + torch.rand(m.num_features, generator=gen)))
                m.bias.uniform_(-0.3, 0.3, generator=gen)
    ds = synthetic_dataset(spec_shape(spec), n_train=96, n_test=96, seed=seed)
    x, _ = ds.float_images("train")
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 32):
            model(x[i: i + 32])
    model.eval()
    return model, ds


def spec_shape(spec):
    return (spec.in_channels, *spec.in_size)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_matches_fake_quant_layer_by_layer(name):
    model, ds = calibrated_model(CONFIGS[name])
    net = export_model(model)
    report = compare(net, model, ds.x_test, ds.y_test, batch_size=48)
    assert report["input_code_mismatches"] == 0
    assert report["same_top1"] >= 99.0, report
    for layer in report["layers"]:
        assert layer["agreement"] >= 0.999, layer
    # the network is not trivial: some activations vary, and every layer kind is present
    kinds = {l.kind for l in net}
    assert kinds == {"input", "conv", "add", "gap", "dense"}
    assert report["layers"][0]["values"] > 0


def test_binary_body_uses_xnor_pes_and_pow2_uses_shift():
    net = export_model(calibrated_model(CONFIGS["binary_body"])[0])
    pes = {l.name: l.pe.value for l in net if isinstance(l, Conv)}
    assert pes["s1.b1.conv1"] == pes["s2.b1.conv2"] == "xnor"
    assert pes["stem"] == "mac" and pes["s2.b1.shortcut"] == "mac"  # 4-bit odd weights on ±1 inputs
    assert net["s1.b1.conv1"].in_spec.code.value == "bipolar"
    net = export_model(calibrated_model(CONFIGS["pow2"])[0])
    assert {l.pe.value for l in net if isinstance(l, Conv) and l.name != "stem"} == {"shift"}


def test_residual_arms_share_the_add_grid():
    model, _ = calibrated_model(CONFIGS["w4a4"])
    net = export_model(model)
    ident, proj = net["s1.b1.add"], net["s2.b1.add"]
    assert ident.inputs == ("s1.b1.conv2", "stem") and ident.coeffs[:, 0].tolist() == [1, 4]
    assert proj.inputs == ("s2.b1.conv2", "s2.b1.shortcut") and proj.coeffs[:, 0].tolist() == [1, 1]
    arm = net["s1.b1.conv2"].out
    assert (arm.code.value, arm.bits) == ("signed", 4 + 2 + 2)  # k_in + ADD_FRAC_BITS + 2
    # every add requantizer is exact thresholds with a verified mul-shift twin
    assert all(l.requant.mul_shift is not None for l in net if isinstance(l, Add))


def test_float_and_unfinished_models_are_refused():
    model, _ = calibrated_model({"default": {"w_kind": "float", "a_kind": "float"}, "first_last_8bit": False})
    with pytest.raises(InputError, match="layer stem: weights are float"):
        export_model(model)
    model, _ = calibrated_model({"default": {"w_kind": "uniform", "w_bits": 4, "a_kind": "float"}})
    with pytest.raises(InputError, match="activations are float"):
        export_model(model)
    model, _ = calibrated_model(CONFIGS["w4a4"])
    model.train()
    with pytest.raises(InputError, match="training mode"):
        export_model(model)
    with pytest.raises(InputError, match="can only export a qhw QResNet, not Linear"):
        export_model(torch.nn.Linear(2, 2))


def test_resnet20_on_cifar_shaped_input_exports_and_runs():
    spec = PRESETS["resnet20"]
    torch.manual_seed(0)
    model = build_model(spec, QuantConfig.from_dict(CONFIGS["w4a4"]))
    model.eval()
    net = export_model(model, with_mul_shift=False)
    assert net.input.shape == (3, 32, 32)
    assert sum(isinstance(l, Conv) for l in net) == 21 and sum(isinstance(l, Add) for l in net) == 9
    codes = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32)))
    out = GoldenModel(net).run(codes)
    assert out["fc"].shape == (2, 10) and out["s3.b3.add"].shape == (2, 64, 8, 8)
    with torch.no_grad():
        fake = model(codes.float() / 255.0)
    assert torch.equal(out["fc"].argmax(1), fake.argmax(1))


@pytest.mark.parametrize("bits", [8, 5, 4, 1])
def test_input_codes_follow_the_input_spec(bits):
    """8-bit dataset pixels d -> the k-bit codes InputQuant gives: floor((2^k - 1)·d/255 + 1/2)."""
    from qhw.quant.quantizers import InputQuant

    iq = InputQuant(bits=bits)
    inp = Input(name="input", shape=(1, 2, 2), bits=bits, scale=float(iq.scale))
    d = np.arange(PIXEL_MAX + 1)
    table = input_code_table(inp)
    top = (1 << bits) - 1
    np.testing.assert_array_equal(table, (2 * d * top + 255) // 510)
    np.testing.assert_array_equal(table, iq.integer_values(torch.from_numpy(d).float() / 255.0).numpy())
    assert table[0] == 0 and table[-1] == top and np.all(np.diff(table) >= 0)
    if bits == 8:
        np.testing.assert_array_equal(table, d)  # the pixel code itself
    np.testing.assert_array_equal(input_codes(inp, np.array([[0, 255], [128, 64]], dtype=np.uint8)),
                                  table[[[0, 255], [128, 64]]])
    # a scale other than 1/(2^k - 1) is honoured: codes of 2·scale cover half the pixel range
    half = Input(name="input", shape=(1, 2, 2), bits=bits, scale=2.0 / top) if bits > 1 else None
    if half is not None:
        assert input_code_table(half)[-1] == (top + 1) // 2
    with pytest.raises(InputError, match=r"pixel codes must lie in \[0, 255\]"):
        input_codes(inp, np.array([256]))
    with pytest.raises(InputError, match="image pixels map only to unsigned codes"):
        input_code_table(Input(name="input", shape=(1, 2, 2), code="bipolar", bits=1))


def test_golden_matches_fake_quant_on_a_4_bit_input():
    spec = replace(PRESETS["resnet8"], widths=(8, 16, 32), input_bits=4)
    model, ds = calibrated_model(CONFIGS["w4a4"], spec=spec)
    net = export_model(model)
    assert (net.input.bits, net["stem"].in_spec.hi) == (4, 15)
    report = compare(net, model, ds.x_test, ds.y_test, batch_size=48)
    assert report["input_code_mismatches"] == 0 and report["input_bits"] == 4
    assert report["same_top1"] >= 99.0 and all(l["agreement"] >= 0.999 for l in report["layers"])


def test_exported_bounds_are_padding_aware():
    """The 2x2 last stage of ResNet-8 on 8x8 inputs: conv2 sees at most 4 of 9 taps anywhere."""
    net = export_model(calibrated_model(CONFIGS["w4a4"])[0], with_mul_shift=False)
    narrower = []
    for layer in net:
        if isinstance(layer, Conv):
            s = layer.in_spec
            pad = layer.padding != (0, 0)
            lo, hi = intmath.accumulator_bounds(layer.weights, min(s.lo, 0) if pad else s.lo,
                                                max(s.hi, 0) if pad else s.hi)  # every tap, padding as 0
            assert np.all(layer.acc_lo >= lo) and np.all(layer.acc_hi <= hi)
            if intmath.signed_width(int(lo.min()), int(hi.max())) > layer.acc_bits:
                narrower.append(layer.name)
    assert "s3.b1.conv2" in narrower and "stem" not in narrower

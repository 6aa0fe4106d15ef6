import pytest
import torch

from qhw.quant.config import LayerQuant, QuantConfig, uniform_config
from qhw.quant.models import ADD_FRAC_BITS, BasicBlock, ResNetSpec, build_model




def _calibrated(model, x, steps=3):
    """A few train-mode passes so BN statistics are not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def _images(n=8, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g).float() / 255


def test_resnet8_and_resnet20_structure():
    m8 = build_model("resnet8")
    assert m8.layer_names() == [
        "stem", "s1.b1.conv1", "s1.b1.conv2", "s2.b1.conv1", "s2.b1.conv2", "s2.b1.shortcut",
        "s3.b1.conv1", "s3.b1.conv2", "s3.b1.shortcut", "fc",
    ]
    g = m8.layer_geometry("s3.b1.conv1")
    assert (g.in_channels, g.out_channels, g.kernel, g.stride, g.in_hw, g.out_hw) == (32, 64, 3, 2, (4, 4), (2, 2))
    assert m8(_images()).shape == (8, 10)
    m20 = build_model("resnet20")
    names = m20.layer_names()
    assert len([n for n in names if "conv" in n]) == 18 and names.count("fc") == 1
    assert [n for n in names if "shortcut" in n] == ["s2.b1.shortcut", "s3.b1.shortcut"]
    assert m20(_images(2, (3, 32, 32))).shape == (2, 10)


def test_input_act_wiring():
    m = build_model("resnet8")
    assert m.input_act("stem") is m.input_quant
    assert m.input_act("s1.b1.conv1") is m.stem_act
    assert m.input_act("s1.b1.conv2") is m.stages[0][0].act1
    assert m.input_act("s2.b1.conv1") is m.input_act("s2.b1.shortcut") is m.stages[0][0].act_out
    assert m.input_act("fc") is m.stages[2][0].act_out


def test_stem_is_an_integer_conv_of_pixel_codes():
    m = _calibrated(build_model("resnet8", uniform_config(4, 4)), _images())
    x = _images(4, seed=1)
    codes = m.input_quant.integer_values(x)
    v, sw = m.stem.integer_weights()
    acc = torch.nn.functional.conv2d(codes.double(), v.double(), padding=1)  # exact integers
    ref = acc * (sw.double() * m.input_quant.scale.double()).reshape(1, -1, 1, 1)
    assert torch.allclose(m.stem(m.input_quant(x)).double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", ["w4a4", "binary_body", "pow2"])
def test_residual_add_operands_are_integers_on_the_input_grid(config):
    from qhw.quant.train import resolve_quant

    m = _calibrated(build_model("resnet8", resolve_quant(config)), _images(16))
    seen = {}

    def grab(name, block):
        def hook(mod, inputs, output):
            seen[name] = inputs[0].detach()
        return block.act_out.register_forward_hook(hook)

    handles = [grab(n, b) for n, b in m.blocks()]
    in_acts = [m.stem_act] + [b.act_out for _, b in m.blocks()][:-1]
    with torch.no_grad():
        m(_images(4, seed=2))
    for h in handles:
        h.remove()
    for (name, block), in_act in zip(m.blocks(), in_acts):
        step = BasicBlock.add_step(in_act)
        total = torch.round(seen[name] / step)
        # the act input is exactly one float32 product integer * step
        assert torch.equal(seen[name], total * step), name
        bound = 2 ** BasicBlock.add_bits(in_act)  # two operands of add_bits signed bits
        assert total.abs().max() <= bound and total.abs().max() > 0
    assert BasicBlock.add_bits(m.stem_act) == m.stem_act.bits + ADD_FRAC_BITS + 2


def test_set_layer_quant_keeps_alpha_on_bit_changes_and_swaps_kinds():
    m = build_model("resnet8")
    act = m.input_act("s2.b1.conv2")
    with torch.no_grad():
        act.alpha.fill_(1.7)
    m.set_layer_quant("s2.b1.conv2", LayerQuant("uniform", 3, "uniform", 2))
    assert m.input_act("s2.b1.conv2") is act and act.bits == 2 and act.alpha.item() == pytest.approx(1.7)
    assert m.layers()["s2.b1.conv2"].weight_quant.bits == 3
    m.set_layer_quant("s2.b1.conv2", LayerQuant("binary", 1, "sign", 1))
    assert m.input_act("s2.b1.conv2").kind == "sign"
    assert m.layers()["s2.b1.conv2"].weight_quant.encoding == "binary"


def test_mapping_errors_name_the_problem():
    m = build_model("resnet8")
    with pytest.raises(ValueError, match="unknown layer name"):
        m.apply_quant({"nope": LayerQuant()})
    with pytest.raises(ValueError, match="read the same activation"):
        m.apply_quant({"s2.b1.conv1": LayerQuant("uniform", 4, "uniform", 4), "s2.b1.shortcut": LayerQuant("uniform", 4, "uniform", 3)})
    with pytest.raises(ValueError, match="the stem reads 8-bit image codes"):
        m.set_layer_quant("stem", LayerQuant("uniform", 8, "uniform", 4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 10}, "depth must be 6n \\+ 2"),
        ({"widths": (16, 32)}, "widths must have 3 entries"),
        ({"in_size": (8,)}, "in_size must be"),
        ({"input_bits": 9}, "input_bits must be between 1 and 8"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetSpec(**kwargs)


def test_quantized_forward_trains():
    torch.manual_seed(0)
    m = build_model(ResNetSpec(depth=8, widths=(4, 8, 8), in_channels=1, in_size=(8, 8)), QuantConfig.from_dict({}))
    x, y = _images(32), torch.arange(32) % 10
    opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # gradients reach every quantized layer: the batch is being memorized
    assert losses[-1] < 0.75 * losses[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters() if n.endswith("weight"))


def test_fc_dorefa_levels_carry_a_fixed_gain():
    m = build_model("resnet8", uniform_config(4, 4))
    v, scale = m.fc.integer_weights()
    assert v.abs().max() == 255  # fc stays 8-bit
    assert torch.all(scale == torch.tensor((1 / 8) / 255))  # gain 1/sqrt(64)
    assert torch.equal(m.fc.quantized_weight(), v.float() * scale[:, None])
    _, conv_scale = m.layers()["s1.b1.conv1"].integer_weights()
    assert torch.all(conv_scale == torch.tensor(1 / 15))
    m.set_layer_quant("fc", LayerQuant("pow2", 4, "uniform", 8))
    m.set_layer_quant("fc", LayerQuant("uniform", 6, "uniform", 8))
    assert m.fc.integer_weights()[1][0] == torch.tensor((1 / 8) / 63)

import pytest

from qhw.quant.config import QuantConfig, uniform_config
from qhw.quant.cost import cost_report
from qhw.quant.models import ResNetSpec, build_model

TINY = ResNetSpec(depth=8, widths=(2, 4, 8), in_channels=1, in_size=(4, 4), num_classes=3)




def test_bitops_and_memory_on_a_hand_computed_resnet8():
    model = build_model(TINY, uniform_config(4, 4))
    # MACs = C_in * k^2 * C_out * out_h * out_w, worked out by hand:
    expected_macs = {
        "stem": 1 * 9 * 2 * 16,  # 4x4 out
        "s1.b1.conv1": 2 * 9 * 2 * 16,
        "s1.b1.conv2": 2 * 9 * 2 * 16,
        "s2.b1.conv1": 2 * 9 * 4 * 4,  # stride 2 -> 2x2
        "s2.b1.conv2": 4 * 9 * 4 * 4,
        "s2.b1.shortcut": 2 * 1 * 4 * 4,
        "s3.b1.conv1": 4 * 9 * 8 * 1,  # stride 2 -> 1x1
        "s3.b1.conv2": 8 * 9 * 8 * 1,
        "s3.b1.shortcut": 4 * 1 * 8 * 1,
        "fc": 8 * 3,
    }
    assert model.layer_macs() == expected_macs
    rep = cost_report(model)
    # stem W8 x 8-bit image, fc W8A8, everything else W4A4
    assert rep["bitops"] == 64 * 288 + 16 * 2944 + 64 * 24 == 67072
    assert rep["weight_count"] == 1234
    assert rep["weight_memory_bits"] == 8 * 18 + 8 * 24 + 4 * (1234 - 18 - 24) == 5104
    assert rep["wcr"] == pytest.approx(32 * 1234 / 5104)


def test_binary_and_pow2_layers_count_their_own_bits():
    model = build_model(
        TINY,
        QuantConfig.from_dict(
            {"default": {"w_bits": 4, "a_bits": 4}, "layers": {"s1.b1.conv*": {"w_kind": "binary", "a_kind": "sign"}, "s3.b1.conv2": {"w_kind": "pow2", "w_bits": 3}}}
        ),
    )
    rows = {r["layer"]: r for r in cost_report(model)["layers"]}
    assert rows["s1.b1.conv1"]["bitops"] == 1 * 1 * 576
    assert rows["s1.b1.conv2"]["weight_bits"] == 36
    assert rows["s3.b1.conv2"]["bitops"] == 3 * 4 * 576
    # s1.b1's output activation (uniform 4) feeds s2.b1.conv1 and its shortcut
    assert rows["s2.b1.shortcut"]["a_bits"] == 4


def test_resnet20_bitops_reproduce_adaqat_table1():
    model = build_model("resnet20", QuantConfig.from_dict({"default": {"w_kind": "float", "a_kind": "float"}, "first_last_8bit": False}))
    # full precision except the 8-bit image input of the stem
    macs = model.layer_macs()
    assert sum(macs.values()) == 40_813_184
    full = 32 * 32 * sum(macs.values())
    assert full / 1e9 == pytest.approx(41.79, abs=0.01)  # AdaQAT Table I baseline: 41.7 Gb
    # W3A4 and W3A8 bodies with 8-bit first and last layers: Table I 0.51 and 0.99 Gb
    assert cost_report(build_model("resnet20", uniform_config(3, 4)))["bitops_gb"] == pytest.approx(0.513, abs=0.001)
    assert cost_report(build_model("resnet20", uniform_config(3, 8)))["bitops_gb"] == pytest.approx(0.997, abs=0.001)
    # W2 with float activations: 2.61 Gb (Table I text)
    w2 = QuantConfig.from_dict({"default": {"w_kind": "uniform", "w_bits": 2, "a_kind": "float"}})
    assert cost_report(build_model("resnet20", w2))["bitops_gb"] == pytest.approx(2.61, abs=0.01)

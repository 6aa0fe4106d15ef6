import json

import pytest

from qhw.errors import FormatVersionError, InputError
from qhw.quant.config import LayerQuant, QuantConfig, load_quant_config
from qhw.quant.models import build_model
from qhw.quant.train import CONFIG_DIR, builtin_configs




def _model():
    return build_model("resnet8")


def _apply(doc, model=None):
    model = model or _model()
    model.apply_quant(QuantConfig.from_dict(doc))
    return model.quant_config()


def test_default_and_first_last_rule():
    q = _apply({"default": {"w_kind": "uniform", "w_bits": 3, "a_kind": "uniform", "a_bits": 5}})
    assert q["stem"] == LayerQuant("uniform", 8, "uniform", 8)  # image codes are 8-bit
    assert q["fc"] == LayerQuant("uniform", 8, "uniform", 8)
    assert q["s2.b1.conv2"] == LayerQuant("uniform", 3, "uniform", 5)


def test_patterns_apply_in_order_and_kind_change_fixes_bits():
    q = _apply(
        {
            "default": {"w_bits": 4, "a_bits": 4},
            "layers": {"s*.b*.conv*": {"w_kind": "binary", "a_kind": "sign"}, "s*.b*.shortcut": {"a_kind": "sign"}},
        }
    )
    assert q["s1.b1.conv1"] == LayerQuant("binary", 1, "sign", 1)
    assert q["s2.b1.shortcut"] == LayerQuant("uniform", 4, "sign", 1)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"layers": {"s9.b1.conv1": {"w_bits": 4}}}, "layer 's9.b1.conv1' matches no layer"),
        ({"layers": {"s1.b1.conv1": {"w_kind": "ternary"}}}, "w_kind must be one of uniform, binary, pow2, float, not 'ternary'"),
        ({"layers": {"s1.b1.conv1": {"w_bits": 9}}}, "w_bits for uniform must be between 2 and 8, not 9"),
        ({"layers": {"s1.b1.conv1": {"a_bits": 0}}}, "a_bits for uniform must be between 1 and 8, not 0"),
        ({"layers": {"s1.b1.conv1": {"w_kind": "pow2", "w_bits": 8}}}, "w_bits for pow2 must be between 3 and 5, not 8"),
        ({"layers": {"s1.b1.conv1": {"w_kind": "binary", "w_bits": 2}}}, "w_bits for binary must be 1, not 2"),
        ({"layers": {"s1.b1.conv1": {"bits": 4}}}, "unknown key(s) 'bits'"),
        ({"default": {"a_kind": "relu"}}, "a_kind must be one of uniform, sign, float"),
        ({"layers": {"stem": {"a_bits": 4}}}, "layer stem reads the input image as 8-bit uniform codes"),
        ({"layers": {"s2.b1.shortcut": {"a_bits": 3}}}, "layer s2.b1.shortcut reads the same activation as s2.b1.conv1"),
        ({"layer": {}}, "unknown top-level key(s) 'layer'"),
        ({"format": "other"}, "expected 'qhw-quant-config'"),
        ([1, 2], "expected a mapping at top level"),
    ],
)
def test_invalid_configs_raise_one_input_error(doc, message):
    with pytest.raises(InputError) as exc:
        _apply(doc)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_wrong_version_is_a_format_version_error():
    with pytest.raises(FormatVersionError, match="version 2 is not supported"):
        QuantConfig.from_dict({"version": 2})


def test_yaml_and_json_files(tmp_path):
    y = tmp_path / "q.yaml"
    y.write_text("default: {w_bits: 3, a_bits: 2}\nlayers:\n  s3.b1.conv2: {w_kind: pow2, w_bits: 5}\n")
    m = _model()
    m.apply_quant(load_quant_config(y))
    assert m.layer_quant("s3.b1.conv2") == LayerQuant("pow2", 5, "uniform", 2)
    j = tmp_path / "q.json"
    j.write_text(json.dumps({"default": {"w_bits": 6, "a_bits": 6}}))
    m.apply_quant(load_quant_config(j))
    assert m.layer_quant("s1.b1.conv1") == LayerQuant("uniform", 6, "uniform", 6)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.json", "{not json", "is not valid JSON"),
        ("bad.yaml", "default: [unclosed", "is not valid YAML"),
        ("missing.json", None, "quant config not found"),
    ],
)
def test_unreadable_files(tmp_path, name, text, message):
    p = tmp_path / name
    if text is not None:
        p.write_text(text)
    with pytest.raises(InputError, match=message):
        load_quant_config(p)


@pytest.mark.parametrize("name", ["w4a4", "w8a8", "binary_body", "pow2", "float"])
@pytest.mark.parametrize("preset", ["resnet8", "resnet20"])
def test_builtin_configs_resolve_on_both_presets(name, preset):
    assert name in builtin_configs()
    m = build_model(preset)
    m.apply_quant(load_quant_config(CONFIG_DIR / f"{name}.json"))
    q = m.quant_config()
    assert q["stem"].a_bits == 8
    if name == "binary_body":
        assert all(q[n] == LayerQuant("binary", 1, "sign", 1) for n in q if "." in n)  # every block layer
        assert q["fc"] == LayerQuant("uniform", 8, "uniform", 8)
    if name == "pow2":
        assert q["s2.b1.conv1"] == LayerQuant("pow2", 4, "uniform", 4)


def test_layer_quant_constructor_messages():
    with pytest.raises(ValueError, match="w_bits must be given for pow2"):
        LayerQuant("pow2", None)
    assert LayerQuant("binary", None, "sign", None) == LayerQuant("binary", 1, "sign", 1)

import io

import pytest
import torch

from qhw.errors import FormatVersionError, InputError
from qhw.quant.checkpoint import CHECKPOINT_VERSION, load_checkpoint, load_checkpoint_full, save_checkpoint
from qhw.quant.config import QuantConfig
from qhw.quant.models import ResNetSpec, build_model

SPEC = ResNetSpec(depth=8, widths=(4, 8, 8), in_channels=1, in_size=(8, 8), num_classes=10)
MIXED = QuantConfig.from_dict(
    {
        "default": {"w_bits": 3, "a_bits": 2},
        "layers": {
            "s1.b1.conv*": {"w_kind": "binary", "a_kind": "sign"},
            "s2.b1.conv2": {"w_kind": "pow2", "w_bits": 4, "a_bits": 5},
        },
    }
)




def _trained_like():
    torch.manual_seed(0)
    m = build_model(SPEC, MIXED, alpha_init=2.0)
    x = torch.rand(16, 1, 8, 8)
    m.train()
    with torch.no_grad():
        m(x)  # BN statistics
        for mod in m.modules():
            if hasattr(mod, "alpha"):
                mod.alpha.add_(torch.rand(()))
    return m.eval(), x


def test_round_trip_keeps_weights_quantizers_and_outputs(tmp_path):
    m, x = _trained_like()
    path = save_checkpoint(tmp_path / "c.pt", m, metrics={"top1": 12.5}, adaqat={"events": []}, train={"epochs": 1})
    ck = load_checkpoint_full(path)
    m2 = ck.model
    assert not m2.training
    assert m2.quant_config() == m.quant_config()
    assert m2.layer_quant("s2.b1.conv2").w_kind == "pow2" and m2.layer_quant("s1.b1.conv2").a_kind == "sign"
    assert torch.equal(m2(x), m(x))
    for name, layer in m.layers().items():
        v, s = layer.integer_weights()
        v2, s2 = m2.layers()[name].integer_weights()
        assert torch.equal(v, v2) and torch.equal(s, s2), name
    assert ck.metrics == {"top1": 12.5} and ck.train == {"epochs": 1} and ck.adaqat == {"events": []}
    alpha = m.input_act("s2.b1.conv2").alpha.item()
    assert m2.input_act("s2.b1.conv2").alpha.item() == alpha != 2.0


def test_saving_over_an_existing_file_is_atomic(tmp_path):
    m, _ = _trained_like()
    p = save_checkpoint(tmp_path / "c.pt", m)
    old = p.read_bytes()

    class Boom:
        def to_dict(self):
            raise RuntimeError("boom")

    broken = build_model(SPEC, MIXED)
    broken.spec = Boom()
    with pytest.raises(RuntimeError):
        save_checkpoint(p, broken)
    assert p.read_bytes() == old
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_truncated_and_foreign_files(tmp_path):
    m, _ = _trained_like()
    good = save_checkpoint(tmp_path / "good.pt", m).read_bytes()
    cases = {
        "truncated.pt": good[: len(good) // 2],
        "garbage.pt": b"this is not a checkpoint",
        "empty.pt": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="is corrupt or not a qhw checkpoint"):
            load_checkpoint(tmp_path / name)
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf)
    (tmp_path / "foreign.pt").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="is not a qhw quantized-model checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def _rewrite(path, mutate):
    doc = torch.load(path, weights_only=True)
    mutate(doc)
    buf = io.BytesIO()
    torch.save(doc, buf)
    path.write_bytes(buf.getvalue())


def test_wrong_version_and_inconsistent_contents(tmp_path):
    m, _ = _trained_like()
    p = save_checkpoint(tmp_path / "v.pt", m)
    _rewrite(p, lambda d: d.update(version=CHECKPOINT_VERSION + 1))
    with pytest.raises(FormatVersionError, match=f"format version {CHECKPOINT_VERSION + 1}"):
        load_checkpoint(p)
    p = save_checkpoint(tmp_path / "s.pt", m)
    _rewrite(p, lambda d: d["state_dict"].pop("fc.weight"))
    with pytest.raises(InputError, match="is inconsistent"):
        load_checkpoint(p)
    p = save_checkpoint(tmp_path / "q.pt", m)
    _rewrite(p, lambda d: d["layers"]["s2.b1.conv2"].update(w_bits=9))
    with pytest.raises(InputError, match="is inconsistent: w_bits for pow2 must be between 3 and 5, not 9"):
        load_checkpoint(p)
    p = save_checkpoint(tmp_path / "g.pt", m)
    _rewrite(p, lambda d: d["weight_gains"].update(fc=1.0))  # written before the fc gain existed
    with pytest.raises(InputError, match="weight gains differ"):
        load_checkpoint(p)

"""The qhw-net file format: round trips, versioning, corrupt and inconsistent files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from qhw.errors import FormatVersionError, InputError
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Network
from qhw.ir.requant import affine_requant, logit_requant
from qhw.ir.serialize import FORMAT_VERSION, load_network, paths_for, save_network


def sample_network(seed: int = 0) -> Network:
    """Every layer kind and requantizer kind, with random but valid integers."""
    rng = np.random.default_rng(seed)
    inp = Input(name="input", shape=(2, 6, 6), bits=8, scale=1 / 255)

    def conv(name, src, spec, cout, code, bits, out):
        w = {"odd": lambda s: 2 * rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), s) + 1,
             "binary": lambda s: rng.choice([-1, 1], s),
             "pow2": lambda s: rng.choice([0, 1, -2, 4, -8], s)}[code]((cout, spec.shape[0], 3, 3))
        probe = Conv(name=name, input=src, in_spec=spec, out_channels=cout, kernel=3, padding=1,
                     weight_code=code, weight_bits=bits, weights=w)
        a = rng.uniform(0.001, 0.02, cout) * rng.choice([-1, 1], cout)
        rq = affine_requant(a, rng.uniform(-3, 3, cout), out[0], out[1], probe.acc_lo, probe.acc_hi)
        return Conv(name=name, input=src, in_spec=spec, out_channels=cout, kernel=3, padding=1,
                    weight_code=code, weight_bits=bits, weights=w, requant=rq)

    c1 = conv("c1", "input", inp.out, 4, "odd", 8, ("unsigned", 4))
    c2 = conv("c2", "c1", c1.out, 4, "pow2", 4, ("signed", 8))
    c3 = conv("c3", "c1", c1.out, 4, "odd", 3, ("bipolar", 1))
    c4 = conv("c4", "c3", c3.out, 4, "binary", 1, ("signed", 6))
    add_probe = Add(name="add", inputs=("c2", "c4", "c1"), in_specs=(c2.out, c4.out, c1.out),
                    coeffs=[[1] * 4, [2] * 4, [4] * 4])
    add = Add(name="add", inputs=add_probe.inputs, in_specs=add_probe.in_specs, coeffs=add_probe.coeffs,
              requant=affine_requant(np.full(4, 0.05), np.zeros(4), "unsigned", 3, add_probe.acc_lo,
                                     add_probe.acc_hi))
    gap = GlobalPool(name="gap", input="add", in_spec=add.out)
    w = 2 * rng.integers(-128, 128, (5, 4)) + 1
    fc_probe = Dense(name="fc", input="gap", in_spec=gap.out, out_channels=5, weight_code="odd", weight_bits=8,
                     weights=w)
    fc = Dense(name="fc", input="gap", in_spec=gap.out, out_channels=5, weight_code="odd", weight_bits=8, weights=w,
               requant=logit_requant(rng.uniform(0.01, 0.02, 5), rng.normal(0, 1, 5), fc_probe.acc_lo,
                                     fc_probe.acc_hi))
    return Network(layers=(inp, c1, c2, c3, c4, add, gap, fc), meta={"note": "sample"})


def test_round_trip_gives_identical_outputs(tmp_path):
    net = sample_network()
    path = save_network(net, tmp_path / "net")
    assert path == tmp_path / "net.json" and zipfile.is_zipfile(tmp_path / "net.npz")
    back = load_network(path)
    assert [l.name for l in back] == [l.name for l in net] and back.meta == {"note": "sample"}
    for a, b in zip(net, back):
        assert a.out == b.out and a.kind == b.kind
        if hasattr(a, "weights"):
            np.testing.assert_array_equal(a.weight_raw, b.weight_raw)
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (6, 2, 6, 6)))
    out_a, out_b = GoldenModel(net).run(x), GoldenModel(back).run(x)
    assert out_a.keys() == out_b.keys()
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    assert len({tuple(v.flatten().tolist()) for v in out_a["c3"]}) > 1  # not a constant network


def test_files_are_deterministic(tmp_path):
    save_network(sample_network(), tmp_path / "a.json")
    save_network(sample_network(), tmp_path / "b.json")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    da, db = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert da["arrays"].pop("file") == "a.npz" and db["arrays"].pop("file") == "b.npz"
    assert da == db


def test_json_documents_every_field(tmp_path):
    doc = json.loads(save_network(sample_network(), tmp_path / "n.json").read_text())
    assert doc["format"] == "qhw-net" and doc["format_version"] == FORMAT_VERSION == 1
    conv = next(l for l in doc["layers"] if l["name"] == "c4")
    assert {"weight_code", "weight_bits", "weight_raw", "weights", "pe", "kernel", "stride", "padding",
            "acc_lo", "acc_hi", "acc_bits", "requant", "out", "in_spec"} <= set(conv)
    assert conv["pe"] == "xnor" and conv["requant"]["kind"] == "thresholds"
    assert conv["requant"]["mul_shift"]["kind"] == "mul_shift"
    assert [l["kind"] for l in doc["layers"]] == ["input", "conv", "conv", "conv", "conv", "add", "gap", "dense"]


def _rewrite(tmp_path, edit):
    path = save_network(sample_network(), tmp_path / "n.json")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


def test_other_format_version_fails_clearly(tmp_path):
    path = _rewrite(tmp_path, lambda d: d.update(format_version=2))
    with pytest.raises(FormatVersionError, match="format_version 2; this qhw reads format_version 1 only"):
        load_network(path)


def _set_layer(name, **fields):
    def edit(doc):
        next(l for l in doc["layers"] if l["name"] == name).update(fields)
    return edit


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d.update(format="onnx"), "not a qhw network description"),
        (_set_layer("c2", kind="maxpool"), "layer 'c2': unknown layer kind 'maxpool'"),
        (_set_layer("c2", weight_bits=9), "layer 'c2': pow2 weight bits must be between 2 and 8, not 9"),
        (_set_layer("c1", weight_bits=40), "layer 'c1': weight_bits must be between 1 and 16, not 40"),
        (_set_layer("c1", weight_code="ternary"), "layer 'c1': 'ternary' is not a valid WeightCode"),
        (_set_layer("c1", kernel=[5, 5]), r"layer 'c1': weights must have shape \(4, 50\)"),
        (_set_layer("c1", acc_bits=3), "layer 'c1': stored acc_bits 3 differs"),
        (_set_layer("c1", acc_lo="c2.acc_lo"), "layer 'c1': stored acc_lo differs from the exact bound"),
        (_set_layer("c1", weights="c3.weights"), "layer 'c1': stored weight"),
        (_set_layer("c1", weight_raw="nope"), "layer 'c1': array 'nope' is missing"),
        (_set_layer("c1", pe="xnor"), "layer 'c1': stored pe 'xnor' differs"),
        (_set_layer("add", inputs=["c2", "fc", "c1"]), "layer 'add' reads 'fc', which is not an earlier layer"),
        (_set_layer("gap", requant={"kind": "lut"}), "layer 'gap': unknown requant kind 'lut'"),
        (lambda d: d["layers"][1].pop("out_channels"), "layer 'c1': missing field 'out_channels'"),
        (lambda d: d["arrays"].update(sha256="0" * 64), "does not match the description"),
        (lambda d: d["arrays"].update(file="../x.npz"), "plain file name"),
        (lambda d: d.update(layers=[]), "'layers' must be a non-empty list"),
    ],
)
def test_bad_description_is_one_input_error(tmp_path, edit, match):
    path = _rewrite(tmp_path, edit)
    with pytest.raises(InputError, match=match) as info:
        load_network(path)
    assert "\n" not in str(info.value)


def test_corrupt_files_are_input_errors(tmp_path):
    path = save_network(sample_network(), tmp_path / "n.json")
    with pytest.raises(InputError, match="network description not found"):
        load_network(tmp_path / "missing.json")
    npz = tmp_path / "n.npz"
    good = npz.read_bytes()
    npz.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="SHA-256 differs"):
        load_network(path)
    npz.write_bytes(good)
    path.write_text(path.read_text()[:100])
    with pytest.raises(InputError, match="is not valid JSON"):
        load_network(path)


def test_valid_hash_but_unreadable_npz_is_an_input_error(tmp_path):
    path = save_network(sample_network(), tmp_path / "n.json")
    bad = b"not a zip file at all"
    import hashlib

    (tmp_path / "n.npz").write_bytes(bad)
    doc = json.loads(path.read_text())
    doc["arrays"]["sha256"] = hashlib.sha256(bad).hexdigest()
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="not a readable .npz"):
        load_network(path)


def test_float_array_in_npz_is_rejected(tmp_path):
    import hashlib

    path = save_network(sample_network(), tmp_path / "n.json")
    npz = tmp_path / "n.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["c1.requant.thresholds"] = arrays["c1.requant.thresholds"].astype(np.float64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz.write_bytes(buf.getvalue())
    doc = json.loads(path.read_text())
    doc["arrays"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="array 'c1.requant.thresholds' must be int64, not float64"):
        load_network(path)


def test_failed_save_keeps_previous_files(tmp_path, monkeypatch):
    path = save_network(sample_network(0), tmp_path / "n.json")
    before = (path.read_bytes(), (tmp_path / "n.npz").read_bytes())
    with pytest.raises(TypeError, match="net must be a Network"):
        save_network("not a network", path)
    assert (path.read_bytes(), (tmp_path / "n.npz").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.json", "n.npz"]


def test_paths_for_appends_json():
    assert [p.name for p in paths_for("out/net")] == ["net.json", "net.npz"]
    assert [p.name for p in paths_for("out/net.json")] == ["net.json", "net.npz"]

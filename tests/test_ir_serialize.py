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
from qhw.ir import intmath
from qhw.ir.graph import (Add, Conv, Dense, GlobalPool, Input, MaxPool, Network, PEKind, TensorSpec,
                          threshold_clip_range)
from qhw.ir.requant import Thresholds, affine_requant, logit_requant
from qhw.ir.serialize import FORMAT_VERSION, _Arrays, load_network, paths_for, save_network


def sample_network(seed: int = 0, pool: str = "maxpool") -> Network:
    """Every layer kind and requantizer kind, with random but valid integers.

    ``pool="conv"`` puts a strided conv where the maxpool is (a network a
    format_version 1 file can hold). ``c5`` (3x3, stride 2 on 3x3) and ``c6``
    (3x3 on 2x2, ``requant: null``) see at most 4 and 6 of their 9 taps at any
    position, so their padding-aware bounds are narrower than version 1's.
    """
    rng = np.random.default_rng(seed)
    inp = Input(name="input", shape=(2, 6, 6), bits=8, scale=1 / 255)

    def conv(name, src, spec, cout, code, bits, out, stride=1):
        w = {"odd": lambda s: 2 * rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), s) + 1,
             "binary": lambda s: rng.choice([-1, 1], s),
             "pow2": lambda s: rng.choice([0, 1, -2, 4, -8], s)}[code]((cout, spec.shape[0], 3, 3))
        geo = dict(name=name, input=src, in_spec=spec, out_channels=cout, kernel=3, padding=1, stride=stride,
                   weight_code=code, weight_bits=bits, weights=w)
        if out is None:
            return Conv(**geo)
        probe = Conv(**geo)
        a = rng.uniform(0.001, 0.02, cout) * rng.choice([-1, 1], cout)
        return Conv(requant=affine_requant(a, rng.uniform(-3, 3, cout), out[0], out[1], probe.acc_lo, probe.acc_hi),
                    **geo)

    c1 = conv("c1", "input", inp.out, 4, "odd", 8, ("unsigned", 4))
    c2 = conv("c2", "c1", c1.out, 4, "pow2", 4, ("signed", 8))
    c3 = conv("c3", "c1", c1.out, 4, "odd", 3, ("bipolar", 1))
    c4 = conv("c4", "c3", c3.out, 4, "binary", 1, ("signed", 6))
    add_probe = Add(name="add", inputs=("c2", "c4", "c1"), in_specs=(c2.out, c4.out, c1.out),
                    coeffs=[[1] * 4, [2] * 4, [4] * 4])
    add = Add(name="add", inputs=add_probe.inputs, in_specs=add_probe.in_specs, coeffs=add_probe.coeffs,
              requant=affine_requant(np.full(4, 0.05), np.zeros(4), "unsigned", 3, add_probe.acc_lo,
                                     add_probe.acc_hi))
    if pool == "maxpool":
        mp = MaxPool(name="pool", input="add", in_spec=add.out, kernel=3, stride=2, padding=1)
    else:
        mp = conv("pool", "add", add.out, 4, "odd", 3, ("unsigned", 3), stride=2)
    c5 = conv("c5", "pool", mp.out, 3, "odd", 3, ("unsigned", 2), stride=2)
    c6 = conv("c6", "c5", c5.out, 4, "odd", 2, None)
    gap = GlobalPool(name="gap", input="c6", in_spec=c6.out)
    w = 2 * rng.integers(-128, 128, (5, 4)) + 1
    fc_probe = Dense(name="fc", input="gap", in_spec=gap.out, out_channels=5, weight_code="odd", weight_bits=8,
                     weights=w)
    fc = Dense(name="fc", input="gap", in_spec=gap.out, out_channels=5, weight_code="odd", weight_bits=8, weights=w,
               requant=logit_requant(rng.uniform(0.01, 0.02, 5), rng.normal(0, 1, 5), fc_probe.acc_lo,
                                     fc_probe.acc_hi))
    return Network(layers=(inp, c1, c2, c3, c4, add, mp, c5, c6, gap, fc), meta={"note": "sample"})


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
    assert len({tuple(v.flatten().tolist()) for v in out_a["c6"]}) > 1


def test_files_are_deterministic(tmp_path):
    save_network(sample_network(), tmp_path / "a.json")
    save_network(sample_network(), tmp_path / "b.json")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    da, db = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert da["arrays"].pop("file") == "a.npz" and db["arrays"].pop("file") == "b.npz"
    assert da == db


def test_json_documents_every_field(tmp_path):
    doc = json.loads(save_network(sample_network(), tmp_path / "n.json").read_text())
    assert doc["format"] == "qhw-net" and doc["format_version"] == FORMAT_VERSION == 2
    conv = next(l for l in doc["layers"] if l["name"] == "c4")
    assert {"weight_code", "weight_bits", "weight_raw", "weights", "pe", "kernel", "stride", "padding",
            "acc_lo", "acc_hi", "acc_bits", "requant", "out", "in_spec"} <= set(conv)
    assert conv["pe"] == "xnor" and conv["requant"]["kind"] == "thresholds"
    assert conv["requant"]["mul_shift"]["kind"] == "mul_shift"
    assert [l["kind"] for l in doc["layers"]] == ["input", "conv", "conv", "conv", "conv", "add", "maxpool", "conv",
                                                  "conv", "gap", "dense"]
    pool = next(l for l in doc["layers"] if l["kind"] == "maxpool")
    assert set(pool) == {"name", "kind", "inputs", "in_spec", "kernel", "stride", "padding", "out"}
    assert (pool["kernel"], pool["stride"], pool["padding"]) == ([3, 3], [2, 2], [1, 1])


def _rewrite(tmp_path, edit):
    path = save_network(sample_network(), tmp_path / "n.json")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("version", [7, 0, "2", True, None])
def test_other_format_version_fails_clearly(tmp_path, version):
    path = _rewrite(tmp_path, lambda d: d.update(format_version=version))
    with pytest.raises(FormatVersionError) as info:
        load_network(path)
    msg = str(info.value)
    assert f"has format_version {version!r}; this qhw reads format_version 1 and 2 (writes 2)" in msg
    assert str(path) in msg and "\n" not in msg


def _set_layer(name, **fields):
    def edit(doc):
        next(l for l in doc["layers"] if l["name"] == name).update(fields)
    return edit


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d.update(format="onnx"), "not a qhw network description"),
        (_set_layer("c2", kind="avgpool"), "layer 'c2': unknown layer kind 'avgpool' "
                                           r"\(format_version 2 knows input, conv, dense, add, gap, maxpool\)"),
        (_set_layer("c2", weight_bits=9), "layer 'c2': pow2 weight bits must be between 2 and 8, not 9"),
        (_set_layer("c1", weight_bits=40), "layer 'c1': weight_bits must be between 1 and 16, not 40"),
        (_set_layer("c1", weight_code="ternary"), "layer 'c1': 'ternary' is not a valid WeightCode"),
        (_set_layer("c1", kernel=[5, 5]), r"layer 'c1': weights must have shape \(4, 50\)"),
        (_set_layer("c1", acc_bits=3), "layer 'c1': stored acc_bits 3 differs"),
        (_set_layer("c1", acc_lo="c2.acc_lo"), "layer 'c1': stored acc_lo differs from the exact bound"),
        (_set_layer("c1", weights="c3.weights"), "layer 'c1': stored weight"),
        (_set_layer("c1", weight_raw="nope"), "layer 'c1': array 'nope' is missing"),
        (_set_layer("c1", pe="xnor"), "layer 'c1': stored pe 'xnor' differs"),
        (_set_layer("c2", pe="mac"), "layer 'c2': stored pe 'mac' differs from 'shift'"),  # only AND had another name
        (_set_layer("c4", pe="and"), "layer 'c4': stored pe 'and' differs from 'xnor'"),
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


def test_stored_pe_of_an_older_qhw_still_loads(tmp_path):
    """Binary weights on unsigned / signed inputs are the AND PE; older files say ``mac`` there and still load."""
    rng = np.random.default_rng(4)
    inp = Input(name="input", shape=(3, 4, 4), bits=4)
    c1 = Conv(name="c1", input="input", in_spec=inp.out, out_channels=2, kernel=3, padding=1, weight_code="binary",
              weight_bits=1, weights=rng.choice([-1, 1], (2, 3, 3, 3)))
    c2 = Conv(name="c2", input="c1", in_spec=c1.out, out_channels=2, kernel=1, weight_code="pow2", weight_bits=4,
              weights=rng.choice([0, 1, -2, 4], (2, 2, 1, 1)))
    net = Network(layers=(inp, c1, c2))
    assert c1.pe is PEKind.AND and c2.pe is PEKind.SHIFT
    path = save_network(net, tmp_path / "n.json")
    doc = json.loads(path.read_text())
    assert [l.get("pe") for l in doc["layers"]] == [None, "and", "shift"]
    for stored, ok in (("mac", True), ("and", True), ("xnor", False), ("shift", False)):
        doc["layers"][1]["pe"] = stored
        path.write_text(json.dumps(doc))
        if ok:
            back = load_network(path)
            assert back["c1"].pe is PEKind.AND and back["c2"].pe is PEKind.SHIFT
        else:
            with pytest.raises(InputError, match=f"layer 'c1': stored pe '{stored}' differs from 'and'"):
                load_network(path)


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


# -- the loader enforces every stated property ----------------------------------------------

def _rewrite_arrays(path, edit):
    """Edit the arrays of a saved network (dict key -> int64 array) and re-seal its SHA-256."""
    import hashlib

    npz = path.with_suffix(".npz")
    with np.load(npz) as z:
        arrays = {k: z[k].copy() for k in z.files}
    edit(arrays)
    store = _Arrays()
    for k, v in arrays.items():
        store.items[k] = v
    blob = store.npz_bytes()
    npz.write_bytes(blob)
    doc = json.loads(path.read_text())
    doc["arrays"]["sha256"] = hashlib.sha256(blob).hexdigest()
    path.write_text(json.dumps(doc))
    return path


def _arr(key, fn):
    def edit(arrays):
        arrays[key] = fn(arrays[key].copy())
    return edit


def _set(a, index, value):
    a[index] = value
    return a


@pytest.mark.parametrize(
    "edit,match",
    [
        (_arr("c1.requant.thresholds", lambda t: _set(t, (0, 0), -10**9)),
         r"layer 'c1': thresholds of channel\(s\) \[0\] lie outside the clip range"),
        (_arr("c1.requant.thresholds", lambda t: _set(t, (2, slice(None)), 10**9)),
         r"layer 'c1': thresholds of channel\(s\) \[2\] lie outside the clip range"),
        (_arr("c1.requant.thresholds", lambda t: t[:, ::-1].copy()), "layer 'c1': thresholds must ascend"),
        (_arr("c1.requant.sign", lambda s: _set(s, 0, 2)), "layer 'c1': sign must hold only"),
        (_arr("c1.weight_raw", lambda r: r.reshape(4, 2, 3, 3)), "layer 'c1': weight_raw must be a 2-D array"),
        (_arr("c1.weight_raw", lambda r: r.reshape(2, 36)), r"layer 'c1': weights must have shape \(4, 18\)"),
        (_arr("c1.weight_raw", lambda r: _set(r, (0, 0), 256)), "layer 'c1': raw weight codes must fit in 8"),
        (_arr("c1.weights", lambda w: w + 2), "layer 'c1': stored weight values do not decode"),
        (_arr("c6.acc_lo", lambda a: a - 1), "layer 'c6': stored acc_lo differs"),
        (_arr("add.coeffs", lambda c: c[:2]), r"layer 'add': coeffs must have shape \(3, 4\)"),
        (_arr("fc.requant.mult", lambda m: m[:3]), "layer 'fc': mult has 3 channels but bias has 5"),
    ],
)
def test_bad_arrays_are_one_input_error(tmp_path, edit, match):
    path = _rewrite_arrays(save_network(sample_network(), tmp_path / "n.json"), edit)
    with pytest.raises(InputError, match=match) as info:
        load_network(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _pop(name, field):
    def edit(doc):
        next(l for l in doc["layers"] if l["name"] == name).pop(field)
    return edit


@pytest.mark.parametrize(
    "edit,match",
    [
        (_pop("c1", "acc_lo"), "layer 'c1': missing field 'acc_lo'"),
        (_pop("c4", "weights"), "layer 'c4': missing field 'weights'"),
        (_pop("pool", "out"), "layer 'pool': missing field 'out'"),
        (_pop("gap", "acc_bits"), "layer 'gap': missing field 'acc_bits'"),
        (_set_layer("input", inputs=["c1"]), r"layer 'input': an input layer reads nothing, but 'inputs' is \['c1'\]"),
        (_set_layer("gap", inputs=["c6", "c5"]), "layer 'gap': a gap layer reads exactly 1 layer, not 2"),
        (_pop("input", "scale"), "layer 'input': missing field 'scale'"),
        (_set_layer("c1", inputs="input"), "layer 'c1': 'inputs' must be a list of layer names"),
        (_set_layer("input", scale=True), "layer 'input': scale must be a finite positive number"),
        (_set_layer("input", bits=8.0), "layer 'input': act_bits must be an integer"),
        (_set_layer("c1", acc_bits=13.0), "layer 'c1': stored acc_bits 13.0 differs"),
        (_set_layer("c1", kernel=3), "layer 'c1': kernel must be a list of two integers, not 3"),
        (_set_layer("c1", in_spec="input"), "layer 'c1': in_spec must be a tensor spec object"),
        (_set_layer("pool", padding=[3, 3]), r"layer 'pool': padding \(3, 3\) leaves a \(3, 3\) window"),
        (_set_layer("pool", stride=[1, 1]), "layer 'pool': stored output spec"),
        (_set_layer("pool", requant=None, weights="c1.weights"), None),  # extra fields are ignored
        (_set_layer("c6", kernel=[5, 5], padding=[1, 1]), r"layer 'c6': kernel \(5, 5\) does not fit the 2x2 input"),
        (_set_layer("c6", out={"shape": [4, 2, 2], "code": "signed", "bits": 40, "lo": -5, "hi": 5}),
         "layer 'c6': stored output spec"),
        (lambda d: d.update(meta="provenance"), "'meta' must be an object"),
        (lambda d: d.update(output=3), "'output' must name a layer, not 3"),
        (lambda d: d.pop("output"), "'output' must name a layer, not None"),
    ],
)
def test_bad_fields_are_one_input_error(tmp_path, edit, match):
    path = _rewrite(tmp_path, edit)
    if match is None:
        assert len(load_network(path)) == 11
        return
    with pytest.raises(InputError, match=match) as info:
        load_network(path)
    assert "\n" not in str(info.value)


# -- format_version 1 ---------------------------------------------------------------------

def as_version_1(net: Network, path):
    """Rewrite a saved network as the version-1 writer stored it (the v1 rules, restated here).

    Version 1 bounded a padded conv as if every position saw all taps (padding
    widening the input range to include 0), wrote ``requant: null`` outputs of
    conv / dense / add as ``signed``, and clipped thresholds to those wider
    bounds: a threshold at an edge of the (narrower) v2 range moves to the v1 edge.
    """
    doc = json.loads(path.read_text())
    new_arrays = {}
    v1_out = {}
    for layer, ld in zip(net.layers, doc["layers"]):
        if layer.kind == "input":
            v1_out[layer.name] = layer.out
            continue
        specs = [v1_out[src] for src in layer.inputs]
        if layer.kind == "add":
            ld["in_specs"] = [s.to_dict() for s in specs]
            probe = Add(name=layer.name, inputs=layer.inputs, in_specs=tuple(specs), coeffs=layer.coeffs)
            lo, hi = probe.acc_lo, probe.acc_hi
        else:
            ld["in_spec"] = specs[0].to_dict()
            s = specs[0]
            if layer.kind == "gap":
                probe = GlobalPool(name=layer.name, input=layer.input, in_spec=s)
                lo, hi = probe.acc_lo, probe.acc_hi
            else:
                pad = layer.kind == "conv" and layer.padding != (0, 0)
                lo, hi = intmath.accumulator_bounds(layer.weights, min(s.lo, 0) if pad else s.lo,
                                                    max(s.hi, 0) if pad else s.hi)
        new_arrays[f"{layer.name}.acc_lo"], new_arrays[f"{layer.name}.acc_hi"] = lo, hi
        ld["acc_bits"] = intmath.signed_width(int(lo.min()), int(hi.max()))
        rq = layer.requant
        if rq is None:
            out = probe.out if layer.kind == "gap" else TensorSpec(layer.out.shape, "signed", ld["acc_bits"],
                                                                    int(lo.min()), int(hi.max()))
        else:
            out = layer.out
            if isinstance(rq, Thresholds):
                lo2, hi2 = threshold_clip_range(layer.acc_lo, layer.acc_hi, rq.sign)
                lo1, hi1 = threshold_clip_range(lo, hi, rq.sign)
                t = np.where(rq.thresholds == lo2[:, None], lo1[:, None], rq.thresholds)
                new_arrays[f"{layer.name}.requant.thresholds"] = np.where(t == hi2[:, None], hi1[:, None], t)
        ld["out"] = out.to_dict()
        v1_out[layer.name] = out
    doc["format_version"] = 1
    path.write_text(json.dumps(doc))
    return _rewrite_arrays(path, lambda arrays: arrays.update(new_arrays))


def test_version_1_file_loads_as_the_version_2_network(tmp_path):
    net = sample_network(pool="conv")
    path = as_version_1(net, save_network(net, tmp_path / "v1.json"))
    doc = json.loads(path.read_text())
    assert doc["format_version"] == 1
    stored = {l["name"]: l for l in doc["layers"]}
    # the file really holds the v1 numbers: wider bounds and specs on the small-map convs
    assert stored["c5"]["acc_bits"] > net["c5"].acc_bits
    v1_c6, v2_c6 = stored["c6"]["out"], net["c6"].out
    assert v1_c6["lo"] < v2_c6.lo and v1_c6["hi"] > v2_c6.hi and stored["gap"]["in_spec"] == v1_c6
    with np.load(tmp_path / "v1.npz") as z:
        moved = z["c5.requant.thresholds"]
    assert not np.array_equal(moved, net["c5"].requant.thresholds)  # some thresholds outside the v2 range
    back = load_network(path)
    for a, b in zip(net, back):  # re-derived bounds, re-clipped thresholds: exactly the v2 network
        assert a.out == b.out and getattr(a, "in_specs", ()) == getattr(b, "in_specs", ())
        if hasattr(a, "acc_lo"):
            np.testing.assert_array_equal(a.acc_lo, b.acc_lo)
            np.testing.assert_array_equal(a.acc_hi, b.acc_hi)
        if isinstance(getattr(a, "requant", None), Thresholds):
            np.testing.assert_array_equal(a.requant.thresholds, b.requant.thresholds)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (8, 2, 6, 6)))
    out_a, out_b = GoldenModel(net).run(x), GoldenModel(back).run(x)
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    again = load_network(save_network(back, tmp_path / "v2.json"))  # and it saves as version 2
    assert json.loads((tmp_path / "v2.json").read_text())["format_version"] == 2 and len(again) == len(net)


def test_version_1_file_is_checked_with_the_version_1_rules(tmp_path):
    net = sample_network(pool="conv")
    v1 = as_version_1(net, save_network(net, tmp_path / "v1.json"))
    doc = json.loads(v1.read_text())
    assert load_network(v1).output == "fc"
    # the v2 bound in a v1 file is wrong for version 1
    path = as_version_1(net, save_network(net, tmp_path / "v1b.json"))
    path = _rewrite_arrays(path, lambda arrays: arrays.update({"c6.acc_hi": np.asarray(net["c6"].acc_hi)}))
    with pytest.raises(InputError, match="layer 'c6': stored acc_hi differs from the exact bound"):
        load_network(path)
    # and a version-2 file holding the v1 bounds is refused
    with np.load(tmp_path / "v1.npz") as z:
        v1_lo = z["c5.acc_lo"].copy()
    v2 = _rewrite_arrays(save_network(net, tmp_path / "v2.json"), lambda arrays: arrays.update({"c5.acc_lo": v1_lo}))
    with pytest.raises(InputError, match="layer 'c5': stored acc_lo differs"):
        load_network(v2)
    for name, fields, match in [
        ("pool", {"kind": "maxpool"}, r"layer 'pool': unknown layer kind 'maxpool' \(format_version 1 knows "
                                      r"input, conv, dense, add, gap\)"),
        ("gap", {"in_spec": net["gap"].in_spec.to_dict()}, "layer 'gap' expects 'c6' as .* but 'c6' stores out"),
    ]:
        d = json.loads(json.dumps(doc))
        next(l for l in d["layers"] if l["name"] == name).update(fields)
        v1.write_text(json.dumps(d))
        with pytest.raises(InputError, match=match):
            load_network(v1)
    d = json.loads(json.dumps(doc))
    for l in d["layers"]:  # version 1 did not require the derived fields
        for f in ("out", "acc_lo", "acc_hi", "acc_bits", "weights", "pe"):
            l.pop(f, None)
    d.pop("output")
    v1.write_text(json.dumps(d))
    assert load_network(v1).output == "fc"


# A network written by the version-1 qhw itself (commit 59731ce, qhw/ir/serialize.py with
# FORMAT_VERSION = 1): input 2x2x2 (4-bit) -> c1 3x3 pad 1 (odd, thresholds) -> c2 3x3 pad 1
# (binary, requant null) -> gap -> fc (logit mul_shift). On the 2x2 map no position sees more
# than 4 of the 9 taps, so every stored bound is the wider version-1 one.
V1_JSON = (
    '{"arrays":{"file":"v1net.npz","sha256":"ace53326e8379789f7fe579f9fcfbe1505373b307adf797ae058d8d3f692'
    '4035"},"format":"qhw-net","format_version":1,"layers":[{"bits":4,"code":"unsigned","inputs":[],"kind'
    '":"input","name":"input","out":{"bits":4,"code":"unsigned","hi":15,"lo":0,"shape":[2,2,2]},"scale":0'
    '.06666666666666667,"shape":[2,2,2]},{"acc_bits":11,"acc_hi":"c1.acc_hi","acc_lo":"c1.acc_lo","in_spe'
    'c":{"bits":4,"code":"unsigned","hi":15,"lo":0,"shape":[2,2,2]},"inputs":["input"],"kernel":[3,3],"ki'
    'nd":"conv","name":"c1","out":{"bits":2,"code":"unsigned","hi":3,"lo":0,"shape":[2,2,2]},"out_channel'
    's":2,"padding":[1,1],"pe":"mac","requant":{"kind":"thresholds","mul_shift":{"bias":"c1.requant.mul_s'
    'hift.bias","hi":3,"kind":"mul_shift","lo":0,"mult":"c1.requant.mul_shift.mult","out_bits":2,"out_cod'
    'e":"unsigned","shift":15},"out_bits":2,"out_code":"unsigned","sign":"c1.requant.sign","thresholds":"'
    'c1.requant.thresholds"},"stride":[1,1],"weight_bits":3,"weight_code":"odd","weight_raw":"c1.weight_r'
    'aw","weights":"c1.weights"},{"acc_bits":7,"acc_hi":"c2.acc_hi","acc_lo":"c2.acc_lo","in_spec":{"bits'
    '":2,"code":"unsigned","hi":3,"lo":0,"shape":[2,2,2]},"inputs":["c1"],"kernel":[3,3],"kind":"conv","n'
    'ame":"c2","out":{"bits":7,"code":"signed","hi":36,"lo":-27,"shape":[3,2,2]},"out_channels":3,"paddin'
    'g":[1,1],"pe":"mac","requant":null,"stride":[1,1],"weight_bits":1,"weight_code":"binary","weight_raw'
    '":"c2.weight_raw","weights":"c2.weights"},{"acc_bits":9,"acc_hi":"gap.acc_hi","acc_lo":"gap.acc_lo",'
    '"in_spec":{"bits":7,"code":"signed","hi":36,"lo":-27,"shape":[3,2,2]},"inputs":["c2"],"kind":"gap","'
    'name":"gap","out":{"bits":9,"code":"signed","hi":144,"lo":-108,"shape":[3]},"requant":null},{"acc_bi'
    'ts":12,"acc_hi":"fc.acc_hi","acc_lo":"fc.acc_lo","in_spec":{"bits":9,"code":"signed","hi":144,"lo":-'
    '108,"shape":[3]},"inputs":["gap"],"kind":"dense","name":"fc","out":{"bits":16,"code":"signed","hi":2'
    '6912,"lo":-25504,"shape":[2]},"out_channels":2,"pe":"mac","requant":{"bias":"fc.requant.bias","hi":2'
    '6912,"kind":"mul_shift","lo":-25504,"mult":"fc.requant.mult","out_bits":16,"out_code":"signed","shif'
    't":16},"weight_bits":3,"weight_code":"odd","weight_raw":"fc.weight_raw","weights":"fc.weights"}],"me'
    'ta":{"note":"written by qhw format_version 1"},"output":"fc"}'
)
V1_NPZ_B64 = (
    'UEsDBBQAAAAIAAAAIQDqe+0sTAAAAJAAAAANAAAAYzEuYWNjX2hpLm5weZvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGuo6Cell9U'
    'UpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6mjoKtQoUAC5eJgYwWMIIoQFQSwMEFAAAAAgAAAAhAJud5eVMAAAAkAAAAA0AAABj'
    'MS5hY2NfbG8ubnB5m+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaRjqaOgq1'
    'ChQALsb/ELDtH4QGAFBLAwQUAAAACAAAACEA9iDHAUwAAACQAAAAHQAAAGMxLnJlcXVhbnQubXVsX3NoaWZ0LmJpYXMubnB5m+wX'
    '6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaRjqaOgq1ChQArng1BjDYKAmhAVBL'
    'AwQUAAAACAAAACEAPDLaz0sAAACQAAAAHQAAAGMxLnJlcXVhbnQubXVsX3NoaWZ0Lm11bHQubnB5m+wX6hsQychQxlCtnpJanFyk'
    'bqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaRjqaOgq1ChQAriUMEFD7HwIAUEsDBBQAAAAIAAAAIQAE+1/v'
    'SgAAAJAAAAATAAAAYzEucmVxdWFudC5zaWduLm5weZvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGuo6Cell9UUpSYF59flJIKEndL'
    'zClOBYoXZyQWpAL5GkY6mjoKtQoUAC5GBgj4DwUAUEsDBBQAAAAIAAAAIQAqtLgkVwAAALAAAAAZAAAAYzEucmVxdWFudC50aHJl'
    'c2hvbGRzLm5weZvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6CsaaOgq1'
    'CmQDLk0GCPgApXcwQmhvKN8VxofSAFBLAwQUAAAACAAAACEAd7uEaXoAAACgAQAAEQAAAGMxLndlaWdodF9yYXcubnB5m+wX6hsQ'
    'ychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaRjoKhhaaOgq1CuQCLgYoYITS7FCaCUoz'
    'M6ACNgbsgAWNz4jGRzeXEY1mRVMHo9Htg6nDZR+6PbjcCwMw/+FyHwBQSwMEFAAAAAgAAAAhABxmEJF/AAAAoAEAAA4AAABjMS53'
    'ZWlnaHRzLm5weZvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GkY6CoYWmjoK'
    'tQrkAi5GBghghtL/oYAVymeH0jB1f6HyjGjiP9HEmdHk0c1lRqN//8cO0O2DqcNlH7o9uNwLo9lx6IOZBwBQSwMEFAAAAAgAAAAh'
    'AMFXc5tNAAAAmAAAAA0AAABjMi5hY2NfaGkubnB5m+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vM'
    'KU4FihdnJBakAvkaxjqaOgq1ChQALkUGCFCB0tJQGgBQSwMEFAAAAAgAAAAhAHdpGspNAAAAmAAAAA0AAABjMi5hY2NfbG8ubnB5'
    'm+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaxjqaOgq1ChQArtf/IeAdlH4K'
    'pQFQSwMEFAAAAAgAAAAhANhoLfFiAAAAMAIAABEAAABjMi53ZWlnaHRfcmF3Lm5weZvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGu'
    'o6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GsY6CoYWmjoKtQrkAi5GBlSAi4+LxgUIqSfVHkrtI1Y9pe6l1F2E7AMAUEsD'
    'BBQAAAAIAAAAIQCuxFOEZQAAADACAAAOAAAAYzIud2VpZ2h0cy5ucHmb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKU'
    'mBefX5SSChJ3S8wpTgWKF2ckFqQC+RrGOgqGFpo6CrUK5AIuRgYI+A8FuPi46P84ACH1pNpDqX3EqqfUvZS6i5B9AFBLAwQUAAAA'
    'CAAAACEAtArIWk0AAACQAAAADQAAAGZjLmFjY19oaS5ucHmb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SS'
    'ChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFACuNUwMYDCHDUIDAFBLAwQUAAAACAAAACEAJzGrQk0AAACQAAAADQAAAGZjLmFjY19s'
    'by5ucHmb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFACuA3//'
    'g8GFnxAaAFBLAwQUAAAACAAAACEASElxPk0AAACQAAAAEwAAAGZjLnJlcXVhbnQuYmlhcy5ucHmb7BfqGxDJyFDGUK2eklqcXKRu'
    'paBuk2mhrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFAAuBoYABghI+A8CAFBLAwQUAAAACAAAACEATXbe'
    'NUwAAACQAAAAEwAAAGZjLnJlcXVhbnQubXVsdC5ucHmb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SSChJ3'
    'S8wpTgWKF2ckFqQC+RpGOpo6CrUKFAAuBgYOBggQAJMAUEsDBBQAAAAIAAAAIQDBv/MoUwAAALAAAAARAAAAZmMud2VpZ2h0X3Jh'
    'dy5ucHmb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOgrGmjoKtQpkAy5G'
    'BghgZ0AFrFCaGU0cAFBLAwQUAAAACAAAACEAc2eH7lcAAACwAAAADgAAAGZjLndlaWdodHMubnB5m+wX6hsQychQxlCtnpJanFyk'
    'bqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaRjoKxpo6CrUKZAMuZgYI+A8FjFD+byifHcqHiQMAUEsDBBQA'
    'AAAIAAAAIQDXO9ehSgAAAJgAAAAOAAAAZ2FwLmFjY19oaS5ucHmb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBef'
    'X5SSChJ3S8wpTgWKF2ckFqQC+RrGOpo6CrUKFACuCQwQgE4DAFBLAwQUAAAACAAAACEAd4FBxUoAAACYAAAADgAAAGdhcC5hY2Nf'
    'bG8ubnB5m+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaxjqaOgq1ChQArin/'
    'IQCdBgBQSwECFAMUAAAACAAAACEA6nvtLEwAAACQAAAADQAAAAAAAAAAAAAAgAEAAAAAYzEuYWNjX2hpLm5weVBLAQIUAxQAAAAI'
    'AAAAIQCbneXlTAAAAJAAAAANAAAAAAAAAAAAAACAAXcAAABjMS5hY2NfbG8ubnB5UEsBAhQDFAAAAAgAAAAhAPYgxwFMAAAAkAAA'
    'AB0AAAAAAAAAAAAAAIAB7gAAAGMxLnJlcXVhbnQubXVsX3NoaWZ0LmJpYXMubnB5UEsBAhQDFAAAAAgAAAAhADwy2s9LAAAAkAAA'
    'AB0AAAAAAAAAAAAAAIABdQEAAGMxLnJlcXVhbnQubXVsX3NoaWZ0Lm11bHQubnB5UEsBAhQDFAAAAAgAAAAhAAT7X+9KAAAAkAAA'
    'ABMAAAAAAAAAAAAAAIAB+wEAAGMxLnJlcXVhbnQuc2lnbi5ucHlQSwECFAMUAAAACAAAACEAKrS4JFcAAACwAAAAGQAAAAAAAAAA'
    'AAAAgAF2AgAAYzEucmVxdWFudC50aHJlc2hvbGRzLm5weVBLAQIUAxQAAAAIAAAAIQB3u4RpegAAAKABAAARAAAAAAAAAAAAAACA'
    'AQQDAABjMS53ZWlnaHRfcmF3Lm5weVBLAQIUAxQAAAAIAAAAIQAcZhCRfwAAAKABAAAOAAAAAAAAAAAAAACAAa0DAABjMS53ZWln'
    'aHRzLm5weVBLAQIUAxQAAAAIAAAAIQDBV3ObTQAAAJgAAAANAAAAAAAAAAAAAACAAVgEAABjMi5hY2NfaGkubnB5UEsBAhQDFAAA'
    'AAgAAAAhAHdpGspNAAAAmAAAAA0AAAAAAAAAAAAAAIAB0AQAAGMyLmFjY19sby5ucHlQSwECFAMUAAAACAAAACEA2Ggt8WIAAAAw'
    'AgAAEQAAAAAAAAAAAAAAgAFIBQAAYzIud2VpZ2h0X3Jhdy5ucHlQSwECFAMUAAAACAAAACEArsRThGUAAAAwAgAADgAAAAAAAAAA'
    'AAAAgAHZBQAAYzIud2VpZ2h0cy5ucHlQSwECFAMUAAAACAAAACEAtArIWk0AAACQAAAADQAAAAAAAAAAAAAAgAFqBgAAZmMuYWNj'
    'X2hpLm5weVBLAQIUAxQAAAAIAAAAIQAnMatCTQAAAJAAAAANAAAAAAAAAAAAAACAAeIGAABmYy5hY2NfbG8ubnB5UEsBAhQDFAAA'
    'AAgAAAAhAEhJcT5NAAAAkAAAABMAAAAAAAAAAAAAAIABWgcAAGZjLnJlcXVhbnQuYmlhcy5ucHlQSwECFAMUAAAACAAAACEATXbe'
    'NUwAAACQAAAAEwAAAAAAAAAAAAAAgAHYBwAAZmMucmVxdWFudC5tdWx0Lm5weVBLAQIUAxQAAAAIAAAAIQDBv/MoUwAAALAAAAAR'
    'AAAAAAAAAAAAAACAAVUIAABmYy53ZWlnaHRfcmF3Lm5weVBLAQIUAxQAAAAIAAAAIQBzZ4fuVwAAALAAAAAOAAAAAAAAAAAAAACA'
    'AdcIAABmYy53ZWlnaHRzLm5weVBLAQIUAxQAAAAIAAAAIQDXO9ehSgAAAJgAAAAOAAAAAAAAAAAAAACAAVoJAABnYXAuYWNjX2hp'
    'Lm5weVBLAQIUAxQAAAAIAAAAIQB3gUHFSgAAAJgAAAAOAAAAAAAAAAAAAACAAdAJAABnYXAuYWNjX2xvLm5weVBLBQYAAAAAFAAU'
    'AOsEAABGCgAAAAA='
)
V1_X = [[[[12, 1], [2, 3]], [[2, 12], [13, 9]]], [[[0, 1], [5, 6]], [[9, 7], [4, 2]]],
        [[[11, 11], [0, 1]], [[7, 6], [14, 8]]], [[[6, 6], [10, 9]], [[2, 11], [12, 15]]]]
#: what the version-1 golden model computed on V1_X
V1_OUT = {
    "c1": [[[[1, 1], [1, 1]], [[0, 0], [0, 0]]], [[[0, 0], [1, 0]], [[0, 0], [0, 0]]],
           [[[1, 1], [1, 0]], [[0, 0], [0, 0]]], [[[1, 1], [1, 1]], [[0, 0], [0, 0]]]],
    "c2": [[[[2, 2], [2, 0]], [[0, 0], [0, 2]], [[2, 0], [2, 2]]], [[[1, 1], [1, -1]], [[1, -1], [-1, 1]],
           [[-1, -1], [1, 1]]], [[[3, 1], [1, -1]], [[-1, -1], [1, 3]], [[1, 1], [1, 1]]],
           [[[2, 2], [2, 0]], [[0, 0], [0, 2]], [[2, 0], [2, 2]]]],
    "gap": [[6, 2, 6], [2, 0, 0], [4, 2, 4], [6, 2, 6]],
    "fc": [[256, -320], [128, -320], [192, -192], [256, -320]],
}


def test_a_file_written_by_the_version_1_qhw_loads(tmp_path):
    import base64

    (tmp_path / "v1net.json").write_text("".join(V1_JSON))
    (tmp_path / "v1net.npz").write_bytes(base64.b64decode("".join(V1_NPZ_B64)))
    doc = json.loads((tmp_path / "v1net.json").read_text())
    stored = {l["name"]: l for l in doc["layers"]}
    net = load_network(tmp_path / "v1net.json")
    assert net.meta == {"note": "written by qhw format_version 1"}
    # the bounds are re-derived: narrower than the stored version-1 ones
    assert (stored["c1"]["acc_bits"], net["c1"].acc_bits) == (11, 10)
    # binary weights on unsigned inputs: version 1 stored pe "mac"; it is the AND PE
    assert (stored["c2"]["pe"], net["c2"].pe) == ("mac", PEKind.AND)
    assert stored["c2"]["out"]["bits"] == 7 and net["c2"].out.bits == 6 and net["gap"].in_spec == net["c2"].out
    with np.load(tmp_path / "v1net.npz") as z:
        t1 = z["c1.requant.thresholds"]
    t2 = net["c1"].requant.thresholds
    assert not np.array_equal(t1, t2)  # re-clipped into the narrower range ...
    np.testing.assert_array_equal(t2, intmath.clamp_thresholds(t1, net["c1"].acc_lo, net["c1"].acc_hi,
                                                               net["c1"].requant.sign))
    out = GoldenModel(net).run(torch.tensor(V1_X))
    assert {k: out[k].tolist() for k in V1_OUT} == V1_OUT  # ... which changes no output
    back = load_network(save_network(net, tmp_path / "now_v2.json"))
    now = json.loads((tmp_path / "now_v2.json").read_text())
    assert now["format_version"] == 2 and [l.get("pe") for l in now["layers"]] == [None, "mac", "and", None, "mac"]
    assert GoldenModel(back)(torch.tensor(V1_X)).tolist() == V1_OUT["fc"]

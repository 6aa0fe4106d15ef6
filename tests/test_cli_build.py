"""``qhw build`` as a user runs it: files, manifest, determinism, and bad input that writes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from qhw.ir.serialize import save_network
from net_layers import tiny_resnet


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    net, _ = tiny_resnet(np.random.default_rng(7), width=5, h=6, w=5)
    return save_network(net, tmp_path_factory.mktemp("net") / "tiny.json")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(r, verb="build"):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith(f"qhw {verb}: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_build_writes_verilog_and_manifest_identically_twice(qhw_cli, net_file, tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"b{k}"
        r = qhw_cli("build", str(net_file), "--out", str(out), "--keep", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        man = data["manifest"]
        assert man["top"] == "qhw_tiny" and (out / "qhw_tiny.v").is_file()
        assert [l["name"] for l in man["layers"]] == ["stem", "b.conv1", "b.conv2", "b.add", "gap", "fc"]
        assert man["ports"]["s_axis"]["width"] == 8 and man["ports"]["m_axis"]["width"] % 8 == 0
        assert {f["dst"] for f in man["fifos"]} == {"b.add"}
        assert sorted(p.name for p in (out / "passes").iterdir()) == [
            "assign_folds.json", "pace_requantizers.json", "plan_streams.json", "size_fifos.json"]
        outs.append(out)
    for name in ("qhw_tiny.v", "manifest.json"):
        assert _digest(outs[0] / name) == _digest(outs[1] / name)


def test_failed_build_leaves_the_earlier_build_intact(qhw_cli, net_file, tmp_path):
    out = tmp_path / "b"
    assert qhw_cli("build", str(net_file), "--out", str(out)).returncode == 0
    before = {p.name: _digest(p) for p in out.iterdir() if p.is_file()}
    bad = tmp_path / "fold.json"
    bad.write_text(json.dumps({"layers": {"nope": {"rows": 1, "cols": 1}}}))
    line = _one_error_line(qhw_cli("build", str(net_file), "--out", str(out), "--fold", str(bad)))
    assert "names layer 'nope', which the network does not have" in line
    assert {p.name: _digest(p) for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]  # no temp dir left over


@pytest.mark.parametrize("case", ["fold_for_add", "bad_fold_field", "lut_budget", "missing_npz", "corrupt_npz",
                                  "unsupported_layer"])
def test_bad_input_is_one_line_and_writes_nothing(qhw_cli, net_file, tmp_path, case):
    net = net_file
    args = []
    if case == "fold_for_add":
        f = tmp_path / "fold.json"
        f.write_text(json.dumps({"layers": {"b.add": {"rows": 2, "cols": 2}}}))
        args, want = ["--fold", str(f)], "layer b.add: a add layer takes"
    elif case == "bad_fold_field":
        f = tmp_path / "fold.json"
        f.write_text(json.dumps({"layers": {"stem": {"rows": 1, "cols": 0}}}))
        args, want = ["--fold", str(f)], "fold config, layer stem: cols must be at least 1"
    elif case == "lut_budget":
        args, want = ["--fold", "auto", "--lut-budget", "10"], "no fold fits 10 LUTs: the smallest needs about"
    elif case in ("missing_npz", "corrupt_npz"):
        copy = tmp_path / "copy.json"
        copy.write_text(Path(net_file).read_text())
        if case == "corrupt_npz":  # the JSON names its arrays file: tiny.npz next to it
            (tmp_path / "tiny.npz").write_bytes(b"not a zip")
            want = "tiny.npz"
        else:
            want = "arrays file not found"
        net = copy
    else:
        from qhw.ir.graph import Input, MaxPool, Network, TensorSpec

        inp = Input(name="input", shape=(2, 4, 4), code="signed", bits=4)
        pool = MaxPool(name="pool", input="input", in_spec=inp.out, kernel=3, stride=2, padding=1)
        net = save_network(Network((inp, pool)), tmp_path / "pool.json")
        want = "layer pool"
    out = tmp_path / "out"
    line = _one_error_line(qhw_cli("build", str(net), "--out", str(out), *args))
    assert want in line
    assert not out.exists()

"""``qhw import``: a Brevitas export to NET.json + NET.npz with --check and --json; bad inputs are one line.

Bad inputs (each: exit status 2, exactly one ``qhw import: error:`` line on
stderr naming the node and its op type, nothing under ``--out``): an
unsupported op, a float tensor on the datapath (a ReLU without quantizer
before a conv, and a conv reading the float image), grouped and depthwise
convolutions, a corrupt file, a missing file. ``--check`` finding a
disagreement (injected: the requantizers' tie rule replaced) exits 1 and
writes nothing either.
"""

from __future__ import annotations

import json

import pytest

from brevitas_models import exported, require_brevitas, tie_graph, tiny_cnn


@pytest.fixture(scope="module", autouse=True)
def _packages():
    require_brevitas()


def run_cli(capsys, *argv):
    from qhw.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_writes_the_network_and_checks_it_against_qonnx(tmp_path_factory, tmp_path, capsys):
    from qhw.ir.serialize import load_network

    path = exported("mixed", False, tmp_path_factory.getbasetemp() / "brevitas_onnx")
    out = tmp_path / "nets" / "mixed"
    code, stdout, stderr = run_cli(capsys, "import", str(path), "--out", str(out), "--check", "digits",
                                   "--limit", "64", "--json")
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["ok"] and doc["written"] and doc["format_version"] == 2
    chk = doc["check"]
    assert chk["images"] == 64 and chk["mismatches"] == 0 and chk["same_top1_count"] == 64
    assert chk["tensors"] == 5 and chk["values_compared"] == sum(r["values"] for r in chk["rows"]) > 0
    net = load_network(out.with_suffix(".json"))
    assert [r["name"] for r in doc["layers"]] == [l.name for l in net.layers]
    assert net.meta["source"]["onnx"] == str(path.resolve()) and net.meta["qonnx"]["shared"]
    assert (tmp_path / "nets" / "mixed.npz").is_file()
    # text output: the layer table, the per-tensor table and the file written
    code, stdout, _ = run_cli(capsys, "import", str(path), "--out", str(tmp_path / "again"), "--check", "digits",
                              "--limit", "8")
    assert code == 0 and "0 mismatches; identical top-1 100.00 % (8/8)" in stdout and "wrote " in stdout


BAD = {
    "unsupported": r"node 'act1' \(Tanh\): unsupported op; qhw imports .*Quant",
    "float": r"node 'conv2' \(Conv\): input '\w+' is a float tensor \(not quantized\) on the datapath",
    "raw_input": r"node 'conv1' \(Conv\): input 'x' is a float tensor \(not quantized\) on the datapath",
    "grouped": r"node 'conv2' \(Conv\): grouped or depthwise convolution \(group=2\) is not supported",
    "depthwise": r"node 'conv2' \(Conv\): grouped or depthwise convolution \(group=4\) is not supported",
}


def assert_one_error_line(code, stdout, stderr, pattern, out_dir):
    import re

    lines = stderr.strip().splitlines()
    errors = [l for l in lines if l.startswith("qhw import: error: ")]
    assert code == 2 and stdout == ""
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert not out_dir.exists()


@pytest.mark.parametrize("variant", sorted(BAD))
def test_bad_graph_is_one_error_line_naming_node_and_op_and_writes_nothing(tmp_path, capsys, variant):
    path = tiny_cnn(tmp_path / f"{variant}.onnx", variant=variant)
    out_dir = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "import", str(path), "--out", str(out_dir / "net"))
    assert_one_error_line(code, stdout, stderr, BAD[variant], out_dir)


def test_corrupt_and_missing_files_are_one_error_line(tmp_path, capsys):
    good = tiny_cnn(tmp_path / "ok.onnx")
    blob = good.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(blob[: len(blob) // 2])
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(b"\x08\x07this is not a protobuf model\xff\xff" * 3)
    out_dir = tmp_path / "out"
    for path in (cut, noise):
        code, stdout, stderr = run_cli(capsys, "import", str(path), "--out", str(out_dir / "net"))
        assert_one_error_line(code, stdout, stderr, rf"{path.name} is not a readable ONNX model", out_dir)
    code, stdout, stderr = run_cli(capsys, "import", str(tmp_path / "nope.onnx"), "--out", str(out_dir / "net"))
    assert_one_error_line(code, stdout, stderr, r"QONNX model not found: .*nope\.onnx", out_dir)
    # the good file imports (so the failures above are the files' fault)
    code, _, stderr = run_cli(capsys, "import", str(good), "--out", str(out_dir / "net"))
    assert code == 0 and (out_dir / "net.json").is_file(), stderr


def test_a_failed_check_writes_nothing_and_exits_1(tmp_path, capsys, monkeypatch):
    from fractions import Fraction

    from qhw.ir.qonnx import streamline

    path = tie_graph(tmp_path / "tie.onnx", mode="ROUND")
    monkeypatch.setattr(streamline, "round_condition", lambda mode, v: (Fraction(-1, 2), False))
    out = tmp_path / "out" / "net"
    code, stdout, stderr = run_cli(capsys, "import", str(path), "--out", str(out), "--check", "digits",
                                   "--limit", "32", "--json")
    doc = json.loads(stdout)
    assert code == 1 and not doc["ok"] and not doc["written"]
    assert doc["check"]["mismatches"] > 0 and not (tmp_path / "out").exists()


def test_argument_errors_are_one_line(tmp_path, capsys):
    path = tiny_cnn(tmp_path / "ok.onnx")
    for args, msg in ((["--limit", "0"], "--limit must be at least 1, not 0"),
                      (["--batch-size", "0"], "--batch-size must be at least 1, not 0")):
        code, stdout, stderr = run_cli(capsys, "import", str(path), "--out", str(tmp_path / "o" / "n"), *args)
        assert code == 2 and stderr.strip().splitlines()[-1] == f"qhw import: error: {msg}"
        assert not (tmp_path / "o").exists()

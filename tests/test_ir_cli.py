"""``qhw export`` and ``qhw check`` as a user runs them.

One end-to-end run goes through a subprocess; the rest call ``qhw.cli.main``
in-process (same code path after argument parsing, much faster).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_ir_export import CONFIGS, calibrated_model  # noqa: E402

from qhw.cli import main  # noqa: E402
from qhw.quant.checkpoint import save_checkpoint  # noqa: E402


class Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def qhw(capsys):
    """In-process CLI: returns an object like CompletedProcess."""
    def run(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return Run(code, out.out, out.err)
    return run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, _ = calibrated_model(CONFIGS["w4a4"])
    path = tmp_path_factory.mktemp("ckpt") / "w4a4.pt"
    save_checkpoint(path, model, metrics={"top1": 0.0}, train={"dataset": "synthetic"})
    return path


def one_error_line(proc, verb: str) -> str:
    """Exactly one error line (progress lines may precede it), no traceback."""
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"qhw {verb}: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_export_then_check(qhw_cli, qhw, checkpoint, tmp_path):
    proc = qhw_cli("export", str(checkpoint), "--out", str(tmp_path / "net"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["format_version"] == 2 and doc["network"] == str(tmp_path / "net.json")
    assert [r["name"] for r in doc["layers"]][:3] == ["input", "stem", "s1.b1.conv1"]
    assert (tmp_path / "net.npz").is_file()
    proc = qhw("check", str(tmp_path / "net.json"), "--limit", "40", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["dataset"] == "synthetic" and rep["images"] == 40  # the checkpoint's dataset by default
    assert rep["same_top1"] == 100.0 and rep["golden_top1"] == rep["fake_quant_top1"]
    assert {l["layer"] for l in rep["layers"]} >= {"stem", "s1.b1.add", "s3.b1.shortcut"}
    assert all(l["agreement"] >= 0.999 for l in rep["layers"])


def test_check_accepts_a_checkpoint_and_prints_a_table(qhw, checkpoint):
    proc = qhw("check", str(checkpoint), "--dataset", "synthetic", "--limit", "16")
    assert proc.returncode == 0, proc.stderr
    assert "identical top-1 100.00 % (16/16)" in proc.stdout
    assert "s2.b1.shortcut" in proc.stdout


def test_bad_checkpoints_are_one_line_errors(qhw, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    line = one_error_line(qhw("export", str(bad), "--out", str(tmp_path / "n")), "export")
    assert "is corrupt or not a qhw checkpoint" in line
    model, _ = calibrated_model({"default": {"w_kind": "float", "a_kind": "float"}, "first_last_8bit": False})
    fp = tmp_path / "float.pt"
    save_checkpoint(fp, model)
    line = one_error_line(qhw("export", str(fp), "--out", str(tmp_path / "n")), "export")
    assert line.endswith("layer stem: weights are float (not quantized); only fully quantized models can be exported")
    assert not (tmp_path / "n.json").exists() and not (tmp_path / "n.npz").exists()


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.update(format_version=7), "has format_version 7; this qhw reads format_version 1 and 2"),
        (lambda d: d["layers"][2].update(kind="lstm"), "layer 's1.b1.conv1': unknown layer kind 'lstm'"),
        (lambda d: d["layers"][1].update(weight_bits=99), "layer 'stem': weight_bits must be between 1 and 16, not 99"),
    ],
)
def test_bad_networks_are_one_line_errors(qhw, checkpoint, tmp_path, edit, message):
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import save_network

    net, _ = export_checkpoint(checkpoint, with_mul_shift=False)
    path = save_network(net, tmp_path / "net")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    proc = qhw("check", str(path), "--limit", "4", "--json")
    line = one_error_line(proc, "check")
    assert message in line
    assert json.loads(proc.stdout) == {"ok": False, "error": line.split("error: ", 1)[1]}


def test_check_fails_when_a_checkpoint_does_not_match_its_network(qhw, checkpoint, tmp_path):
    proc = qhw("export", str(checkpoint), "--out", str(tmp_path / "net"), "--no-mul-shift")
    assert proc.returncode == 0, proc.stderr
    other = tmp_path / "other.pt"
    model, _ = calibrated_model(CONFIGS["w4a4"], seed=1)
    save_checkpoint(other, model)
    line = one_error_line(qhw("check", str(tmp_path / "net.json"), "--checkpoint", str(other)), "check")
    assert "is not the one network" in line and "SHA-256 differs" in line
    line = one_error_line(qhw("check", str(checkpoint), "--dataset", "cifar10"), "check")
    assert "needs a directory" in line



def test_check_maps_pixels_to_a_4_bit_input(qhw, tmp_path):
    """A network whose input is 4-bit codes is checked on those codes, not on the 8-bit pixels."""
    from dataclasses import replace

    from qhw.quant.models import PRESETS

    model, _ = calibrated_model(CONFIGS["w4a4"], spec=replace(PRESETS["resnet8"], widths=(8, 16, 32), input_bits=4))
    ckpt = tmp_path / "in4.pt"
    save_checkpoint(ckpt, model, train={"dataset": "synthetic"})
    assert qhw("export", str(ckpt), "--out", str(tmp_path / "net"), "--no-mul-shift").returncode == 0
    assert json.loads((tmp_path / "net.json").read_text())["layers"][0]["bits"] == 4
    proc = qhw("check", str(tmp_path / "net.json"), "--limit", "32", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["input_bits"] == 4 and rep["input_code_mismatches"] == 0 and rep["same_top1"] == 100.0
    assert all(l["agreement"] >= 0.999 for l in rep["layers"])
    text = qhw("check", str(tmp_path / "net.json"), "--limit", "8").stdout
    assert "8-bit pixels read as 4-bit input codes" in text

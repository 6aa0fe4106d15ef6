"""Run a component's cocotb testbench with builds cached by Verilog digest.

A simulator build depends only on the Verilog text, so the build directory is
``<cache_dir>/<name>-<digest>/``: the same design run again with other
testbench parameters (seeds, stall probabilities, lengths) reuses the built
simulator, and a changed design never reuses a stale one. Verilator's
design-independent support objects are shared between builds through
:mod:`qhw.bench.objcache` (under ``<cache_dir>/objcache``), which roughly
halves the cost of each new Verilator build.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping, Sequence

from amaranth.lib import wiring

from qhw.backends.sim import SimResult, run_cocotb
from qhw.backends.verilog import digest, to_verilog
from qhw.fileio import atomic_write_text

_OBJCACHE_SCRIPT = Path(__file__).with_name("objcache.py")


@contextmanager
def _verilator_object_cache(cache_dir: Path):
    """Point Verilator's ``$(OBJCACHE)`` compile prefix at our cache for one call."""
    parts = [sys.executable, str(_OBJCACHE_SCRIPT), str(cache_dir / "objcache")]
    if any(" " in p for p in parts) or "OBJCACHE" in os.environ:
        yield  # make splits OBJCACHE on spaces; a user's own ccache setting wins
        return
    os.environ["OBJCACHE"] = " ".join(parts)
    try:
        yield
    finally:
        os.environ.pop("OBJCACHE", None)


def build_dir_for(verilog: str, *, name: str, cache_dir: str | os.PathLike) -> Path:
    """``<cache_dir>/<name>-<digest>``: one build directory per distinct design."""
    return Path(cache_dir) / f"{name}-{digest(verilog)}"


def simulate(
    component: wiring.Component,
    *,
    name: str,
    test_module: str,
    cache_dir: str | os.PathLike,
    simulator: str = "icarus",
    parameters: Mapping[str, Any] | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
) -> SimResult:
    """Emit ``component`` as Verilog module ``name`` and run ``test_module`` on it.

    Raises :class:`qhw.errors.SimulationMismatch` if a cocotb test fails.
    """
    verilog = to_verilog(component, name=name)
    build = build_dir_for(verilog, name=name, cache_dir=cache_dir)
    source = build / f"{name}.v"
    if not source.is_file() or source.read_text() != verilog:
        atomic_write_text(source, verilog)
    with _verilator_object_cache(Path(cache_dir)):
        return run_cocotb(test_module=test_module, toplevel=name, sources=[source], build_dir=build,
                          simulator=simulator, parameters=parameters, testcase=testcase, seed=seed)

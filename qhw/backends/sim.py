"""Run cocotb testbenches on Icarus Verilog or Verilator.

A thin wrapper over :mod:`cocotb_tools.runner` that

* checks the simulator is installed (one-line :class:`ToolMissingError`),
* builds outside the source tree (``build_dir``, one per design and simulator),
* passes testbench parameters as JSON in ``QHW_TB_PARAMS`` (Amaranth's Verilog
  has no HDL parameters; the testbench reads them with :func:`tb_params`),
* writes simulator output to log files and, on failure, raises
  :class:`SimulationMismatch` naming the failing tests and the log to read.
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from qhw.backends.toolchain import SIMULATOR_PROGRAMS, require_program, tool_env
from qhw.errors import InputError, SimulationMismatch, ToolFailedError

SIMULATORS = tuple(SIMULATOR_PROGRAMS)
PARAMS_ENV = "QHW_TB_PARAMS"
REPO_SIM_DIR = Path(__file__).resolve().parents[2] / "sim"


@dataclass(frozen=True)
class SimResult:
    simulator: str
    passed: tuple[str, ...]
    failed: tuple[str, ...]
    results_xml: Path
    log: Path
    #: anything the testbench recorded with :func:`record` (cycle counts, ...)
    records: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.passed)


def tb_params() -> dict[str, Any]:
    """Inside a cocotb test: the parameters given to :func:`run_cocotb`."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))


def record(key: str, value: Any) -> None:
    """Inside a cocotb test: save a JSON value that :func:`run_cocotb` returns."""
    path = os.environ.get("QHW_TB_RECORDS")
    if not path:
        return
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() else {}
    data[key] = value
    p.write_text(json.dumps(data, sort_keys=True))


def _parse_results(xml_path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    passed, failed = [], []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        name = case.get("name", "?")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            if case.find("skipped") is None:
                passed.append(name)
        else:
            failed.append((name, (bad.get("message") or bad.text or "").strip().splitlines()[0:1]))
    return passed, [(n, m[0] if m else "") for n, m in failed]


def run_cocotb(
    *,
    test_module: str,
    toplevel: str,
    sources: Sequence[str | os.PathLike],
    build_dir: str | os.PathLike,
    simulator: str = "icarus",
    parameters: Mapping[str, Any] | None = None,
    testcase: str | Sequence[str] | None = None,
    waves: bool = False,
    seed: int | None = None,
    test_paths: Sequence[str | os.PathLike] = (),
    build_args: Sequence[str] = (),
) -> SimResult:
    """Build ``sources`` and run the cocotb ``test_module`` against ``toplevel``.

    ``test_module`` is a module name importable from ``sim/`` (e.g.
    ``"smoke.test_smoke_mac"``) or from one of ``test_paths``. ``build_args``
    go to the simulator's compiler after qhw's own (Verilator's warning
    switches).
    Raises :class:`SimulationMismatch` if any test fails, naming them.
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise InputError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    for prog in SIMULATOR_PROGRAMS[simulator]:
        require_program(prog)
    srcs = [Path(s).resolve() for s in sources]
    for s in srcs:
        if not s.is_file():
            raise InputError(f"Verilog source not found: {s}")
    build = Path(build_dir).resolve() / simulator
    build.mkdir(parents=True, exist_ok=True)
    records = build / f"records_{toplevel}.json"
    records.unlink(missing_ok=True)

    extra_env = {
        PARAMS_ENV: json.dumps(dict(parameters or {}), sort_keys=True),
        "QHW_TB_RECORDS": str(records),
    }
    # The runner copies os.environ over extra_env, takes PYTHONPATH from
    # sys.path and looks simulators up on PATH: set those for the call only.
    old_path, old_sys_path = os.environ.get("PATH", ""), list(sys.path)
    os.environ["PATH"] = tool_env()["PATH"]
    sys.path[:0] = [str(REPO_SIM_DIR), *map(str, test_paths)]
    try:
        runner = get_runner(simulator)
        build_log = build / "build.log"
        timescale = ("1ns", "1ps")
        own = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"] if simulator == "verilator" else []
        build_args = own + [str(a) for a in build_args]
        try:
            runner.build(
                sources=srcs, hdl_toplevel=toplevel, build_dir=build, always=False,
                timescale=timescale, waves=waves, build_args=build_args, log_file=build_log,
            )
        except (SystemExit, RuntimeError, Exception) as exc:  # the runner raises several kinds
            raise ToolFailedError(f"{simulator} failed to build {toplevel}: see {build_log} ({exc})") from None
        test_log = build / f"test_{toplevel}.log"
        xml = build / f"results_{toplevel}.xml"
        xml.unlink(missing_ok=True)
        try:
            runner.test(
                test_module=test_module, hdl_toplevel=toplevel, testcase=testcase,
                seed=seed, waves=waves, build_dir=build, test_dir=build,
                extra_env=extra_env, timescale=timescale, log_file=test_log,
                results_xml=str(xml),
            )
        except (SystemExit, RuntimeError, Exception) as exc:
            if not xml.exists():
                raise ToolFailedError(f"{simulator} run of {test_module} crashed: see {test_log} ({exc})") from None
    finally:
        os.environ["PATH"] = old_path
        sys.path[:] = old_sys_path
    if not xml.exists():
        raise ToolFailedError(f"{simulator} run of {test_module} wrote no results: see {test_log}")
    passed, failed = _parse_results(xml)
    rec = json.loads(records.read_text()) if records.exists() else {}
    result = SimResult(simulator, tuple(passed), tuple(n for n, _ in failed), xml, test_log, rec)
    if failed:
        detail = "; ".join(f"{n}: {m}" if m else n for n, m in failed)
        raise SimulationMismatch(
            f"{len(failed)} cocotb test(s) failed on {simulator} in {test_module}: {detail} (log: {test_log})"
        )
    if not passed:
        raise ToolFailedError(f"{simulator} ran no cocotb test from {test_module}: see {test_log}")
    return result

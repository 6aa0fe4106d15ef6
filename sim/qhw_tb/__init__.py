"""Reusable cocotb verification components for qhw designs (cocotb 2.x)."""

from qhw_tb.payload import pack_fields, pack_lanes, to_signed, unpack_fields, unpack_lanes
from qhw_tb.scoreboard import Scoreboard
from qhw_tb.streams import (HandshakeRules, StreamDriver, StreamMonitor, StreamProbe, idle_inputs, reset,
                            start_clock)
from qhw_tb.unit import StreamUnit, run_units

__all__ = [
    "StreamDriver", "StreamMonitor", "StreamProbe", "HandshakeRules", "Scoreboard", "StreamUnit", "run_units",
    "reset", "start_clock", "idle_inputs",
    "pack_lanes", "unpack_lanes", "pack_fields", "unpack_fields", "to_signed",
]

"""Reusable cocotb verification components for qhw designs (cocotb 2.x)."""

from qhw_tb.streams import StreamDriver, StreamMonitor, reset, start_clock
from qhw_tb.scoreboard import Scoreboard

__all__ = ["StreamDriver", "StreamMonitor", "Scoreboard", "reset", "start_clock"]

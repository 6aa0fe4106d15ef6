"""One stream-in / stream-out design under test, and running several at once.

Most qhw blocks take one input stream and give one output stream. A
:class:`StreamUnit` bundles what checking such a block needs: a driver with
random valid stalls on ``<prefix>i_stream``, a monitor with random ready
stalls on ``<prefix>o_stream`` feeding a scoreboard and checking the
handshake rules (valid held, payload stable until taken), and a probe
counting input transfers for utilization. Harnesses put several units side by side
in one top level so one simulator build covers a whole parameter sweep;
:func:`run_units` clocks, resets and drives them concurrently.
"""

from __future__ import annotations

import random
from typing import Awaitable, Callable, Iterable, Sequence

import cocotb

from qhw_tb.scoreboard import Scoreboard
from qhw_tb.streams import StreamDriver, StreamMonitor, StreamProbe, reset, start_clock


class StreamUnit:
    """Driver, monitor (with its handshake check), input probe and scoreboard of one block.

    Parameters
    ----------
    dut : the cocotb top-level handle.
    prefix : str
        Port-name prefix: ports are ``<prefix>i_stream__*`` / ``<prefix>o_stream__*``.
    label : str
        Scoreboard name, shown in every mismatch message.
    rng : random.Random
        Seeds the driver's and the monitor's own generators (two draws).
    valid_prob, ready_prob : float
        Chance per cycle that the driver offers / the monitor accepts a beat.
    decode : callable
        Output payload (int) to the value the scoreboard compares.
    """

    def __init__(self, dut, prefix: str, *, label: str, rng: random.Random, valid_prob: float,
                 ready_prob: float, decode: Callable[[int], object]):
        self.board = Scoreboard(label)
        self.src = StreamDriver(dut, f"{prefix}i_stream", rng=random.Random(rng.random()), valid_prob=valid_prob)
        self.sink = StreamMonitor(dut, f"{prefix}o_stream", rng=random.Random(rng.random()),
                                  ready_prob=ready_prob, decode=lambda v: decode(int(v)),
                                  on_transfer=self.board.check)
        self.in_probe = StreamProbe(dut, f"{prefix}i_stream")

    def start(self) -> None:
        """Start the monitor and the probe (after reset)."""
        cocotb.start_soon(self.sink.run())
        cocotb.start_soon(self.in_probe.run())

    async def play(self, payloads: Sequence[int], expected: Iterable, *, timeout_cycles: int) -> None:
        """Expect ``expected`` in order, send ``payloads``, wait for every output, check none is left."""
        expected = list(expected)
        for value in expected:
            self.board.expect(value)
        await self.src.send_all(payloads)
        await self.sink.wait_for(len(expected), timeout_cycles=timeout_cycles)
        self.board.assert_drained()

    def window(self) -> int:
        """Cycles from the first input transfer to the last output transfer, both included."""
        return self.sink.cycles[-1] - self.in_probe.cycles[0] + 1


async def run_units(dut, units: Sequence[StreamUnit], jobs: Iterable[Awaitable]) -> None:
    """Clock and reset ``dut``, start every unit, then run ``jobs`` (one per unit) concurrently."""
    start_clock(dut)
    await reset(dut)
    for unit in units:
        unit.start()
    tasks = [cocotb.start_soon(job) for job in jobs]
    for task in tasks:
        await task

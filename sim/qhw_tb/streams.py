"""Drivers and monitors for Amaranth ``lib.stream`` ports.

Amaranth names a stream port ``<name>__payload``, ``<name>__valid`` and
``<name>__ready``. Both sides insert random stalls so every test exercises
backpressure; the probabilities come from the test parameters.
"""

from __future__ import annotations

import random
from typing import Callable

from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


def start_clock(dut, period_ns: int = 10) -> None:
    Clock(dut.clk, period_ns, unit="ns").start()


async def reset(dut, cycles: int = 2) -> None:
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0


class StreamDriver:
    """Source side of a stream: offers payloads, holds them until taken.

    ``valid_prob`` is the chance that a payload is offered in a given cycle;
    below 1 the driver inserts idle cycles at random.
    """

    def __init__(self, dut, name: str, *, rng: random.Random, valid_prob: float = 1.0):
        self.clk: SimHandleBase = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.width = len(self.payload)
        self.rng = rng
        self.valid_prob = valid_prob
        self.valid.value = 0
        self.sent = 0

    async def send(self, payload: int) -> None:
        while self.rng.random() >= self.valid_prob:
            self.valid.value = 0
            # garbage while not valid: a design that reads payload without valid sees it
            self.payload.value = self.rng.getrandbits(self.width)
            await RisingEdge(self.clk)
        self.valid.value = 1
        self.payload.value = payload & ((1 << self.width) - 1)
        while True:
            await ReadOnly()
            taken = int(self.ready.value) == 1
            await RisingEdge(self.clk)
            if taken:
                break
        self.valid.value = 0
        self.sent += 1

    async def send_all(self, payloads) -> None:
        for p in payloads:
            await self.send(p)


class StreamMonitor:
    """Sink side of a stream: randomly ready, records every transfer, checks the handshake.

    ``decode`` turns the raw payload (a cocotb Logic or LogicArray) into a
    Python value; the default reads it as an unsigned integer. ``on_transfer`` is called
    with each value (a scoreboard's ``check``), and ``cycles`` holds the
    cycle number of each transfer for throughput measurements. ``rules``
    (:class:`HandshakeRules`) fails the test when the design withdraws or
    changes an offered payload.
    """

    def __init__(self, dut, name: str, *, rng: random.Random, ready_prob: float = 1.0,
                 decode: Callable | None = None, on_transfer: Callable | None = None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng
        self.ready_prob = ready_prob
        # int() reads a 1-bit Logic and a LogicArray alike (unsigned).
        self.decode = decode or int
        self.on_transfer = on_transfer
        self.values: list = []
        self.cycles: list[int] = []
        self.rules = HandshakeRules(name)
        self.ready.value = 0

    async def run(self) -> None:
        cycle = 0
        while True:
            self.ready.value = 1 if self.rng.random() < self.ready_prob else 0
            await ReadOnly()
            valid, ready = int(self.valid.value) == 1, int(self.ready.value) == 1
            self.rules.observe(cycle, valid, ready, str(self.payload.value))
            if valid and ready:
                value = self.decode(self.payload.value)
                self.values.append(value)
                self.cycles.append(cycle)
                if self.on_transfer is not None:
                    self.on_transfer(value)
            await RisingEdge(self.clk)
            cycle += 1

    async def wait_for(self, count: int, *, timeout_cycles: int) -> None:
        waited = 0
        while len(self.values) < count:
            await RisingEdge(self.clk)
            waited += 1
            if waited > timeout_cycles:
                raise AssertionError(
                    f"timeout: {len(self.values)} of {count} outputs after {timeout_cycles} cycles"
                )


class StreamProbe:
    """Passive observer of a stream: the cycle number of every transfer.

    Neither drives nor samples anything but ``valid`` and ``ready``, so it
    can watch a port that a driver or monitor is already handling. Cycle 0
    is the first clock edge after :meth:`run` starts.
    """

    def __init__(self, dut, name: str):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.cycles: list[int] = []
        self.cycle = 0

    async def run(self) -> None:
        while True:
            await ReadOnly()
            if int(self.valid.value) == 1 and int(self.ready.value) == 1:
                self.cycles.append(self.cycle)
            await RisingEdge(self.clk)
            self.cycle += 1

    @property
    def transfers(self) -> int:
        return len(self.cycles)

    def busy_fraction(self, start: int | None = None, stop: int | None = None) -> float:
        """Transfers per cycle over cycles [start, stop] (default: first to last transfer)."""
        if not self.cycles:
            return 0.0
        lo = self.cycles[0] if start is None else start
        hi = self.cycles[-1] if stop is None else stop
        inside = sum(1 for c in self.cycles if lo <= c <= hi)
        return inside / (hi - lo + 1)


class HandshakeRules:
    """The handshake rules a stream's transmitter must keep, checked cycle by cycle.

    Amaranth streams (RFC 61), as AXI-Stream: once ``valid`` is high it
    stays high, and ``payload`` stays put, until the cycle of the transfer
    (``valid`` and ``ready``). A design that breaks them can still hand the
    right values to a scoreboard, so they are checked on their own; the
    first violation fails the test naming the stream and the cycle.
    """

    def __init__(self, name: str):
        self.name = name
        self.held: str | None = None  # payload offered and not taken in the previous cycle
        self.stalls = 0  # cycles seen with valid and not ready

    def observe(self, cycle: int, valid: bool, ready: bool, payload: str) -> None:
        if self.held is not None:
            if not valid:
                raise AssertionError(f"{self.name}: protocol violation at cycle {cycle}: "
                                     "valid dropped before its payload was taken")
            if payload != self.held:
                raise AssertionError(f"{self.name}: protocol violation at cycle {cycle}: payload changed "
                                     f"while valid and not ready ({self.held} -> {payload})")
        self.held = payload if valid and not ready else None
        self.stalls += self.held is not None


def idle_inputs(dut, *, sources=(), sinks=()) -> None:
    """Hold the ``valid`` of every source stream and ``ready`` of every sink stream low.

    For blocks with several streams of which a test uses only some: an
    undriven input is X in Icarus and would leak into the idle logic.
    """
    for name in sources:
        getattr(dut, f"{name}__valid").value = 0
    for name in sinks:
        getattr(dut, f"{name}__ready").value = 0

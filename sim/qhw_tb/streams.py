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
    """Sink side of a stream: randomly ready, records every transfer.

    ``decode`` turns the raw payload (a cocotb LogicArray) into a Python value;
    the default reads it as an unsigned integer. ``on_transfer`` is called
    with each value (a scoreboard's ``check``), and ``cycles`` holds the
    cycle number of each transfer for throughput measurements.
    """

    def __init__(self, dut, name: str, *, rng: random.Random, ready_prob: float = 1.0,
                 decode: Callable | None = None, on_transfer: Callable | None = None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng
        self.ready_prob = ready_prob
        self.decode = decode or (lambda v: v.to_unsigned())
        self.on_transfer = on_transfer
        self.values: list = []
        self.cycles: list[int] = []
        self.ready.value = 0

    async def run(self) -> None:
        cycle = 0
        while True:
            self.ready.value = 1 if self.rng.random() < self.ready_prob else 0
            await ReadOnly()
            if int(self.valid.value) == 1 and int(self.ready.value) == 1:
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

"""cocotb test of the UART board wrapper on a real built accelerator: serial bytes in, replies out.

The design under test is :class:`qhw.net.uart.UartWrapper`'s Verilog (top
``<top>_uart``: ports ``clk``, ``rst``, ``rx``, ``tx``, ``busy``,
``error``) together with the build's own ``<top>.v``, unchanged: the same
two files ``qhw board flash-file`` synthesizes under the board's clock and
pins. The testbench is the host: it puts every bit of every request on
``rx`` (8N1, ``divisor`` cycles per bit, bytes back to back), decodes
``tx`` by sampling the middle of each bit (a stop bit read as 0 fails the
test), and compares each reply, byte for byte, with the one computed from
the golden model (:meth:`qhw.net.uart.UartProtocol.reference`).

Parameters (``tb_params``)
--------------------------
stimulus : path of a JSON file::

    {"divisor": int, "transactions": [{"name": str, "send": [int], "bad_stop": [int], "idle_after": int,
                                       "expect": [int], "max_cycles": int}]}

  ``bad_stop``: indices into ``send`` of bytes whose stop bit is driven 0
  (a framing error; the line is then idle for one bit); ``idle_after``:
  bit periods of idle line after the last byte (to let a timeout expire);
  ``expect``: the reply bytes (empty: none); ``max_cycles``: how long to
  wait for them; ``error_after`` (optional): the ``error`` output expected
  after the reply.

Records ``transactions``: per transaction the bytes received, the cycles
from its first start bit to the end of its reply's last stop bit and the
wall-clock seconds.
"""

from __future__ import annotations

import json
import time

import cocotb
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from qhw.backends.sim import record, tb_params
from qhw_tb import reset, start_clock

PERIOD_NS = 10


def now_cycles() -> int:
    return int(get_sim_time("ns")) // PERIOD_NS


class Line:
    """The host's receiver on ``tx``: one byte per start bit, sampled mid-bit."""

    def __init__(self, dut, divisor: int):
        self.dut, self.d = dut, divisor
        self.bytes: list[int] = []
        self.ends: list[int] = []  # cycle at which each byte's stop bit ends
        self.event = Event()
        self.failure: str | None = None

    async def sample(self) -> int:
        await ReadOnly()
        return int(self.dut.tx.value)

    async def run(self) -> None:
        dut, d = self.dut, self.d
        while True:
            await FallingEdge(dut.tx)
            start = now_cycles()
            await ClockCycles(dut.clk, d // 2)
            if await self.sample() != 0:
                self.failure = f"tx: a start bit at cycle {start} lasted less than half a bit"
                self.event.set()
                return
            byte = 0
            for k in range(8):
                await ClockCycles(dut.clk, d)
                byte |= await self.sample() << k
            await ClockCycles(dut.clk, d)
            if await self.sample() != 1:
                self.failure = f"tx: byte #{len(self.bytes)} (0x{byte:02X}) has a stop bit of 0"
                self.event.set()
                return
            self.bytes.append(byte)
            self.ends.append(start + 10 * d)
            self.event.set()
            await RisingEdge(dut.clk)


async def send_byte(dut, byte: int, d: int, *, stop: int = 1) -> None:
    for level in [0] + [(byte >> k) & 1 for k in range(8)] + [stop]:
        dut.rx.value = level
        await ClockCycles(dut.clk, d)
    if not stop:
        dut.rx.value = 1  # one idle bit so the receiver sees the line high again
        await ClockCycles(dut.clk, d)
    dut.rx.value = 1


def describe(got: list[int], want: list[int]) -> str:
    j = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    g = f"0x{got[j]:02X}" if j < len(got) else "nothing"
    return f"reply byte {j} expected 0x{want[j]:02X}, got {g}" if j < len(want) else \
        f"{len(got) - len(want)} bytes more than the {len(want)} expected"


@cocotb.test()
async def uart_round_trips(dut):
    params = tb_params()
    with open(params["stimulus"]) as f:
        stim = json.load(f)
    d = int(stim["divisor"])
    start_clock(dut, PERIOD_NS)
    dut.rx.value = 1
    await reset(dut, 4)
    line = Line(dut, d)
    cocotb.start_soon(line.run())
    await ClockCycles(dut.clk, 4 * d)
    done = []
    for tr in stim["transactions"]:
        first, t0 = len(line.bytes), time.monotonic()
        begin = now_cycles()
        bad = set(tr.get("bad_stop", []))
        for k, byte in enumerate(tr["send"]):
            await send_byte(dut, byte, d, stop=0 if k in bad else 1)
        if tr.get("idle_after"):
            await ClockCycles(dut.clk, tr["idle_after"] * d)
        want = list(tr["expect"])
        deadline = Timer(int(tr["max_cycles"]) * PERIOD_NS, "ns")
        while len(line.bytes) - first < len(want) and line.failure is None:
            line.event.clear()
            if await First(line.event.wait(), deadline) is deadline:
                break
        got = line.bytes[first:first + len(want)]
        entry = {"name": tr["name"], "got": got, "wall_seconds": round(time.monotonic() - t0, 3),
                 "cycles": (line.ends[first + len(want) - 1] - begin) if want and len(got) == len(want) else None}
        done.append(entry)
        record("transactions", done)
        if line.failure:
            raise AssertionError(f"{tr['name']}: {line.failure}")
        if got != want:
            raise AssertionError(f"{tr['name']}: {describe(got, want)} ({len(got)} of {len(want)} bytes in "
                                 f"{tr['max_cycles']} cycles)")
        await ClockCycles(dut.clk, 2)
        if int(dut.busy.value):
            raise AssertionError(f"{tr['name']}: busy still high after the reply")
        if "error_after" in tr and int(dut.error.value) != tr["error_after"]:
            raise AssertionError(f"{tr['name']}: the error output is {int(dut.error.value)} after the reply, "
                                 f"expected {tr['error_after']}")
    # nothing more may come out
    await ClockCycles(dut.clk, 20 * d)
    if len(line.bytes) != sum(len(t["expect"]) for t in stim["transactions"]):
        raise AssertionError(f"tx: {len(line.bytes)} bytes in all, "
                             f"{sum(len(t['expect']) for t in stim['transactions'])} expected")

"""cocotb test of a whole built accelerator (``qhw sim``): every layer's stream against the golden model.

The design under test is a ``qhw build`` top level (:mod:`qhw.net.top`)
inside the event wrapper of :func:`qhw.net.simulate.wrapper_verilog`,
which passes the AXI ports through and only observes. Images go into
``s_axis`` (``tlast`` on each image's last beat), ``channels + 1`` beats per
image come out of ``m_axis`` (each logit, then the class, tlast); both ports
stall at random. Every engine's output
stream (read through its named copy at the accelerator's top level,
``<instance>__o_stream__*``) is compared, transfer by transfer, with the
golden model's beat; the results with the golden logits and
``GoldenModel.predict``. A watchdog fails the run when nothing transfers
anywhere for ``watchdog`` cycles, naming the engines that stall.

Drivers: the project's own rules, not cocotbext-axi. Payloads are whole
integers (a beat of ``simd`` codes plus ``last`` is one number, exactly what
:meth:`FrameFormat.encode` gives), the stall model is
:class:`qhw_tb.StreamDriver`'s (each cycle before a beat is offered it is
withheld with probability ``stall``; once offered it is held until taken;
garbage on the data while not valid) and :class:`qhw_tb.HandshakeRules`'
rules are checked on every engine's output and on ``m_axis`` (in the
wrapper, per cycle). The drivers here wake on events instead of every
cycle (``StreamDriver`` and ``StreamMonitor`` poll each cycle): a run is
hundreds of thousands of cycles and a Python wake-up costs as much as a
simulated cycle, so per-cycle polling made runs three times slower.

Parameters (``tb_params``)
--------------------------
stimulus : path of a JSON file (written by :func:`qhw.net.simulate.simulate_build`)::

    {"s_axis": {"width", "beats": [int], "stalled_beats": int},
     "m_axis": {"expected": [[int]] (a frame's beats), "predicted": [int], "logit_bits", "channels",
                "index_bits", "width", "stalled_beats": int},
     "layers": [{"name", "instance", "inputs": [str], "in_ports": [str],
                 "out_format": FrameFormat.to_dict(), "expected": [int]}]}

status : path of a JSON file rewritten with progress and, on failure, the one-line reason and the figures
stall : probability that a port stalls in a cycle (until each port's ``stalled_beats``)
seed : random seed of the stalls
watchdog : cycles without any transfer that count as a deadlock
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from qhw.backends.sim import record, tb_params
from qhw_tb import reset, start_clock
from qhw_tb.frames import FrameChecker, frame_format
from qhw_tb.payload import to_signed

PERIOD_NS = 10


class Status:
    """The status file the parent polls: progress while running, the failure line at the end."""

    def __init__(self, path: str | None):
        self.path = path
        self.last = 0.0

    def write(self, doc: dict, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.path or (not force and now - self.last < 1.0):
            return
        self.last = now
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)  # the parent never reads half a file


class Bench:
    def __init__(self, dut, stim: dict, params: dict):
        self.dut = dut
        self.stim = stim
        self.status = Status(params.get("status"))
        self.watchdog = int(params["watchdog"])
        rng = random.Random(params.get("seed", 0))
        self.keep = 1.0 - float(params.get("stall", 0.0))  # chance a port does not stall in a cycle
        self.s_rng, self.m_rng = random.Random(rng.random()), random.Random(rng.random())
        self.layers = stim["layers"]
        self.checks = [FrameChecker(d["name"], frame_format(d["out_format"]), d["expected"], fail_fast=False)
                       for d in self.layers]
        self.caps = [getattr(dut, f"cap_{k}") for k in range(len(self.layers))]
        self.transfers = [0] * len(self.layers)
        self.frame_beats = [c.fmt.beats for c in self.checks]
        self.frame_ends: list[list[int]] = [[] for _ in self.layers]  # cycle of each frame's last beat
        m = stim["m_axis"]
        self.expected, self.predicted = m["expected"], m["predicted"]
        self.frames = len(self.expected)
        self.s_first: int | None = None
        self.s_count = 0
        self.m_cycles: list[int] = []  # cycle of each image's class beat
        self.m_waits = 0  # cycles an m_axis beat was offered and the sink was not ready
        self.m_beats: list[int] = []   # the current image's beats so far
        self.agree = 0
        self.logit_frames_wrong = 0
        self.first_failure: str | None = None  # the earliest mismatch in simulated time
        self.cycle = 0

    # -- ports -------------------------------------------------------------------------------

    async def feed(self) -> None:
        """``s_axis``: each beat withheld a random number of cycles, then held until taken."""
        dut, rng = self.dut, self.s_rng
        s = self.stim["s_axis"]
        width, stalled = s["width"], s["stalled_beats"]
        mask = (1 << width) - 1
        for i, beat in enumerate(s["beats"]):
            keep = self.keep if i < stalled else 1.0
            gap = 0
            while keep < 1.0 and rng.random() >= keep:
                gap += 1
            if gap:
                dut.s_axis_tvalid.value = 0
                # garbage while not valid: a design that reads data without valid sees it
                dut.s_axis_tdata.value = rng.getrandbits(width)
                dut.s_axis_tlast.value = rng.getrandbits(1)
                await ClockCycles(dut.clk, gap)
            dut.s_axis_tdata.value = beat & mask
            dut.s_axis_tlast.value = beat >> width
            dut.s_axis_tvalid.value = 1
            await dut.s_tick.value_change  # the wrapper toggles it on the edge that takes the beat
        dut.s_axis_tvalid.value = 0

    async def drain(self) -> None:
        """``m_axis``: ready drawn anew every cycle while a beat waits (held while none does).

        Stalls stop once ``stalled_beats`` beats are taken (counted here,
        so the throughput tail starts on the very next cycle).
        """
        dut = self.dut
        stalled, taken = self.stim["m_axis"]["stalled_beats"], 0
        ready = self.m_rng.random() < self.keep
        dut.m_axis_tready.value = int(ready)
        while True:
            await ReadOnly()
            if not int(dut.m_axis_tvalid.value):
                await RisingEdge(dut.m_axis_tvalid)
            await RisingEdge(dut.clk)  # closes a cycle with a result offered: taken if we were ready
            taken += ready
            self.m_waits += not ready
            keep = self.keep if taken < stalled else 1.0
            ready = keep >= 1.0 or self.m_rng.random() < keep
            dut.m_axis_tready.value = int(ready)

    # -- the observer ------------------------------------------------------------------------

    async def observe(self) -> None:
        """Wake on every cycle in which something transferred; check it; stop after the last result."""
        dut = self.dut
        n = len(self.layers)
        tail: Timer | None = None
        while True:
            triggers = [dut.ev_tick.value_change, RisingEdge(dut.stuck), RisingEdge(dut.bad)]
            if tail is None and len(self.m_cycles) >= self.frames:
                tail = Timer(16 * PERIOD_NS, "ns")  # a beat after the last result would be an extra one
            if tail is not None:
                triggers.append(tail)
            fired_by = await First(*triggers)
            await ReadOnly()
            if fired_by is not triggers[0]:
                # a violation rising on the same edge as a tick is caught by finish()
                if int(dut.bad.value):
                    raise AssertionError(self._violation())
                if int(dut.stuck.value):
                    raise AssertionError(self._deadlock())
                if fired_by is tail:
                    return
            fired = int(dut.ev_fired.value)
            self.cycle = cycle = int(dut.ev_cycle.value) - 1  # the cycle whose closing edge took them
            k = 0
            bits = fired & ((1 << n) - 1)
            while bits:
                if bits & 1:
                    self.transfers[k] += 1
                    if not self.transfers[k] % self.frame_beats[k]:
                        self.frame_ends[k].append(cycle)
                    check = self.checks[k]
                    first = check.first
                    check(int(self.caps[k].value))
                    if first is None and check.first is not None and self.first_failure is None:
                        self.first_failure = check.first
                bits >>= 1
                k += 1
            if fired >> n & 1:
                if self.s_first is None:
                    self.s_first = cycle
                self.s_count += 1
            if fired >> (n + 1) & 1:
                self._result(cycle, int(dut.cap_m.value))
                self.status.write(self._progress())

    def _result(self, cycle: int, word: int) -> None:
        """One ``m_axis`` beat; an image's beats are checked when its class beat (tlast) is in."""
        m = self.stim["m_axis"]
        width = m["width"]
        data, last = word & ((1 << width) - 1), word >> width
        f = len(self.m_cycles)
        if f >= self.frames:
            self._fail("m_axis: unexpected beat after the last image's class beat")
            return
        self.m_beats.append(data)
        want = self.expected[f]
        if not last and len(self.m_beats) < len(want):
            return
        beats, self.m_beats = self.m_beats, []
        self.m_cycles.append(cycle)
        message = None
        if len(beats) != len(want):
            message = f"m_axis: frame {f}: tlast on beat {len(beats)}, expected {len(want)} beats (logits, class)"
        elif not last:
            message = f"m_axis: frame {f}: tlast is 0 on the class beat"
        index = beats[-1] & ((1 << m["index_bits"]) - 1)
        if index == self.predicted[f]:
            self.agree += 1
        if message is None:
            for c, (g, w) in enumerate(zip(beats[:-1], want[:-1])):
                if g != w:
                    self.logit_frames_wrong += 1
                    message = (f"m_axis: frame {f}: logit {c} expected {to_signed(w, width)}, "
                               f"got {to_signed(g, width)} (beat 0x{g:x})")
                    break
        if message is None and beats[-1] != want[-1]:
            message = f"m_axis: frame {f}: class index expected {self.predicted[f]}, got {beats[-1]}"
        if message is not None:
            self._fail(message)

    def _fail(self, message: str) -> None:
        if self.first_failure is None:
            self.first_failure = message

    def _progress(self) -> dict:
        return {"frames_done": len(self.m_cycles), "frames": self.frames, "cycle": self.cycle}

    # -- failure messages --------------------------------------------------------------------

    def _streams(self):
        """(layer doc, port index or None for the output, valid, ready) per probed port, in st_* order."""
        valid, ready = int(self.dut.st_valid.value), int(self.dut.st_ready.value)
        j = 0
        for doc in self.layers:
            for port in [*range(len(doc["inputs"])), None]:
                yield doc, port, valid >> j & 1, ready >> j & 1
                j += 1

    def _deadlock(self) -> str:
        """One line: the engines with an input offered and not taken, and what each of their ports does."""
        fifos = {(f["dst"], f["port"]): f["depth"] for f in self.stim.get("fifos", [])}
        state: dict[str, list[str]] = {}
        stalled: list[str] = []
        for doc, port, valid, ready in self._streams():
            name, parts = doc["name"], state.setdefault(doc["name"], [])
            if port is None:
                if valid and not ready:
                    parts.append("output: blocked")
                continue
            label = f"input {port} from {doc['inputs'][port]}" if len(doc["inputs"]) > 1 else \
                f"input from {doc['inputs'][port]}"
            if (name, port) in fifos:
                label += f" (FIFO depth {fifos[name, port]})"
            if valid and not ready:
                parts.append(f"{label}: offered, not taken")
                if name not in stalled:
                    stalled.append(name)
            elif not valid:
                parts.append(f"{label}: empty")
        where = ", ".join(f"{n} [{'; '.join(state[n])}]" for n in stalled) or \
            "none (no engine has an input offered and not taken)"
        top = ""
        if int(self.dut.s_axis_tvalid.value) and not int(self.dut.s_axis_tready.value):
            top = "; s_axis offered, not taken"
        cycle = int(self.dut.ev_cycle.value)
        return (f"deadlock: no transfer anywhere for {self.watchdog} cycles (cycle {cycle}, "
                f"{len(self.m_cycles)} of {self.frames} results out); stalled engines: {where}{top}")

    def _violation(self) -> str:
        drop, change = int(self.dut.viol_drop.value), int(self.dut.viol_change.value)
        names = [f"layer {d['name']} output" for d in self.layers] + ["m_axis"]
        cycle = int(self.dut.viol_cycle.value) - 1
        for k, name in enumerate(names):
            if drop >> k & 1:
                return f"{name}: protocol violation at cycle {cycle}: valid dropped before its payload was taken"
            if change >> k & 1:
                return f"{name}: protocol violation at cycle {cycle}: payload changed while valid and not ready"
        return f"protocol violation at cycle {cycle}"

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> None:
        dut = self.dut
        start_clock(dut, PERIOD_NS)
        dut.s_axis_tvalid.value = 0
        dut.s_axis_tdata.value = 0
        dut.s_axis_tlast.value = 0
        dut.m_axis_tready.value = 0
        dut.wd_limit.value = self.watchdog
        await reset(dut)
        feeder = cocotb.start_soon(self.feed())
        cocotb.start_soon(self.drain())
        try:
            await self.observe()
            await feeder
            self.finish()
        except AssertionError as exc:
            self.status.write({**self._progress(), "failure": str(exc), "result": self.result()}, force=True)
            raise

    def result(self) -> dict:
        """Everything the parent's report needs (also written to the status file on failure)."""
        stalls = int(self.dut.stalls.value)
        return {
            "cycles": self.cycle + 1, "s_first": self.s_first, "s_beats": self.s_count, "m_cycles": self.m_cycles,
            "m_waits": self.m_waits,
            "agree": self.agree, "logit_frames_wrong": self.logit_frames_wrong, "first_failure": self.first_failure,
            "layers": {d["name"]: {"beats": c.seen, "transfers": t, "stalls": stalls >> (32 * k) & 0xFFFFFFFF,
                                   "mismatched_beats": c.mismatched_beats, "mismatched_codes": c.mismatched_codes,
                                   "first": c.first, "frame_ends": e}
                       for k, (d, c, t, e) in enumerate(zip(self.layers, self.checks, self.transfers,
                                                            self.frame_ends))},
        }

    def finish(self) -> None:
        if int(self.dut.bad.value):
            raise AssertionError(self._violation())
        for check in self.checks:
            if check.seen < len(check.expected):
                self._fail(f"layer {check.layer}: {check.seen} of {len(check.expected)} beats came out")
        record("result", self.result())
        if self.first_failure is not None:
            wrong = sum(1 for c in self.checks if c.mismatched_beats)
            codes = sum(c.mismatched_codes for c in self.checks)
            raise AssertionError(f"{self.first_failure} (first of {codes} wrong codes in {wrong} layer(s); "
                                 f"classes agree on {self.agree} of {self.frames} images)")
        self.status.write({**self._progress(), "done": True}, force=True)


@cocotb.test()
async def accelerator_matches_golden(dut):
    p = tb_params()
    with open(p["stimulus"]) as f:
        stim = json.load(f)
    await Bench(dut, stim, p).run()

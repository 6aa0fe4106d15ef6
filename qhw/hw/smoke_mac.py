"""A streaming multiply-accumulate: the smallest design that exercises the flow.

It proves the chain Amaranth → Verilog → cocotb (Icarus, Verilator) → yosys →
nextpnr end to end; the real processing elements live beside it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.ir.intmath import accumulator_bounds, check_bits, check_positive, signed_width


class SmokeMac(wiring.Component):
    """Dot product of a stream of (activation, weight) pairs.

    Parameters
    ----------
    act_bits : int
        Unsigned activation width, 1..16.
    weight_bits : int
        Two's complement weight width, 1..16.
    max_length : int
        Longest dot product the accumulator must hold without overflow.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(act_bits + weight_bits + 1)))
        One term per transfer, a flat bit vector (no Amaranth view: view
        element wires named ``x[0]`` make yosys' abc9 crash): the unsigned
        activation at bits ``[0, act_bits)``, the two's complement weight at
        ``[act_bits, act_bits + weight_bits)``, and ``last`` (closes the dot
        product) at bit ``act_bits + weight_bits``; :meth:`pack` builds it.
    o_stream : Out(stream.Signature(signed(acc_width)))
        The dot product, one cycle after the transfer carrying ``last``.
        Holds until taken; the input stalls meanwhile.
    acc_width : int
        Exact two's complement width of the largest possible dot product.
    """

    #: Fault injection for negative tests: emit the sum without the last term.
    _drop_last_term = False

    def __init__(self, *, act_bits: int, weight_bits: int, max_length: int):
        self.act_bits = check_bits("act_bits", act_bits)
        self.weight_bits = check_bits("weight_bits", weight_bits)
        self.max_length = check_positive("max_length", max_length)
        w_extremes = [[-(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1]]
        # Worst case: every term at the extreme product, max_length times.
        lo, hi = accumulator_bounds(w_extremes, 0, (1 << act_bits) - 1)
        self.acc_width = signed_width(min(lo[0], 0) * max_length, hi[0] * max_length)
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(act_bits + weight_bits + 1))),
            "o_stream": Out(stream.Signature(signed(self.acc_width))),
        })

    def pack(self, a: int, w: int, last: bool) -> int:
        """One input payload: activation ``a`` (unsigned), weight ``w`` (signed), the ``last`` flag."""
        return (a | ((w & ((1 << self.weight_bits) - 1)) << self.act_bits)
                | (int(last) << (self.act_bits + self.weight_bits)))

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(self.acc_width))
        beat, aw, ww = self.i_stream.payload, self.act_bits, self.weight_bits
        a, w, last = beat[:aw], beat[aw:aw + ww].as_signed(), beat[aw + ww]
        total = acc + a * w
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            with m.If(last):
                result = acc if self._drop_last_term else total
                m.d.sync += [self.o_stream.payload.eq(result), self.o_stream.valid.eq(1), acc.eq(0)]
            with m.Else():
                m.d.sync += acc.eq(total)
        return m


class BrokenSmokeMac(SmokeMac):
    """A deliberately wrong variant (forgets the last term) for negative tests."""

    _drop_last_term = True


def reference_dot(terms: list[tuple[int, int]]) -> int:
    """Python model: the exact dot product of (a, w) pairs."""
    return sum(a * w for a, w in terms)

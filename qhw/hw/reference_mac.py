"""The plain behavioural multiply-accumulate array, the yardstick of the benchmarks.

Written the obvious way on purpose: weights are stored as decoded integer
*values* in a ROM per column, activations are decoded to values, and every
output channel does ``acc <= acc + sum_k a_k * w_k`` with Amaranth's ``*``
and ``+`` and no pipelining: whatever synthesis makes of that is what a
designer gets without the tricks of :mod:`qhw.hw.pe` (raw terms, shift-add,
popcount, systolic pipelining).

It has exactly the stream contract of :class:`qhw.hw.array.SystolicArray`
(same :class:`~qhw.hw.array.mapping.ArrayMapping`, beat order, padding and
output layout), so the same testbench checks it and the benchmark compares
like with like: same shape, same weights, same ROM depth.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from qhw.ir.intmath import signed_width

from .array.mapping import ArrayMapping
from .pe.params import check_positive
from .pe.spec import PESpec


class ReferenceMacArray(wiring.Component):
    """``cols`` accumulators over beats of ``rows · lanes`` activations, behaviourally.

    Parameters (keyword-only)
    -------------------------
    weights : array-like of int, (out_channels, in_features)
        Integer weight values, as for :class:`~qhw.hw.array.SystolicArray`.
    rows, cols, lanes : int
        Same meaning as for the systolic array: ``rows · lanes`` features per
        beat, ``cols`` output channels per neuron group; ``rows · cols · lanes``
        multipliers.
    weight_code, weight_bits, act_code, act_bits
        Encodings and widths (:mod:`qhw.ir.intmath`).

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(rows·lanes·act_bits)))
        Beat of activation codes, feature ``j`` at bits ``[j·act_bits, (j+1)·act_bits)``.
    o_stream : Out(stream.Signature(unsigned(cols·acc_width)))
        Column ``c`` (channel ``nf·cols + c``) two's complement at bits
        ``[c·acc_width, (c+1)·acc_width)``; padded channels give 0.
    mapping : ArrayMapping
        The systolic array's mapping of the same weights (stream format and
        reference model).
    acc_width : int
        Exact output width (``mapping.acc_width``).
    value_width : int
        Two's complement width of the decoded weight values in the ROMs.
    latency : int
        1: the result is valid the cycle after the beat completing it. The
        input stalls only while a result waits to be taken.
    """

    latency = 1

    def __init__(self, *, weights, rows: int, cols: int, lanes: int, weight_code: str, weight_bits: int,
                 act_code: str = "unsigned", act_bits: int):
        rows, cols = check_positive("rows", rows), check_positive("cols", cols)
        spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code=act_code, act_bits=act_bits,
                      lanes=lanes)
        self.spec, self.rows, self.cols, self.lanes = spec, rows, cols, spec.lanes
        self.mapping = ArrayMapping(weights=weights, rows=rows, cols=cols, spec=spec)
        self.acc_width = self.mapping.acc_width
        # Decoded weight values; padded features and channels hold 0.
        mp = self.mapping
        values = mp.values().copy()
        values[:, mp.in_features:] = 0
        values[mp.out_channels:, :] = 0
        self.values = values
        self.value_width = signed_width(min(int(values.min()), 0), max(int(values.max()), 0))
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(rows * spec.lanes * spec.act_bits))),
            "o_stream": Out(stream.Signature(unsigned(cols * self.acc_width))),
        })

    def rom_words(self, c: int) -> list[int]:
        """Column ``c``'s ROM: word ``nf·SF + sf`` holds the beat's weights, feature ``j`` at ``j·value_width``."""
        mp, B, ww = self.mapping, self.mapping.beat_features, self.value_width
        words = []
        for nf in range(mp.nf):
            for sf in range(mp.sf):
                row = self.values[nf * self.cols + c, sf * B:(sf + 1) * B]
                words.append(sum((int(v) & ((1 << ww) - 1)) << (j * ww) for j, v in enumerate(row)))
        return words

    def elaborate(self, platform):
        m = Module()
        mp, spec = self.mapping, self.spec
        i, o = self.i_stream, self.o_stream
        step, sf = Signal(range(mp.steps)), Signal(range(mp.sf))
        first, last = sf == 0, sf == mp.sf - 1
        take = i.valid & i.ready
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(take):
            m.d.sync += [step.eq(Mux(step == mp.steps - 1, 0, step + 1)), sf.eq(Mux(last, 0, sf + 1))]
            with m.If(last):
                m.d.sync += o.valid.eq(1)

        acts = []
        for j in range(mp.beat_features):
            code = i.payload[j * spec.act_bits:(j + 1) * spec.act_bits]
            if spec.act_code.value == "bipolar":
                acts.append(Mux(code[0], 1, -1))
            else:
                acts.append(code.as_signed() if spec.act_signed else code)

        results = []
        for c in range(self.cols):
            mem = Memory(shape=unsigned(mp.beat_features * self.value_width), depth=mp.steps, init=self.rom_words(c))
            m.submodules[f"rom_{c}"] = mem
            port = mem.read_port(domain="comb")
            m.d.comb += port.addr.eq(step)
            vw = self.value_width
            w = [port.data[j * vw:(j + 1) * vw].as_signed() for j in range(mp.beat_features)]
            acc = Signal(signed(self.acc_width), name=f"acc_{c}")
            total = Signal(signed(self.acc_width), name=f"total_{c}")
            m.d.comb += total.eq(Mux(first, 0, acc) + sum(a * wj for a, wj in zip(acts, w)))
            with m.If(take):
                m.d.sync += acc.eq(total)
            results.append(total)
        with m.If(take & last):
            m.d.sync += o.payload.eq(Cat(*results))
        return m

    def reference(self, beats):
        """Output beats for input ``beats``: the systolic array's model, padded channels at 0."""
        out = self.mapping.reference(beats).copy()
        groups = len(out)
        for g in range(groups):
            nf = g % self.mapping.nf
            for c in range(self.cols):
                if nf * self.cols + c >= self.mapping.out_channels:
                    out[g, c] = 0
        return out

    def estimate_cycles(self, n_vectors: int) -> int:
        """Cycles from the first input transfer to the last output, no stalls."""
        return n_vectors * self.mapping.steps + self.latency

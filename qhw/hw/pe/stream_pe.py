"""The streaming PE: SIMD lanes of (activation, weight) codes in, one dot product out per fold.

The concrete PEs (:class:`~qhw.hw.pe.XnorPopcountPE`,
:class:`~qhw.hw.pe.ShiftAddPE`, :class:`~qhw.hw.pe.MacPE`) only choose a
:class:`~qhw.hw.pe.spec.PESpec`; the stream plumbing, the accumulators and
the models live here.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.ir.intmath import PEKind, signed_width

from . import cost
from .datapath import act_sum, as_signed_value, raw_sum, sign_count
from .params import check_positive, shape_for
from .spec import PESpec


class StreamPE(wiring.Component):
    """Dot product of ``lanes · fold`` (activation, weight) code pairs, streamed.

    Each input transfer carries one code per lane for activations and
    weights; after ``fold`` transfers the PE emits ``sum w_i · a_i`` over the
    decoded values (:mod:`qhw.ir.intmath`), then starts the next dot product.

    Parameters
    ----------
    spec : PESpec
        Encodings, bit-widths and lanes.
    fold : int
        Transfers per dot product, at least 1.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(act_width + weight_width)))
        One beat of ``lanes`` (activation, weight) code pairs, a flat bit
        vector (no Amaranth view: view element wires named ``x[0]`` make
        yosys' abc9 crash): activation lane ``l`` at bits
        ``[l·act_bits, (l+1)·act_bits)``, then weight lane ``l`` at bits
        ``act_width + [l·weight_bits, (l+1)·weight_bits)``; :meth:`pack` builds
        it. Codes are raw (intmath encodings: binary 1 = +1, bipolar 1 = +1,
        pow2 sign|exp, ...).
    o_stream : Out(stream.Signature(signed(acc_width)))
        One dot product per ``fold`` input transfers.
    act_width, weight_width : int
        ``lanes·act_bits`` and ``lanes·weight_bits``: the two fields of a beat.
    acc_width : int
        Exact width of the largest dot product over every weight and
        activation code the encodings allow.
    latency : int
        1: the result is valid the cycle after the transfer completing it.
        Input is taken every cycle while results are taken (full rate); a
        pending result stalls only the transfer that would complete the next.
    """

    latency = 1

    def __init__(self, *, spec: PESpec, fold: int):
        if not isinstance(spec, PESpec):
            raise TypeError(f"spec must be a PESpec, not {spec!r}")
        self.spec = spec
        self.fold = check_positive("fold", fold)
        n = spec.lanes * self.fold
        tlo, thi = spec.term_range(spec.all_codes())
        # Every encoding has a code whose term is 0, so prefix sums stay inside n·[lo, hi].
        self.p_shape = shape_for(n * int(tlo.min()), n * int(thi.max()))
        alo, ahi = spec.act_range
        self.q_shape = shape_for(min(0, n * alo), n * ahi)
        self.g_shape = unsigned(max(1, n.bit_length()))
        vlo, vhi = spec.value_range()
        self.acc_width = signed_width(n * vlo, n * vhi)
        self.act_width = spec.lanes * spec.act_bits
        self.weight_width = spec.lanes * spec.weight_bits
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.act_width + self.weight_width))),
            "o_stream": Out(stream.Signature(signed(self.acc_width))),
        })

    # -- hardware ----------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        spec, beat = self.spec, self.i_stream.payload
        count = Signal(range(self.fold))
        first, last = count == 0, count == self.fold - 1
        # Running sums; on the first beat of a fold the old value is dropped.
        p = Signal(self.p_shape)
        a_flat, w_flat = beat[:self.act_width], beat[self.act_width:]
        sums = [(p, Mux(first, 0, p) + raw_sum(spec, a_flat, w_flat, m=m))]
        if spec.beta:
            q = Signal(self.q_shape)
            sums.append((q, Mux(first, 0, q) + act_sum(spec, a_flat, spec.lanes, m)))
        if spec.kind is PEKind.SHIFT:
            g = Signal(self.g_shape)
            sums.append((g, Mux(first, 0, g) + sign_count(spec, w_flat, m)))
        result = self._finish(*(new for _, new in sums))

        out_busy = self.o_stream.valid & ~self.o_stream.ready
        m.d.comb += self.i_stream.ready.eq(~(last & out_busy))
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [reg.eq(new) for reg, new in sums]
            m.d.sync += count.eq(Mux(last, 0, count + 1))
            with m.If(last):
                m.d.sync += [self.o_stream.payload.eq(result), self.o_stream.valid.eq(1)]
        return m

    def _finish(self, p, *rest):
        """value = alpha·P + beta·Q + gamma (module table of :mod:`.spec`)."""
        spec = self.spec
        value = as_signed_value(p) << (spec.alpha - 1)
        if spec.beta == 1:
            value = value + as_signed_value(rest[0])
        elif spec.beta == -1:
            value = value - as_signed_value(rest[0])
        if spec.kind is PEKind.XNOR:
            value = value - spec.lanes * self.fold
        elif spec.kind is PEKind.SHIFT:
            value = value + as_signed_value(rest[0])
        return value

    # -- models ------------------------------------------------------------------

    def pack(self, act_codes, weight_codes) -> int:
        """One input payload as an integer (lane 0 in the LSBs)."""
        spec = self.spec
        word = 0
        for l, (a, w) in enumerate(zip(act_codes, weight_codes, strict=True)):
            word |= int(a) << (l * spec.act_bits)
            word |= int(w) << (self.act_width + l * spec.weight_bits)
        return word

    def reference(self, act_codes, weight_codes) -> np.ndarray:
        """Outputs for ``n`` transfers of (a, w) lanes, shapes ``(n, lanes)``.

        Only complete folds produce an output; the result is
        ``(n // fold,)`` int64, computed by intmath decoding alone.
        """
        a = np.asarray(act_codes, dtype=np.int64).reshape(-1, self.spec.lanes)
        w = np.asarray(weight_codes, dtype=np.int64).reshape(-1, self.spec.lanes)
        k = (len(a) // self.fold) * self.fold
        per = self.fold * self.spec.lanes
        return self.spec.value_dot(w[:k].reshape(-1, per), a[:k].reshape(-1, per))

    def estimate_cycles(self, n_vectors: int) -> int:
        """Cycles from the first input transfer to the last result, no stalls."""
        return n_vectors * self.fold + self.latency

    def estimate_resources(self) -> dict[str, int]:
        """Rough Xilinx LUT/FF figures (see :mod:`qhw.hw.pe.cost`)."""
        spec = self.spec
        ff = self.p_shape.width + self.acc_width + 1 + max(1, (self.fold - 1).bit_length())
        if spec.beta:
            ff += self.q_shape.width
        if spec.kind is PEKind.SHIFT:
            ff += self.g_shape.width
        lut = cost.lane_luts(spec, const_weights=False) * spec.lanes  # includes the lane adder tree
        lut += 2 * self.p_shape.width + self.acc_width  # accumulators, finishing adder
        return {"lut": int(round(lut)), "ff": ff, "dsp": 0, "bram": 0}

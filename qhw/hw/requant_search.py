"""Binary-search threshold requantizer: the function of :class:`~qhw.hw.requant.ThresholdRequantizer`
with one comparator per lane, one comparison a cycle.

The parallel form compares every accumulator with all of its channel's ``levels`` thresholds at once:
``levels`` comparators of ``cmp_width`` bits per lane. On iCE40 each comparator is a carry chain with no
LUT beside it, one logic cell a bit: the 15 comparators of a 4-bit unsigned output are ~220 cells, most
of a one-lane engine's requantizer. An engine whose array emits a beat only every ``SF`` cycles (one MAC
lane, what an iCE40 UP5K takes) has the time to search instead.

Per lane, the level is ``k = #{j : acc >= u_j}`` (``u`` as the parallel form compares, sign folded in:
``u = t`` for a positive channel, ``1 - t`` for a negative one, whose level is then ``levels - k``).
``k`` does not depend on the order of the ``u_j``, so each channel's are sorted and padded to
``2^steps - 1`` with "never" (one past the accumulator range) and ``k`` is found MSB first::

    p ← 2^(steps-1)                             (the probe: the bits of k found so far, then a 1)
    step (one a cycle): b = lowest set bit of p
        keep bit b of p iff acc >= A[p]         (A[p] = p-th smallest u; A holds 2^steps - 1 words)
        set bit b-1                             (nothing after the last step, b = 0)

After the step with ``b = 0``, ``p`` is ``k``. ``A`` of every group sits in one table addressed by
``Cat(p, group)`` (word 0 of a group is never read). The accumulator is read from ``i_stream.payload``
while the search runs: a stream's payload holds while ``valid`` waits for ``ready`` (the rule every
producer here keeps), so no accumulator register is needed.

Timing: a beat presented at cycle ``t`` to an idle requantizer is searched in cycles ``t .. t+steps-1``;
its transfer is the last step's cycle (``i_stream.ready`` is high only then, and only while the output
register is free), and its code is valid from ``t + steps`` (``latency = steps``, as the parallel form's
1 counts from the transfer of a beat that is taken at once). At full rate one beat every
``interval = steps`` cycles.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed

from qhw.hw.rom import rom_read
from qhw.ir.intmath import signed_width

from .array.cost import rom_luts
from .pe.datapath import lanes_of
from .pe.params import check_positive
from .requant import ThresholdRequantizer, lut4_table_luts

#: LUTs per counted unit per family (features of :meth:`SearchThresholdRequantizer.features`):
#: non-negative least squares of the relative error against yosys 0.70 LUT sites (flat, no DSP) of the
#: fourteen calibration requantizers of ``scripts/fit_requant_search.py`` (exporter-style thresholds of 2- to
#: 5-bit codes, unsigned and signed, 2 to 16 groups, 10- to 16-bit accumulators, 1 to 3 lanes).
#: Estimate / yosys on them (:data:`SEARCH_FIT_RANGE`). Xilinx counts the table by the LUT6 model.
SEARCH_LUTS_PER_BIT = {
    "ice40": {"cmp": 0.585, "table": 0.892, "ctrl": 4.293},
    "ecp5": {"cmp": 2.606, "table": 0.655, "ctrl": 1.77},
    "xilinx": {"cmp": 2.11, "table": 0.942, "ctrl": 0.091},
    "gowin": {"cmp": 1.612, "table": 0.554, "ctrl": 5.977},
}
#: (min, max) of estimate / yosys per family on the fit set above.
SEARCH_FIT_RANGE = {"ice40": (0.841, 1.135), "ecp5": (0.823, 1.224), "xilinx": (0.837, 1.176),
                    "gowin": (0.859, 1.081)}


class SearchThresholdRequantizer(ThresholdRequantizer):
    """``level = sum_j [sign_c·acc >= t_(c,j)]`` by binary search, ``steps`` cycles a beat.

    Parameters (keyword-only)
    -------------------------
    thresholds, acc_lo, acc_hi, acc_width, lanes, sign, out_code, out_bits
        As in :class:`~qhw.hw.requant.ThresholdRequantizer`, whose checks, clipping and
        ``reference()`` / ``reference_values()`` this reuses. At least 2 thresholds per channel (one
        is a single comparison: the parallel form).

    Attributes
    ----------
    i_stream, o_stream
        As the parallel form's (same lane and group order, padding lanes level 0).
    steps : int
        Comparisons per beat: ``levels.bit_length()``.
    interval : int
        Cycles between accepted beats at full rate: ``steps``.
    latency : int
        A beat presented to an idle requantizer to its code valid: ``steps``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.levels < 2:
            raise ValueError(f"thresholds: a search needs at least 2 per channel, not {self.levels}; "
                             "one threshold is one comparison (ThresholdRequantizer)")
        self.steps = self.levels.bit_length()
        self.interval = self.latency = self.steps
        size = (1 << self.steps) - 1
        ordered = np.sort(self.u, axis=1)
        # "Never" is one past what the channel's accumulator reaches (padding channels: anything the
        # width holds, as the parallel form pads them). The parallel form's cmp_width need not hold
        # acc_hi + 1 when no threshold is clipped there (regression: levels=2, 11-bit accumulators, where
        # 1024 wrapped to -1024 and every padded probe was met), so it is widened where it must be.
        never = np.full((len(ordered), 1), 1 << (self.acc_width - 1), dtype=np.int64)
        never[:self.channels, 0] = self.acc_hi + 1
        #: per padded channel, the sorted comparison values padded with "never" to 2^steps - 1
        self.ordered = np.concatenate([ordered, np.repeat(never, size - self.levels, axis=1)], axis=1)
        self.cmp_width = signed_width(min(int(self.ordered.min()), -(1 << (self.acc_width - 1))),
                                      max(int(self.ordered.max()), (1 << (self.acc_width - 1)) - 1))

    @classmethod
    def for_parallel(cls, base: ThresholdRequantizer, *, interval: int) -> "SearchThresholdRequantizer | None":
        """The search form of a parallel one (which is only read, never elaborated); None when its
        ``steps`` do not fit ``interval`` or there is nothing to search (fewer than 2 thresholds)."""
        interval = check_positive("interval", interval)
        base._MustUse__silence = True
        if base.levels < 2 or base.levels.bit_length() > interval:
            return None
        return cls(thresholds=base.thresholds, sign=base.sign, acc_lo=base.acc_lo, acc_hi=base.acc_hi,
                   acc_width=base.acc_width, lanes=base.lanes, out_code=base.out_code.value,
                   out_bits=base.out_bits)

    # -- hardware ------------------------------------------------------------------------

    def _table(self, c: int) -> list[int]:
        """Lane ``c``'s words: ``group·2^steps + p`` = the ``p``-th smallest ``u`` (two's complement,
        ``cmp_width`` bits); word 0 of a group, never read, repeats word 1 (fewer distinct columns)."""
        mask = (1 << self.cmp_width) - 1
        words = []
        for g in range(self.groups):
            row = [int(v) & mask for v in self.ordered[g * self.lanes + c]]
            words += [row[0]] + row
        return words

    def _inverts(self, c: int) -> list[int]:
        return [int(self.invert[g * self.lanes + c]) for g in range(self.groups)]

    def elaborate(self, platform):
        m = Module()
        S, cw = self.steps, self.cmp_width
        top = 1 << (S - 1)
        group = Signal(range(self.groups))
        # One probe per lane (each lane's search takes its own path); the marker bit (the lowest set
        # one) is at the same place in every lane, so lane 0's bit 0 says "last step" for all.
        probes = [Signal(S, init=top, name=f"p_{c}") for c in range(self.lanes)]
        last = probes[0][0]
        out_free = ~self.o_stream.valid | self.o_stream.ready
        step = Signal()
        m.d.comb += [step.eq(self.i_stream.valid & (~last | out_free)),
                     self.i_stream.ready.eq(last & out_free)]
        codes = []
        for c, acc in enumerate(lanes_of(self.i_stream.payload, self.acc_width, self.lanes)):
            p = probes[c]
            word = rom_read(m, f"thr_{c}", self._table(c), cw, Cat(p, group) if self.groups > 1 else p)
            ge = Signal(name=f"ge_{c}")
            m.d.comb += ge.eq(acc.as_signed() >= word.as_signed())
            # p_next bit i: p[i] above the lowest set bit, the comparison at it, 1 just below it.
            below = [Const(0, 1)] + [p[:i].any() for i in range(1, S)]
            low = [p[i] & ~below[i] for i in range(S)] + [Const(0, 1)]
            k = Signal(S, name=f"k_{c}")
            m.d.comb += k.eq(Cat(*[(p[i] & below[i]) | (low[i] & ge) | low[i + 1] for i in range(S)]))
            with m.If(step):
                m.d.sync += p.eq(Mux(last, top, k))
            level = k
            inv = self._inverts(c)
            if any(inv):  # a negative channel meets the thresholds it is below: levels - k
                flip = rom_read(m, f"inv_{c}", inv, 1, group if self.groups > 1 else None)
                level = Mux(flip, (Const(self.levels, S + 1) - k)[:S], k)
            code = Signal(self.out_shape, name=f"code_{c}")
            if self.out_signed:  # level - 2^(k-1) in k-bit two's complement: flip the top bit
                m.d.comb += code.eq(level ^ Const(1 << (self.out_bits - 1), self.out_bits))
            else:
                m.d.comb += code.eq(level)
            codes.append(code)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(step & last):
            m.d.sync += [self.o_stream.payload.eq(Cat(*codes)), self.o_stream.valid.eq(1)]
            if self.groups > 1:
                m.d.sync += group.eq(Mux(group == self.groups - 1, 0, group + 1))
        return m

    # -- models --------------------------------------------------------------------------

    def estimate_cycles(self, n_beats: int) -> int:
        """Cycles from the first input transfer to the last output transfer at full rate, both counted.

        The first transfer is the first beat's last step, so its first ``steps - 1`` cycles come before.
        """
        n_beats = check_positive("n_beats", n_beats)
        return (n_beats - 1) * self.interval + 2

    def features(self) -> dict[str, float]:
        """Counted logic per kind, walking the lanes as :meth:`elaborate` builds them.

        ``cmp``: comparator bits (``cmp_width`` a lane); ``table``: LUTs of the sorted-threshold table
        (LUT4 families: :func:`~qhw.hw.requant.lut4_table_luts`, its exact column structure; Xilinx: the
        LUT6 model :func:`~qhw.hw.array.cost.rom_luts`); ``ctrl``: probe and level logic, ``steps`` bits a
        lane, and one for the handshake; ``invert``: the ``levels - k`` of lanes with a negative channel
        (counted, not weighted in :data:`SEARCH_LUTS_PER_BIT`: yosys's count does not follow it).
        """
        f = {"cmp": 0.0, "table": 0.0, "table6": 0.0, "ctrl": 1.0, "invert": 0.0}
        for c in range(self.lanes):
            words = self._table(c)
            f["cmp"] += self.cmp_width
            f["table"] += lut4_table_luts(words, self.cmp_width)
            f["table6"] += rom_luts(len(words), self.cmp_width)
            f["ctrl"] += self.steps
            if any(self._inverts(c)):
                f["invert"] += self.steps
        return f

    def comparator_bits(self) -> int:
        """One comparator of ``cmp_width`` bits per lane (see ThresholdRequantizer.comparator_bits)."""
        return self.lanes * self.cmp_width

    def _ff(self) -> int:
        """Per lane: probe and output code; the valid bit and the group counter."""
        grp = max(1, (self.groups - 1).bit_length()) if self.groups > 1 else 0
        return self.lanes * (self.steps + self.out_bits) + 1 + grp

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """LUT / FF figures (no DSP, no block RAM) in ``family``'s LUTs (:data:`SEARCH_LUTS_PER_BIT`)."""
        weights = SEARCH_LUTS_PER_BIT.get(family)
        if weights is None:
            raise ValueError(f"family must be one of {', '.join(SEARCH_LUTS_PER_BIT)}, not {family!r}")
        if "_features" not in self.__dict__:
            self._features = self.features()
        f = dict(self._features, table=self._features["table6" if family == "xilinx" else "table"])
        lut = sum(w * f[k] for k, w in weights.items())
        return {"lut": int(round(lut)), "ff": int(self._ff()), "dsp": 0, "bram": 0}


__all__ = ["SearchThresholdRequantizer", "SEARCH_LUTS_PER_BIT", "SEARCH_FIT_RANGE"]

"""Digit-serial multiply-shift requantizer: the function of :class:`~qhw.hw.requant.MulShiftRequantizer`
in a few cycles per beat, for slowly folded layers.

A conv / dense engine's array emits one output beat every ``SF = kh·kw·ceil(C_in/simd)`` cycles; at the
slowest folds (one MAC lane per layer, what an iCE40 UP5K takes) SF is 9..36, and the parallel form's
``acc_width × m_width`` multiplier fed by a ROM is most of the engine. This form takes ``interval``
cycles per beat instead and costs a ``prod_width``-bit adder per lane.

Two digit orders; ``order="auto"`` takes LSB-first wherever ``shift >= digits·d`` (every exported
layer seen so far), MSB-first otherwise.

**LSB-first** (``order="lsb"``), per lane, each beat over the multiplier's ``digits`` digits of
``d = digit_bits`` bits, least significant first::

    P ← 0                                               (input transfer; acc registered)
    P ← (P + acc·D_k + B_k) >> d      k = 0 .. digits-1  (one cycle each)
    code ← clamp((P + b_hi) >> (s - digits·d), lo, hi)  (the last digit's cycle, into o_stream)

By induction ``P_k = floor((acc·(m mod 2^kd) + (b mod 2^kd)) / 2^kd)``, so after the last digit
``P + b_hi = floor((acc·m + b) / 2^(digits·d))`` and the remaining shift is exact floor division. ``P``
stays within about the accumulator's range, so the adder is ``acc_width + d + 1`` bits wide (exact
bounds, :meth:`SerialMulShiftRequantizer._lsb_bounds`) instead of ``prod_width``: on the digits ResNet-8
the serial requantizers' adders and registers shrink from 20..29 bits to 12..15. ``B_k`` (``d`` bits)
is one more operand; at ``d = 1`` it is the adder's carry-in.

**MSB-first** (``order="msb"``, Horner)::

    P ← 0                                               (input transfer; acc registered)
    P ← ((P << d) | B_k) + acc·D_k    k = 0 .. digits-1  (one cycle each, modulo 2^prod_width)
    code ← clamp((P + (b_hi << digits·d)) >> s, lo, hi)  (the last digit's cycle, into o_stream)

Here ``B_k`` rides in the ``d`` zero low bits of ``P << d`` for free, but every sum is
``prod_width`` bits (exact modulo ``2^prod_width``, and the final one fits it).

In both orders:

* ``D_k``: digit ``k`` of the multiplier. When some multiplier of the layer is negative the multiplier
  is taken as ``digits·d``-bit two's complement, whose top bit weighs ``-2^(digits·d-1)``: in the sign
  digit's cycle (the first MSB-first, the last LSB-first) that bit adds ``~acc`` (``= -acc - 1``)
  instead of ``acc``, and the ``-1``, shifted up to ``-2^(digits·d-1)``, is paid back through the bias
  (no negation logic). When every multiplier is ``>= 0`` the digits cover its unsigned width.
* ``B_k``: digit ``k`` of the low ``digits·d`` bits of the bias (``b + 2^(s-1)``, plus that pay-back);
  ``b_hi``, the bias above them, needs an adder at the end, left out where it is 0 for every channel.
* ``D_k`` and ``B_k`` of every group sit in one small table addressed by (group, digit counter).

Timing: the input transfer (cycle ``t``) registers the accumulators; digits run in cycles
``t+1 .. t+digits``; the code is valid from ``t+digits+1`` (``latency = digits + 1``) and held until
taken. ``i_stream.ready`` is low while busy, except in the last digit's cycle when the output register
is free, so at full rate one beat is accepted every ``interval = digits`` cycles.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed

from qhw.hw.rom import rom_read
from qhw.ir.intmath import check_bits, signed_width, unsigned_width

from .array.cost import rom4_leaves
from .pe.datapath import lanes_of, pairwise_reduce
from .pe.params import check_positive
from .requant import MulShiftRequantizer

#: LUTs per counted unit, per family (the features of :meth:`SerialMulShiftRequantizer.features`):
#: non-negative least squares of the relative error against yosys 0.70 LUT sites
#: (:func:`qhw.backends.synth.lut_sites`, flat, no DSP) of the 16 calibration requantizers of
#: ``scripts/fit_requant_serial.py`` (1 and 2 lanes, 1..16 groups, 10..16-bit accumulators, 4..8-bit
#: and exporter-style 17..18-bit multipliers of both signs, digit_bits 1, 2, 3, 4 and 8, 4- to 8-bit
#: signed and unsigned outputs, clamped; all LSB-first, the order every exported layer gets), refitted
#: after the LSB-first form replaced MSB-first there. Estimate / yosys on them (:data:`FIT_RANGE`):
#: iCE40 0.87-1.17, Xilinx 0.71-1.47, ECP5 0.67-1.31, Gowin 0.45-1.36 (the extremes: 18-bit
#: multipliers in digits of 3 and 1-group 6-bit ones); flip-flops exact on all 16. A weight of 0 means
#: collinear with the others on this set, not free.
SERIAL_LUTS_PER_BIT = {
    "xilinx": {"horner": 0.0, "gate": 1.154, "rom": 3.158, "add": 0.0, "clamp": 0.089, "ctrl": 0.0},
    "ice40": {"horner": 0.034, "gate": 1.593, "rom": 3.735, "add": 0.0, "clamp": 0.0, "ctrl": 15.372},
    "ecp5": {"horner": 1.068, "gate": 0.0, "rom": 3.145, "add": 0.0, "clamp": 1.806, "ctrl": 0.0},
    "gowin": {"horner": 1.178, "gate": 0.0, "rom": 4.169, "add": 0.0, "clamp": 1.511, "ctrl": 0.0},
}

#: (min, max) of estimate / yosys per family on the fit set above.
FIT_RANGE = {"ice40": (0.87, 1.17), "xilinx": (0.71, 1.47), "ecp5": (0.67, 1.31), "gowin": (0.45, 1.36)}

#: Digit orders the constructor takes (``"auto"`` resolves to one of the other two).
ORDERS = ("auto", "lsb", "msb")


def _serial_width(rq: MulShiftRequantizer) -> int:
    """Multiplier bits the digits cover: ``m_width`` with a negative multiplier, else the largest's unsigned width."""
    return rq.m_width if rq.m_pad.min() < 0 else unsigned_width(int(rq.m_pad.max()))


def _table_luts(words, width: int, used: int | None = None) -> float:
    """LUT4 of a table: per output bit that varies, its 16-word leaves over the ``used`` words (default
    all; the digit tables' padding words are zeros synthesis folds away); a constant bit costs nothing."""
    if len(set(words)) <= 1:
        return 0.0
    varying = sum(1 for b in range(width) if len({(w >> b) & 1 for w in words}) > 1)
    return varying * rom4_leaves(len(words) if used is None else used)


class SerialMulShiftRequantizer(MulShiftRequantizer):
    """``clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)`` with the product formed ``digit_bits`` bits a cycle.

    Parameters (keyword-only)
    -------------------------
    digit_bits : int
        Multiplier bits per cycle, 1..``m_width`` (of the parallel form).
    order : str
        ``"lsb"``, ``"msb"`` or ``"auto"`` (default: ``"lsb"`` where ``shift >= digits·digit_bits``,
        which LSB-first needs, else ``"msb"``).
    mult, bias, shift, lo, hi, acc_lo, acc_hi, acc_width, lanes, out_code, out_bits
        As in :class:`~qhw.hw.requant.MulShiftRequantizer`, whose checks and derived constants
        (``prod_width``, ``clamps``, ``m_pad``, ``b_pad``, ``m_width``, ``b_width``) this reuses;
        ``reference()`` / ``reference_values()`` are its own.

    Attributes
    ----------
    i_stream, o_stream
        As the parallel form's (same lane and group order, same padding semantics).
    serial_width : int
        Multiplier bits the digits cover: ``m_width`` when a multiplier is negative (the top digit
        carries the sign), else the unsigned width of the largest.
    digits : int
        ``ceil(serial_width / digit_bits)``.
    interval : int
        Cycles between accepted beats at full rate: ``digits``.
    latency : int
        Input transfer to output valid: ``digits + 1``.
    order : str
        ``"lsb"`` or ``"msb"``, as resolved.
    step_width : int
        Bits of the digit step's sum: ``prod_width`` MSB-first; LSB-first the exact bound of
        ``P + acc·D_k + B_k`` over every channel and digit.
    """

    def __init__(self, *, digit_bits: int, order: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        self.digit_bits = check_bits("digit_bits", digit_bits, 1, self.m_width)
        self.negative = bool(self.m_pad.min() < 0)
        self.serial_width = _serial_width(self)
        self.digits = -(-self.serial_width // self.digit_bits)
        self.interval = self.digits
        self.latency = self.digits + 1
        nd = self.digits * self.digit_bits
        # The ~acc of the sign bit is -acc - 1 at weight 2^(nd-1): pay the -2^(nd-1) back in the bias.
        # Python integers: b_pad + 2^(nd-1) may pass int64 where nd is wide.
        bias = [int(b) + ((1 << (nd - 1)) if self.negative and int(mv) < 0 else 0)
                for b, mv in zip(self.b_pad, self.m_pad)]
        self._m_digits = [int(mv) & ((1 << nd) - 1) for mv in self.m_pad]  # nd-bit two's complement
        self._b_lo = [b & ((1 << nd) - 1) for b in bias]
        self._b_hi = [b >> nd for b in bias]  # floor: b = b_hi·2^nd + b_lo
        self.b_hi_width = signed_width(min(self._b_hi), max(self._b_hi))
        if order == "lsb" and self.shift < nd:
            raise ValueError(f"order: LSB-first needs shift >= digits·digit_bits, {self.shift} < {nd}")
        self.order = ("lsb" if self.shift >= nd else "msb") if order == "auto" else order
        if self.order == "lsb":
            self.step_width, self.p_width, self.tail_width = self._lsb_bounds()
        else:
            self.step_width, self.p_width, self.tail_width = self.prod_width, self.prod_width, self.prod_width

    def _lsb_bounds(self) -> tuple[int, int, int]:
        """Signed widths of the LSB-first step sum, of ``P`` and of ``P + b_hi``, from exact bounds.

        Per channel ``P_k(acc) = floor((acc·(m mod 2^kd) + (b_lo mod 2^kd)) / 2^kd)`` is monotone in
        ``acc`` (the partial multipliers are non-negative below the sign digit), so its range is its
        value at the accumulator's two bounds; the step adds ``acc·D_k`` (its two ends; ``~acc`` terms
        in the sign digit counted as ``-acc - 1``) and ``B_k`` ``>= 0``. The tail
        ``P_n + b_hi = floor((acc·m + b) / 2^nd)`` is linear in ``acc``: its ends are exact.
        """
        n, d = self.digits, self.digit_bits
        nd, mask = n * d, (1 << d) - 1
        lo, hi = 0, 0  # padding channels compute 0
        plo, phi, tlo, thi = 0, 0, 0, 0
        for ch in range(len(self.m_pad)):
            a_lo, a_hi = (int(self.acc_lo[ch]), int(self.acc_hi[ch])) if ch < self.channels else (0, 0)
            mu, bl = self._m_digits[ch], self._b_lo[ch]
            for k in range(n):
                kd = k * d
                p_ends = [(a * (mu & ((1 << kd) - 1)) + (bl & ((1 << kd) - 1))) >> kd for a in (a_lo, a_hi)]
                dk, bk = (mu >> kd) & mask, (bl >> kd) & mask
                if self.negative and k == n - 1 and dk >> (d - 1):  # ~acc at weight 2^(d-1)
                    terms = [a * (dk & (mask >> 1)) + (-a - 1) * (1 << (d - 1)) for a in (a_lo, a_hi)]
                else:
                    terms = [a * dk for a in (a_lo, a_hi)]
                lo = min(lo, min(p_ends) + min(terms))
                hi = max(hi, max(p_ends) + max(terms) + bk)
                plo, phi = min(plo, *p_ends), max(phi, *p_ends)
            tails = [(a * int(self.m_pad[ch]) + int(self.b_pad[ch])) >> nd for a in (a_lo, a_hi)]
            tlo, thi = min(tlo, *tails), max(thi, *tails)
        plo, phi = min(plo, lo >> d), max(phi, hi >> d)  # the last step's P_n
        return signed_width(lo, hi), signed_width(plo, phi), signed_width(tlo, thi)

    @classmethod
    def from_ir(cls, rq, *, acc_lo, acc_hi, acc_width: int, lanes: int,
                digit_bits: int = 1, order: str = "auto") -> "SerialMulShiftRequantizer":
        """The serial form of what :meth:`MulShiftRequantizer.from_ir` builds, ``digit_bits`` a cycle."""
        return cls._of(MulShiftRequantizer.from_ir(rq, acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width,
                                                   lanes=lanes), digit_bits, order)

    @classmethod
    def _of(cls, base: MulShiftRequantizer, digit_bits: int, order: str = "auto") -> "SerialMulShiftRequantizer":
        """The serial form of a parallel one (which is only read, never elaborated)."""
        base._MustUse__silence = True
        return cls(digit_bits=digit_bits, order=order, mult=base.mult, bias=base.bias, shift=base.shift, lo=base.lo,
                   hi=base.hi, acc_lo=base.acc_lo, acc_hi=base.acc_hi, acc_width=base.acc_width,
                   lanes=base.lanes, out_code=base.out_code, out_bits=base.out_bits)

    @classmethod
    def for_interval(cls, rq_ir, *, acc_lo, acc_hi, acc_width: int, lanes: int, interval: int,
                     family: str = "xilinx") -> "SerialMulShiftRequantizer | None":
        """The cheapest serial form (by ``estimate_resources(family)["lut"]``) with ``interval`` at most the given.

        ``rq_ir`` is an IR :class:`~qhw.ir.requant.MulShift` or a :class:`~qhw.ir.requant.Thresholds`
        with a ``mul_shift`` (as :meth:`MulShiftRequantizer.from_ir` takes). None when no digit width
        fits: ``interval`` 1 (one digit is the parallel form plus registers, never cheaper).
        Raises ValueError where the mul-shift form cannot be built at all.
        """
        interval = check_positive("interval", interval)
        base = MulShiftRequantizer.from_ir(rq_ir, acc_lo=acc_lo, acc_hi=acc_hi, acc_width=acc_width, lanes=lanes)
        return cls.for_parallel(base, interval=interval, family=family)

    @classmethod
    def for_parallel(cls, base: MulShiftRequantizer, *, interval: int,
                     family: str = "xilinx") -> "SerialMulShiftRequantizer | None":
        """:meth:`for_interval` from an already built parallel form (only read, never elaborated)."""
        interval = check_positive("interval", interval)
        base._MustUse__silence = True
        width = _serial_width(base)
        # The narrowest digit for each digit count: wider ones of the same count only cost more.
        best, best_lut = None, None
        for n in range(2, min(interval, width) + 1):
            d = -(-width // n)
            if -(-width // d) != n:
                continue
            cand = cls._of(base, d)
            lut = cand.estimate_resources(family)["lut"]
            if best is None or lut < best_lut:
                if best is not None:
                    best._MustUse__silence = True
                best, best_lut = cand, lut
            else:
                cand._MustUse__silence = True
        return best

    # -- hardware ------------------------------------------------------------------------

    def _tables(self, c: int):
        """Lane ``c``'s digit table: word ``group·2^kb + k`` = ``D_k | B_k << d`` (the k-th digit in the
        order's sequence: most significant first MSB-first, least significant first LSB-first).

        Addressed by ``Cat(count, group)``, padded to ``2^kb`` words a group. A contiguous table read by
        one ``group·digits + k`` counter was tried: the same LUTs on the digits ResNet-8's six serial
        requantizers in yosys (1,059 against 1,051 iCE40 LUT4) and more flip-flops.
        """
        n, d = self.digits, self.digit_bits
        kb = (n - 1).bit_length()
        mask = (1 << d) - 1
        place = (lambda k: k * d) if self.order == "lsb" else (lambda k: (n - 1 - k) * d)
        words = []
        for g in range(self.groups):
            ch = g * self.lanes + c
            mv, bl = self._m_digits[ch], self._b_lo[ch]
            row = [((mv >> place(k)) & mask) | (((bl >> place(k)) & mask) << d) for k in range(n)]
            words += row + [0] * ((1 << kb) - n)
        hi_words = [self._b_hi[g * self.lanes + c] & ((1 << self.b_hi_width) - 1) for g in range(self.groups)]
        return words, hi_words

    def elaborate(self, platform):
        m = Module()
        n = self.digits
        busy = Signal()
        count = Signal(range(n)) if n > 1 else Const(0, 1)
        group = Signal(range(self.groups))
        last = busy & (count == n - 1) if n > 1 else busy
        out_free = ~self.o_stream.valid | self.o_stream.ready
        finish = Signal()  # the last digit's cycle, the code going into the output register
        m.d.comb += [finish.eq(last & out_free), self.i_stream.ready.eq(~busy | finish)]
        accept = self.i_stream.valid & self.i_stream.ready
        # The cycle whose digit carries the multiplier's sign bit: MSB-first the first, LSB-first the last.
        sign_digit = (count == 0) if self.order == "msb" else (count == n - 1)
        addr = Cat(count, group) if n > 1 else group
        lane = self._lane_lsb if self.order == "lsb" else self._lane_msb
        codes = []
        for c, acc_in in enumerate(lanes_of(self.i_stream.payload, self.acc_width, self.lanes)):
            acc = Signal(signed(self.acc_width), name=f"acc_{c}")
            p = Signal(signed(self.p_width), name=f"p_{c}")
            words, hi_words = self._tables(c)
            word = rom_read(m, f"sd_{c}", words, 2 * self.digit_bits, addr if self.groups > 1 or n > 1 else None)
            b_hi = (rom_read(m, f"sb_{c}", hi_words, self.b_hi_width, group).as_signed()
                    if any(hi_words) else None)  # the bias above the digits' bits
            p_next, code = lane(m, c, acc, p, word, sign_digit, b_hi)
            codes.append(code)
            with m.If(busy & (~last | out_free)):
                m.d.sync += p.eq(p_next)
            with m.If(accept):
                m.d.sync += [acc.eq(acc_in), p.eq(0)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        if n > 1:
            with m.If(busy & (~last | out_free)):
                m.d.sync += count.eq(Mux(last, 0, count + 1))
        with m.If(finish):
            m.d.sync += [self.o_stream.payload.eq(Cat(*codes)), self.o_stream.valid.eq(1), busy.eq(0)]
            if self.groups > 1:
                m.d.sync += group.eq(Mux(group == self.groups - 1, 0, group + 1))
        with m.If(accept):
            m.d.sync += busy.eq(1)
        return m

    def _digit_terms(self, acc, word, sign_digit):
        """``acc·D_k`` as ``d`` gated, shifted operands; the sign bit's operand is ``~acc`` in the sign digit."""
        d, aw = self.digit_bits, self.acc_width
        terms = []
        for j in range(d):
            a = acc
            if self.negative and j == d - 1:  # ~acc = -acc - 1; the -1 is paid back through the bias
                a = acc ^ Mux(sign_digit, Const(-1, signed(aw)), Const(0, signed(aw)))
            terms.append(Mux(word[j], a, 0) << j)
        return terms

    @staticmethod
    def _kept(m, name: str, width: int):
        """A kept ``width``-bit signed wire per adder, so yosys builds each sum as its own carry chain."""
        kept = iter(range(64))

        def wire(value):
            w = Signal(signed(width), name=f"{name}_{next(kept)}", attrs={"keep": 1})
            m.d.comb += w.eq(value)
            return w
        return wire

    def _lane_msb(self, m, c, acc, p, word, sign_digit, b_hi):
        """MSB-first Horner step ``((P << d) | B_k) + acc·D_k`` and the final code (``prod_width`` sums)."""
        n, d, pw = self.digits, self.digit_bits, self.prod_width
        wire = self._kept(m, f"h_{c}", pw)
        left = Cat(word[d:2 * d], p)[:pw].as_signed()  # (P << d) | B_k, modulo 2^pw
        p_next = pairwise_reduce([left] + self._digit_terms(acc, word, sign_digit), lambda x, y: wire(x + y))
        if not isinstance(p_next, Signal):
            p_next = wire(p_next)
        prod = p_next
        if b_hi is not None:
            prod = Signal(signed(pw), name=f"prod_{c}")
            m.d.comb += prod.eq(p_next + (b_hi << (n * d)))
        code = Signal(self.out_shape, name=f"code_{c}")
        m.d.comb += code.eq(self._shift_clamp(prod, c))
        return p_next, code

    def _lane_lsb(self, m, c, acc, p, word, sign_digit, b_hi):
        """LSB-first step ``(P + acc·D_k + B_k) >> d`` (``step_width`` sums) and the final code."""
        n, d = self.digits, self.digit_bits
        wire = self._kept(m, f"h_{c}", self.step_width)
        terms = self._digit_terms(acc, word, sign_digit)
        # B_k in the first sum as one expression: at d = 1 yosys makes it the adder's carry-in.
        first = wire(p + terms[0] + word[d:2 * d])
        total = pairwise_reduce([first] + terms[1:], lambda x, y: wire(x + y))
        if not isinstance(total, Signal):
            total = wire(total)
        p_next = Signal(signed(self.p_width), name=f"pn_{c}")
        m.d.comb += p_next.eq(total >> d)
        tail = p_next
        if b_hi is not None:
            tail = Signal(signed(self.tail_width), name=f"tail_{c}")
            m.d.comb += tail.eq(p_next + b_hi)
        code = Signal(self.out_shape, name=f"code_{c}")
        m.d.comb += code.eq(self._shift_clamp(tail, c, shift=self.shift - n * d))
        return p_next, code

    # -- models --------------------------------------------------------------------------

    def estimate_cycles(self, n_beats: int) -> int:
        """Cycles from the first input transfer to the last output transfer, no stalls (both counted)."""
        n_beats = check_positive("n_beats", n_beats)
        return (n_beats - 1) * self.interval + self.latency + 1

    def features(self) -> dict[str, float]:
        """Counted logic per kind, walking the lanes as :meth:`elaborate` builds them.

        ``horner``: adder bits of the digit step (``d`` adders of ``step_width`` bits, plus the ``B_k``
        operand's where ``d > 1`` LSB-first); ``gate``: the ``acc × digit-bit`` operand bits (their own
        LUT before a LUT4 carry chain, folded into the adder's LUT6 on Xilinx); ``rom``: LUTs of the
        digit and bias tables; ``add``: the final bias adder's bits (MSB-first only those above the
        digits' bits); ``clamp``: per clamp side that can act, y bits + output bits; ``ctrl``: one per
        requantizer (counter, busy, handshake).
        """
        f = {"horner": 0.0, "gate": 0.0, "rom": 0.0, "add": 0.0, "clamp": 0.0, "ctrl": 1.0}
        n, d, sw = self.digits, self.digit_bits, self.step_width
        lsb = self.order == "lsb"
        y_width = max(self.tail_width - (self.shift - n * d) if lsb else self.prod_width - self.shift, 1)
        for c in range(self.lanes):
            words, hi_words = self._tables(c)
            f["horner"] += d * sw + (sw if lsb and d > 1 else 0)
            f["gate"] += d * (self.acc_width + 1)
            f["rom"] += _table_luts(words, 2 * d, used=self.groups * n)
            if any(hi_words):
                f["add"] += self.tail_width if lsb else max(self.prod_width - n * d, 0)
                f["rom"] += _table_luts(hi_words, self.b_hi_width)
            f["clamp"] += sum(self.clamps[c]) * (y_width + self.out_bits)
        return f

    def _ff(self) -> int:
        """Per lane: accumulator, step register, output code; valid, busy, digit and group counters.

        MSB-first the Horner register's top ``digit_bits`` bits are shifted out unread (only its next
        value is seen whole), so synthesis drops them; LSB-first ``P`` is ``p_width`` bits.
        """
        count = (self.digits - 1).bit_length() if self.digits > 1 else 0
        grp = max(1, (self.groups - 1).bit_length()) if self.groups > 1 else 0
        step = self.p_width if self.order == "lsb" else max(self.prod_width - self.digit_bits, 0)
        return self.lanes * (self.acc_width + step + self.out_bits) + 2 + count + grp

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """LUT / FF figures (no DSP, no block RAM) in ``family``'s LUTs (:data:`SERIAL_LUTS_PER_BIT`)."""
        weights = SERIAL_LUTS_PER_BIT.get(family)
        if weights is None:
            raise ValueError(f"family must be one of {', '.join(SERIAL_LUTS_PER_BIT)}, not {family!r}")
        if "_features" not in self.__dict__:
            self._features = self.features()
        lut = sum(weights[k] * v for k, v in self._features.items())
        return {"lut": int(round(lut)), "ff": int(self._ff()), "dsp": 0, "bram": 0}


__all__ = ["SerialMulShiftRequantizer", "SERIAL_LUTS_PER_BIT", "ORDERS"]

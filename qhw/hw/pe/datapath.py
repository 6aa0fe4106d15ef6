"""Combinational datapath shared by the streaming PEs and the systolic cells.

These builders return Amaranth expressions; the callers register them. The
raw terms follow :mod:`qhw.hw.pe.spec` exactly. No builder uses ``*`` except
the plain MAC term: the shift-add and Booth terms are muxes of shifted
activations.
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value

from qhw.ir.intmath import PEKind

from .spec import PESpec


#: Sums at least this wide are kept as named wires (see :func:`adder_tree`).
KEEP_WIDTH = 4


def adder_tree(terms, m: Module | None = None, name: str = "sum") -> Value:
    """Balanced pairwise sum, depth ceil(log2 n); Amaranth widens each level.

    For 1-bit terms this is the popcount adder tree: level k adds k+1-bit
    counts, so no level is wider than it must be.

    With a module ``m``, every sum of at least ``KEEP_WIDTH`` bits becomes a
    wire with the ``keep`` attribute. Why: yosys otherwise merges a whole
    tree into one ``$macc`` and builds it from LUT-based carry-save
    compressors (about 2 LUTs per bit per operand removed); kept two-input
    adders map to carry chains at 1 LUT per bit, and the LUT in front of each
    carry bit still absorbs the term logic (XNOR, Booth selection). Narrow
    sums (popcount leaves) stay free for LUT packing. Measured on one
    8-bit × 8-bit MAC cell with ROM weights: 154 -> 96 LUTs.
    """
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    kept = itertools.count()

    def add(x: Value, y: Value) -> Value:
        total = x + y
        if m is not None and len(total) >= KEEP_WIDTH:
            wire = Signal(total.shape(), name=f"{name}_{next(kept)}", attrs={"keep": 1})
            m.d.comb += wire.eq(total)
            return wire
        return total

    return pairwise_reduce(terms, add)


def pairwise_reduce(items, combine):
    """The shape of every adder tree here: combine neighbours level by level, an odd one out moves up.

    Also walked by the cost model (:mod:`qhw.hw.array.cost`) over term
    widths, so the estimate counts exactly the sums the hardware has.
    """
    items = list(items)
    while len(items) > 1:
        paired = [combine(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
        items = paired + ([items[-1]] if len(items) % 2 else [])
    return items[0]


def as_signed_value(v: Value) -> Value:
    """``v`` as a signed value of the same number (zero-extends unsigned)."""
    v = Value.cast(v)
    return v if v.shape().signed else Cat(v, Const(0, 1)).as_signed()


def lanes_of(flat: Value, width: int, lanes: int) -> list[Value]:
    """Lane ``l`` of a packed vector occupies bits ``[l·width, (l+1)·width)``."""
    return [flat[l * width:(l + 1) * width] for l in range(lanes)]


def act_lanes(spec: PESpec, flat: Value, lanes: int) -> list[Value]:
    """Activation lanes as values: two's complement for ``signed`` codes."""
    lanes_ = lanes_of(flat, spec.act_bits, lanes)
    return [a.as_signed() for a in lanes_] if spec.act_signed else lanes_


def mux_tree(index: Value, options: list[Value]) -> Value:
    """``options[index]`` as a binary tree of 2:1 muxes on the index bits.

    Missing options (index past the list) give 0. Only the low
    ``ceil(log2 len(options))`` index bits are looked at: callers guarantee
    larger indices never occur.
    """
    if len(options) == 1:
        return options[0]
    bits = (len(options) - 1).bit_length()
    level = list(options) + [Const(0, 1)] * ((1 << bits) - len(options))
    for b in range(bits):
        level = [Mux(index[b], level[2 * i + 1], level[2 * i]) for i in range(len(level) // 2)]
    return level[0]


def shift_add_term(spec: PESpec, a: Value, w: Value, max_exp: int | None = None) -> Value:
    """``s ? ~m : m`` with ``m = a << (e - 1)`` (0 for e = 0), as a signed value.

    ``max_exp`` bounds the exponent codes that can occur (a ROM knows its
    contents); the mux then has ``max_exp + 1`` inputs instead of 2^(bits-1).
    """
    e_bits = spec.weight_bits - 1
    if max_exp is None:
        max_exp = (1 << e_bits) - 1
    e, s = w[:e_bits], w[e_bits]
    mag = mux_tree(e, [Const(0, 1)] + [a << k for k in range(max_exp)])
    # XOR with the sign gives ~m = -m - 1; the missing +1 is the PE's gamma.
    # An unsigned m needs one more bit for -m - 1; a signed one does not.
    mag = as_signed_value(mag).as_unsigned()  # XOR bit patterns of equal width
    return (mag ^ s.replicate(len(mag))).as_signed()


def raw_term(spec: PESpec, a: Value, w: Value, max_exp: int | None = None) -> Value:
    """Raw term ``t(w, a)`` of one lane (see :mod:`qhw.hw.pe.spec`)."""
    kind = spec.kind
    if kind is PEKind.XNOR:
        return ~(a ^ w)
    if kind is PEKind.AND:
        return Mux(w, a, 0)
    if kind is PEKind.SHIFT:
        return shift_add_term(spec, a, w, max_exp)
    return w.as_signed() * a  # int: w·a; odd: c·a with the stored c


def booth_terms(spec: PESpec, a: Value, code: Value) -> list[Value]:
    """Partial products ``(neg ? ~m_d : m_d) << 2d``, ``m_d`` in {0, a, 2a} (see :mod:`.spec`)."""
    terms = []
    for d in range(spec.booth_digit_count):
        one, two, neg = code[3 * d], code[3 * d + 1], code[3 * d + 2]
        mag = as_signed_value(Mux(two, a << 1, Mux(one, a, 0))).as_unsigned()
        terms.append((mag ^ neg.replicate(len(mag))).as_signed() << (2 * d))
    return terms


def raw_terms(spec: PESpec, a_flat: Value, w_flat: Value, max_exps=None, booth: bool = False) -> list[Value]:
    """All raw terms of one beat: one per lane, or one per Booth digit per lane."""
    a_l = act_lanes(spec, a_flat, spec.lanes)
    if booth:
        codes = lanes_of(w_flat, 3 * spec.booth_digit_count, spec.lanes)
        return [t for a, code in zip(a_l, codes) for t in booth_terms(spec, a, code)]
    w_l = lanes_of(w_flat, spec.weight_bits, spec.lanes)
    exps = max_exps if max_exps is not None else [None] * spec.lanes
    return [raw_term(spec, a, w, x) for a, w, x in zip(a_l, w_l, exps)]


def raw_sum(spec: PESpec, a_flat: Value, w_flat: Value, max_exps=None, *, booth: bool = False,
            m: Module | None = None, name: str = "terms") -> Value:
    """Sum of the raw terms of all lanes of one beat (``m``: see :func:`adder_tree`)."""
    return adder_tree(raw_terms(spec, a_flat, w_flat, max_exps, booth), m, name)


def act_sum(spec: PESpec, a_flat: Value, lanes: int, m: Module | None = None, name: str = "q") -> Value:
    """Sum of ``lanes`` activation values (the Q of the ``and`` and ``odd`` kinds)."""
    return adder_tree(act_lanes(spec, a_flat, lanes), m, name)


def sign_count(spec: PESpec, w_flat: Value, m: Module | None = None) -> Value:
    """Number of set sign bits among the lanes (the gamma of the ``shift`` kind)."""
    return adder_tree((w[spec.weight_bits - 1] for w in lanes_of(w_flat, spec.weight_bits, spec.lanes)), m, "signs")

"""What a processing element multiplies, and the cheap form it computes it in.

A PE computes ``sum_i w_i · a_i`` over decoded integer values (encodings of
:mod:`qhw.ir.intmath`). Each kind sums a cheap *raw term* ``t(w, a)`` per
lane (only the MAC multiplies) and recovers the value once, at the end::

    value = alpha · P + beta · Q + gamma
    P = sum_i t(w_i, a_i)     Q = sum_i a_i (activation values)

========= ======== =========== ============================= ===== ==== ===============
kind      weights  activations raw term t(w, a)              alpha beta gamma
========= ======== =========== ============================= ===== ==== ===============
xnor      binary   bipolar 1b  xnor(a, w)  (0 or 1)            2    0   -n (lanes used)
and       binary   unsigned k  a if w else 0                   2   -1   0
shift     pow2     unsigned k  s ? ~m : m,  m = a << (e-1)     1    0   +#(sign bits)
mac (int) int      unsigned k  w · a                           1    0   0
mac (odd) odd      unsigned k  c · a  (w = 2c + 1)             2   +1   0
========= ======== =========== ============================= ===== ==== ===============

The kind is :func:`qhw.ir.intmath.pe_kind` of the two encodings, the same
:class:`~qhw.ir.intmath.PEKind` the IR layers report as ``pe``.

A MAC whose weights come from a ROM (the systolic array with folds) stores
each weight radix-4 Booth-recoded instead: digits ``b_d`` in {-2..2} with
``c = sum_d b_d·4^d`` (``ceil(weight_bits/2)`` digits, 3 ROM bits each: one, two,
neg). Its raw term is a sum of partial products ``(neg ? ~m_d : m_d) << 2d``
with ``m_d = |b_d|·a`` -- a mux, no multiplier -- which equals
``c·a − booth_offset(w)``, ``booth_offset = sum over negative digits of 4^d``;
the array adds ``alpha · booth_offset`` to gamma.

Every kind but ``xnor`` also takes ``signed`` activations (k-bit two's
complement, intmath); ``a`` above is then the decoded value and Q is signed.
(``and`` with 1-bit activations is the AND-popcount of 1-bit PACT layers;
``~m = -m - 1`` so each sign bit owes +1, paid once in gamma instead of one
incrementer per lane; ``e = 0`` gives ``m = 0``.) Gamma depends on the weights
only, so an array with weights in ROM folds it into a per-channel constant.

A padded lane (activation forced to code 0, weight at :meth:`PESpec.pad_code`)
has ``t = 0`` and ``a = 0``: it changes neither P nor Q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qhw.ir import intmath
from qhw.ir.intmath import ActCode, PEKind, WeightCode, check_bits, pe_kind

from .params import check_positive

KINDS = tuple(PEKind)
#: Widest product magnitude accepted: keeps every bound exact in int64.
MAX_PRODUCT_BITS = 48


@dataclass(frozen=True)
class PESpec:
    """Validated arithmetic of one PE: encodings, bit-widths and SIMD lanes.

    Parameters
    ----------
    weight_code : {"binary", "pow2", "int", "odd"}
        Weight encoding (:class:`qhw.ir.intmath.WeightCode`).
    weight_bits : int
        Stored weight width: 1 for binary, 2..6 for pow2 (wider exponent codes
        shift past ``MAX_PRODUCT_BITS``), 1..16 for int/odd.
    act_code : {"unsigned", "signed", "bipolar"}
        Activation encoding; bipolar only with binary weights and ``act_bits=1``.
    act_bits : int
        Activation code width, 1..16.
    lanes : int
        Products computed per cycle (SIMD), at least 1.
    """

    weight_code: WeightCode
    weight_bits: int
    act_code: ActCode
    act_bits: int
    lanes: int

    def __post_init__(self):
        try:
            weight_code = WeightCode(self.weight_code)
        except ValueError:
            raise ValueError(f"weight_code must be one of {[c.value for c in WeightCode]}, "
                             f"not {self.weight_code!r}") from None
        try:
            act_code = ActCode(self.act_code)
        except ValueError:
            raise ValueError(f"act_code must be one of {[c.value for c in ActCode]}, not {self.act_code!r}") from None
        object.__setattr__(self, "weight_code", weight_code)
        object.__setattr__(self, "act_code", act_code)
        object.__setattr__(self, "weight_bits", check_bits("weight_bits", self.weight_bits))
        object.__setattr__(self, "act_bits", check_bits("act_bits", self.act_bits))
        object.__setattr__(self, "lanes", check_positive("lanes", self.lanes))
        if act_code is ActCode.BIPOLAR and weight_code is not WeightCode.BINARY:
            raise ValueError(f"act_code: bipolar activations need binary weights, not {weight_code.value}")
        for name, check in (("weight_bits", lambda: intmath.weight_value_range(weight_code, self.weight_bits)),
                            ("act_bits", lambda: intmath.act_value_range(act_code, self.act_bits))):
            try:
                check()
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        wlo, whi = intmath.weight_value_range(weight_code, self.weight_bits)
        if max(-wlo, whi).bit_length() + self.act_bits > MAX_PRODUCT_BITS:
            # The integer model is int64; wide pow2 codes (|w| up to 2^126) would overflow it.
            raise ValueError(
                f"weight_bits: {self.weight_bits}-bit {weight_code.value} weights times {self.act_bits}-bit "
                f"activations exceed {MAX_PRODUCT_BITS}-bit products"
            )

    # -- classification ---------------------------------------------------------

    @property
    def kind(self) -> PEKind:
        """:func:`qhw.ir.intmath.pe_kind` of the encodings (an IR layer's ``pe``)."""
        return pe_kind(self.weight_code, self.act_code)

    @property
    def alpha(self) -> int:
        return 2 if self.kind in (PEKind.XNOR, PEKind.AND) or self.weight_code is WeightCode.ODD else 1

    @property
    def beta(self) -> int:
        if self.kind is PEKind.AND:
            return -1
        return 1 if self.weight_code is WeightCode.ODD else 0

    @property
    def code_max(self) -> int:
        """Largest raw activation code (any ``act_bits``-bit pattern is a valid code)."""
        return (1 << self.act_bits) - 1

    @property
    def act_range(self) -> tuple[int, int]:
        """Smallest and largest activation *value* (intmath.act_value_range)."""
        return intmath.act_value_range(self.act_code, self.act_bits)

    @property
    def act_signed(self) -> bool:
        return self.act_code is ActCode.SIGNED

    def pad_code(self) -> int:
        """Raw weight code of a padded lane: value 0, or +1 where 0 does not exist.

        With the activation forced to code 0 the raw term is 0 either way
        (binary: xnor(0, 1) = 0).
        """
        if self.weight_code is WeightCode.BINARY:
            return 1
        return 0  # int 0, odd c = 0 (value +1), pow2 e = 0 (value 0)

    def encode(self, values) -> np.ndarray:
        """Integer weight values -> raw codes (intmath), errors name ``weights``."""
        try:
            return intmath.encode_weights(self.weight_code, self.weight_bits, values)
        except ValueError as exc:
            raise ValueError(f"weights: {exc}") from None

    # -- Python model of the raw form ---------------------------------------------

    def raw_term(self, w_raw, a_raw) -> np.ndarray:
        """Raw term ``t(w, a)`` per element (int64), as the hardware sums it."""
        w = np.asarray(w_raw, dtype=np.int64)
        a = np.asarray(a_raw, dtype=np.int64)
        kind = self.kind
        if kind is PEKind.XNOR:
            return 1 - (w ^ a)
        a = intmath.decode_acts(self.act_code, self.act_bits, a)  # unsigned: codes are values
        if kind is PEKind.AND:
            return np.where(w == 1, a, 0)
        if kind is PEKind.SHIFT:
            s = w >> (self.weight_bits - 1)
            e = w & ((1 << (self.weight_bits - 1)) - 1)
            mag = np.where(e == 0, 0, a << np.maximum(e - 1, 0))
            return np.where(s == 1, -mag - 1, mag)
        return self._stored_c(w) * a

    def _stored_c(self, w_raw) -> np.ndarray:
        """The two's complement number a MAC weight code stores: int, the weight; odd, c of w = 2c + 1."""
        return intmath.decode_weights(WeightCode.INT, self.weight_bits, w_raw)

    # -- Booth recoding of MAC weights (ROM-resident weights) --------------------

    @property
    def booth_digit_count(self) -> int:
        return (self.weight_bits + 1) // 2

    def rom_lane_bits(self, booth: bool) -> int:
        """ROM bits per lane: the weight code, or its Booth code (3 bits per digit) for a MAC."""
        return 3 * self.booth_digit_count if booth and self.kind is PEKind.MAC else self.weight_bits

    def booth_digits(self, w_raw) -> np.ndarray:
        """Radix-4 Booth digits (..., D) in {-2..2} of the stored signed code c."""
        c = self._stored_c(w_raw)
        bit = lambda i: (c >> i) & 1 if i >= 0 else np.zeros_like(c)  # noqa: E731 (arithmetic shift)
        return np.stack([-2 * bit(2 * d + 1) + bit(2 * d) + bit(2 * d - 1)
                         for d in range(self.booth_digit_count)], axis=-1)

    def booth_codes(self, w_raw) -> np.ndarray:
        """ROM codes: digit d at bits [3d, 3d+3) as (one, two, neg)."""
        b = self.booth_digits(w_raw)
        fields = (np.abs(b) == 1) | ((np.abs(b) == 2) << 1) | ((b < 0) << 2)
        return np.sum(fields.astype(np.int64) << (3 * np.arange(self.booth_digit_count)), axis=-1)

    def booth_offset(self, w_raw) -> np.ndarray:
        """``c·a − t_booth(w, a)``: 4^d for every negative digit."""
        b = self.booth_digits(w_raw)
        return np.sum(np.where(b < 0, 4 ** np.arange(self.booth_digit_count), 0), axis=-1)

    def gamma(self, w_raw, lanes_used: int) -> int:
        """Weight-only constant of one dot product (see the module table)."""
        if self.kind is PEKind.XNOR:
            return -int(lanes_used)
        if self.kind is PEKind.SHIFT:
            return int(np.sum(np.asarray(w_raw, dtype=np.int64) >> (self.weight_bits - 1)))
        return 0

    def term_range(self, w_raw) -> tuple[np.ndarray, np.ndarray]:
        """Per-element (lo, hi) of ``t(w, a)`` over every activation code.

        Every raw term is monotone in the activation value, so the extremes
        sit at the smallest and largest activation.
        """
        lo, hi = intmath.act_extreme_codes(self.act_code, self.act_bits)
        t0, t1 = self.raw_term(w_raw, lo), self.raw_term(w_raw, hi)
        return np.minimum(t0, t1), np.maximum(t0, t1)

    def all_codes(self) -> np.ndarray:
        """Every raw weight code that decodes (for PEs with streamed weights)."""
        return np.arange(1 << self.weight_bits, dtype=np.int64)

    def value_dot(self, w_raw, a_raw) -> np.ndarray:
        """Reference dot products over the last axis, from intmath decoding only."""
        w = intmath.decode_weights(self.weight_code, self.weight_bits, w_raw)
        a = intmath.decode_acts(self.act_code, self.act_bits, a_raw)
        return np.sum(w * a, axis=-1)

    def value_range(self) -> tuple[int, int]:
        """Extremes of one product ``w · a`` over every weight and activation."""
        wlo, whi = intmath.weight_value_range(self.weight_code, self.weight_bits)
        alo, ahi = intmath.act_value_range(self.act_code, self.act_bits)
        lo, hi = intmath.accumulator_bounds([[wlo], [whi]], alo, ahi)
        return int(lo.min()), int(hi.max())

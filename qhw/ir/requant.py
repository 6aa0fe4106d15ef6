"""Requantization: how an integer accumulator becomes the next activation value.

Two interchangeable integer forms, both defined in :mod:`qhw.ir.intmath`:

:class:`Thresholds`  ``n = sum_j [sign_c · acc >= t_(c,j)]`` (FINN-style, exact),
                     value ``n`` (unsigned), ``2n - 1`` (bipolar) or
                     ``n - 2^(k-1)`` (signed k-bit)
:class:`MulShift`    value ``clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)``
                     (unsigned or signed outputs)

The exporter builds them from a real-valued affine map of the accumulator,
``u_c = a_c · acc + b_c``, expressed in units of the output step (BN folded in,
the activation scale divided out), so that the output value is
``clamp(floor(u + 1/2), lo, hi)`` (unsigned: [0, 2^k - 1]; signed:
[-2^(k-1), 2^(k-1) - 1]) or, for a bipolar output, ``+1 if u >= 0 else -1``.
:func:`affine_thresholds` computes the thresholds *exactly* for the float64
values of ``a`` and ``b`` (rational arithmetic, no rounding), so
``acc = t - 1`` gives level ``j - 1`` and ``acc = t`` gives level ``j``.
:func:`find_mul_shift` then searches the narrowest shift whose multiplier and
bias reproduce those thresholds on the whole accumulator range, checked with
:func:`mul_shift_agrees` (monotone functions agree everywhere iff they agree
on both sides of every threshold, so the check is O(C·L), not O(range)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qhw.ir import intmath
from qhw.ir.intmath import ActCode

#: bound on |acc · m + b + 2^(s-1)| so that int64 arithmetic can never wrap
INT64_SAFE_BITS = 62
INT64_SAFE = 1 << INT64_SAFE_BITS


#: widest thresholded output (2^12 - 1 thresholds per channel)
MAX_THRESHOLD_BITS = 12


def n_levels(out_code: ActCode | str, out_bits: int) -> int:
    """Number of thresholds of a requantizer: 1 for bipolar, else 2^k - 1."""
    code = ActCode(out_code)
    intmath.act_value_range(code, out_bits)
    if code is ActCode.BIPOLAR:
        return 1
    intmath.check_bits("out_bits", out_bits, 1, MAX_THRESHOLD_BITS)
    return (1 << out_bits) - 1


def level_offset(out_code: ActCode | str, out_bits: int) -> int:
    """Value of level 0: -1 (bipolar), -2^(k-1) (signed), 0 (unsigned)."""
    return intmath.act_value_range(out_code, out_bits)[0]


def level_to_value(out_code: ActCode | str, out_bits: int, level):
    """Threshold level n -> value: n (unsigned), 2n - 1 (bipolar), n - 2^(k-1) (signed)."""
    code = ActCode(out_code)
    if code is ActCode.BIPOLAR:
        return 2 * level - 1
    return level + level_offset(code, out_bits)


def _params(name: str, value, ndim: int) -> np.ndarray:
    """A requantizer parameter array: integers inside ±2^62 (:data:`INT64_SAFE`), read-only int64."""
    return intmath.check_int_array(name, value, ndim, allow_empty=True, limit_bits=INT64_SAFE_BITS)


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Per-channel multi-threshold requantizer.

    Parameters
    ----------
    thresholds : int array (C, L)
        Ascending along L; ``L`` is 1 (bipolar) or 2^k - 1 (unsigned or
        signed k-bit, k <= 12).
    sign : int array (C,)
        +1 or -1: channel ``c`` compares ``sign_c · acc``.
    out_code, out_bits : ActCode, int
        Output encoding.
    mul_shift : MulShift or None
        An equivalent multiplier/shift form (same output values), verified by
        the owning layer over its exact accumulator range; always ``None``
        for bipolar outputs (one comparator is cheaper).
    """

    thresholds: np.ndarray
    sign: np.ndarray
    out_code: ActCode
    out_bits: int
    mul_shift: "MulShift | None" = None

    def __post_init__(self):
        object.__setattr__(self, "out_code", ActCode(self.out_code))
        object.__setattr__(self, "out_bits", intmath.check_bits("out_bits", self.out_bits))
        t = _params("thresholds", self.thresholds, 2)
        s = _params("sign", self.sign, 1)
        levels = n_levels(self.out_code, self.out_bits)
        if t.shape[1] != levels:
            raise ValueError(
                f"thresholds must have {levels} columns for {self.out_bits}-bit {self.out_code.value} output, "
                f"not {t.shape[1]}"
            )
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"sign has {s.shape[0]} channels but thresholds has {t.shape[0]}")
        if not np.all(np.abs(s) == 1):
            raise ValueError("sign must hold only +1 and -1")
        if t.size and np.any(np.diff(t, axis=1) < 0):
            raise ValueError("thresholds must ascend along each channel")
        object.__setattr__(self, "thresholds", t)
        object.__setattr__(self, "sign", s)
        if self.mul_shift is not None:
            if not isinstance(self.mul_shift, MulShift):
                raise TypeError(f"mul_shift must be a MulShift or None, not {self.mul_shift!r}")
            if self.out_code is ActCode.BIPOLAR:
                raise ValueError("bipolar outputs take no mul_shift")
            ms = self.mul_shift
            if (ms.out_code, ms.out_bits, ms.lo, ms.hi) != (self.out_code, self.out_bits, *self.value_range) \
                    or ms.channels != t.shape[0]:
                raise ValueError("mul_shift must have the same channels, encoding and value range as the thresholds")

    kind = "thresholds"

    @property
    def channels(self) -> int:
        return self.thresholds.shape[0]

    @property
    def value_range(self) -> tuple[int, int]:
        levels = self.thresholds.shape[1]
        return level_to_value(self.out_code, self.out_bits, 0), level_to_value(self.out_code, self.out_bits, levels)

    def apply(self, acc, channel_axis: int = 1) -> np.ndarray:
        """Output values (numpy reference via :func:`intmath.apply_thresholds`)."""
        n = intmath.apply_thresholds(acc, self.thresholds, self.sign, channel_axis)
        return level_to_value(self.out_code, self.out_bits, n)

    def check_range(self, acc_lo, acc_hi) -> None:
        """Raise ValueError unless the attached mul_shift equals the thresholds on the range."""
        if self.mul_shift is not None:
            self.mul_shift.check_range(acc_lo, acc_hi)
            bad = ~mul_shift_agrees(self, self.mul_shift, acc_lo, acc_hi)
            if np.any(bad):
                raise ValueError(
                    f"mul_shift differs from the thresholds on channel(s) {np.flatnonzero(bad)[:8].tolist()}"
                )


@dataclass(frozen=True, eq=False)
class MulShift:
    """Per-channel fixed-point requantizer ``clamp((acc·m + b + 2^(s-1)) >> s, lo, hi)``.

    Parameters
    ----------
    mult, bias : int array (C,)
    shift : int, >= 1
    lo, hi : int
        Clamp range of the output value.
    out_code, out_bits : ActCode, int
        Output encoding, ``unsigned`` or ``signed``; ``lo``/``hi`` must lie
        inside its value range.
    """

    mult: np.ndarray
    bias: np.ndarray
    shift: int
    lo: int
    hi: int
    out_code: ActCode = ActCode.SIGNED
    out_bits: int = 32

    kind = "mul_shift"

    def __post_init__(self):
        object.__setattr__(self, "out_code", ActCode(self.out_code))
        if self.out_code is ActCode.BIPOLAR:
            raise ValueError("out_code of a MulShift must be unsigned or signed; bipolar outputs use Thresholds")
        vlo, vhi = intmath.act_value_range(self.out_code, self.out_bits)
        m = _params("mult", self.mult, 1)
        b = _params("bias", self.bias, 1)
        if m.shape != b.shape:
            raise ValueError(f"mult has {m.shape[0]} channels but bias has {b.shape[0]}")
        shift = intmath.check_bits("shift", self.shift, 1, 62)
        for nm in ("lo", "hi"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{nm} must be an integer, not {v!r}")
        lo, hi = int(self.lo), int(self.hi)
        if not vlo <= lo <= hi <= vhi:
            raise ValueError(
                f"clamp range [{lo}, {hi}] must lie within [{vlo}, {vhi}] for "
                f"{self.out_bits}-bit {self.out_code.value} output"
            )
        object.__setattr__(self, "mult", m)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def channels(self) -> int:
        return self.mult.shape[0]

    @property
    def value_range(self) -> tuple[int, int]:
        return self.lo, self.hi

    def apply(self, acc, channel_axis: int = 1) -> np.ndarray:
        return intmath.requant_mul_shift(acc, self.mult, self.bias, self.shift, self.lo, self.hi, channel_axis)

    def check_range(self, acc_lo, acc_hi) -> None:
        """Raise ValueError if ``acc·m + b + 2^(s-1)`` could leave int64 on the range."""
        peak = _peak(self.mult, self.bias, self.shift, acc_lo, acc_hi)
        if peak >= INT64_SAFE:
            raise ValueError(f"acc·mult + bias reaches {peak}, beyond the int64-safe bound 2^62")


def _peak(mult, bias, shift, acc_lo, acc_hi) -> int:
    """max |acc·m + b| + 2^(s-1) over the channel ranges (exact where it matters)."""
    m = np.asarray(mult, dtype=np.float64)
    b = np.abs(np.asarray(bias, dtype=np.float64))
    lo = np.asarray(acc_lo, dtype=np.float64)
    hi = np.asarray(acc_hi, dtype=np.float64)
    est = float(np.max(np.maximum(np.abs(lo * m), np.abs(hi * m)) + b, initial=0.0)) + 2.0 ** (shift - 1)
    if est < 2.0 ** 60:  # float64 is far more precise than this margin: certainly safe
        return int(est)
    peak = 0
    for lo_, hi_, m_, b_ in zip(acc_lo, acc_hi, mult, bias):
        for a in (int(lo_), int(hi_)):
            peak = max(peak, abs(a * int(m_) + int(b_)) + (1 << (shift - 1)))
    return peak


# -- exact construction from a real-valued affine map ----------------------------------

def _decision_levels(out_code: ActCode, out_bits: int) -> list[Fraction]:
    """``u`` at which the output steps up: 0 (bipolar), lo + j - 1/2 (rounding half up)."""
    if out_code is ActCode.BIPOLAR:
        return [Fraction(0)]
    lo = level_offset(out_code, out_bits)
    return [lo + Fraction(2 * j - 1, 2) for j in range(1, n_levels(out_code, out_bits) + 1)]


def _as_fractions(name: str, values, channels: int | None = None) -> list[Fraction]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if channels is not None and arr.shape[0] != channels:
        raise ValueError(f"{name} must have {channels} channels, not {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return [Fraction(float(v)) for v in arr]


def affine_thresholds(a, b, out_code: ActCode | str, out_bits: int, acc_lo, acc_hi) -> Thresholds:
    """Exact thresholds of the requantizer of ``u_c = a_c·acc + b_c`` (see the module docstring).

    ``a`` and ``b`` (C,) are float64, i.e. exact dyadic rationals; the level
    steps up at ``u >= c_j`` with ``c_j = lo + j - 1/2`` (round half up, then
    clamp) or ``c_1 = 0`` (bipolar: sign, with sign(0) = +1). All arithmetic is
    on Python integers after scaling by the common power-of-two denominator,
    so there is no rounding anywhere. Thresholds are clamped with
    :func:`intmath.clamp_thresholds` to ``[acc_lo, acc_hi]`` (C,).
    """
    code = ActCode(out_code)
    levels = n_levels(code, out_bits)
    lo = np.asarray(acc_lo, dtype=np.int64).reshape(-1)
    hi = np.asarray(acc_hi, dtype=np.int64).reshape(-1)
    fa = _as_fractions("a", a, lo.shape[0])
    fb = _as_fractions("b", b, lo.shape[0])
    # 2·c_j = first2 + 2(j - 1): integers, so everything below is scaled by 2·D
    first2 = 0 if code is ActCode.BIPOLAR else 2 * level_offset(code, out_bits) + 1
    t = np.zeros((len(fa), levels), dtype=np.int64)
    sign = np.ones(len(fa), dtype=np.int64)
    twice_c = first2 + 2 * np.arange(levels, dtype=object)  # 2·c_j as Python integers
    for c, (ac, bc) in enumerate(zip(fa, fb)):
        d = max(ac.denominator, bc.denominator)  # powers of two: the larger is a common multiple
        an, bn = int(ac * d), int(bc * d)
        if an < 0:
            sign[c] = -1
        # a·acc + b >= c_j  <=>  sign·acc · 2|an| >= 2·c_j·d - 2·bn  (object arrays: exact big integers)
        rhs = twice_c * d - 2 * bn
        if an == 0:  # constant output: always met (lowest value) or never met (highest + 1)
            x = np.where(rhs <= 0, -INT64_SAFE + 1, INT64_SAFE - 1)
        else:
            x = -((-rhs) // (2 * abs(an)))
        t[c] = np.minimum(np.maximum(x, -INT64_SAFE + 1), INT64_SAFE - 1).astype(np.int64)
    t = intmath.clamp_thresholds(t, lo, hi, sign)
    return Thresholds(thresholds=t, sign=sign, out_code=code, out_bits=out_bits)


def reference_values(a, b, out_code: ActCode | str, out_bits: int, acc) -> np.ndarray:
    """The real-valued requantizer evaluated exactly (rationals): for tests and checks.

    ``acc`` is (C, M) integers; returns (C, M) output values.
    """
    code = ActCode(out_code)
    fa, fb = _as_fractions("a", a), _as_fractions("b", b)
    acc = np.asarray(acc, dtype=np.int64)
    out = np.zeros(acc.shape, dtype=np.int64)
    vlo, vhi = intmath.act_value_range(code, out_bits)
    for c in range(acc.shape[0]):
        for m in range(acc.shape[1]):
            u = fa[c] * int(acc[c, m]) + fb[c]
            if code is ActCode.BIPOLAR:
                out[c, m] = 1 if u >= 0 else -1
            else:
                out[c, m] = min(max(math.floor(u + Fraction(1, 2)), vlo), vhi)
    return out


def mul_shift_agrees(th: Thresholds, ms: MulShift, acc_lo, acc_hi) -> np.ndarray:
    """Per channel: does ``ms`` give the thresholds' value for every acc in range?

    Both are monotone in ``sign·acc`` (when ``sign·m >= 0``), so they agree on
    the whole range iff, for every threshold t_j inside it, ``ms`` gives a value
    below level j at ``t_j - 1`` and at least level j at ``t_j``.
    """
    t, s = th.thresholds, th.sign
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    if th.out_code is ActCode.BIPOLAR or _peak(ms.mult, ms.bias, ms.shift, lo, hi) >= INT64_SAFE:
        return np.zeros(t.shape[0], dtype=bool)
    xlo = np.where(s > 0, lo, -hi)[:, None]
    xhi = np.where(s > 0, hi, -lo)[:, None]
    # value of level j, j = 1..L
    vj = level_to_value(th.out_code, th.out_bits, np.arange(1, t.shape[1] + 1))[None, :]

    def value(x):  # x in the sign·acc domain, (C, L)
        acc = np.clip(x, xlo, xhi) * s[:, None]
        return intmath.requant_mul_shift(acc, ms.mult, ms.bias, ms.shift, ms.lo, ms.hi, channel_axis=0)

    ok_below = np.where(t > xlo, value(t - 1) < vj, True)
    ok_at = np.where(t <= xhi, value(t) >= vj, True)
    monotone = (s * ms.mult) >= 0
    return monotone & np.all(ok_below & ok_at, axis=1)


def find_mul_shift(a, b, th: Thresholds, acc_lo, acc_hi, max_shift: int = 48) -> MulShift | None:
    """Narrowest-shift :class:`MulShift` equal to ``th`` on ``[acc_lo, acc_hi]``, or None.

    For each shift ``s`` (one for the layer) the multiplier is ``m = round(a·2^s)``;
    the biases that make the two forms agree then form an integer interval per
    channel, computed exactly from the thresholds (in ``x = sign·acc``, with
    ``h = 2^(s-1)`` and level values ``v_j``)::

        floor((t_j·m' + bias + h) / 2^s) >= v_j      <=>  bias >= v_j·2^s - h - t_j·m'
        floor(((t_j - 1)·m' + bias + h) / 2^s) < v_j  <=>  bias <  v_j·2^s - h - (t_j - 1)·m'

    (clamping to [lo, hi] cannot change either side because lo < v_j <= hi).
    The bias nearest ``round(b·2^s)`` in the interval is taken; the result is
    re-verified with :func:`mul_shift_agrees`. None for bipolar outputs or when
    no shift up to ``max_shift`` keeps int64 arithmetic safe.
    """
    if th.out_code is ActCode.BIPOLAR:
        return None
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    fa = _as_fractions("a", a, lo.shape[0])
    fb = _as_fractions("b", b, lo.shape[0])
    vlo, vhi = th.value_range
    t, sg = th.thresholds, th.sign
    xlo = np.where(sg > 0, lo, -hi)[:, None]
    xhi = np.where(sg > 0, hi, -lo)[:, None]
    vj = np.asarray(level_to_value(th.out_code, th.out_bits, np.arange(1, t.shape[1] + 1)), dtype=np.int64)[None, :]
    inside_at = t <= xhi       # threshold reachable: acc = t_j must reach level j
    inside_below = t > xlo     # acc = t_j - 1 exists: must stay below level j
    # below this shift every |a|·2^s < 1/2, so m = 0 and only constant outputs could match
    amax = max((abs(x) for x in fa), default=Fraction(0))
    first = 1 if amax == 0 else max(1, math.floor(-math.log2(amax)) - 1)
    for shift in range(first, max_shift + 1):
        mult = [round(x * (1 << shift)) for x in fa]
        want = [round(x * (1 << shift)) for x in fb]
        # every bias we may pick lies within [v·2^s - h - t·m'] for in-range t: bound it first
        if _peak(mult, [abs(x) + ((abs(vlo) + abs(vhi) + 2) << shift) for x in want], shift, lo, hi) >= INT64_SAFE:
            return None
        m = np.array(mult, dtype=np.int64)
        mp = (sg * m)[:, None]  # m' = sign·m, must be >= 0 for a monotone match
        base = (vj << shift) - (1 << (shift - 1))
        low = np.where(inside_at, base - t * mp, np.iinfo(np.int64).min).max(axis=1)
        high = np.where(inside_below, base - (t - 1) * mp - 1, np.iinfo(np.int64).max).min(axis=1)
        wanted = np.array(want, dtype=np.int64)
        if np.all((mp[:, 0] >= 0) & (low <= high)):
            bias = np.clip(wanted, low, high)
            ms = MulShift(mult=m, bias=bias, shift=shift, lo=vlo, hi=vhi, out_code=th.out_code, out_bits=th.out_bits)
            if mul_shift_agrees(th, ms, lo, hi).all():
                return ms
    return None


def affine_requant(a, b, out_code: ActCode | str, out_bits: int, acc_lo, acc_hi,
                   with_mul_shift: bool = True) -> Thresholds:
    """Exact thresholds for ``u = a·acc + b``, plus the equivalent MulShift when one fits."""
    th = affine_thresholds(a, b, out_code, out_bits, acc_lo, acc_hi)
    if not with_mul_shift:
        return th
    ms = find_mul_shift(a, b, th, acc_lo, acc_hi)
    return Thresholds(thresholds=th.thresholds, sign=th.sign, out_code=th.out_code,
                      out_bits=th.out_bits, mul_shift=ms)


def logit_requant(a, b, acc_lo, acc_hi, frac_bits: int = 4, shift: int = 16) -> MulShift:
    """Integer logits ``y_c ≈ (a_c·acc + b_c) · 2^frac_bits / max|a|`` as a MulShift.

    All channels share one positive scale, so ``argmax y`` equals the argmax of
    the float logits ``a·acc + b`` up to the rounding of ``m`` and ``b`` (one part
    in 2^(shift + frac_bits) of the largest |a|) and of ``y`` (2^-frac_bits of an
    accumulator step of the widest channel). The clamp range is the exact
    output range, so it never clips.
    """
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    fa = _as_fractions("a", a, lo.shape[0])
    fb = _as_fractions("b", b, lo.shape[0])
    amax = max(abs(x) for x in fa)
    if amax == 0:
        raise ValueError("logit scale a is zero on every channel")
    k = Fraction(1 << (shift + frac_bits)) / amax
    mult = [round(x * k) for x in fa]
    bias = [round(x * k) for x in fb]
    if _peak(mult, bias, shift, lo, hi) >= INT64_SAFE:
        raise ValueError("integer logits would overflow int64; lower frac_bits or shift")
    mult_a, bias_a = np.array(mult, dtype=np.int64), np.array(bias, dtype=np.int64)
    vals = [(int(x) * m + b_ + (1 << (shift - 1))) >> shift
            for l_, h_, m, b_ in zip(lo, hi, mult, bias) for x in (l_, h_)]
    ylo, yhi = min(vals), max(vals)
    bits = intmath.signed_width(ylo, yhi)
    return MulShift(mult=mult_a, bias=bias_a, shift=shift, lo=ylo, hi=yhi, out_code=ActCode.SIGNED, out_bits=bits)

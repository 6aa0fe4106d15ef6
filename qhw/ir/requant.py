"""Requantization: how an integer accumulator becomes the next activation code.

Two interchangeable integer forms, both defined in :mod:`qhw.ir.intmath`:

:class:`Thresholds`  ``n = sum_j [sign_c · acc >= t_(c,j)]`` (FINN-style, exact)
:class:`MulShift`    ``n = clamp((acc·m_c + b_c + 2^(s-1)) >> s, lo, hi)``

``n`` is the output *level*: the raw code for ``unsigned`` and ``bipolar``
outputs (value ``n`` or ``2n - 1``), the value itself for ``signed`` outputs.

The exporter builds them from a real-valued affine map of the accumulator,
``u_c = a_c · acc + b_c``, expressed in units of the output step (BN folded in,
PACT clip ``alpha`` divided out, so an ``unsigned`` k-bit output is
``clamp(floor(u + 1/2), 0, 2^k - 1)`` and a ``bipolar`` one is ``[u >= 0]``).
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
INT64_SAFE = 1 << 62


def n_levels(out_code: ActCode | str, out_bits: int) -> int:
    """Number of thresholds of a requantizer: 2^k - 1 for unsigned, 1 for bipolar."""
    code = ActCode(out_code)
    intmath.act_value_range(code, out_bits)
    if code is ActCode.SIGNED:
        raise ValueError("thresholds cannot produce signed outputs; use MulShift")
    return 1 if code is ActCode.BIPOLAR else (1 << out_bits) - 1


def level_to_value(out_code: ActCode | str, level):
    """Requantizer level -> activation value (bipolar 2n - 1, else n)."""
    return 2 * level - 1 if ActCode(out_code) is ActCode.BIPOLAR else level


def _int_array(name: str, value, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        elif arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers, not {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, not shape {arr.shape}")
    if arr.size and (int(arr.max()) >= INT64_SAFE or int(arr.min()) <= -INT64_SAFE):
        raise ValueError(f"{name} has values beyond ±2^62")
    out = arr.astype(np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Per-channel multi-threshold requantizer.

    Parameters
    ----------
    thresholds : int array (C, L)
        Ascending along L; ``L`` is 2^k - 1 (unsigned k-bit) or 1 (bipolar).
    sign : int array (C,)
        +1 or -1: channel ``c`` compares ``sign_c · acc``.
    out_code, out_bits : ActCode, int
        Output encoding (``unsigned`` or ``bipolar``).
    mul_shift : MulShift or None
        An equivalent multiplier/shift form, verified by the owning layer over
        its exact accumulator range; ``None`` if none fits in int64.
    """

    thresholds: np.ndarray
    sign: np.ndarray
    out_code: ActCode
    out_bits: int
    mul_shift: "MulShift | None" = None

    def __post_init__(self):
        object.__setattr__(self, "out_code", ActCode(self.out_code))
        object.__setattr__(self, "out_bits", intmath.check_bits("out_bits", self.out_bits))
        t = _int_array("thresholds", self.thresholds, 2)
        s = _int_array("sign", self.sign, 1)
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
            if (self.mul_shift.lo, self.mul_shift.hi) != (0, levels) or self.mul_shift.channels != t.shape[0]:
                raise ValueError("mul_shift must cover the same channels and output levels [0, L] as the thresholds")

    kind = "thresholds"

    @property
    def channels(self) -> int:
        return self.thresholds.shape[0]

    @property
    def level_range(self) -> tuple[int, int]:
        return 0, self.thresholds.shape[1]

    def apply(self, acc, channel_axis: int = 1) -> np.ndarray:
        """Levels (numpy reference via :func:`intmath.apply_thresholds`)."""
        return intmath.apply_thresholds(acc, self.thresholds, self.sign, channel_axis)

    def check_range(self, acc_lo, acc_hi) -> None:
        """Raise ValueError unless the attached mul_shift equals the thresholds on the range."""
        if self.mul_shift is not None:
            bad = ~mul_shift_agrees(self.thresholds, self.sign, self.mul_shift, acc_lo, acc_hi)
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
        Clamp range of the output level.
    out_code, out_bits : ActCode, int
        Output encoding; ``lo``/``hi`` must lie inside its level range.
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
        vlo, vhi = intmath.act_value_range(self.out_code, self.out_bits)
        if self.out_code is not ActCode.SIGNED:
            vlo, vhi = 0, n_levels(self.out_code, self.out_bits)
        m = _int_array("mult", self.mult, 1)
        b = _int_array("bias", self.bias, 1)
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
    def level_range(self) -> tuple[int, int]:
        return self.lo, self.hi

    def apply(self, acc, channel_axis: int = 1) -> np.ndarray:
        return intmath.requant_mul_shift(acc, self.mult, self.bias, self.shift, self.lo, self.hi, channel_axis)

    def check_range(self, acc_lo, acc_hi) -> None:
        """Raise ValueError if ``acc·m + b + 2^(s-1)`` could leave int64 on the range."""
        peak = _peak(self.mult, self.bias, self.shift, acc_lo, acc_hi)
        if peak >= INT64_SAFE:
            raise ValueError(f"acc·mult + bias reaches {peak}, beyond the int64-safe bound 2^62")

    def raw_range(self, acc_lo, acc_hi) -> tuple[int, int]:
        """Exact smallest and largest unclamped output over the accumulator ranges."""
        vals = [
            (int(lo) * int(m) + int(b) + (1 << (self.shift - 1))) >> self.shift
            for lo_, hi_, m, b in zip(acc_lo, acc_hi, self.mult, self.bias)
            for lo in (lo_, hi_)
        ]
        return min(vals), max(vals)


def _peak(mult, bias, shift, acc_lo, acc_hi) -> int:
    peak = 0
    for lo, hi, m, b in zip(acc_lo, acc_hi, mult, bias):
        for a in (int(lo), int(hi)):
            peak = max(peak, abs(a * int(m) + int(b)) + (1 << (shift - 1)))
    return peak


# -- exact construction from a real-valued affine map ----------------------------------

def _decision_levels(out_code: ActCode, out_bits: int) -> list[Fraction]:
    """``u`` values at which the output level steps up: j - 1/2 (unsigned), 0 (bipolar)."""
    if out_code is ActCode.BIPOLAR:
        return [Fraction(0)]
    return [Fraction(2 * j - 1, 2) for j in range(1, n_levels(out_code, out_bits) + 1)]


def _as_fractions(name: str, values, channels: int | None = None) -> list[Fraction]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if channels is not None and arr.shape[0] != channels:
        raise ValueError(f"{name} must have {channels} channels, not {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return [Fraction(float(v)) for v in arr]


def affine_thresholds(a, b, out_code: ActCode | str, out_bits: int, acc_lo, acc_hi) -> Thresholds:
    """Exact thresholds of ``level(acc) = #{j : a_c·acc + b_c >= c_j}``.

    ``a`` and ``b`` (C,) are float64 (every float is an exact rational); the
    decision levels ``c_j`` are j - 1/2 for an unsigned output (round half up
    then clamp to [0, 2^k - 1]) and 0 for a bipolar one (sign, with sign(0) = +1).
    Thresholds are clamped with :func:`intmath.clamp_thresholds` to the
    accumulator range ``[acc_lo, acc_hi]`` (C,) so comparators stay narrow.
    """
    code = ActCode(out_code)
    levels = _decision_levels(code, out_bits)
    lo = np.asarray(acc_lo, dtype=np.int64).reshape(-1)
    hi = np.asarray(acc_hi, dtype=np.int64).reshape(-1)
    fa = _as_fractions("a", a, lo.shape[0])
    fb = _as_fractions("b", b, lo.shape[0])
    t = np.zeros((len(fa), len(levels)), dtype=np.int64)
    sign = np.ones(len(fa), dtype=np.int64)
    for c, (ac, bc) in enumerate(zip(fa, fb)):
        if ac < 0:
            sign[c] = -1
        for j, cj in enumerate(levels):
            if ac == 0:
                # constant output: always met (lowest value) or never met (highest + 1)
                t[c, j] = -INT64_SAFE + 1 if bc >= cj else INT64_SAFE - 1
            else:
                # a·acc + b >= cj  <=>  sign·acc >= (cj - b) / |a|
                x = math.ceil((cj - bc) / abs(ac))
                t[c, j] = min(max(x, -INT64_SAFE + 1), INT64_SAFE - 1)
    t = intmath.clamp_thresholds(t, lo, hi, sign)
    return Thresholds(thresholds=t, sign=sign, out_code=code, out_bits=out_bits)


def reference_levels(a, b, out_code: ActCode | str, out_bits: int, acc) -> np.ndarray:
    """The real-valued requantizer evaluated exactly (rationals), for tests and checks.

    ``acc`` is (C, M) integers; returns (C, M) levels.
    """
    code = ActCode(out_code)
    levels = _decision_levels(code, out_bits)
    fa, fb = _as_fractions("a", a), _as_fractions("b", b)
    acc = np.asarray(acc, dtype=np.int64)
    out = np.zeros(acc.shape, dtype=np.int64)
    for c in range(acc.shape[0]):
        for m in range(acc.shape[1]):
            u = fa[c] * int(acc[c, m]) + fb[c]
            out[c, m] = sum(1 for cj in levels if u >= cj)
    return out


def mul_shift_agrees(thresholds, sign, ms: MulShift, acc_lo, acc_hi) -> np.ndarray:
    """Per channel: does ``ms`` give the same level as the thresholds for every acc in range?

    Both are monotone in ``sign·acc`` (when ``sign·m >= 0``), so they agree on
    the whole range iff, for every threshold t_j inside it, ``ms`` gives a level
    below j at ``t_j - 1`` and at least j at ``t_j``.
    """
    t = np.asarray(thresholds, dtype=np.int64)
    s = np.asarray(sign, dtype=np.int64)
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    if _peak(ms.mult, ms.bias, ms.shift, lo, hi) >= INT64_SAFE:
        return np.zeros(t.shape[0], dtype=bool)
    xlo = np.where(s > 0, lo, -hi)[:, None]
    xhi = np.where(s > 0, hi, -lo)[:, None]
    j = np.arange(1, t.shape[1] + 1)[None, :]

    def level(x):  # x in sign·acc domain, (C, L)
        acc = np.clip(x, xlo, xhi) * s[:, None]
        return intmath.requant_mul_shift(acc, ms.mult, ms.bias, ms.shift, ms.lo, ms.hi, channel_axis=0)

    ok_below = np.where(t > xlo, level(t - 1) < j, True)
    ok_at = np.where(t <= xhi, level(t) >= j, True)
    monotone = (s * ms.mult) >= 0
    return monotone & np.all(ok_below & ok_at, axis=1)


def find_mul_shift(a, b, th: Thresholds, acc_lo, acc_hi, max_shift: int = 40) -> MulShift | None:
    """Narrowest-shift :class:`MulShift` equal to ``th`` on ``[acc_lo, acc_hi]``, or None.

    Candidates are ``m = round(a·2^s)`` and ``b' = round(b'·2^s) + {0, ±1}``
    with ``b' = b`` (unsigned) or ``b + 1/2`` (bipolar: ``[u >= 0]`` equals
    ``floor(u + 1/2 + 1/2)`` clamped to [0, 1]); one shift for the layer.
    """
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    fa = _as_fractions("a", a, lo.shape[0])
    fb = _as_fractions("b", b, lo.shape[0])
    if th.out_code is ActCode.BIPOLAR:
        fb = [x + Fraction(1, 2) for x in fb]
    levels = th.thresholds.shape[1]
    for shift in range(1, max_shift + 1):
        mult = np.array([round(x * (1 << shift)) for x in fa], dtype=object)
        base = np.array([round(x * (1 << shift)) for x in fb], dtype=object)
        if any(abs(int(m)) >= INT64_SAFE or abs(int(b_)) >= INT64_SAFE for m, b_ in zip(mult, base)):
            return None
        chosen = np.zeros(len(fa), dtype=np.int64)
        done = np.zeros(len(fa), dtype=bool)
        for delta in (0, -1, 1):
            bias = np.array([int(x) + delta for x in base], dtype=np.int64)
            ms = MulShift(mult=mult.astype(np.int64), bias=bias, shift=shift, lo=0, hi=levels,
                          out_code=th.out_code, out_bits=th.out_bits)
            ok = mul_shift_agrees(th.thresholds, th.sign, ms, lo, hi) & ~done
            chosen[ok] = bias[ok]
            done |= ok
            if done.all():
                return MulShift(mult=mult.astype(np.int64), bias=chosen, shift=shift, lo=0, hi=levels,
                                out_code=th.out_code, out_bits=th.out_bits)
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


def logit_requant(a, b, acc_lo, acc_hi, frac_bits: int = 8, shift: int = 16) -> MulShift:
    """Integer logits ``y_c ≈ (a_c·acc + b_c) · 2^frac_bits / max|a|`` as a MulShift.

    All channels share one positive scale, so ``argmax y`` equals the argmax of
    the float logits ``a·acc + b`` up to the rounding of ``m`` and ``b`` (one part
    in 2^(shift + frac_bits) of the largest |a|) and of ``y`` (2^-frac_bits of an
    accumulator step). The clamp range is the exact output range, so it never
    clips.
    """
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    fa = _as_fractions("a", a, lo.shape[0])
    fb = _as_fractions("b", b, lo.shape[0])
    amax = max(abs(x) for x in fa)
    if amax == 0:
        raise ValueError("logit scale a is zero on every channel")
    k = Fraction(1 << (shift + frac_bits)) / amax
    mult = np.array([round(x * k) for x in fa], dtype=np.int64)
    bias = np.array([round(x * k) for x in fb], dtype=np.int64)
    probe = MulShift(mult=mult, bias=bias, shift=shift, lo=-(1 << 61), hi=(1 << 61) - 1,
                     out_code=ActCode.SIGNED, out_bits=63)
    probe.check_range(lo, hi)
    ylo, yhi = probe.raw_range(lo, hi)
    bits = intmath.signed_width(ylo, yhi)
    return MulShift(mult=mult, bias=bias, shift=shift, lo=ylo, hi=yhi, out_code=ActCode.SIGNED, out_bits=bits)


def integer_coefficients(coeffs, frac_bits: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights for a sum of branches with real per-channel coefficients.

    ``coeffs`` is (N, C): branch i of channel c contributes ``coeffs[i, c] · v_i``.
    Returns ``(P, unit)``: integers ``P[i, c] = round(coeffs[i, c] · 2^frac_bits / n_c)``
    with ``n_c`` the smallest nonzero |coefficient| of the channel, and
    ``unit[c] = n_c / 2^frac_bits`` (float64, exact), so that
    ``sum_i coeffs[i, c]·v_i ≈ unit[c] · sum_i P[i, c]·v_i``. The smallest branch
    becomes an exact ±2^frac_bits (a shift), every coefficient keeps a relative
    precision of 2^-(frac_bits+1).
    """
    c = np.asarray(coeffs, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"coeffs must be (branches, channels), not shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("coeffs must be finite")
    mag = np.where(c == 0, np.inf, np.abs(c))
    n = mag.min(axis=0)
    n = np.where(np.isfinite(n), n, 1.0)
    scale = np.ldexp(1.0, frac_bits) / n
    p = np.rint(c * scale[None, :]).astype(np.int64)
    return p, n / np.ldexp(1.0, frac_bits)

"""Integer semantics shared by the golden model and the hardware.

This module is the single definition of how integer codes become values, how
wide an accumulator must be, and how an accumulator becomes the next layer's
activation code. The exporter, the golden model, the hardware generators and
the cocotb scoreboards all call these functions; none re-derives them.

Weight encodings (``raw`` is the unsigned bit pattern stored in a ROM):

``int``    two's complement, ``bits`` wide: value in [-2^(b-1), 2^(b-1)-1]
``odd``    DoReFa levels 2n - s, s = 2^b - 1, stored as c = n - 2^(b-1)
           (b-bit two's complement); value = 2c + 1, in [-s, s], odd only.
           The MAC PE computes (2c + 1)·a = ((c·a) << 1) + a.
``binary`` one bit: 1 -> +1, 0 -> -1
``pow2``   bit b-1 is the sign (1 = negative), bits b-2..0 an exponent code e;
           e = 0 is zero, otherwise magnitude 2^(e-1). b = 3..5 in the flow
           (2..8 accepted here), so |value| <= 2^(2^(b-1) - 2).

Activation encodings:

``unsigned`` k-bit code in [0, 2^k - 1] (PACT levels, image pixels)
``bipolar``  one bit: 1 -> +1, 0 -> -1 (sign activations)
``signed``   k-bit two's complement, k up to 63: raw accumulators, pooled
             sums and logits passed between layers without requantization

Requantization (BN + PACT + rounding folded into integers):

thresholds   code = sum_j [ sign_c · acc >= t_(c,j) ],  t ascending in j,
             sign_c in {+1, -1} per channel (FINN-style, exact)
mul_shift    code = clamp((acc · m_c + b_c + 2^(s-1)) >> s, lo, hi)
             (arithmetic shift = floor division; s >= 1)

PE kinds (:class:`PEKind`, :func:`pe_kind`: the IR layers' ``pe`` and the
hardware's ``PESpec.kind``):

``xnor``   binary weights × bipolar activations (XNOR popcount)
``and``    binary weights × unsigned or signed activations (AND popcount)
``shift``  pow2 weights (sign and shift, then add)
``mac``    int and odd weights (multiply-accumulate)
"""

from __future__ import annotations

import enum

import numpy as np

MAX_BITS = 16


class WeightCode(str, enum.Enum):
    INT = "int"
    ODD = "odd"
    BINARY = "binary"
    POW2 = "pow2"


class ActCode(str, enum.Enum):
    UNSIGNED = "unsigned"
    BIPOLAR = "bipolar"
    SIGNED = "signed"


#: widest ``signed`` tensor: int64 golden-model arithmetic keeps one bit spare
MAX_SIGNED_BITS = 63


class PEKind(str, enum.Enum):
    """Which processing element computes a dot product (:func:`pe_kind`).

    The one classification of the project: the IR layers' ``pe`` (and the
    ``pe`` field of the network file) and :attr:`qhw.hw.pe.spec.PESpec.kind`
    are both :func:`pe_kind`.
    """

    XNOR = "xnor"    # binary weights × bipolar inputs: 2·popcount(xnor(w, x)) − n
    AND = "and"      # binary weights × unsigned / signed inputs: 2·Σ(x where w = +1) − Σx
    SHIFT = "shift"  # pow2 weights: sign and shift, then add
    MAC = "mac"      # int / odd weights: multiply-accumulate


def pe_kind(weight_code: WeightCode | str, act_code: ActCode | str) -> PEKind:
    """The PE kind of ``weight_code`` weights on ``act_code`` activations.

    Binary weights give the popcount PEs (XNOR on bipolar inputs, AND on
    the others), pow2 weights the shift-add PE, int and odd weights the MAC.
    This classifies only: whether the hardware builds the pair (it needs
    binary weights for bipolar inputs) is :class:`qhw.hw.pe.spec.PESpec`'s check.
    """
    w, a = WeightCode(weight_code), ActCode(act_code)
    if w is WeightCode.BINARY:
        return PEKind.XNOR if a is ActCode.BIPOLAR else PEKind.AND
    if w is WeightCode.POW2:
        return PEKind.SHIFT
    return PEKind.MAC


# -- parameter checks (the IR's and the hardware's constructors share them) -------
# Each raises TypeError (wrong kind of value) or ValueError (out of range) with
# a message that names the parameter, as Amaranth's own library does.

def check_bits(name: str, bits: int, lo: int = 1, hi: int = MAX_BITS) -> int:
    """Validate a bit-width parameter; the message names the parameter."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {bits!r}")
    if not lo <= bits <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {bits}")
    return int(bits)


def check_positive(name: str, value, *, minimum: int = 1) -> int:
    """An integer (Python or numpy, not bool) of at least ``minimum``: shapes, lanes, folds, depths.

    ``minimum=0`` admits zero (paddings).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return int(value)


def check_int_array(name: str, value, ndim: int, *, allow_empty: bool = False,
                    limit_bits: int | None = None) -> np.ndarray:
    """An integer-valued array of exactly ``ndim`` dimensions, as a read-only int64 copy.

    Integral finite floats are accepted (JSON and numpy arithmetic produce
    them); booleans, strings and non-integral values are not.

    Parameters
    ----------
    allow_empty : bool
        Accept arrays with a zero-length axis (default: refused).
    limit_bits : int, optional
        Refuse values of magnitude ``2^limit_bits`` or more (the IR keeps
        requantizer parameters inside ±2^62 so int64 arithmetic on them
        cannot wrap).
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of integers, not {value!r}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise TypeError(f"{name} must be an array of integers ({exc})") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, not shape {arr.shape}")
    if not allow_empty and any(n < 1 for n in arr.shape):
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integers, not booleans")
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            arr = arr.astype(np.int64)  # np.asarray([]) is float64
        elif arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers, not {arr.dtype}")
    if limit_bits is not None and arr.size and (
            int(arr.max()) >= 1 << limit_bits or int(arr.min()) <= -(1 << limit_bits)):
        raise ValueError(f"{name} has values beyond ±2^{limit_bits}")
    out = arr.astype(np.int64)  # a copy: the caller's array stays its own
    out.setflags(write=False)
    return out


def _weight_bits_ok(code: WeightCode, bits: int) -> None:
    if code is WeightCode.BINARY and bits != 1:
        raise ValueError(f"binary weights are 1 bit wide, not {bits}")
    if code is WeightCode.POW2 and not 2 <= bits <= 8:
        raise ValueError(f"pow2 weight bits must be between 2 and 8, not {bits}")
    if code in (WeightCode.INT, WeightCode.ODD) and bits < 1:
        raise ValueError(f"{code.value} weight bits must be at least 1, not {bits}")


def weight_value_range(code: WeightCode | str, bits: int) -> tuple[int, int]:
    """Smallest and largest integer weight value the encoding can hold."""
    code = WeightCode(code)
    check_bits("weight_bits", bits)
    _weight_bits_ok(code, bits)
    if code is WeightCode.INT:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if code is WeightCode.ODD:
        s = (1 << bits) - 1
        return -s, s
    if code is WeightCode.BINARY:
        return -1, 1
    emax = (1 << (bits - 1)) - 1
    return -(1 << (emax - 1)), 1 << (emax - 1)


def decode_weights(code: WeightCode | str, bits: int, raw) -> np.ndarray:
    """Raw stored bit patterns (unsigned ints) -> integer weight values (int64)."""
    code = WeightCode(code)
    weight_value_range(code, bits)
    raw = np.asarray(raw, dtype=np.int64)
    if raw.size and (raw.min() < 0 or raw.max() >= (1 << bits)):
        raise ValueError(f"raw weight codes must fit in {bits} unsigned bits")
    if code is WeightCode.INT:
        return np.where(raw >= (1 << (bits - 1)), raw - (1 << bits), raw)
    if code is WeightCode.ODD:
        c = np.where(raw >= (1 << (bits - 1)), raw - (1 << bits), raw)
        return 2 * c + 1
    if code is WeightCode.BINARY:
        return 2 * raw - 1
    sign = raw >> (bits - 1)
    e = raw & ((1 << (bits - 1)) - 1)
    mag = np.where(e == 0, 0, np.left_shift(np.int64(1), np.maximum(e - 1, 0)))
    return np.where(sign == 1, -mag, mag)


def encode_weights(code: WeightCode | str, bits: int, values) -> np.ndarray:
    """Integer weight values -> raw bit patterns; rejects unrepresentable values."""
    code = WeightCode(code)
    lo, hi = weight_value_range(code, bits)
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(
            f"weights out of range for {bits}-bit {code.value}: "
            f"[{int(v.min())}, {int(v.max())}] not within [{lo}, {hi}]"
        )
    if code is WeightCode.INT:
        return v & ((1 << bits) - 1)
    if code is WeightCode.ODD:
        if np.any(v % 2 == 0):
            raise ValueError("odd-level weights must be odd integers")
        return ((v - 1) // 2) & ((1 << bits) - 1)
    if code is WeightCode.BINARY:
        if np.any(v == 0):
            raise ValueError("binary weights must be +1 or -1, not 0")
        return (v > 0).astype(np.int64)
    mag = np.abs(v)
    if np.any((mag & (mag - 1)) != 0):
        raise ValueError("pow2 weights must be 0 or a signed power of two")
    e = np.where(mag == 0, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int64) + 1)
    return (np.where(v < 0, 1, 0) << (bits - 1)) | e


def act_value_range(code: ActCode | str, bits: int) -> tuple[int, int]:
    code = ActCode(code)
    if code is ActCode.SIGNED:
        check_bits("act_bits", bits, 1, MAX_SIGNED_BITS)
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    check_bits("act_bits", bits)
    if code is ActCode.BIPOLAR:
        if bits != 1:
            raise ValueError(f"bipolar activations are 1 bit wide, not {bits}")
        return -1, 1
    return 0, (1 << bits) - 1


def act_extreme_codes(code: ActCode | str, bits: int) -> tuple[int, int]:
    """Raw codes of the smallest and largest activation value (signed: 100..0 and 011..1)."""
    lo, hi = encode_acts(code, bits, list(act_value_range(code, bits)))
    return int(lo), int(hi)


def decode_acts(code: ActCode | str, bits: int, raw) -> np.ndarray:
    code = ActCode(code)
    act_value_range(code, bits)
    raw = np.asarray(raw, dtype=np.int64)
    if code is ActCode.SIGNED:
        half = 1 << (bits - 1)  # subtract 2^bits as two halves: 2^63 does not fit int64
        return np.where(raw >= half, raw - half - half, raw)
    return 2 * raw - 1 if code is ActCode.BIPOLAR else raw


def encode_acts(code: ActCode | str, bits: int, values) -> np.ndarray:
    code = ActCode(code)
    lo, hi = act_value_range(code, bits)
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"activations out of range for {bits}-bit {code.value}")
    if code is ActCode.BIPOLAR:
        if np.any(v == 0):
            raise ValueError("bipolar activations must be +1 or -1")
        return (v > 0).astype(np.int64)
    if code is ActCode.SIGNED:
        return v & ((1 << bits) - 1)
    return v


# -- accumulator bounds -------------------------------------------------------

def accumulator_bounds(weights, act_lo: int, act_hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-output-channel accumulator range of ``sum_i w_i · a_i``.

    ``weights`` is integer-valued with the output channel first (any trailing
    shape is flattened); every ``a_i`` ranges independently over
    [act_lo, act_hi]. The bound is attained: each term picks its own extreme.
    """
    w = np.asarray(weights, dtype=np.int64).reshape(np.shape(weights)[0], -1)
    # Bound the worst case with Python integers first: int64 must hold every sum.
    worst = (int(np.abs(w).max(initial=0)) * max(abs(int(act_lo)), abs(int(act_hi))) * max(w.shape[1], 1))
    if worst >= 1 << 62:
        raise ValueError(f"accumulator bounds overflow 62 bits (|w|·|a|·terms up to {worst}): "
                         "weights or activations too wide")
    t_lo, t_hi = w * act_lo, w * act_hi
    return np.minimum(t_lo, t_hi).sum(axis=1), np.maximum(t_lo, t_hi).sum(axis=1)


def signed_width(lo: int, hi: int) -> int:
    """Fewest two's complement bits holding every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def unsigned_width(hi: int) -> int:
    """Fewest unsigned bits holding every integer in [0, hi]."""
    return max(1, int(hi).bit_length())


# -- dot products as the PEs compute them --------------------------------------

def popcount(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    return np.bitwise_count(x).astype(np.int64)


def xnor_dot(act_word, weight_word, n: int) -> np.ndarray:
    """±1 dot product of packed n-bit words (lane i at bit i): 2·popcount(xnor(a, w)) - n."""
    mask = np.uint64((1 << n) - 1)
    a = np.asarray(act_word, dtype=np.uint64)
    w = np.asarray(weight_word, dtype=np.uint64)
    return 2 * popcount(~(a ^ w) & mask) - n


def and_dot(act_word, weight_word, n: int) -> np.ndarray:
    """{0,1}·(±1) dot product of packed n-bit words: 2·popcount(a & w) - popcount(a)."""
    mask = np.uint64((1 << n) - 1)
    a = np.asarray(act_word, dtype=np.uint64) & mask
    w = np.asarray(weight_word, dtype=np.uint64)
    return 2 * popcount(a & w) - popcount(a)


# -- requantization -------------------------------------------------------------

def apply_thresholds(acc, thresholds, sign=None, channel_axis: int = 1) -> np.ndarray:
    """Multi-threshold requantization, the exact replacement of BN + PACT.

    ``acc`` has channels on ``channel_axis``; ``thresholds`` is (C, L) ascending
    along L; ``sign`` is (C,) of ±1 (default all +1). Output codes in [0, L].
    """
    acc = np.asarray(acc, dtype=np.int64)
    t = np.asarray(thresholds, dtype=np.int64)
    c = t.shape[0]
    s = np.ones(c, dtype=np.int64) if sign is None else np.asarray(sign, dtype=np.int64)
    a = np.moveaxis(acc, channel_axis, -1)[..., None]
    signed = a * s[:, None]  # (..., C, 1): thresholds compare sign·acc
    codes = (signed >= t).sum(axis=-1)
    return np.moveaxis(codes, -1, channel_axis)


def requant_mul_shift(acc, mult, bias, shift: int, lo: int, hi: int, channel_axis: int = 1) -> np.ndarray:
    """Fixed-point requantization: clamp((acc·m + b + 2^(s-1)) >> s, lo, hi)."""
    if shift < 1:
        raise ValueError(f"shift must be at least 1, not {shift}")
    acc = np.asarray(acc, dtype=np.int64)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m = np.asarray(mult, dtype=np.int64).reshape(shape)
    b = np.asarray(bias, dtype=np.int64).reshape(shape)
    worst = (int(np.abs(acc).max(initial=0)) * int(np.abs(m).max(initial=0)) + int(np.abs(b).max(initial=0))
             + (1 << (shift - 1)))
    if worst >= 1 << 63:  # int64 would wrap silently
        raise ValueError(f"acc·mult + bias reaches {worst}, beyond int64")
    y = (acc * m + b + (1 << (shift - 1))) >> shift
    return np.clip(y, lo, hi)


def clamp_thresholds(thresholds, acc_lo, acc_hi, sign=None) -> np.ndarray:
    """Clip thresholds into the range ``sign·acc`` can take, plus one, per channel.

    Outside [min(sign·acc), max(sign·acc) + 1] a threshold is always or never
    met, so clipping changes no output and keeps the comparator no wider than
    the accumulator (plus one bit).
    """
    t = np.asarray(thresholds, dtype=np.int64)
    lo = np.asarray(acc_lo, dtype=np.int64)
    hi = np.asarray(acc_hi, dtype=np.int64)
    s = np.ones_like(lo) if sign is None else np.asarray(sign, dtype=np.int64)
    slo = np.where(s > 0, lo, -hi)[:, None]
    shi = np.where(s > 0, hi, -lo)[:, None]
    return np.clip(t, slo, shi + 1)

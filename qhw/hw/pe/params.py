"""Constructor parameter checks shared by the PEs, the array and the requantizer.

Each check raises TypeError (wrong kind of value) or ValueError (out of range)
with a message that names the parameter, as Amaranth's own library does.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape, signed, unsigned

from qhw.ir.intmath import signed_width, unsigned_width


def check_positive(name: str, value) -> int:
    """An integer >= 1 (lanes, rows, cols, fold, depths)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return int(value)


def check_int_array(name: str, value, ndim: int) -> np.ndarray:
    """An integer-valued numpy array of exactly ``ndim`` dimensions, none empty."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of integers, not {value!r}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of integers ({exc})") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), not shape {arr.shape}")
    if any(n < 1 for n in arr.shape):
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype == object or arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers, not {arr.dtype}")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integers, not booleans")
    return arr.astype(np.int64)


def shape_for(lo: int, hi: int) -> Shape:
    """Narrowest shape holding every integer in [lo, hi] (unsigned if lo >= 0)."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return unsigned(unsigned_width(hi))
    return signed(signed_width(lo, hi))

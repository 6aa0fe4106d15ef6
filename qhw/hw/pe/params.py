"""Constructor parameter checks of the PEs, the array and the requantizer.

:func:`check_positive` and :func:`check_int_array` are defined once, in
:mod:`qhw.ir.intmath` (the IR's constructors use them too), and re-exported
here for the hardware modules; :func:`shape_for` is the hardware's own.
Each check raises TypeError (wrong kind of value) or ValueError (out of
range) with a message that names the parameter, as Amaranth's own library does.
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned

from qhw.ir.intmath import check_int_array, check_positive, signed_width, unsigned_width

__all__ = ["check_int_array", "check_positive", "shape_for"]


def shape_for(lo: int, hi: int) -> Shape:
    """Narrowest shape holding every integer in [lo, hi] (unsigned if lo >= 0)."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return unsigned(unsigned_width(hi))
    return signed(signed_width(lo, hi))

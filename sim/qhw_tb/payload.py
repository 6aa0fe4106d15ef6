"""Packing Python integers into payload bits and back.

qhw's stream payloads are flat bit vectors: lanes side by side with lane 0
in the least significant bits (:func:`pack_lanes`), fields one after another
from the least significant bit (:func:`pack_fields`). That is also how
Amaranth lays out ``data.ArrayLayout`` elements and ``data.StructLayout``
fields, so the helpers serve the tests that build view payloads on purpose.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def mask(width: int) -> int:
    return (1 << width) - 1


def to_signed(value: int, width: int) -> int:
    """Two's complement reading of the low ``width`` bits of ``value``."""
    value &= mask(width)
    return value - (1 << width) if width and value >> (width - 1) else value


def pack_lanes(values: Iterable[int], width: int) -> int:
    """Lane k of ``values`` at bits [k·width, (k+1)·width); negatives wrap."""
    out = 0
    for k, v in enumerate(values):
        out |= (int(v) & mask(width)) << (k * width)
    return out


def unpack_lanes(bits: int, width: int, count: int, *, signed: bool = False) -> list[int]:
    """Inverse of :func:`pack_lanes`."""
    lanes = [(int(bits) >> (k * width)) & mask(width) for k in range(count)]
    return [to_signed(v, width) for v in lanes] if signed else lanes


def pack_fields(fields: Sequence[tuple[int, int]]) -> int:
    """Flat payload from ``(value, width)`` pairs, first field in the LSBs."""
    out, pos = 0, 0
    for value, width in fields:
        out |= (int(value) & mask(width)) << pos
        pos += width
    return out


def unpack_fields(bits: int, widths: Sequence[int], signed: Sequence[bool] | None = None) -> list[int]:
    """Inverse of :func:`pack_fields`."""
    out, pos = [], 0
    for k, width in enumerate(widths):
        v = (int(bits) >> pos) & mask(width)
        out.append(to_signed(v, width) if signed and signed[k] else v)
        pos += width
    return out

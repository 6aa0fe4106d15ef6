"""Multiply-accumulate PE for integer layers."""

from __future__ import annotations

from .spec import PESpec
from .stream_pe import StreamPE


class MacPE(StreamPE):
    """Signed weights times unsigned (or signed) activations, one product per lane.

    ``w_code="int"``: two's complement weights, product ``w·a``.
    ``w_code="odd"``: DoReFa odd levels stored as ``c`` (value ``2c + 1``);
    the lanes compute ``c·a`` and the PE adds ``2·sum(c·a) + sum(a)`` once,
    i.e. ``(c·a << 1) + a`` per lane without a per-lane adder.

    Parameters
    ----------
    lanes : int
        Weight/activation pairs per transfer, at least 1.
    fold : int
        Transfers per dot product, at least 1.
    w_bits : int
        Weight code width 1..16.
    a_bits : int
        Activation width 1..16.
    a_code : {"unsigned", "signed"}
        Activation encoding (intmath); signed codes are two's complement.
    w_code : {"int", "odd"}
        Weight encoding.

    Ports, payload layout and latency are those of :class:`StreamPE`.
    """

    def __init__(self, *, lanes: int, fold: int, w_bits: int, a_bits: int, w_code: str = "int",
                 a_code: str = "unsigned"):
        if w_code not in ("int", "odd"):
            raise ValueError(f"w_code must be 'int' or 'odd', not {w_code!r}")
        spec = PESpec(w_code=w_code, w_bits=w_bits, a_code=a_code, a_bits=a_bits, lanes=lanes)
        super().__init__(spec=spec, fold=fold)

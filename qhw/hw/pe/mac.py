"""Multiply-accumulate PE for integer layers."""

from __future__ import annotations

from .spec import PESpec
from .stream_pe import StreamPE


class MacPE(StreamPE):
    """Signed weights times unsigned (or signed) activations, one product per lane.

    ``weight_code="int"``: two's complement weights, product ``w·a``.
    ``weight_code="odd"``: DoReFa odd levels stored as ``c`` (value ``2c + 1``);
    the lanes compute ``c·a`` and the PE adds ``2·sum(c·a) + sum(a)`` once,
    i.e. ``(c·a << 1) + a`` per lane without a per-lane adder.

    Parameters
    ----------
    lanes : int
        Weight/activation pairs per transfer, at least 1.
    fold : int
        Transfers per dot product, at least 1.
    weight_bits : int
        Weight code width 1..16.
    act_bits : int
        Activation width 1..16.
    act_code : {"unsigned", "signed"}
        Activation encoding (intmath); signed codes are two's complement.
    weight_code : {"int", "odd"}
        Weight encoding.

    Ports, payload layout and latency are those of :class:`StreamPE`.
    """

    def __init__(self, *, lanes: int, fold: int, weight_bits: int, act_bits: int, weight_code: str = "int",
                 act_code: str = "unsigned"):
        if weight_code not in ("int", "odd"):
            raise ValueError(f"weight_code must be 'int' or 'odd', not {weight_code!r}")
        spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code=act_code, act_bits=act_bits,
                      lanes=lanes)
        super().__init__(spec=spec, fold=fold)

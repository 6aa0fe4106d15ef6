"""Shift-add PE for power-of-two weights: no multiplier in the netlist."""

from __future__ import annotations

from .spec import PESpec
from .stream_pe import StreamPE


class ShiftAddPE(StreamPE):
    """Power-of-two weights times unsigned (or signed) activations by shifts and adds.

    Each lane selects ``a << (e − 1)`` with a mux tree on the exponent code
    ``e`` (0 gives 0) and conditionally complements it by the sign bit; the
    complement's missing +1 per negative weight is added once per dot product.

    Parameters
    ----------
    lanes : int
        Weight/activation pairs per transfer, at least 1.
    fold : int
        Transfers per dot product, at least 1.
    weight_bits : int
        pow2 code width 2..6 (sign bit, then ``weight_bits − 1`` exponent bits); 7 and 8
        would shift past 48-bit products and are refused.
    act_bits : int
        Activation width 1..16.
    act_code : {"unsigned", "signed"}
        Activation encoding (intmath); signed codes are two's complement.

    Ports, payload layout and latency are those of :class:`StreamPE`.
    """

    def __init__(self, *, lanes: int, fold: int, weight_bits: int, act_bits: int, act_code: str = "unsigned"):
        spec = PESpec(weight_code="pow2", weight_bits=weight_bits, act_code=act_code, act_bits=act_bits, lanes=lanes)
        super().__init__(spec=spec, fold=fold)

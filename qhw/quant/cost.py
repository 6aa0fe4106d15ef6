"""Hardware cost figures of a quantized network.

BitOPs follow AdaQAT §III-B / FracBits: for every conv and fc layer,
``w_bits * a_bits * |f| * out_h * out_w`` where ``|f|`` is the number of
weights and ``a_bits`` the width of the layer's *input* activation; float
layers count as 32 bits. 1x1 projection shortcuts are layers too; BatchNorm,
residual adds and pooling are not counted. For ResNet-20 at 32/32 this gives
41.79 Gb, and W3A4 / W3A8 bodies with 8-bit first and last layers give the
0.51 / 0.99 Gb of AdaQAT Table I.

Weight memory is ``sum(weight count * w_bits)`` over conv and fc weights
(scales, BN and biases are not counted); the weight compression rate (WCR) is
32-bit memory over that.
"""

from __future__ import annotations

from typing import Mapping

from qhw.quant.config import LayerQuant


def layer_bitops(quant: Mapping[str, LayerQuant], macs: Mapping[str, int]) -> dict[str, int]:
    return {n: int(quant[n].w_bits) * int(quant[n].a_bits) * int(macs[n]) for n in macs}


def total_bitops(quant: Mapping[str, LayerQuant], macs: Mapping[str, int]) -> int:
    return sum(layer_bitops(quant, macs).values())


def weight_memory_bits(quant: Mapping[str, LayerQuant], weight_counts: Mapping[str, int]) -> int:
    return sum(int(quant[n].w_bits) * int(c) for n, c in weight_counts.items())


def compression_rate(quant: Mapping[str, LayerQuant], weight_counts: Mapping[str, int]) -> float:
    return 32 * sum(weight_counts.values()) / weight_memory_bits(quant, weight_counts)


def cost_report(model) -> dict:
    """Per-layer bits, MACs, BitOPs and memory plus totals for a QResNet."""
    quant = model.quant_config()
    macs = model.layer_macs()
    counts = {n: model.layer_geometry(n).weight_count for n in macs}
    bitops = layer_bitops(quant, macs)
    rows = [
        {
            "layer": n,
            "w_kind": quant[n].w_kind,
            "w_bits": quant[n].w_bits,
            "a_kind": quant[n].a_kind,
            "a_bits": quant[n].a_bits,
            "macs": macs[n],
            "weights": counts[n],
            "bitops": bitops[n],
            "weight_bits": counts[n] * quant[n].w_bits,
        }
        for n in macs
    ]
    total_w = sum(counts.values())
    mem = weight_memory_bits(quant, counts)
    return {
        "layers": rows,
        "macs": sum(macs.values()),
        "bitops": sum(bitops.values()),
        "bitops_gb": sum(bitops.values()) / 1e9,
        "weight_count": total_w,
        "weight_memory_bits": mem,
        "wcr": 32 * total_w / mem,
        "avg_w_bits": mem / total_w,
        "avg_a_bits_by_macs": sum(macs[n] * quant[n].a_bits for n in macs) / sum(macs.values()),
    }

"""Golden integer model vs fake-quant float model, side by side.

:func:`compare` runs both on the same images and reports top-1 accuracy of
each, the share of images with the same top-1 class, and per layer the share
of output values that are equal (the fake-quant tensors are turned into
integers with the quantizers' own ``integer_values``; see
:func:`qhw.ir.export.probe_points`).

Datasets hold 8-bit pixel codes ``d`` and the float model reads ``d / 255``
(:mod:`qhw.quant.data`); the golden model reads the network's input codes,
which :func:`input_codes` derives from the network's input spec (bits and
scale), so a network with a k-bit input is checked on the codes its
``InputQuant`` produces, not on the raw 8-bit pixels.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from qhw.errors import InputError
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Input, Network
from qhw.ir.intmath import ActCode

#: dataset pixels are unsigned codes 0..PIXEL_MAX; the float image is code / PIXEL_MAX (qhw.quant.data)
PIXEL_MAX = 255


def input_code_table(inp: Input) -> np.ndarray:
    """int64 ``(PIXEL_MAX + 1,)``: the network input code of each dataset pixel code ``d``.

    The input's real value is ``code · scale`` (``scale`` default
    ``1/(2^k − 1)``), so the code of the pixel ``p = d / 255`` is
    ``clamp(floor(p / scale + 1/2), 0, 2^k − 1)``, evaluated exactly on the
    float ``scale`` (rational arithmetic). With the fake-quant ``InputQuant``
    (``scale = float32(1/(2^k − 1))``) this is ``floor((2^k − 1)·d/255 + 1/2)``,
    and for k = 8 the pixel code itself.
    """
    if not isinstance(inp, Input):
        raise TypeError(f"inp must be the network's Input layer, not {inp!r}")
    if inp.code is not ActCode.UNSIGNED:
        raise InputError(f"network input {inp.name!r} is {inp.code.value}; image pixels map only to unsigned codes")
    top = (1 << inp.bits) - 1
    step = Fraction(1, top) if inp.scale is None else Fraction(inp.scale)
    half = Fraction(1, 2)
    table = [min(max(math.floor(Fraction(d, PIXEL_MAX) / step + half), 0), top) for d in range(PIXEL_MAX + 1)]
    return np.array(table, dtype=np.int64)


def input_codes(inp: Input, pixels) -> np.ndarray:
    """Dataset pixel codes (any shape, 0..255) -> the network's int64 input codes (:func:`input_code_table`)."""
    px = np.asarray(pixels)
    if px.dtype.kind not in "iu":
        raise InputError(f"pixel codes must be integers, not {px.dtype}")
    if px.size and (int(px.min()) < 0 or int(px.max()) > PIXEL_MAX):
        raise InputError(f"pixel codes must lie in [0, {PIXEL_MAX}], not [{int(px.min())}, {int(px.max())}]")
    return input_code_table(inp)[px.astype(np.int64)]


def compare(net: Network, model, codes: np.ndarray, labels: np.ndarray, *, batch_size: int = 128,
            fake_dtype: str = "float32", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run both models on dataset pixel ``codes`` (uint8 (N, C, H, W)); return the report dict.

    The float model reads ``codes / 255``; the golden model reads
    :func:`input_codes` of them (the network's own input codes).
    ``input_code_mismatches`` counts input codes where the model's
    ``input_quant`` disagrees with that mapping (0 when they agree).

    ``fake_dtype="float64"`` runs a float64 copy of the fake-quant model: what
    remains of the disagreement is then not float32 rounding (diagnostic).
    """
    import copy

    import torch

    from qhw.ir.export import probe_points

    dtype = {"float32": torch.float32, "float64": torch.float64}.get(fake_dtype)
    if dtype is None:
        raise ValueError(f"fake_dtype must be float32 or float64, not {fake_dtype!r}")
    golden = GoldenModel(net)
    input_code_table(net.input)  # a network input that pixels cannot feed fails before any work
    if dtype is torch.float64:
        model = copy.deepcopy(model).to(dtype)
    model.eval()
    points = {n: p for n, p in probe_points(model).items() if n in net}
    seen: dict[str, Any] = {}
    hooks = []
    for name, (module, where, to_int) in points.items():
        def hook(mod, args, out, name=name, where=where, to_int=to_int):
            seen[name] = to_int(args[0] if where == "input" else out)
        hooks.append(module.register_forward_hook(hook))
    equal = {n: 0 for n in points}
    total = {n: 0 for n in points}
    n_img = len(labels)
    g_pred = np.zeros(n_img, dtype=np.int64)
    f_pred = np.zeros(n_img, dtype=np.int64)
    input_mismatch = 0
    try:
        with torch.no_grad():
            for i in range(0, n_img, batch_size):
                px = np.asarray(codes[i: i + batch_size])
                c = torch.from_numpy(input_codes(net.input, px))
                x = torch.from_numpy(px.astype(np.int64)).to(dtype) / float(PIXEL_MAX)
                input_mismatch += int((model.input_quant.integer_values(x) != c).sum())
                seen.clear()
                logits = model(x)
                out = golden.run(c)
                f_pred[i: i + len(c)] = logits.argmax(1).numpy()
                g_pred[i: i + len(c)] = out[net.output].reshape(len(c), -1).argmax(1).numpy()
                for name in points:
                    equal[name] += int((seen[name] == out[name]).sum())
                    total[name] += seen[name].numel()
                if progress:
                    progress(f"checked {min(i + batch_size, n_img)}/{n_img} images")
    finally:
        for h in hooks:
            h.remove()
    labels = np.asarray(labels)
    layers = [
        {"layer": n, "kind": net[n].kind, "values": total[n], "equal": equal[n],
         "agreement": equal[n] / total[n] if total[n] else 1.0}
        for n in points
    ]
    return {
        "images": n_img,
        "golden_top1": float((g_pred == labels).mean() * 100),
        "fake_quant_top1": float((f_pred == labels).mean() * 100),
        "same_top1": float((g_pred == f_pred).mean() * 100),
        "same_top1_count": int((g_pred == f_pred).sum()),
        "input_code_mismatches": input_mismatch,
        "input_bits": net.input.bits,
        "fake_dtype": fake_dtype,
        "layers": layers,
    }

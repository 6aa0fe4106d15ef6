"""Golden integer model vs fake-quant float model, side by side.

:func:`compare` runs both on the same images and reports top-1 accuracy of
each, the share of images with the same top-1 class, and per layer the share
of output values that are equal (the fake-quant tensors are turned into
integers with the quantizers' own ``integer_values``; see
:func:`qhw.ir.export.probe_points`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Network


def compare(net: Network, model, codes: np.ndarray, labels: np.ndarray, *, batch_size: int = 128,
            fake_dtype: str = "float32", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run both models on uint8 image ``codes`` (N, C, H, W); return the report dict.

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
                c = torch.from_numpy(np.asarray(codes[i: i + batch_size]).astype(np.int64))
                x = c.to(dtype) / 255.0
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
        "fake_dtype": fake_dtype,
        "layers": layers,
    }

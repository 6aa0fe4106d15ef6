"""Imported network vs its QONNX source: every shared quantized tensor, as integers, and top-1.

:func:`compare` feeds the same images to both:

* the QONNX graph, run by qonnx's own executor
  (``qonnx.core.onnx_exec.execute_onnx``, node by node, float32), reads the
  float image ``d / 255`` of the dataset's pixel codes ``d``;
* the golden model (:class:`qhw.ir.golden.GoldenModel`) reads the network's
  input codes of those pixels (:func:`qhw.ir.check.input_codes`: the
  project's one pixel -> code rule, from the input's bits and scale).

For every tensor the two share (``meta["qonnx"]["shared"]``: the input
quantizer, each activation quantizer, max pools of quantized tensors, raw
sums passed on without a quantizer) the ONNX values divided by their scale
must be integers equal to the golden layer's; a value that is not within
1e-3 of an integer counts as a mismatch. The ONNX output (the float logits)
and the golden logits must give the same top-1 class (first index on ties,
both sides).

The report is ``qhw check``'s shape: per tensor ``values``, ``equal``,
``mismatches``, ``agreement``; totals, ``same_top1`` %, and the input code
mismatches (codes where the QONNX input quantizer and the network's input
rule differ: only at exact ties, half to even vs half up).

Where the two can differ. The network's requantizers are exact for the real
(rational) values of the graph's parameters; qonnx computes in float32. A
quantizer input within float32 rounding of a level boundary (about 1e-7
relative), which in practice means an exact tie of the real value computed
inexactly (scales like 1/255 whose products happen to land on a
half-integer), is decided by float32 rounding in qonnx and by the exact
value here; ``at_edge`` counts the mismatches whose float32 quantizer input
lies within ``EDGE_TOLERANCE`` (relative) of a level edge and whose two
values are neighbouring levels, so such a mismatch is told apart from a
wrong threshold (which misses by whole accumulator steps). Likewise integer logits that tie exactly give the first class
here while qonnx's float sums pick one by rounding error:
``top1_tied_elsewhere`` counts those images (they are not counted as
agreeing).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Callable

import numpy as np

from qhw.errors import InputError
from qhw.ir.check import PIXEL_MAX, input_codes
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Network

#: how far ONNX / scale may lie from an integer before the value counts as not on the grid
GRID_TOLERANCE = 1e-3
#: a mismatching value whose float32 quantizer input lies this close (relative) to a level edge is
#: "at an edge": float32 rounding decided it in qonnx (the float32 sums err by ~1e-7 per term)
EDGE_TOLERANCE = 1e-5


def edge_distance(w: np.ndarray, edges: str) -> np.ndarray:
    """Distance of ``w`` (quantizer input / scale) to the nearest place its rounding changes level."""
    if edges == "half":
        return np.abs(w - np.floor(w) - 0.5)
    if edges == "integer":
        return np.abs(w - np.round(w))
    return np.abs(w)  # the sign's only edge


def _batched(model, batch: int):
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    m = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = m.transform(ChangeBatchSize(batch)).transform(InferShapes())
    return m


def run_onnx(model, input_tensor: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of one qonnx execution of ``model`` (batch size already ``len(x)``)."""
    from qonnx.core.onnx_exec import execute_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qonnx warns per node about shapes it re-checks
        return execute_onnx(model, {input_tensor: x}, return_full_exec_context=True)


def compare(net: Network, model, pixels, labels=None, *, batch_size: int = 128,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the QONNX ``model`` (path or cleaned ModelWrapper) and ``net`` on ``pixels``; the report dict.

    ``pixels`` are dataset pixel codes, uint8 ``(N, C, H, W)``; ``labels``
    (optional) adds both sides' top-1 accuracy.
    """
    from .load import load_model

    info = net.meta.get("qonnx")
    if not isinstance(info, dict) or "shared" not in info:
        raise InputError("the network does not come from 'qhw import' (no meta.qonnx): nothing to compare with")
    if not hasattr(model, "graph"):
        model = load_model(model)
    px = np.asarray(pixels)
    if px.ndim != 4 or tuple(px.shape[1:]) != net.input.shape:
        raise InputError(f"images of shape {list(px.shape[1:])} do not fit the network input {list(net.input.shape)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    golden = GoldenModel(net)
    shared = [s for s in info["shared"] if s["layer"] in net]
    n_img = len(px)
    bs = min(batch_size, n_img)
    m = _batched(model, bs)
    equal = {s["tensor"]: 0 for s in shared}
    at_edge = {s["tensor"]: 0 for s in shared}
    total = {s["tensor"]: 0 for s in shared}
    g_pred = np.zeros(n_img, dtype=np.int64)
    o_pred = np.zeros(n_img, dtype=np.int64)
    tied = np.zeros(n_img, dtype=bool)
    for i in range(0, n_img, bs):
        chunk = px[i: i + bs]
        k = len(chunk)
        if k < bs:  # the batch size is baked into the graph: pad, then drop the padding
            chunk = np.concatenate([chunk, np.zeros((bs - k, *chunk.shape[1:]), dtype=chunk.dtype)])
        x = chunk.astype(np.float32) / np.float32(PIXEL_MAX)
        ctx = run_onnx(m, info["input"], x)
        gold = golden.run(input_codes(net.input, chunk))
        for s in shared:
            g = gold[s["layer"]].numpy()[:k]
            o = np.asarray(ctx[s["tensor"]], dtype=np.float64)[:k]
            if o.size != g.size:
                raise InputError(f"tensor {s['tensor']!r} has {o.size // k} values per image, "
                                 f"layer {s['layer']!r} {g.size // k}")
            scale = np.asarray(s["scale"], dtype=np.float64).reshape((1, -1) + (1,) * (g.ndim - 2))
            v = o.reshape(g.shape) / scale
            r = np.round(v)
            ok = (np.abs(v - r) <= GRID_TOLERANCE) & (r == g)
            equal[s["tensor"]] += int(ok.sum())
            total[s["tensor"]] += int(ok.size)
            if s.get("pre") and not ok.all():
                w = np.asarray(ctx[s["pre"]], dtype=np.float64)[:k].reshape(g.shape) / scale
                near = edge_distance(w, s["edges"]) <= EDGE_TOLERANCE * np.maximum(1.0, np.abs(w))
                at_edge[s["tensor"]] += int((~ok & near & (np.abs(r - g) == 1)).sum())  # one level off
        logits = np.asarray(ctx[info["output"]])[:k].reshape(k, -1)
        o_pred[i: i + k] = logits.argmax(axis=1)
        g_logits = gold[net.output].numpy()[:k].reshape(k, -1)
        g_pred[i: i + k] = g_logits.argmax(axis=1)
        # images whose integer logits tie at the top and qonnx took another of the tied classes
        top = g_logits == g_logits.max(axis=1, keepdims=True)
        tied[i: i + k] = (top.sum(axis=1) > 1) & top[np.arange(k), o_pred[i: i + k]]
        if progress:
            progress(f"compared {i + k}/{n_img} images")
    rows = [{"tensor": s["tensor"], "layer": s["layer"], "kind": s["kind"], "values": total[s["tensor"]],
             "equal": equal[s["tensor"]], "mismatches": total[s["tensor"]] - equal[s["tensor"]],
             "at_edge": at_edge[s["tensor"]],
             "agreement": equal[s["tensor"]] / total[s["tensor"]] if total[s["tensor"]] else 1.0}
            for s in shared]
    report: dict[str, Any] = {
        "images": n_img,
        "tensors": len(rows),
        "values_compared": sum(r["values"] for r in rows),
        "mismatches": sum(r["mismatches"] for r in rows),
        "mismatches_at_edge": sum(r["at_edge"] for r in rows),
        "input_code_mismatches": sum(r["mismatches"] for r in rows if r["kind"] == "input"),
        "same_top1": float((g_pred == o_pred).mean() * 100) if n_img else 100.0,
        "same_top1_count": int((g_pred == o_pred).sum()),
        "top1_tied_elsewhere": int((tied & (g_pred != o_pred)).sum()),
        "rows": rows,
    }
    if labels is not None:
        y = np.asarray(labels)
        report["golden_top1"] = float((g_pred == y).mean() * 100)
        report["qonnx_top1"] = float((o_pred == y).mean() * 100)
    return report

"""Synthetic IR layers with realistic requantizers, for the engine tests (not a test module).

Weights are uniform over every code of their encoding; the requantizer's
affine map is fitted to the accumulators the test inputs actually produce
(5th to 95th percentile onto the output levels, some channels with a
negative BN scale), so most thresholds switch on the test data.
"""

from __future__ import annotations

import numpy as np
import torch

from qhw.ir import intmath
from qhw.ir.golden import layer_op
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, TensorSpec
from qhw.ir.requant import affine_requant, logit_requant


def random_values(rng, spec: TensorSpec, n: int) -> np.ndarray:
    lo, hi = spec.lo, spec.hi
    v = rng.integers(lo, hi + 1, size=(n, *spec.shape))
    if spec.code.value == "bipolar":
        v = np.where(v > 0, 1, -1)
    return v.astype(np.int64)


def _fitted_requant(rng, probe, x, out_code, out_bits, with_mul_shift=True):
    acc = layer_op(probe)(*[torch.as_tensor(v) for v in x]).numpy()
    acc = np.moveaxis(acc, 1, -1).reshape(-1, acc.shape[1])
    lo, hi = np.percentile(acc, 5, axis=0), np.percentile(acc, 95, axis=0)
    levels = 1 if out_code == "bipolar" else (1 << out_bits) - 1
    a = levels / np.maximum(hi - lo, 1.0)
    b = -a * lo
    if out_code == "signed":
        b = b - (1 << (out_bits - 1))
    if out_code == "bipolar":
        b = -a * (lo + hi) / 2
    flip = rng.random(len(a)) < 0.25
    a, b = np.where(flip, -a, a), np.where(flip, -b + (0 if out_code == "bipolar" else
                                                       (levels if out_code == "unsigned" else -1)), b)
    return affine_requant(a, b, out_code, out_bits, probe.acc_lo, probe.acc_hi, with_mul_shift=with_mul_shift)


def conv_layer(rng, *, c_in, h, w, c_out, kernel=3, stride=1, padding=1, weight_code="odd", weight_bits=4,
               in_code="unsigned", in_bits=4, out_code="unsigned", out_bits=4, mul_shift=True, n=4,
               name="conv"):
    """A Conv with random weights and a fitted requantizer; returns (layer, inputs (n, C, H, W))."""
    in_spec = TensorSpec((c_in, h, w), in_code, in_bits)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    codes = rng.integers(0, 1 << weight_bits, size=(c_out, c_in * kh * kw))
    weights = intmath.decode_weights(weight_code, weight_bits, codes)
    args = dict(name=name, input="x", in_spec=in_spec, out_channels=c_out, kernel=(kh, kw), stride=stride,
                padding=padding, weight_code=weight_code, weight_bits=weight_bits, weights=weights)
    probe = Conv(**args)
    x = random_values(rng, in_spec, n)
    if out_code is None:
        return probe, x
    return Conv(**args, requant=_fitted_requant(rng, probe, [x], out_code, out_bits, mul_shift)), x


def dense_layer(rng, *, c_in, c_out, weight_code="odd", weight_bits=8, in_code="unsigned", in_bits=10, logits=True, n=4,
                out_code="unsigned", out_bits=4, name="fc"):
    in_spec = TensorSpec((c_in,), in_code, in_bits)
    codes = rng.integers(0, 1 << weight_bits, size=(c_out, c_in))
    weights = intmath.decode_weights(weight_code, weight_bits, codes)
    args = dict(name=name, input="x", in_spec=in_spec, out_channels=c_out, weight_code=weight_code,
                weight_bits=weight_bits, weights=weights)
    probe = Dense(**args)
    x = random_values(rng, in_spec, n)
    if logits:
        a = rng.uniform(0.5, 1.5, c_out) * 1e-3
        rq = logit_requant(a, rng.normal(size=c_out), probe.acc_lo, probe.acc_hi)
    else:
        rq = _fitted_requant(rng, probe, [x], out_code, out_bits)
    return Dense(**args, requant=rq), x


def add_layer(rng, *, specs, coeffs, out_code="unsigned", out_bits=4, n=4, name="add"):
    specs = tuple(specs)
    c = specs[0].channels
    co = np.broadcast_to(np.asarray(coeffs, dtype=np.int64)[:, None], (len(specs), c)).copy() \
        if np.ndim(coeffs) == 1 else np.asarray(coeffs, dtype=np.int64)
    args = dict(name=name, inputs=tuple(f"x{k}" for k in range(len(specs))), in_specs=specs, coeffs=co)
    probe = Add(**args)
    xs = [random_values(rng, s, n) for s in specs]
    return Add(**args, requant=_fitted_requant(rng, probe, xs, out_code, out_bits)), xs


def gap_layer(rng, *, c, h, w, in_bits=4, n=4, name="gap"):
    spec = TensorSpec((c, h, w), "unsigned", in_bits)
    return GlobalPool(name=name, input="x", in_spec=spec), random_values(rng, spec, n)


def tiny_resnet(rng, *, c_in=1, h=6, w=5, width=4, classes=3, n=16, projection=False):
    """A small residual network with realistic requantizers, fitted on the activations ``n`` random
    images produce: stem conv → [conv1 → conv2 (signed), identity or 1×1/2 projection] → add → gap → dense.

    Odd sizes on purpose (non-square map, channels not a power of two when ``width`` is odd).
    Returns (Network, input values).
    """
    from qhw.ir.graph import Input, Network

    inp = Input(name="input", shape=(c_in, h, w), code="unsigned", bits=8)
    x0 = random_values(rng, inp.out, n)
    layers, values = [inp], {"input": x0}

    def conv(name, src, c_out, out_code, out_bits, kernel=3, stride=1, padding=1):
        spec = values_spec(src)
        kh = kw = kernel
        codes = rng.integers(0, 1 << 4, size=(c_out, spec.channels * kh * kw))
        weights = intmath.decode_weights("odd", 4, codes)
        args = dict(name=name, input=src, in_spec=spec, out_channels=c_out, kernel=kernel, stride=stride,
                    padding=padding, weight_code="odd", weight_bits=4, weights=weights)
        layer = Conv(**args, requant=_fitted_requant(rng, Conv(**args), [values[src]], out_code, out_bits))
        add_layer_(layer)
        return name

    def values_spec(src):
        return next(l for l in layers if l.name == src).out

    def add_layer_(layer):
        layers.append(layer)
        values[layer.name] = layer_op(layer)(*[torch.as_tensor(values[s]) for s in layer.inputs]).numpy()

    stem = conv("stem", "input", width, "unsigned", 4)
    c1 = conv("b.conv1", stem, width, "unsigned", 4, stride=2 if projection else 1)
    c2 = conv("b.conv2", c1, width, "signed", 7)
    if projection:
        short = conv("b.shortcut", stem, width, "signed", 7, kernel=1, stride=2, padding=0)
        srcs, coeffs = (c2, short), [1, 1]
    else:
        srcs, coeffs = (c2, stem), [1, 4]
    specs = tuple(values_spec(s) for s in srcs)
    co = np.broadcast_to(np.asarray(coeffs, dtype=np.int64)[:, None], (2, specs[0].channels)).copy()
    args = dict(name="b.add", inputs=srcs, in_specs=specs, coeffs=co)
    add_layer_(Add(**args, requant=_fitted_requant(rng, Add(**args), [values[s] for s in srcs], "unsigned", 4)))
    add_layer_(GlobalPool(name="gap", input="b.add", in_spec=values_spec("b.add")))
    spec = values_spec("gap")
    weights = intmath.decode_weights("odd", 8, rng.integers(0, 256, size=(classes, spec.channels)))
    args = dict(name="fc", input="gap", in_spec=spec, out_channels=classes, weight_code="odd", weight_bits=8,
                weights=weights)
    probe = Dense(**args)
    add_layer_(Dense(**args, requant=logit_requant(rng.uniform(0.5, 1.5, classes) * 1e-3,
                                                    rng.normal(size=classes), probe.acc_lo, probe.acc_hi)))
    return Network(tuple(layers), output="fc"), x0


def one_lane_tiny_net(root):
    """The tiny residual network saved under ``root`` with a fold file putting every conv / dense layer at
    one MAC lane: ``(net, net.json path, conv / dense layers, fold file path)``."""
    import json

    from qhw.ir.graph import Conv, Dense
    from qhw.ir.serialize import save_network

    net, _ = tiny_resnet(np.random.default_rng(0))
    path = save_network(net, root / "net.json")
    mac = [l for l in net.layers[1:] if isinstance(l, (Conv, Dense))]
    fold_file = root / "folds.json"
    fold_file.write_text(json.dumps({"layers": {l.name: {"rows": 1, "cols": 1, "lanes": 1} for l in mac}}))
    return net, path, mac, fold_file

"""Front end: a trained :class:`~qhw.quant.models.QResNet` -> integer :class:`Network`.

What each float-model step becomes (``docs/IR_FORMAT.md`` has the derivation):

=====================================  =============================================
fake-quant model                       integer network
=====================================  =============================================
``input_quant`` (pixels -> 8-bit)      ``input``: the unsigned pixel codes
conv (DoReFa / binary / pow2 weights)  ``conv``: integer weights, exact acc bounds
BN + PACT / sign                       thresholds (exact) + equivalent mul-shift
BN + ``add_quantize`` (residual arm)   thresholds to a signed (k_in + 2 + F)-bit
                                       integer on the add grid ``s_in / 2^F``
identity shortcut                      the block input, weight ``2^F`` in the add
``act_out(m + s)``                     ``add``: ``m + s`` (or ``m + 2^F·h``), then
                                       thresholds
mean over H, W                         ``gap``: integer sum (1/HW folded into fc)
fc (float bias)                        ``dense`` + integer logits (mul-shift,
                                       one common positive scale: same argmax)
=====================================  =============================================

For a requantizer the real map from the integer accumulator to the quantizer
input is ``x = a·acc + b`` with ``a = w_scale_c · in_scale · gamma_c /
sqrt(var_c + eps)``, ``b = beta_c - mean_c · gamma_c / sqrt(var_c + eps)``
(float64 from the float32 parameters); PACT divides by its scale, sign uses
``x`` itself, ``add_quantize`` divides by its grid step. The thresholds are
exact for that map (see :mod:`qhw.ir.requant`); the float model, computing in
float32, can differ only for accumulators within float32 rounding of a
threshold, which ``qhw check`` measures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qhw.errors import InputError
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Network
from qhw.ir.intmath import ActCode
from qhw.ir.requant import affine_requant, logit_requant


def _f64(t) -> np.ndarray:
    """float32 tensor -> float64 numpy, exactly."""
    return t.detach().cpu().numpy().astype(np.float64)


def _scalar(t) -> float:
    return float(t.detach().cpu().reshape(()).item()) if hasattr(t, "detach") else float(t)


class _Exporter:
    def __init__(self, model, with_mul_shift: bool = True):
        self.model = model
        self.with_mul_shift = with_mul_shift
        self.layers: list = []
        self.layers_by_name: dict[str, Any] = {}

    # -- helpers ----------------------------------------------------------------------

    def act_info(self, act, where: str) -> tuple[ActCode, int, float | None]:
        """(encoding, bits, scale) of an activation quantizer; scale None for sign."""
        enc = getattr(act, "encoding", None)
        if enc is None or getattr(act, "kind", "float") == "float":
            raise InputError(
                f"{where}: activations are float (not quantized); only fully quantized models can be exported"
            )
        code = ActCode(enc)
        if code is ActCode.BIPOLAR:
            return code, 1, None
        scale = _scalar(act.scale)
        if not (math.isfinite(scale) and scale > 0):
            raise InputError(f"{where}: activation scale {scale} is not a positive number")
        return code, int(act.bits), scale

    def weights(self, module, name: str) -> tuple[np.ndarray, np.ndarray, str, int]:
        wq = getattr(module, "weight_quant", None)
        if wq is None or wq.encoding is None:
            raise InputError(f"layer {name}: weights are float (not quantized); only fully quantized models can be exported")
        values, scale = module.integer_weights()
        return values.cpu().numpy().astype(np.int64), _f64(scale), wq.encoding, int(wq.bits)

    @staticmethod
    def bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
        """BN (eval) as y = g·x + h, float64."""
        inv = _f64(bn.weight) / np.sqrt(_f64(bn.running_var) + float(bn.eps))
        return inv, _f64(bn.bias) - _f64(bn.running_mean) * inv

    def requant(self, a, b, act_code: ActCode, bits: int, scale: float | None, lo, hi):
        """Requantizer of x = a·acc + b into an activation (scale None: sign)."""
        if act_code is ActCode.BIPOLAR:
            return affine_requant(a, b, act_code, 1, lo, hi, with_mul_shift=False)
        return affine_requant(a / scale, b / scale, act_code, bits, lo, hi, self.with_mul_shift)

    def conv(self, name, module, bn, src: str, in_scale: float, out) -> Conv:
        """Conv + BN followed by ``out``: ("act", quantizer) or ("grid", step, bits)."""
        spec = self.layers_by_name[src].out
        w, wscale, wcode, wbits = self.weights(module, name)
        g, h = self.bn_affine(bn)
        a, b = wscale * in_scale * g, h
        probe = Conv(name=name, input=src, in_spec=spec, out_channels=w.shape[0], kernel=tuple(module.kernel_size),
                     stride=tuple(module.stride), padding=tuple(module.padding), weight_code=wcode,
                     weight_bits=wbits, weights=w)
        if out[0] == "act":
            code, bits, scale = self.act_info(out[1], f"layer {name} output")
            rq = self.requant(a, b, code, bits, scale, probe.acc_lo, probe.acc_hi)
        else:
            _, step, bits = out
            rq = affine_requant(a / step, b / step, ActCode.SIGNED, bits, probe.acc_lo, probe.acc_hi,
                                self.with_mul_shift)
        layer = Conv(name=name, input=src, in_spec=spec, out_channels=w.shape[0], kernel=probe.kernel,
                     stride=probe.stride, padding=probe.padding, weight_code=wcode, weight_bits=wbits,
                     weights=w, requant=rq)
        return self.add_layer(layer)

    def add_layer(self, layer):
        self.layers.append(layer)
        self.layers_by_name[layer.name] = layer
        return layer

    # -- the network ------------------------------------------------------------------

    def run(self) -> Network:
        from qhw.quant.models import ADD_FRAC_BITS, QResNet

        m = self.model
        if not isinstance(m, QResNet):
            raise InputError(f"can only export a qhw QResNet, not {type(m).__name__}")
        if m.training:
            raise InputError("the model is in training mode; call model.eval() before exporting")
        spec = m.spec
        iq = m.input_quant
        inp = Input(name="input", shape=(spec.in_channels, *spec.in_size), code=ActCode.UNSIGNED,
                    bits=int(iq.bits), scale=_scalar(iq.scale))
        self.add_layer(inp)
        prev, prev_act = "stem", m.stem_act
        self.conv("stem", m.stem, m.stem_bn, "input", _scalar(iq.scale), ("act", m.stem_act))
        for bname, block in m.blocks():
            _, _, s_in = self.act_info(prev_act, f"block {bname} input")
            in_scale = 1.0 if s_in is None else s_in
            step = in_scale / (1 << ADD_FRAC_BITS)  # exact: a power-of-two division
            add_bits = int(block.add_bits(prev_act))
            _, _, s1 = self.act_info(block.act1, f"layer {bname}.conv1 output")
            self.conv(f"{bname}.conv1", block.conv1, block.bn1, prev, in_scale, ("act", block.act1))
            self.conv(f"{bname}.conv2", block.conv2, block.bn2, f"{bname}.conv1", 1.0 if s1 is None else s1,
                      ("grid", step, add_bits))
            if block.shortcut is not None:
                self.conv(f"{bname}.shortcut", block.shortcut, block.shortcut_bn, prev, in_scale,
                          ("grid", step, add_bits))
                branches, weights = (f"{bname}.conv2", f"{bname}.shortcut"), (1, 1)
            else:
                # identity arm: add_quantize(h) = h / step = value · 2^F exactly (h = value · s_in),
                # provided the clamp to add_bits never bites
                branches, weights = (f"{bname}.conv2", prev), (1, 1 << ADD_FRAC_BITS)
                h = self.layers_by_name[prev].out
                if max(abs(h.lo), abs(h.hi)) << ADD_FRAC_BITS > (1 << (add_bits - 1)) - 1:
                    raise InputError(f"block {bname}: the identity arm does not fit the {add_bits}-bit add grid")
            specs = tuple(self.layers_by_name[n].out for n in branches)
            c = specs[0].channels
            coeffs = np.array([[wgt] * c for wgt in weights], dtype=np.int64)
            probe = Add(name=f"{bname}.add", inputs=branches, in_specs=specs, coeffs=coeffs)
            ocode, obits, oscale = self.act_info(block.act_out, f"block {bname} output")
            # act_out sees (m_int + s_int) · step
            rq = self.requant(np.full(c, step), np.zeros(c), ocode, obits, oscale, probe.acc_lo, probe.acc_hi)
            self.add_layer(Add(name=f"{bname}.add", inputs=branches, in_specs=specs, coeffs=coeffs, requant=rq))
            prev, prev_act = f"{bname}.add", block.act_out
        # global average pool: integer sum; the 1/HW goes into the fc scale
        _, _, s_last = self.act_info(prev_act, "fc input")
        gap = self.add_layer(GlobalPool(name="gap", input=prev, in_spec=self.layers_by_name[prev].out))
        w, wscale, wcode, wbits = self.weights(m.fc, "fc")
        a = wscale * (1.0 if s_last is None else s_last) / gap.window
        bias = _f64(m.fc.bias) if m.fc.bias is not None else np.zeros(w.shape[0])
        probe = Dense(name="fc", input="gap", in_spec=gap.out, out_channels=w.shape[0], weight_code=wcode,
                      weight_bits=wbits, weights=w)
        rq = logit_requant(a, bias, probe.acc_lo, probe.acc_hi)
        self.add_layer(Dense(name="fc", input="gap", in_spec=gap.out, out_channels=w.shape[0], weight_code=wcode,
                             weight_bits=wbits, weights=w, requant=rq))
        meta = {
            "model": spec.to_dict(),
            "quant": {n: lq.to_dict() for n, lq in m.quant_config().items()},
            "add_frac_bits": ADD_FRAC_BITS,
        }
        return Network(layers=tuple(self.layers), output="fc", meta=meta)


def export_model(model, *, with_mul_shift: bool = True, meta: dict | None = None) -> Network:
    """Integer network of a trained QResNet (eval mode). Raises InputError if not exportable.

    ``with_mul_shift=False`` skips the search for mul-shift equivalents (faster;
    thresholds only).
    """
    try:
        net = _Exporter(model, with_mul_shift).run()
    except (TypeError, ValueError) as exc:  # e.g. weights out of an encoding's range
        raise InputError(f"cannot export model: {exc}") from None
    if meta:
        net.meta.update(meta)
    return net


def export_checkpoint(path, *, with_mul_shift: bool = True) -> tuple[Network, Any]:
    """(network, fake-quant model) from a training checkpoint."""
    import hashlib
    from pathlib import Path

    from qhw.quant.checkpoint import load_checkpoint_full

    ck = load_checkpoint_full(path)
    p = Path(path)
    meta = {
        "source": {
            "checkpoint": str(p.resolve()),
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "dataset": (ck.train or {}).get("dataset"),
            "metrics_top1": (ck.metrics or {}).get("top1"),
        }
    }
    return export_model(ck.model, with_mul_shift=with_mul_shift, meta=meta), ck.model


def probe_points(model) -> dict[str, tuple[Any, str, Any]]:
    """Where the fake-quant model holds each exported layer's output, as integers.

    ``{ir layer name: (module, "input" | "output", to_int)}``: a forward hook on
    ``module`` sees the tensor and ``to_int(tensor)`` gives the integer values
    the golden model computes for that layer (activation codes, ±1, or the
    residual-add integers). Used by ``qhw check`` for per-layer agreement.
    """
    import torch

    from qhw.quant.models import ADD_FRAC_BITS
    from qhw.quant.quantizers import round_half_up

    def act_codes(act):
        return lambda x: act.integer_values(x)

    def grid(in_act, bits):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

        def to_int(v):
            step = (in_act.scale / (1 << ADD_FRAC_BITS)).to(v.dtype)
            return round_half_up(v / step).clamp(lo, hi).to(torch.int64)
        return to_int

    points: dict[str, tuple[Any, str, Any]] = {"stem": (model.stem_act, "input", act_codes(model.stem_act))}
    prev_act = model.stem_act
    for bname, block in model.blocks():
        bits = block.add_bits(prev_act)
        points[f"{bname}.conv1"] = (block.act1, "input", act_codes(block.act1))
        points[f"{bname}.conv2"] = (block.bn2, "output", grid(prev_act, bits))
        if block.shortcut is not None:
            points[f"{bname}.shortcut"] = (block.shortcut_bn, "output", grid(prev_act, bits))
        points[f"{bname}.add"] = (block.act_out, "input", act_codes(block.act_out))
        prev_act = block.act_out
    return points

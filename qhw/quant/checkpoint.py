"""Versioned training checkpoints.

A checkpoint is a ``torch.save`` file (loaded with ``weights_only=True``, so
it can hold only tensors and plain containers) with

``format``       ``"qhw-quant-checkpoint"``
``version``      :data:`CHECKPOINT_VERSION`
``spec``         :class:`~qhw.quant.models.ResNetSpec` as a dict
``alpha_init``   PACT initial clip (to rebuild swapped quantizers)
``layers``       layer name -> :class:`~qhw.quant.config.LayerQuant` dict
``weight_gains``  layer name -> fixed gain of its DoReFa levels (checked on load)
``state_dict``   float weights, BN statistics, PACT alphas
``metrics``      top-1, BitOPs, WCR, ... (free-form dict)
``adaqat``       AdaQAT state and log, or None
``train``        the training config, or None

A missing, corrupt or foreign file raises :class:`~qhw.errors.InputError`;
another version raises :class:`~qhw.errors.FormatVersionError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qhw import __version__
from qhw.errors import FormatVersionError, InputError
from qhw.fileio import atomic_write_bytes

CHECKPOINT_FORMAT = "qhw-quant-checkpoint"
CHECKPOINT_VERSION = 2  # 2: classifier DoReFa levels carry gain 1/sqrt(fan_in)


@dataclass
class Checkpoint:
    model: Any  # QResNet, eval mode
    metrics: dict
    adaqat: dict | None
    train: dict | None
    path: Path | None = None


def save_checkpoint(path, model, *, metrics=None, adaqat=None, train=None) -> Path:
    """Write ``model`` (a QResNet) and its metadata atomically to ``path``."""
    import torch

    doc = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "qhw_version": __version__,
        "spec": model.spec.to_dict(),
        "alpha_init": model.alpha_init,
        "layers": {n: lq.to_dict() for n, lq in model.quant_config().items()},
        "weight_gains": {n: float(layer.weight_gain) for n, layer in model.layers().items()},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": metrics or {},
        "adaqat": adaqat,
        "train": train,
    }
    buf = io.BytesIO()
    torch.save(doc, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint_full(path) -> Checkpoint:
    """Rebuild the model and metadata from a checkpoint file."""
    import torch

    from qhw.quant.config import LayerQuant
    from qhw.quant.models import QResNet, ResNetSpec

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch reports corruption with many exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"checkpoint {path} is corrupt or not a qhw checkpoint: {first}") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a qhw quantized-model checkpoint")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise FormatVersionError(
            f"checkpoint {path} has format version {doc.get('version')!r}; this qhw reads version {CHECKPOINT_VERSION}"
        )
    try:
        spec = ResNetSpec.from_dict(doc["spec"])
        model = QResNet(spec, alpha_init=float(doc["alpha_init"]))
        layers = {n: LayerQuant(**d) for n, d in doc["layers"].items()}
        model.apply_quant(layers)
        model.load_state_dict(doc["state_dict"], strict=True)
        gains = {n: float(layer.weight_gain) for n, layer in model.layers().items()}
        if doc["weight_gains"] != gains:
            raise ValueError("its weight gains differ from this qhw's models")
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"checkpoint {path} is inconsistent: {first}") from None
    model.eval()
    return Checkpoint(model, dict(doc.get("metrics") or {}), doc.get("adaqat"), doc.get("train"), path)


def load_checkpoint(path):
    """The trained :class:`~qhw.quant.models.QResNet` (eval mode) from ``path``."""
    return load_checkpoint_full(path).model

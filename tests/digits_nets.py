"""The four digits ResNet-8 networks the engine and network tests run on (not a test module).

Trained briefly (3 epochs, about 7 s each on one core) and exported with the
real flow, so every layer is a real exported layer: ``w4a4``, ``pow2``,
``binary_body`` and AdaQAT with per-layer bit-widths. ``QHW_NET_CACHE``
names a directory to keep them between pytest sessions.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIGS = ("w4a4", "pow2", "binary_body", "adaqat_layer")


def train_config(name: str, out_dir: Path):
    from qhw.quant.adaqat import AdaQATConfig
    from qhw.quant.train import TrainConfig

    if name == "adaqat_layer":
        ada = AdaQATConfig(granularity="layer", lam=0.5, eta_w=0.02, eta_a=0.02, init_w=6.0, init_a=6.0)
        return TrainConfig(model="resnet8", dataset="digits", quant="w8a8", adaqat=ada, epochs=3, seed=0,
                           out_dir=str(out_dir))
    return TrainConfig(model="resnet8", dataset="digits", quant=name, epochs=3, seed=0, out_dir=str(out_dir))


def digits_network(name: str, root: Path):
    """The exported network ``name`` (trained into ``root/name`` on first use)."""
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import load_network, save_network
    from qhw.quant.train import train

    root = Path(os.environ.get("QHW_NET_CACHE", root))
    path = root / name / "net.json"
    if not path.is_file():
        result = train(train_config(name, root / name / "train"), progress=lambda *_: None)
        net, _ = export_checkpoint(result.checkpoint)
        save_network(net, path)
    return load_network(path)


def digits_test_images(n: int):
    """The first ``n`` digits test images as input codes (N, 1, 8, 8) and their labels."""
    from qhw.quant.data import load_dataset

    ds = load_dataset("digits")
    return ds.x_test[:n].astype("int64"), ds.y_test[:n]

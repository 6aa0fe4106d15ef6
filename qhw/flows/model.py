"""The model flow on the embedded default: digits → ResNet-8 W4A4 → integer network.

Trains (fixed W4A4 config, first/last layers 8-bit), exports the integer
network, and checks the golden integer model against the fake-quant model on
the whole digits test set. The hardware side of the flow joins here when the
network assembly lands; today ``qhw demo`` runs the smoke design for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class ModelFlowResult:
    checkpoint: str
    network: str
    train: dict
    check: dict


def run_model_flow(out_dir: str | Path, *, epochs: int = 8, quant: str = "w4a4", seed: int = 0,
                   progress: Callable[[str], None] = print) -> ModelFlowResult:
    from qhw.ir.check import compare
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import save_network
    from qhw.quant.data import load_dataset
    from qhw.quant.train import TrainConfig, train

    out = Path(out_dir)
    progress(f"training ResNet-8 ({quant}) on the bundled 8x8 digits for {epochs} epochs ...")
    result = train(TrainConfig(model="resnet8", dataset="digits", quant=quant, epochs=epochs, seed=seed,
                               out_dir=str(out / "train")), progress=progress)
    progress("exporting the integer network ...")
    net, model = export_checkpoint(result.checkpoint)
    net_path = save_network(net, out / "net" / "resnet8_digits.json")
    ds = load_dataset("digits")
    progress(f"golden integer model vs fake-quant model on {len(ds.y_test)} test images ...")
    report = compare(net, model, ds.x_test, ds.y_test)
    return ModelFlowResult(str(result.checkpoint), str(net_path), result.metrics(), report)

"""Training loop: fixed per-layer quantization or AdaQAT, plus its reports.

Python API::

    from qhw.quant.train import TrainConfig, train
    from qhw.quant.adaqat import AdaQATConfig
    result = train(TrainConfig(model="resnet8", dataset="digits", quant="w4a4", epochs=30))
    result.top1, result.cost["bitops_gb"], result.model     # QResNet, eval mode
    from qhw.quant.checkpoint import load_checkpoint
    model = load_checkpoint(result.checkpoint)

SGD (momentum 0.9, weight decay 1e-4), cosine learning rate from ``lr``,
Kaiming init, cross-entropy, as in AdaQAT §IV-A. The model's input shape and
class count come from the dataset; depth and widths from the preset.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from qhw.errors import InputError
from qhw.quant.adaqat import AdaQATConfig

CONFIG_DIR = Path(__file__).parent / "configs"


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def resolve_quant(quant):
    """A QuantConfig from a QuantConfig, a file path, a built-in name or None (W8A8)."""
    from qhw.quant.config import QuantConfig, load_quant_config, uniform_config

    if quant is None:
        return uniform_config(8, 8)
    if isinstance(quant, QuantConfig):
        return quant
    if isinstance(quant, dict):
        return QuantConfig.from_dict(quant)
    path = Path(quant)
    if path.is_file():
        return load_quant_config(path)
    if (CONFIG_DIR / f"{quant}.json").is_file():
        return load_quant_config(CONFIG_DIR / f"{quant}.json")
    raise InputError(f"quant config {quant!r} is neither a file nor a built-in config ({', '.join(builtin_configs())})")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``train`` needs; defaults are the digits / ResNet-8 set-up."""

    model: str = "resnet8"
    width: int | None = None  # base width: stages get (w, 2w, 4w)
    dataset: str = "digits"
    data_path: str | None = None
    synthetic_train: int = 512
    synthetic_test: int = 128
    quant: Any = "w4a4"  # file, built-in name, QuantConfig or dict
    adaqat: AdaQATConfig | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool | None = None  # None: crop + flip for CIFAR-10 only
    threads: int = 1
    init_from: str | None = None  # checkpoint to fine-tune from
    out_dir: str | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            raise ValueError(f"width must be a positive integer, not {self.width!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adaqat"] = self.adaqat.to_dict() if self.adaqat else None
        q = self.quant
        d["quant"] = q if isinstance(q, (str, type(None))) else (q.to_dict() if hasattr(q, "to_dict") else q)
        return d


@dataclass
class TrainResult:
    model: Any
    top1: float
    train_top1: float
    cost: dict
    history: list[dict]
    adaqat: dict | None
    checkpoint: Path | None
    seconds: float
    config: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """JSON summary: accuracy, per-layer bits, BitOPs, WCR, memory."""
        c = self.cost
        return {
            "top1": round(self.top1, 4),
            "train_top1": round(self.train_top1, 4),
            "bitops": c["bitops"],
            "bitops_gb": c["bitops_gb"],
            "wcr": round(c["wcr"], 3),
            "weight_memory_bits": c["weight_memory_bits"],
            "avg_w_bits": round(c["avg_w_bits"], 3),
            "macs": c["macs"],
            "layers": {r["layer"]: {k: r[k] for k in ("w_kind", "w_bits", "a_kind", "a_bits", "bitops")} for r in c["layers"]},
            "seconds": round(self.seconds, 1),
            "adaqat_events": (self.adaqat or {}).get("events", []),
        }


def evaluate(model, x, y, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent (eval mode, running BN statistics)."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return 100.0 * correct / max(1, len(y))


def _augment(x, gen):
    """Random 4-pixel zero-padded crop and horizontal flip (codes stay on the grid)."""
    import torch

    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        img = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = img.flip(-1) if flip[i] else img
    return out


def build_for(cfg: TrainConfig, ds):
    from qhw.quant.models import PRESETS, build_model

    if cfg.model not in PRESETS:
        raise InputError(f"unknown model {cfg.model!r}; use one of {', '.join(PRESETS)}")
    spec = PRESETS[cfg.model]
    c, h, w = ds.shape
    widths = spec.widths if cfg.width is None else (cfg.width, 2 * cfg.width, 4 * cfg.width)
    spec = replace(spec, widths=widths, in_channels=c, in_size=(h, w), num_classes=ds.num_classes)
    quant = resolve_quant(cfg.quant)
    return build_model(spec, quant)


def load_data(cfg: TrainConfig):
    from qhw.quant.data import load_dataset
    from qhw.quant.models import PRESETS

    shape = None
    if cfg.dataset == "synthetic":
        spec = PRESETS.get(cfg.model)
        shape = (spec.in_channels, *spec.in_size) if spec else (3, 32, 32)
        return load_dataset("synthetic", shape=shape, seed=cfg.seed, n_train=cfg.synthetic_train, n_test=cfg.synthetic_test)
    return load_dataset(cfg.dataset, cfg.data_path)


def train(cfg: TrainConfig, progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train per ``cfg``; write checkpoint and logs to ``cfg.out_dir`` if set."""
    import torch

    from qhw.fileio import atomic_write_json
    from qhw.quant.adaqat import AdaQAT
    from qhw.quant.checkpoint import load_checkpoint_full, save_checkpoint
    from qhw.quant.cost import cost_report

    say = progress or (lambda msg: None)
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ds = load_data(cfg)
    model = build_for(cfg, ds)
    if cfg.init_from:
        src = load_checkpoint_full(cfg.init_from).model
        # PACT clips may be absent on either side (float <-> quantized); all else must match
        missing = model.load_state_dict(src.state_dict(), strict=False)
        if [k for k in missing.unexpected_keys + missing.missing_keys if not k.endswith("alpha")]:
            raise InputError(f"checkpoint {cfg.init_from} does not match model {cfg.model}")
    xtr, ytr = ds.float_images("train")
    xte, yte = ds.float_images("test")
    augment = cfg.augment if cfg.augment is not None else ds.name == "cifar10"
    ada = AdaQAT(model, cfg.adaqat) if cfg.adaqat else None
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    say(f"training {cfg.model} on {ds.name} {ds.summary()['shape']} ({len(ytr)} train / {len(yte)} test), "
        f"{cfg.epochs} epochs" + (f", AdaQAT {cfg.adaqat.granularity} lambda={cfg.adaqat.lam}" if ada else ""))
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(ytr), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x, y = xtr[idx], ytr[idx]
            if augment:
                x = _augment(x, gen)
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if ada is not None:
                ada.step(x, y, loss.item(), epoch=epoch)
            opt.step()
            total += len(y)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
        sched.step()
        test = evaluate(model, xte, yte)
        row = {"epoch": epoch, "loss": round(loss_sum / total, 5), "train_top1": round(100 * correct / total, 3), "top1": round(test, 3)}
        cost = cost_report(model)
        row["bitops_gb"] = cost["bitops_gb"]
        if ada is not None:
            snap = ada.snapshot(epoch)
            row["bits"] = {k: v["bits"] for k, v in snap["params"].items()}
            new = [e for e in ada.events if e["epoch"] == epoch]
            for e in new:
                say(f"  AdaQAT freeze {e['param']} at {e['bits']} bits (iteration {e['iteration']}: {e['reason']})")
        history.append(row)
        say(f"epoch {epoch}/{cfg.epochs} loss {row['loss']:.4f} train {row['train_top1']:.2f}% test {test:.2f}% "
            f"BitOPs {cost['bitops_gb']:.4g} Gb" + (f" [{ada.summary()}]" if ada else ""))
    model.eval()
    top1 = evaluate(model, xte, yte)
    train_top1 = evaluate(model, xtr, ytr)
    result = TrainResult(
        model=model,
        top1=top1,
        train_top1=train_top1,
        cost=cost_report(model),
        history=history,
        adaqat=ada.state_dict() if ada else None,
        checkpoint=None,
        seconds=time.time() - t0,
        config=cfg.to_dict(),
    )
    if cfg.out_dir:
        out = Path(cfg.out_dir)
        metrics = result.metrics()
        metrics["dataset"] = ds.summary()
        result.checkpoint = save_checkpoint(out / "checkpoint.pt", model, metrics=metrics, adaqat=result.adaqat, train=result.config)
        atomic_write_json(out / "metrics.json", {**metrics, "cost": result.cost, "config": result.config})
        atomic_write_json(out / "history.json", history)
        if ada is not None:
            atomic_write_json(out / "adaqat_log.json", result.adaqat)
        say(f"wrote {out / 'checkpoint.pt'}")
    return result

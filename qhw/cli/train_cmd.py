"""``qhw train``: quantization-aware training (fixed config or AdaQAT)."""

from __future__ import annotations

HELP = "train a quantized ResNet (fixed per-layer config or AdaQAT learned bit-widths)"


def add_arguments(p) -> None:
    p.add_argument("--model", default="resnet8", help="resnet8 (8x8 digits) or resnet20 (32x32 CIFAR); default resnet8")
    p.add_argument("--width", type=int, default=None, help="base width w: stages get w, 2w, 4w channels (default 16)")
    p.add_argument("--dataset", default="digits", help="digits (bundled), cifar10 (needs --data) or synthetic")
    p.add_argument("--data", default=None, metavar="DIR", help="CIFAR-10 python-batch directory")
    p.add_argument(
        "--quant",
        default="w4a4",
        metavar="FILE|NAME",
        help="quant config file (JSON/YAML) or built-in name: w4a4, w8a8, binary_body, pow2, mixed (all three PE families), float (default w4a4)",
    )
    p.add_argument("--adaqat", action="store_true", help="learn bit-widths of the uniform layers with AdaQAT")
    p.add_argument("--lambda", dest="lam", type=float, default=0.15, help="AdaQAT hardware-loss weight (default 0.15)")
    p.add_argument("--granularity", choices=["network", "layer"], default="network", help="one bit-width pair or one per layer")
    p.add_argument("--eta-w", type=float, default=1e-3, help="AdaQAT learning rate of N_w (default 1e-3)")
    p.add_argument("--eta-a", type=float, default=5e-4, help="AdaQAT learning rate of N_a (default 5e-4)")
    p.add_argument("--init-bits", type=float, default=8.0, help="initial N_w and N_a (default 8)")
    p.add_argument("--min-bits", type=int, default=2, help="lowest learned bit-width (default 2)")
    p.add_argument("--freeze-after", type=int, default=10, help="oscillations before a bit-width is frozen (default 10)")
    p.add_argument("--update-every", type=int, default=1, help="AdaQAT update every N training steps (default 1)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="initial SGD learning rate (cosine schedule)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-train", type=int, default=512, help="synthetic training images (default 512)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT", help="start from a checkpoint's weights (fine-tuning)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", default=None, metavar="DIR", help="write checkpoint.pt, metrics.json, history.json here")


def run(args):
    from qhw.cli import Result, progress, table
    from qhw.errors import InputError

    from qhw.quant.adaqat import AdaQATConfig
    from qhw.quant.train import TrainConfig, train

    try:
        ada = None
        if args.adaqat:
            ada = AdaQATConfig(
                granularity=args.granularity,
                lam=args.lam,
                eta_w=args.eta_w,
                eta_a=args.eta_a,
                init_w=args.init_bits,
                init_a=args.init_bits,
                min_w=max(2, args.min_bits),
                min_a=args.min_bits,
                freeze_after=args.freeze_after,
                update_every=args.update_every,
            )
        cfg = TrainConfig(
            model=args.model,
            width=args.width,
            dataset=args.dataset,
            data_path=args.data,
            synthetic_train=args.synthetic_train,
            quant=args.quant,
            adaqat=ada,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            threads=args.threads,
            init_from=args.init_from,
            out_dir=args.out,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    result = train(cfg, progress=progress)
    m = result.metrics()
    rows = [
        {"layer": r["layer"], "weights": f"{r['w_kind']} {r['w_bits']}", "input act": f"{r['a_kind']} {r['a_bits']}",
         "MACs": r["macs"], "BitOPs (Mb)": f"{r['bitops'] / 1e6:.3f}"}
        for r in result.cost["layers"]
    ]
    text = "\n".join(
        [
            table(rows, ["layer", "weights", "input act", "MACs", "BitOPs (Mb)"]),
            "",
            f"top-1 {m['top1']:.2f} %   BitOPs {m['bitops_gb']:.4g} Gb   WCR {m['wcr']:.2f}x   "
            f"weight memory {m['weight_memory_bits']} bits",
        ]
        + [f"AdaQAT: {e['param']} frozen at {e['bits']} bits, epoch {e['epoch']} ({e['reason']})" for e in m["adaqat_events"]]
        + ([f"checkpoint: {result.checkpoint}"] if result.checkpoint else [])
    )
    data = {**m, "checkpoint": str(result.checkpoint) if result.checkpoint else None, "history": result.history}
    return Result(data=data, text=text)

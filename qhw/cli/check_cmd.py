"""``qhw check``: golden integer model vs fake-quant model on a dataset."""

from __future__ import annotations

HELP = "run the golden integer model and the fake-quant model side by side: top-1 of both, identical predictions, per-layer agreement"


def add_arguments(p) -> None:
    p.add_argument("net", metavar="NET|CKPT",
                   help="network from 'qhw export' (NET.json) or a checkpoint (exported in memory)")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="fake-quant checkpoint for NET (default: the one NET was exported from)")
    p.add_argument("--dataset", default=None,
                   help="digits, cifar10 (needs --data) or synthetic (default: the checkpoint's training dataset)")
    p.add_argument("--data", default=None, metavar="DIR", help="CIFAR-10 python-batch directory")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--require", type=float, default=99.5, metavar="PCT",
                   help="exit with status 1 if fewer than PCT %% of the top-1 predictions are identical (default 99.5)")
    p.add_argument("--fake-dtype", choices=["float32", "float64"], default="float32",
                   help="run the fake-quant model in this precision (float64 shows what is float32 rounding)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def _is_network(path) -> bool:
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() == ".json":
        return True
    try:
        with open(p, "rb") as f:
            return f.read(1) == b"{"
    except OSError:
        return False


def _load(args):
    """(network, fake-quant model, dataset name from the checkpoint or None)."""
    import hashlib
    from pathlib import Path

    from qhw.errors import InputError
    from qhw.fileio import require_file
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import load_network, paths_for
    from qhw.quant.checkpoint import load_checkpoint_full

    if not _is_network(args.net):
        require_file(args.net, "checkpoint")
        net, model = export_checkpoint(args.net)
        return net, model, net.meta["source"].get("dataset")
    net = load_network(args.net)
    source = net.meta.get("source") if isinstance(net.meta.get("source"), dict) else {}
    ckpt = args.checkpoint or source.get("checkpoint")
    if not ckpt:
        raise InputError(f"network {paths_for(args.net)[0]} does not name its checkpoint; pass --checkpoint CKPT")
    ckpt = require_file(ckpt, "checkpoint")
    if source.get("sha256") and hashlib.sha256(Path(ckpt).read_bytes()).hexdigest() != source["sha256"]:
        raise InputError(f"checkpoint {ckpt} is not the one network {paths_for(args.net)[0]} was exported from "
                         f"(SHA-256 differs); re-export it")
    ck = load_checkpoint_full(ckpt)
    return net, ck.model, source.get("dataset") or (ck.train or {}).get("dataset")


def run(args):
    import torch

    from qhw.cli import Result, progress, table
    from qhw.errors import InputError
    from qhw.ir.check import compare
    from qhw.quant.data import load_dataset

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, not {args.limit}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {args.batch_size}")
    torch.set_num_threads(max(1, args.threads))
    net, model, trained_on = _load(args)
    name = args.dataset or trained_on or "digits"
    shape = net.input.shape
    ds = load_dataset(name, args.data, shape=shape) if name == "synthetic" else load_dataset(name, args.data)
    if tuple(ds.shape) != tuple(shape):
        raise InputError(f"dataset {name} has images of shape {list(ds.shape)}, the network reads {list(shape)}")
    x, y = (ds.x_train, ds.y_train) if args.split == "train" else (ds.x_test, ds.y_test)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    progress(f"checking {len(y)} {name} {args.split} images")
    report = compare(net, model, x, y, batch_size=args.batch_size, fake_dtype=args.fake_dtype, progress=progress)
    report.update(dataset=name, split=args.split, require=args.require)
    ok = report["same_top1"] >= args.require
    rows = [{"layer": r["layer"], "kind": r["kind"], "values": r["values"],
             "agreement %": round(100 * r["agreement"], 4)} for r in report["layers"]]
    text = table(rows, ["layer", "kind", "values", "agreement %"])
    text += (f"\n\n{report['images']} {name} {args.split} images (8-bit pixels read as {report['input_bits']}-bit "
             f"input codes): golden top-1 {report['golden_top1']:.2f} %, "
             f"fake-quant ({args.fake_dtype}) top-1 {report['fake_quant_top1']:.2f} %, identical top-1 {report['same_top1']:.2f} % "
             f"({report['same_top1_count']}/{report['images']})")
    if not ok:
        text += f"\nFAIL: identical top-1 below the required {args.require} %"
    return Result(report, text, exit_code=0 if ok else 1)

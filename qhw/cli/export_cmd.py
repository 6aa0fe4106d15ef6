"""``qhw export``: trained checkpoint -> integer network (NET.json + NET.npz)."""

from __future__ import annotations

HELP = "export a quantized checkpoint as an integer-only network description (JSON + .npz, see docs/IR_FORMAT.md)"


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by 'qhw train'")
    p.add_argument("--out", required=True, metavar="NET",
                   help="network path: writes NET.json and NET.npz (a missing .json suffix is added)")
    p.add_argument("--no-mul-shift", action="store_true",
                   help="thresholds only: skip the search for equivalent multiplier/shift requantizers")


def run(args):
    from qhw.cli import Result, progress, table
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import FORMAT_VERSION, paths_for, save_network

    json_path, npz_path = paths_for(args.out)
    progress(f"exporting {args.checkpoint}")
    net, _ = export_checkpoint(args.checkpoint, with_mul_shift=not args.no_mul_shift)
    save_network(net, json_path)
    rows = net.summary()
    text = table(rows, ["name", "kind", "inputs", "pe", "weights", "acc_bits", "requant", "out"])
    text += f"\n\nwrote {json_path} and {npz_path} (format_version {FORMAT_VERSION}, {len(rows)} layers)"
    data = {"network": str(json_path), "arrays": str(npz_path), "format_version": FORMAT_VERSION, "layers": rows}
    return Result(data, text)

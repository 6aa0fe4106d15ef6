"""``qhw import``: a QONNX model (Brevitas ``export_qonnx``, QKeras via qonnx) -> integer network."""

from __future__ import annotations

HELP = ("import a QONNX model (Brevitas, QKeras via qonnx) as an integer-only network (JSON + .npz, "
        "see docs/IR_FORMAT.md)")


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL.onnx", help="QONNX file (Quant / BipolarQuant / Trunc nodes)")
    p.add_argument("--out", required=True, metavar="NET",
                   help="network path: writes NET.json and NET.npz (a missing .json suffix is added); "
                        "nothing is written when the import or --check fails")
    p.add_argument("--no-mul-shift", action="store_true",
                   help="thresholds only: skip the search for equivalent multiplier/shift requantizers")
    p.add_argument("--check", default=None, metavar="DATASET", choices=["digits", "synthetic"],
                   help="before writing, run the QONNX graph (qonnx's executor) and the golden model on this "
                        "dataset's test images and require every shared quantized tensor to agree (values "
                        "qonnx's float32 arithmetic puts exactly on a level edge are counted, not failed) and "
                        "top-1 to be identical")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="--check only the first N images")
    p.add_argument("--batch-size", type=int, default=128, help="images per qonnx execution (default 128)")


def run(args):
    from qhw.cli import Result, progress, table
    from qhw.errors import InputError
    from qhw.ir.qonnx import import_file
    from qhw.ir.serialize import FORMAT_VERSION, paths_for, save_network

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, not {args.limit}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {args.batch_size}")
    json_path, npz_path = paths_for(args.out)
    progress(f"importing {args.model}")
    imp = import_file(args.model, with_mul_shift=not args.no_mul_shift)
    net = imp.net
    rows = net.summary()
    text = table(rows, ["name", "kind", "inputs", "pe", "weights", "acc_bits", "requant", "out"])
    data = {"network": str(json_path), "arrays": str(npz_path), "format_version": FORMAT_VERSION, "layers": rows}
    exit_code = 0
    if args.check:
        from qhw.ir.qonnx.agree import compare
        from qhw.quant.data import load_dataset

        shape = net.input.shape
        ds = load_dataset(args.check, shape=shape) if args.check == "synthetic" else load_dataset(args.check)
        if tuple(ds.shape) != tuple(shape):
            raise InputError(f"dataset {args.check} has images of shape {list(ds.shape)}, "
                             f"the network reads {list(shape)}")
        x, y = ds.x_test, ds.y_test
        if args.limit:
            x, y = x[: args.limit], y[: args.limit]
        progress(f"checking {len(y)} {args.check} test images against qonnx execution")
        rep = compare(net, args.model, x, y, batch_size=args.batch_size, progress=progress)
        data["check"] = dict(rep, dataset=args.check)
        text += "\n\n" + table([{k: r[k] for k in ("tensor", "layer", "kind", "values", "mismatches")}
                                for r in rep["rows"]], ["tensor", "layer", "kind", "values", "mismatches"])
        edge = rep["mismatches_at_edge"]
        text += (f"\n\n{rep['images']} {args.check} test images: {rep['tensors']} tensors, "
                 f"{rep['values_compared']} values compared, {rep['mismatches']} mismatches"
                 + (f" ({edge} where qonnx's float32 quantizer input sits on a level edge)" if edge else "")
                 + f"; identical top-1 {rep['same_top1']:.2f} % ({rep['same_top1_count']}/{rep['images']})")
        # a value qonnx's float32 arithmetic put exactly on a level edge is not the network's fault
        if rep["mismatches"] > edge or rep["same_top1_count"] != rep["images"]:
            exit_code = 1
            text += f"\nFAIL: the network disagrees with the QONNX model; nothing written to {json_path}"
    if exit_code == 0:
        save_network(net, json_path)
        text += f"\n\nwrote {json_path} and {npz_path} (format_version {FORMAT_VERSION}, {len(rows)} layers)"
    data["written"] = exit_code == 0
    return Result(data, text, exit_code=exit_code)

"""``qhw board``: a build on a real board: the bitstream (``flash-file``) and the host side (``classify``)."""

from __future__ import annotations

import argparse

HELP = ("a build on a board: 'flash-file' makes the bitstream (the accelerator behind a UART, yosys, nextpnr, "
        "icepack / ecppack), 'classify' sends images to the board over the serial port and reads the classes back")

PYSERIAL = "pyserial==3.5"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    f = sub.add_parser("flash-file", help="bitstream of a build for an iCE40 / ECP5 board, in BUILD/board/",
                       description="Wrap a 'qhw build' accelerator in the UART board top (qhw.net.uart framing), "
                                   "synthesize it with yosys, place and route it with nextpnr on the board's pins "
                                   "and clock, pack the bitstream into BUILD/board/<top>_<board>.bin|.bit. Exits "
                                   "1 when nextpnr's Fmax misses the board clock (the bitstream is still written).")
    f.add_argument("build", metavar="BUILD", help="build directory written by 'qhw build'")
    f.add_argument("--board", required=True, help="board from boards/ with pins: icebreaker, ulx3s_85f")
    f.add_argument("--baud", type=float, default=115200, help="UART baud rate (default %(default)g)")
    f.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    f.add_argument("--timeout", type=float, default=None, metavar="S", help="give up a tool after S seconds")
    c = sub.add_parser("classify", help="classify images on a programmed board over its serial port",
                       description="Send images to a board running a 'flash-file' bitstream and read back the "
                                   "logits and the class. With --build, check the board runs that network (identify "
                                   "reply) and compare every reply with the golden model.")
    c.add_argument("--port", required=True, metavar="DEV", help="serial port, e.g. /dev/ttyUSB1 (iCEBreaker: the "
                   "FTDI's second interface)")
    c.add_argument("--build", metavar="BUILD", default=None,
                   help="the build the board was made from: checks the network digest, compares with the golden model")
    c.add_argument("--images", type=int, default=20, metavar="N", help="how many test images (default 20)")
    c.add_argument("--dataset", choices=("digits", "synthetic"), default="digits",
                   help="digits test images (default) or synthetic ones of the network's input shape (needs --build)")
    c.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")
    c.add_argument("--baud", type=float, default=115200, help="baud rate (default %(default)g)")
    c.add_argument("--timeout", type=float, default=2.0, metavar="S", help="seconds to wait for a reply (default 2)")
    for s in (f, c):
        s.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print one JSON document on stdout instead of text")


def run(args):
    if args.action == "flash-file":
        return _flash_file(args)
    return _classify(args)


def _flash_file(args):
    from qhw.backends.board_top import flash_file
    from qhw.cli import Result, progress, table
    from qhw.report.results import save_result

    rep = flash_file(args.build, board=args.board, baud=args.baud, seed=args.seed, timeout=args.timeout,
                     progress=progress)
    # what 'qhw report' reads (the bitstream is written even when timing is missed, so is this)
    progress(f"saved {save_result(args.build, 'pnr', (rep.board,), {'ok': rep.timing_met, **rep.to_dict()})}")
    rows = [{"resource": k, "used": v["used"], "available": v["available"],
             "percent": round(100.0 * v["used"] / v["available"], 1) if v["available"] else 0.0}
            for k, v in rep.utilization.items() if v["used"]]
    verdict = "met" if rep.timing_met else "NOT met"
    text = table(rows, ["resource", "used", "available", "percent"])
    text += (f"\n\nFmax {rep.fmax_mhz:g} MHz against the {rep.clock_mhz:g} MHz board clock: timing {verdict}"
             f"\nUART {rep.baud:g} baud (divisor {rep.divisor}: {rep.actual_baud:g} baud), multipliers "
             f"{'in DSP blocks' if rep.dsp else 'in logic'}; synth {rep.seconds['synth']:g} s, "
             f"place and route {rep.seconds['pnr']:g} s"
             f"\nwrote {rep.bitstream}")
    if not rep.timing_met:
        text += (f"\nthe design is not guaranteed to work at {rep.clock_mhz:g} MHz: use smaller folds, another "
                 "--seed, or a slower clock")
    return Result(rep.to_dict(), text, exit_code=0 if rep.timing_met else 1)


def _open_serial(port: str, baud: float):
    from qhw.backends.toolchain import PIP
    from qhw.errors import InputError, ToolMissingError

    try:
        import serial  # type: ignore[import-not-found]
    except ImportError:
        raise ToolMissingError("pyserial", f"{PIP} {PYSERIAL}") from None
    try:
        return serial.Serial(port, baudrate=int(baud), timeout=0.05)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise InputError(f"cannot open serial port {port}: {exc}") from None


def _classify(args):
    import time
    from pathlib import Path

    import numpy as np

    from qhw.cli import Result, progress, table
    from qhw.errors import InputError
    from qhw.net.simulate import dataset_images, synthetic_images
    from qhw.net.stream import FrameFormat
    from qhw.net.uart import UartClient, UartProtocol

    if args.images < 1:
        raise InputError(f"--images must be at least 1, not {args.images}")
    net = manifest = None
    if args.build:
        from qhw.net.build import load_build
        from qhw.net.simulate import load_build_network

        manifest = load_build(args.build)
        net = load_build_network(manifest, Path(args.build))
    port = _open_serial(args.port, args.baud)
    try:
        if manifest is not None:
            protocol = UartProtocol.from_manifest(manifest)
        else:
            # no build: the framing from the board's identify reply; only the digits input is known here
            digits = FrameFormat((1, 8, 8), "unsigned", 8, 1)
            if args.dataset != "digits":
                raise InputError("--dataset synthetic needs --build (the input shape and encoding)")
            probe = UartProtocol(digits, 1, 8, "signed", 8, 8, 0, 16, bytes(4))  # only its identify is used
            protocol = UartProtocol.from_ident(UartClient(port, probe, timeout=args.timeout).identify(), digits)
        client = UartClient(port, protocol, timeout=args.timeout)
        port.reset_input_buffer()
        try:
            info = client.check()
        except InputError:
            # the board may be inside an interrupted image: wait for its timeout, then ask again
            time.sleep(8192 / args.baud + 0.1)
            port.reset_input_buffer()
            info = client.check()
        progress(f"board on {args.port}: network {info['digest']}, {protocol.codes} codes in, "
                 f"{protocol.channels} logits out")
        if args.dataset == "synthetic":
            if net is None:
                raise InputError("--dataset synthetic needs --build (the input shape and encoding)")
            images, labels = synthetic_images(net.input.out, args.images, seed=args.seed), None
        elif net is not None:
            images = dataset_images("digits", net, args.images)
            labels = _digits_labels(args.images)
        else:
            from qhw.quant.data import load_dataset

            ds = load_dataset("digits")
            if args.images > len(ds.x_test):
                raise InputError(f"the digits test set has {len(ds.x_test)} images, not {args.images}")
            images, labels = ds.x_test[:args.images].astype(np.int64), _digits_labels(args.images)
        golden_logits = golden_index = None
        if net is not None:
            from qhw.ir.golden import GoldenModel

            g = GoldenModel(net)
            golden_logits = g(images).numpy().reshape(len(images), -1)
            golden_index = g.predict(images).numpy()
        results = []
        t0 = time.monotonic()
        for k, image in enumerate(images):
            r = client.classify(image)
            row = {"image": k, "class": r.index, "header_ok": r.ok, "flags": r.flags, "logits": list(r.logits)}
            if labels is not None:
                row["label"] = int(labels[k])
            if golden_index is not None:
                row["golden_class"] = int(golden_index[k])
                row["logits_equal"] = list(r.logits) == golden_logits[k].tolist()
            results.append(row)
            if (k + 1) % 10 == 0 or k + 1 == len(images):
                progress(f"  {k + 1}/{len(images)} images")
        seconds = time.monotonic() - t0
    finally:
        port.close()
    n = len(results)
    data = {"port": args.port, "build": args.build, "digest": info["digest"], "images": n, "results": results,
            "seconds_per_image": round(seconds / n, 4), "replies_ok": sum(r["header_ok"] for r in results)}
    lines = []
    if golden_index is not None:
        data["agree"] = sum(r["class"] == r["golden_class"] and r["logits_equal"] for r in results)
        lines.append(f"{data['agree']}/{n} replies equal the golden model (class and every logit)")
    if labels is not None:
        data["correct"] = sum(r["class"] == r["label"] for r in results)
        lines.append(f"{data['correct']}/{n} classes equal the test labels")
    lines.append(f"{data['replies_ok']}/{n} replies without line errors; {1000 * seconds / n:.1f} ms per image at "
                 f"{args.baud:g} baud")
    cols = ["image", "class"] + (["golden_class", "logits_equal"] if golden_index is not None else []) \
        + (["label"] if labels is not None else []) + ["header_ok"]
    text = table(results, cols) + "\n\n" + "\n".join(lines)
    ok = data["replies_ok"] == n and data.get("agree", n) == n
    return Result(data, text, exit_code=0 if ok else 5)


def _digits_labels(n: int):
    from qhw.quant.data import load_dataset

    return load_dataset("digits").y_test[:n]

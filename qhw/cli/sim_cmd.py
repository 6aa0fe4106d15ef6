"""``qhw sim``: a build directory simulated in cocotb on real images, every layer against the golden model."""

from __future__ import annotations

HELP = ("simulate a 'qhw build' directory in cocotb (Icarus or Verilator) on test images: every layer's output "
        "stream compared bit for bit with the golden model, class index and logits checked, steady-state cycles "
        "per frame, latency and per-layer busy measured; a deadlock names the stalled engines")


def add_arguments(p) -> None:
    p.add_argument("build", metavar="BUILD", help="build directory written by 'qhw build' (holds manifest.json)")
    p.add_argument("--images", type=int, default=20, metavar="N", help="how many test images (default 20)")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus",
                   help="Verilog simulator (default icarus; verilator builds slower and runs much faster)")
    p.add_argument("--stall", type=float, default=0.0, metavar="P",
                   help="probability that s_axis withholds valid / m_axis withholds ready in a cycle (default 0); "
                        "with P > 0 four more frames run without stalls to measure cycles per frame")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the stalls and synthetic images")
    p.add_argument("--dataset", choices=("digits", "synthetic"), default="digits",
                   help="digits: the embedded digits test set (8-bit 1x8x8 inputs); synthetic: random valid "
                        "input codes of the network's input shape (default digits)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="simulator builds and run files (default BUILD/sim; builds are reused by Verilog digest)")


def run(args):
    from pathlib import Path

    from qhw.cli import Result, progress
    from qhw.errors import InputError
    from qhw.net.build import load_build
    from qhw.net.simulate import dataset_images, format_report, load_build_network, simulate_build
    from qhw.report.results import save_result

    if args.images < 1:
        raise InputError(f"--images must be at least 1, not {args.images}")
    build = Path(args.build)
    manifest = load_build(build)
    net = load_build_network(manifest, build)
    images = dataset_images(args.dataset, net, args.images, seed=args.seed)
    report = simulate_build(build, images=images, simulator=args.simulator, stall=args.stall, seed=args.seed,
                            net=net, cache_dir=args.cache_dir, progress=progress)
    data = report.to_dict()
    # what 'qhw report' reads: the document --json prints, one file per simulator
    progress(f"saved {save_result(build, 'sim', (args.simulator,), {'ok': report.ok, **data})}")
    return Result(data, format_report(report), exit_code=0 if report.ok else 5)

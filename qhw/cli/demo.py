"""qhw demo: the main job on the embedded default, end to end."""

from __future__ import annotations

from dataclasses import asdict

from qhw.cli import Result, progress, table

HELP = ("the main job on the embedded default: train a W4A4 ResNet-8 on the bundled digits, export it, check the "
        "golden integer model, build the accelerator, simulate it on test images in cocotb (every layer bit-exact "
        "against the golden model) and synthesize it for ECP5 and iCE40 with yosys")


def add_arguments(p) -> None:
    p.add_argument("--out", default="rtl_out/demo", help="output directory (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default: %(default)s)")
    p.add_argument("--images", type=int, default=20, help="test images to simulate (default: %(default)s)")
    p.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator",
                   help="cocotb simulator (default: %(default)s)")
    p.add_argument("--target-cycles", type=int, default=16384,
                   help="fold auto: at most this many cycles per frame per layer (default: %(default)s)")
    p.add_argument("--targets", default="ecp5,ice40", help="yosys families, comma-separated (default: %(default)s)")


def _report(build: str, out, *, train_dir: str) -> tuple[str, str]:
    """OUT/report.html and OUT/report.png (``qhw report BUILD --train DIR --screenshot``).

    Without Chromium the page is still written and the screenshot line says what is missing and
    how to install it (the demo's result does not depend on it).
    """
    from qhw.errors import ToolMissingError
    from qhw.report.write import write_report

    html, png = out / "report.html", out / "report.png"
    progress(f"writing the report {html} ...")
    try:
        doc = write_report(build, html, family="ice40", train=[train_dir], screenshot=png, progress=progress)
    except ToolMissingError as exc:
        write_report(build, html, family="ice40", train=[train_dir], progress=progress)
        return str(html), f"not rendered: {exc}"
    return str(html), f"{png} ({doc['screenshot']['width']}x{doc['screenshot']['height']} px)"


def run(args) -> Result:
    from pathlib import Path

    from qhw.backends.toolchain import survey
    from qhw.errors import InputError, ToolMissingError
    from qhw.flows.model import run_model_flow
    from qhw.flows.network import run_network_flow

    statuses = survey()
    need = {"verilator": ("verilator",), "icarus": ("iverilog", "vvp")}[args.simulator]
    missing = [s for s in statuses if not s.ok and s.required and (s.name in need or s.name not in
                                                                   ("iverilog", "vvp", "verilator"))]
    if missing:
        s = missing[0]
        raise ToolMissingError(s.name, s.install)
    progress("toolchain: " + ", ".join(f"{s.name} {s.version}" for s in statuses if s.ok))
    if args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, not {args.epochs}")
    if args.images < 1:
        raise InputError(f"--images must be at least 1, not {args.images}")
    targets = tuple(t for t in args.targets.split(",") if t)
    model = run_model_flow(f"{args.out}/model", epochs=args.epochs, progress=progress)
    hw = run_network_flow(model.network, f"{args.out}/hw", target_cycles=args.target_cycles, images=args.images,
                          simulator=args.simulator, synth_targets=targets, progress=progress)
    report_html, shot = _report(hw.build, Path(args.out), train_dir=str(Path(model.checkpoint).parent))
    t, c, s = model.train, model.check, hw.simulation
    layer_rows = [{"layer": l["name"], "values": l["values"], "mismatches": l["mismatches"],
                   "busy %": f"{100 * l['busy']:.1f}" if l.get("busy") is not None else "-",
                   "ideal %": f"{100 * l['ideal_busy']:.1f}" if l.get("ideal_busy") is not None else "-"}
                  for l in s["layers"]]
    lines = [
        f"ResNet-8 W4A4 on digits: fake-quant top-1 {t['top1']:.2f} %, BitOPs {t['bitops_gb']:.4f} Gb, "
        f"WCR {t['wcr']:.2f}x, weight memory {t['weight_memory_bits']} bits",
        f"  golden integer model: top-1 {c['golden_top1']:.2f} %, identical top-1 with fake-quant on "
        f"{c['same_top1']:.2f} % of {c['images']} test images; lowest per-layer agreement "
        f"{100 * min(r['agreement'] for r in c['layers']):.4f} %",
        "",
        f"accelerator: {len(s['layers'])} engines, {hw.cycles_per_frame} cycles per frame estimated",
        f"cocotb on {s['simulator']} ({s['frames']} frames, stalls {s['stall']}): {s['values_compared']} values "
        f"compared layer by layer, {s['mismatches']} mismatches; class index = golden on "
        f"{s['class_agreement']:.1f} % of frames; measured {s['cycles_per_frame']} cycles per frame, "
        f"first-frame latency {s['latency']} cycles",
        table(layer_rows, ["layer", "values", "mismatches", "busy %", "ideal %"]),
        "  (busy %: cycles the layer's output transfers; ideal %: the same at the manifest's cycles per frame)",
        "",
        table(hw.synthesis, ["target", "lut_sites", "lut_est", "lut", "carry", "ff", "bram", "bram_est"]),
        "  (yosys with DSP inference off, as estimated; lut_sites: LUTs of the logic cells used, carry-chain "
        "LUTs included, what a device's capacity and the estimate count)",
        "",
        "files:",
        f"  checkpoint       {model.checkpoint}",
        f"  integer network  {model.network}",
        f"  Verilog          {hw.verilog}",
        f"  build manifest   {hw.manifest}",
    ] + [f"  yosys log        {r['log']}" for r in hw.synthesis] + [
        f"  report           {report_html}",
        f"  screenshot       {shot}",
    ]
    ok = s["ok"]
    return Result({"model": asdict(model), "hardware": asdict(hw)}, "\n".join(lines), exit_code=0 if ok else 5)

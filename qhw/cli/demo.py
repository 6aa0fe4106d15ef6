"""qhw demo: the main job on the embedded default, end to end."""

from __future__ import annotations

from dataclasses import asdict

from qhw.cli import Result, progress, table

HELP = ("the main job on the embedded default: train a W4A4 ResNet-8 on the bundled digits, export it, check the "
        "golden integer model, and run the smoke design through cocotb, yosys and nextpnr")


def add_arguments(p) -> None:
    p.add_argument("--out", default="rtl_out/demo", help="output directory (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default: %(default)s)")


def run(args) -> Result:
    from qhw.backends.toolchain import survey
    from qhw.errors import InputError, ToolMissingError
    from qhw.flows.model import run_model_flow
    from qhw.flows.smoke import run_smoke_flow

    statuses = survey()
    missing = [s for s in statuses if not s.ok and s.required and s.name not in ("iverilog", "vvp")]
    if missing:
        s = missing[0]
        raise ToolMissingError(s.name, s.install)
    progress("toolchain: " + ", ".join(f"{s.name} {s.version}" for s in statuses if s.ok))
    if args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, not {args.epochs}")
    model = run_model_flow(f"{args.out}/model", epochs=args.epochs, progress=progress)
    smoke = run_smoke_flow(f"{args.out}/smoke", progress=progress)
    t, c = model.train, model.check
    lines = [
        f"ResNet-8 W4A4 on digits: fake-quant top-1 {t['top1']:.2f} %, BitOPs {t['bitops_gb']:.4f} Gb, "
        f"WCR {t['wcr']:.2f}x, weight memory {t['weight_memory_bits']} bits",
        f"  checkpoint {model.checkpoint}",
        f"  integer network {model.network}",
        f"  golden integer model: top-1 {c['golden_top1']:.2f} %, identical top-1 with fake-quant on "
        f"{c['same_top1']:.2f} % of {c['images']} test images; lowest per-layer agreement "
        f"{100 * min(r['agreement'] for r in c['layers']):.4f} %",
        "",
        f"smoke design: {smoke.verilog}",
    ]
    for sim, r in smoke.simulation.items():
        lines.append(f"  cocotb on {sim}: {len(r['passed'])} test(s) passed, "
                     f"{r.get('vectors')} dot products / {r.get('terms')} terms bit-exact")
    lines += [f"  skipped: {s}" for s in smoke.skipped]
    lines.append("")
    lines.append(table(smoke.synthesis, ["target", "lut", "ff", "carry", "dsp", "bram"]))
    lines.append("")
    lines.append(table([{"device": r["device"], "fmax_mhz": r["fmax_mhz"]} for r in smoke.pnr],
                       ["device", "fmax_mhz"]))
    return Result({"model": asdict(model), "smoke": asdict(smoke)}, "\n".join(lines))

"""qhw demo: the main job on the embedded default, end to end."""

from __future__ import annotations

from dataclasses import asdict

from qhw.cli import Result, progress, table

HELP = "check the toolchain and run the smoke design through simulation, synthesis and place-and-route"


def add_arguments(p) -> None:
    p.add_argument("--out", default="rtl_out/demo", help="output directory (default: %(default)s)")


def run(args) -> Result:
    from qhw.backends.toolchain import survey
    from qhw.errors import ToolMissingError
    from qhw.flows.smoke import run_smoke_flow

    statuses = survey()
    missing = [s for s in statuses if not s.ok and s.required and s.name not in ("iverilog", "vvp")]
    if missing:
        s = missing[0]
        raise ToolMissingError(s.name, s.install)
    progress("toolchain: " + ", ".join(f"{s.name} {s.version}" for s in statuses if s.ok))
    smoke = run_smoke_flow(f"{args.out}/smoke", progress=progress)
    lines = [f"smoke design: {smoke.verilog}"]
    for sim, r in smoke.simulation.items():
        lines.append(f"  cocotb on {sim}: {len(r['passed'])} test(s) passed, "
                     f"{r.get('vectors')} dot products / {r.get('terms')} terms bit-exact")
    lines += [f"  skipped: {s}" for s in smoke.skipped]
    lines.append("")
    lines.append(table(smoke.synthesis, ["target", "lut", "ff", "carry", "dsp", "bram"]))
    lines.append("")
    lines.append(table([{"device": r["device"], "fmax_mhz": r["fmax_mhz"]} for r in smoke.pnr],
                       ["device", "fmax_mhz"]))
    return Result({"smoke": asdict(smoke)}, "\n".join(lines))

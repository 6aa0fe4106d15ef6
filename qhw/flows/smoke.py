"""The smoke flow: one small design through every tool of the chain.

Amaranth → Verilog → cocotb on Icarus and Verilator → yosys on the four
families → nextpnr on an iCE40 UP5K and an ECP5 85F. It is the first thing
to run on a new machine: if it passes, the toolchain is sound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qhw.backends.pnr import place_and_route
from qhw.backends.sim import SIMULATORS, run_cocotb
from qhw.backends.synth import TARGETS, synthesize
from qhw.backends.toolchain import find_program
from qhw.backends.verilog import write_verilog
from qhw.hw.smoke_mac import SmokeMac

TOP = "smoke_mac"
PARAMS = {"act_bits": 4, "weight_bits": 4, "max_length": 16}
PNR_DEVICES = ("icebreaker", "ulx3s_85f")


@dataclass
class SmokeResult:
    verilog: str
    simulation: dict = field(default_factory=dict)
    synthesis: list = field(default_factory=list)
    pnr: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def run_smoke_flow(out_dir: str | Path, *, progress: Callable[[str], None] = print, seed: int = 1) -> SmokeResult:
    out = Path(out_dir)
    verilog = write_verilog(SmokeMac(**PARAMS), name=TOP, path=out / f"{TOP}.v")
    result = SmokeResult(str(verilog))
    for sim in SIMULATORS:
        if sim == "icarus" and find_program("iverilog") is None:
            result.skipped.append("icarus: iverilog not installed (apt-get install iverilog)")
            progress("skipping Icarus: iverilog not installed (apt-get install iverilog)")
            continue
        progress(f"simulating {TOP} on {sim} ...")
        r = run_cocotb(test_module="smoke.test_smoke_mac", toplevel=TOP, sources=[verilog],
                       build_dir=out / "sim", simulator=sim, parameters={**PARAMS, "seed": seed})
        result.simulation[sim] = {"passed": list(r.passed), **r.records}
    for target in TARGETS:
        progress(f"synthesizing {TOP} for {target} ...")
        result.synthesis.append(synthesize([verilog], top=TOP, target=target,
                                           work_dir=out / "synth" / target).to_dict())
    for dev in PNR_DEVICES:
        progress(f"placing and routing {TOP} on {dev} ...")
        result.pnr.append(place_and_route([verilog], top=TOP, device=dev, work_dir=out / "pnr" / dev).to_dict())
    return result

"""The hardware flow of an exported network: build → cocotb simulation on real images → yosys.

``qhw demo`` runs it after the model flow (:mod:`qhw.flows.model`) on the
digits ResNet-8: fold auto for a cycle target, ``qhw build``, ``qhw sim``
(every layer compared with the golden model, class index checked) and
``qhw synth`` for ECP5 and iCE40 (engines kept as modules: per-layer counts).
The simulation and synthesis results are saved in ``BUILD/results/`` as
those verbs save them, so ``qhw report BUILD`` shows them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence


@dataclass
class NetworkFlowResult:
    build: str
    verilog: str
    manifest: str
    cycles_per_frame: int
    estimate: dict
    simulation: dict
    synthesis: list = field(default_factory=list)


def run_network_flow(net_path: str | Path, out_dir: str | Path, *, target_cycles: int = 16384, images: int = 20,
                     simulator: str = "verilator", stall: float = 0.2, synth_targets: Sequence[str] = ("ecp5", "ice40"),
                     top: str = "qhw_resnet8_digits", progress: Callable[[str], None] = print) -> NetworkFlowResult:
    from qhw.backends.synth import synthesize_build
    from qhw.ir.serialize import load_network
    from qhw.net.build import build
    from qhw.net.folding import auto_folds
    from qhw.net.simulate import simulate_build
    from qhw.quant.data import load_dataset
    from qhw.report.results import save_result, synth_parts

    out = Path(out_dir)
    net = load_network(net_path)
    folds = auto_folds(net, target_cycles=target_cycles)
    progress(f"building the accelerator (fold auto, at most {target_cycles} cycles per frame per layer) ...")
    res = build(net, out / "build", folds=folds, top=top, network_path=str(Path(net_path).resolve()),
                progress=progress)
    ds = load_dataset("digits")
    codes = ds.x_test[:images].astype("int64")
    progress(f"simulating {images} test images on {simulator} (every layer against the golden model) ...")
    sim = simulate_build(res.out, images=codes, simulator=simulator, stall=stall, seed=0, net=net,
                         progress=progress)
    save_result(res.out, "sim", (simulator,), {"ok": sim.ok, **sim.to_dict()})

    def synth(target: str) -> dict:
        # DSP inference off: the estimate counts multipliers in LUTs (as `qhw bench net` does by default),
        # so the two columns compare like with like. Engines kept as modules: the report's per-layer table.
        r = synthesize_build(res.out, target=target, work_dir=out / "synth" / target, dsp=False, per_layer=True)
        save_result(res.out, "synth", synth_parts(target, flat=False, dsp=False), {"ok": True, **r})
        progress(f"yosys {target}: done")
        t = r["total"]
        return {"target": target, "lut_sites": t["lut_sites"], "lut_est": r["estimate"]["lut"], "lut": t["lut"],
                "carry": t["carry"], "ff": t["ff"], "bram": t["bram"], "bram_est": r["estimate"]["bram"],
                "dsp": t["dsp"], "log": str(out / "synth" / target / "yosys.log")}

    # One yosys process per family, side by side: each is single-threaded, and they are most of the
    # demo's time. Results come back in the order of ``synth_targets``.
    progress(f"synthesizing for {', '.join(synth_targets)} with yosys (in parallel) ...")
    with ThreadPoolExecutor(max_workers=max(1, len(synth_targets))) as pool:
        reports = list(pool.map(synth, synth_targets))
    return NetworkFlowResult(str(res.out), str(res.verilog), str(res.out / "manifest.json"),
                             res.manifest["cycles_per_frame"], res.manifest["estimate"], sim.to_dict(), reports)

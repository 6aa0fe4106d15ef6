"""``qhw build --requant-style serial``: the tiny residual network with every conv / dense layer at one MAC
lane (rows = cols = lanes = 1) and serial requantizers (digit-serial multiply-shift, binary-search
thresholds), run on Verilator with stalls: every layer bit-exact
against the golden model, cycles per frame equal to the manifest's (each serial form's interval fits its
engine's SF, so it costs no cycle)."""

from __future__ import annotations

import json

import pytest

from qhw.hw.requant_search import SearchThresholdRequantizer
from qhw.hw.requant_serial import SerialMulShiftRequantizer
from qhw.net.engines import build_engine
from qhw.net.fold import Fold
from qhw.net.simulate import simulate_build, synthetic_images
from net_layers import one_lane_tiny_net
from sim_hw_support import require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim


def test_tiny_net_with_serial_requantizers_on_verilator(tmp_path_factory, qhw_cli):
    require_simulator("verilator")
    root = tmp_path_factory.mktemp("serial_net")
    net, path, mac, fold_file = one_lane_tiny_net(root)
    out = root / "build"
    proc = qhw_cli("build", str(path), "--out", str(out), "--fold", str(fold_file), "--requant-style", "serial",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    man = json.loads((out / "manifest.json").read_text())
    folds = {l["name"]: l["fold"] for l in man["layers"]}
    # requant_interval: what pace_requantizers gave each layer (0 where the engine's SF is the pace)
    assert all({k: v for k, v in folds[l.name].items() if k != "requant_interval"}
               == {"rows": 1, "cols": 1, "lanes": 1, "simd": 1, "requant": "serial"} for l in mac)
    assert all(folds[l.name].get("requant_interval", 0) >= 0 for l in mac)
    # the 7-bit signed residual arm and the logits layer build the digit-serial multiply-shift form, the
    # 4-bit stem and conv1 the binary-search thresholds, each at an interval within its SF
    engines = {l.name: build_engine(l, fold=Fold(rows=1, cols=1, lanes=1, requant="serial")) for l in mac}
    forms = {n: type(e.requant) for n, e in engines.items()}
    assert forms == {"stem": SearchThresholdRequantizer, "b.conv1": SearchThresholdRequantizer,
                     "b.conv2": SerialMulShiftRequantizer, "fc": SerialMulShiftRequantizer}
    assert all(1 < e.requant.interval <= e.window.sf for e in engines.values())
    images = synthetic_images(net.input.out, 3, seed=5)
    rep = simulate_build(out, images=images, simulator="verilator", stall=0.2, seed=2,
                         cache_dir=sim_cache(tmp_path_factory), throughput_frames=2, progress=lambda _: None)
    assert rep.ok and rep.mismatches == 0 and rep.failure is None
    assert rep.values_compared > 0 and all(l.mismatches == 0 and l.beats > 0 for l in rep.layers)
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame == man["cycles_per_frame"] == 4320
    print(f"serial tiny net: {rep.values_compared} values, {rep.cycles_per_frame} cycles/frame")

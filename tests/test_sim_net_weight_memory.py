"""``qhw build --weight-memory block``: the tiny residual network with every conv / dense layer at one MAC
lane and every weight ROM in block RAM, run on Verilator with stalls: every layer bit-exact against the
golden model, cycles per frame equal to the manifest's and to the same folds with the ROMs in LUTs (the
block path has the LUT path's timing)."""

from __future__ import annotations

import json

import pytest

from qhw.net.simulate import simulate_build, synthetic_images
from net_layers import one_lane_tiny_net
from sim_hw_support import require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim


def test_tiny_net_with_block_weights_on_verilator(tmp_path_factory, qhw_cli):
    require_simulator("verilator")
    root = tmp_path_factory.mktemp("block_weights_net")
    net, path, mac, fold_file = one_lane_tiny_net(root)
    manifests = {}
    for memory in ("auto", "block"):
        out = root / memory
        proc = qhw_cli("build", str(path), "--out", str(out), "--fold", str(fold_file), "--weight-memory", memory,
                       "--json")
        assert proc.returncode == 0, proc.stderr
        manifests[memory] = json.loads((out / "manifest.json").read_text())
    auto, block = manifests["auto"], manifests["block"]
    folds = {l["name"]: l["fold"] for l in block["layers"]}
    assert all(folds[l.name] == {"rows": 1, "cols": 1, "lanes": 1, "simd": 1, "weights": "block"} for l in mac)
    for family in ("ice40", "ecp5", "xilinx", "gowin"):  # LUTs traded for block RAM, by the estimate
        assert block["estimate"][family]["bram"] > auto["estimate"][family]["bram"]
        assert block["estimate"][family]["lut"] < auto["estimate"][family]["lut"]
    images = synthetic_images(net.input.out, 3, seed=5)
    rep = simulate_build(root / "block", images=images, simulator="verilator", stall=0.2, seed=3,
                         cache_dir=sim_cache(tmp_path_factory), throughput_frames=2, progress=lambda _: None)
    assert rep.ok and rep.mismatches == 0 and rep.failure is None
    assert rep.values_compared > 0 and all(l.mismatches == 0 and l.beats > 0 for l in rep.layers)
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame == block["cycles_per_frame"] \
        == auto["cycles_per_frame"] == 4320
    print(f"block-weights tiny net: {rep.values_compared} values, {rep.cycles_per_frame} cycles/frame")

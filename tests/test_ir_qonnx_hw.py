"""An imported Brevitas network built and simulated end to end: ``qhw build`` + ``qhw sim``, bit-exact.

The all-binary Brevitas model (TorchScript export: XNOR convs with padded
bipolar inputs, a MaxPool, the flattened 16x2x2 map into a 2x2-kernel conv,
raw logits) goes through :func:`qhw.net.build.build` and
:func:`qhw.net.simulate.simulate_build` on Verilator with random stalls:
every engine's output stream must equal the golden model on 4 digits test
images and the hardware's classes those of qonnx's execution of the ONNX
file.
"""

from __future__ import annotations

import numpy as np
import pytest

from brevitas_models import exported, require_brevitas
from sim_hw_support import require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
IMAGES = 4


def test_imported_binary_network_runs_bit_exact_in_verilator(tmp_path_factory, tmp_path):
    require_brevitas()
    require_simulator("verilator")
    from qhw.ir.golden import GoldenModel
    from qhw.ir.qonnx import import_file
    from qhw.ir.qonnx.agree import compare
    from qhw.ir.serialize import save_network
    from qhw.net.build import build
    from qhw.net.compile import default_fold
    from qhw.net.simulate import format_report, simulate_build
    from qhw.quant.data import load_dataset

    path = exported("binary", False, tmp_path_factory.getbasetemp() / "brevitas_onnx")
    net = import_file(path).net
    net_path = save_network(net, tmp_path / "binary.json")
    folds = {l.name: default_fold(l, max_simd=16, max_cols=16) for l in net.layers[1:]}
    res = build(net, tmp_path / "build", folds=folds, network_path=str(net_path))
    ds = load_dataset("digits")
    images = ds.x_test[:IMAGES].astype(np.int64)
    rep = simulate_build(res.out, images=images, simulator="verilator", stall=0.2, seed=5,
                         cache_dir=sim_cache(tmp_path_factory), progress=print)
    print(format_report(rep))
    assert rep.ok and rep.failure is None and rep.images == IMAGES
    assert rep.mismatches == 0 and rep.logits_wrong == 0 and rep.class_agreement == 100.0
    assert len(rep.layers) == len(net.layers) - 1 and all(l.mismatches == 0 and l.values > 0 for l in rep.layers)
    tail = rep.frames - IMAGES  # the unstalled frames simulate_build appends to measure the rate
    frames = np.concatenate([images, images[:tail]]) if tail else images
    values = GoldenModel(net).run(frames)
    assert rep.values_compared == sum(int(values[l.name].numel()) for l in net.layers[1:])
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame == res.manifest["cycles_per_frame"]
    # the bipolar padding of the XNOR convs is in hardware, and the classes are qonnx's
    assert any(l.kind == "conv" and l.in_spec.code.value == "bipolar" and l.padding != (0, 0) for l in net.layers)
    agree = compare(net, path, ds.x_test[:IMAGES], ds.y_test[:IMAGES])
    assert agree["mismatches"] == 0 and agree["same_top1_count"] == IMAGES

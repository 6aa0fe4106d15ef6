"""``qhw sim`` on the networks beyond the four digits configs: every layer bit-exact end to end.

* **mixed**: the digits ResNet-8 with all three PE families in one design
  (quant config ``mixed``: 8-bit MAC stem and fc, power-of-two shift-add
  stage 1, W1A1 XNOR-popcount stages 2 and 3, bipolar padding corrected);
  CI builds it at a quarter width (4 / 8 / 16 channels, 4-wide folds: a
  1.2 MB design whose Verilator build and run take about 75 s where the
  standard net's take four minutes), the acceptance run at the standard
  16 / 32 / 64 with 16-wide folds;
* **odd**: the ``resnet8-odd`` preset (3×9×13 input, widths 6 / 10 / 14,
  maps 9×13 → 5×7 → 3×4), W4A4, trained on the synthetic dataset, with folds
  chosen so that no simd and no column count divides a channel count
  (:func:`odd_folds`): every layer has a short last channel group on its
  input, its output or both, and width adapters sit on the edges where a
  producer's simd differs from its consumer's.

Both are built at the computed skip-FIFO depths (no scaling) and run on
Verilator with random stalls on ``s_axis`` and ``m_axis``; every engine's
output stream is compared with the golden model, the logits and class index
of every frame too. A fault-injected variant must fail: the odd build
checked against a network whose last output channel of ``s2.b1.conv1``
(the short last neuron group of an 8-column array over 10 channels) was
changed must name that layer and channel 9.

CI runs 4 images of each (plus a 2-frame throughput tail; 4 frames in the acceptance run); the acceptance
run (20 images each, 50 for the odd net on its synthetic test set) is::

    QHW_SIM_FULL=1 pytest tests/test_sim_net_networks.py -s
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest

from qhw.errors import SimulationMismatch
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Conv, Dense, Network
from qhw.net.build import build
from qhw.net.compile import default_fold
from qhw.net.fold import Fold
from qhw.net.simulate import format_report, simulate_build
from digits_nets import digits_network, digits_test_images
from sim_hw_support import require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
FULL = os.environ.get("QHW_SIM_FULL") == "1"
MIXED_IMAGES = 20 if FULL else 4
#: stage-1 width of the mixed net: the standard 16 in the acceptance run, 4 in CI (see :func:`mixed_network`)
MIXED_WIDTH = 16 if FULL else 4
ODD_IMAGES = 50 if FULL else 4
TAIL = 4 if FULL else 2  # frames appended without stalls to measure cycles per frame
ODD_SHAPE = (3, 9, 13)


def say(message: str) -> None:
    print(message, flush=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("net_sim")


def net_cache(root: Path) -> Path:
    return Path(os.environ.get("QHW_NET_CACHE", root / "nets"))


def odd_network(root: Path):
    """The resnet8-odd preset, W4A4, trained 8 epochs on the synthetic dataset (about 8 s), exported."""
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import load_network, save_network
    from qhw.quant.train import TrainConfig, train

    path = net_cache(root) / "resnet8-odd" / "net.json"
    if not path.is_file():
        cfg = TrainConfig(model="resnet8-odd", dataset="synthetic", quant="w4a4", epochs=8, seed=0,
                          out_dir=str(path.parent / "train"))
        net, _ = export_checkpoint(train(cfg, progress=lambda *_: None).checkpoint)
        save_network(net, path)
    return load_network(path), path


def odd_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test images of the synthetic dataset the odd net was trained on, and their labels."""
    from qhw.quant.data import load_dataset

    ds = load_dataset("synthetic", shape=ODD_SHAPE, seed=0, n_train=512, n_test=max(128, n))
    return ds.x_test[:n].astype(np.int64), ds.y_test[:n]


def _short(channels: int, prefer: int, avoid: int = 0) -> int:
    """The largest width at most ``prefer`` (not ``avoid``) leaving a short last group over ``channels``."""
    return next((k for k in range(min(prefer, channels - 1), 1, -1) if channels % k and k != avoid), 1)


def odd_folds(net) -> dict:
    """Folds with short last groups everywhere: simd ∤ C_in on every layer, cols ∤ C_out past stage 1.

    Widths up to 8 (fewer cycles); the stem and stage 1 compute all 6
    output channels at once, so the 117-pixel maps cost 2,106 cycles a frame
    instead of twice that. The projection shortcuts read their block's input
    at another simd than conv1, so the forked stream reaches one of them
    through a width adapter.
    """
    folds = {}
    for layer in net.layers[1:]:
        if isinstance(layer, (Conv, Dense)):
            c_in, c_out = layer.in_spec.channels, layer.out_channels
            if layer.name.endswith(".shortcut"):
                conv1 = folds[layer.name.replace(".shortcut", ".conv1")]
                simd = _short(c_in, 4, avoid=conv1.simd)
            else:
                simd = _short(c_in, 8)
            cols = c_out if c_out <= 6 else _short(c_out, 8)
            rows = 2 if simd % 2 == 0 else 1
            folds[layer.name] = Fold(rows=rows, cols=cols, lanes=simd // rows)
        else:
            folds[layer.name] = _short(layer.in_specs[0].channels, 8)
    return folds


def short_groups(net, folds) -> list[str]:
    """Layers whose input or output channels do not fill their last group."""
    out = []
    for layer in net.layers[1:]:
        f = folds[layer.name]
        if isinstance(f, Fold):
            if layer.in_spec.channels % f.simd or layer.out_channels % f.cols:
                out.append(layer.name)
        elif layer.in_specs[0].channels % f:
            out.append(layer.name)
    return out


def wide_folds(net, width: int) -> dict:
    return {l.name: default_fold(l, max_simd=width, max_cols=width) for l in net.layers[1:]}


def expected_values(net, images, tail: int) -> int:
    frames = np.concatenate([images, images[np.arange(tail) % len(images)]]) if tail else images
    values = GoldenModel(net).run(frames)
    return sum(int(values[l.name].numel()) for l in net.layers[1:])


def check_bit_exact(rep, net, images, tail: int = TAIL) -> None:
    """Every layer compared and equal, every frame's logits and class index equal to the golden model's."""
    assert rep.failure is None and rep.ok
    assert rep.images == len(images) and rep.frames == len(images) + tail
    assert [l.name for l in rep.layers] == [l.name for l in net.layers[1:]]
    assert all(l.values > 0 and l.mismatches == 0 for l in rep.layers)
    assert rep.values_compared == expected_values(net, images, tail)
    assert rep.mismatches == 0 and rep.logits_wrong == 0
    assert rep.classes_agree == rep.frames and rep.class_agreement == 100.0
    # frames back to back at the slowest engine's rate: the computed skip-FIFO depths reach full rate
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame
    assert rep.cycles_per_frame_min == rep.cycles_per_frame_max == rep.manifest_cycles_per_frame


def summary(name: str, rep) -> str:
    return (f"{name}: {rep.frames} frames x {len(rep.layers)} layers, {rep.values_compared} values compared, "
            f"{rep.mismatches} mismatches, class agreement {rep.class_agreement:.1f} % ({rep.classes_agree}/"
            f"{rep.frames}), cycles/frame {rep.cycles_per_frame} (manifest {rep.manifest_cycles_per_frame})")


# -- mixed: all three PE families in one accelerator ----------------------------------------------

def mixed_network(root: Path, width: int):
    """The digits ResNet-8 under quant config ``mixed``; ``width`` 16 is the standard net (tests/digits_nets.py),
    others the same topology at stage widths ``width``, 2·``width``, 4·``width``, trained the same way."""
    if width == 16:
        return digits_network("mixed", net_cache(root))
    from qhw.ir.export import export_checkpoint
    from qhw.ir.serialize import load_network, save_network
    from qhw.quant.train import TrainConfig, train

    path = net_cache(root) / f"mixed-w{width}" / "net.json"
    if not path.is_file():
        cfg = TrainConfig(model="resnet8", width=width, dataset="digits", quant="mixed", epochs=3, seed=0,
                          out_dir=str(path.parent / "train"))
        net, _ = export_checkpoint(train(cfg, progress=lambda *_: None).checkpoint)
        save_network(net, path)
    return load_network(path)


def test_mixed_families_digits_net_bit_exact_on_verilator(root, cache):
    require_simulator("verilator")
    net = mixed_network(root, MIXED_WIDTH)
    assert net["stem"].out_channels == MIXED_WIDTH
    kinds = {l.name: l.pe.value for l in net.layers[1:] if isinstance(l, (Conv, Dense))}
    assert kinds["stem"] == kinds["fc"] == "mac"
    assert {kinds[n] for n in kinds if n.startswith("s1.")} == {"shift"}
    assert {kinds[n] for n in kinds if n.startswith(("s2.", "s3."))} == {"xnor"}
    # folds as wide as stage 1 (4 or 16 channels per beat and columns): 576 cycles per frame either way
    res = build(net, root / "build_mixed", folds=wide_folds(net, MIXED_WIDTH))
    assert res.manifest["cycles_per_frame"] == 576
    images, _ = digits_test_images(MIXED_IMAGES)
    rep = simulate_build(res.out, images=images, simulator="verilator", stall=0.25, seed=11, net=net,
                         cache_dir=cache, progress=say, throughput_frames=TAIL)
    say(format_report(rep))
    say(summary("mixed", rep))
    check_bit_exact(rep, net, images)
    # the XNOR convs reading a padded bipolar map carry the padding correction, and it is checked
    padded = [l.name for l in net.layers[1:] if isinstance(l, Conv) and l.in_spec.code.value == "bipolar"
              and tuple(l.padding) != (0, 0)]
    assert padded and all(next(r for r in rep.layers if r.name == n).values > 0 for n in padded)


# -- odd shapes --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_build(root):
    net, path = odd_network(root)
    assert net.input.out.shape == ODD_SHAPE
    folds = odd_folds(net)
    res = build(net, root / "build_odd", folds=folds, network_path=str(path))
    return net, folds, res


def test_odd_folds_leave_short_groups_everywhere(root):
    net, _ = odd_network(root)
    folds = odd_folds(net)
    maps = {l.name: l.out.shape for l in net.layers[1:] if l.out.is_map}
    assert maps["stem"] == (6, 9, 13) and maps["s2.b1.conv1"] == (10, 5, 7) and maps["s3.b1.add"] == (14, 3, 4)
    # every layer has one, the stem too (simd 2 over its 3 input channels)
    assert short_groups(net, folds) == [l.name for l in net.layers[1:]]


def test_odd_resnet_bit_exact_on_verilator(odd_build, cache):
    require_simulator("verilator")
    net, folds, res = odd_build
    # the shortcuts read their fork at another simd than conv1: width adapters are in the build
    assert {(a["src"], a["dst"]) for a in res.manifest["adapters"]} >= {("s1.b1.add", "s2.b1.shortcut"),
                                                                       ("s2.b1.add", "s3.b1.shortcut")}
    images, labels = odd_images(ODD_IMAGES)
    rep = simulate_build(res.out, images=images, simulator="verilator", stall=0.3, seed=5, cache_dir=cache,
                         progress=say, throughput_frames=TAIL)
    say(format_report(rep))
    say(summary("odd", rep))
    check_bit_exact(rep, net, images)
    accuracy = float(np.mean(GoldenModel(net).predict(images).numpy() == labels))
    say(f"resnet8-odd golden (= hardware) accuracy on {len(images)} synthetic test images: {accuracy:.2%}")


def _altered(net, layer_name: str, channel: int, images) -> Network:
    """``net`` with one weight of ``channel`` in ``layer_name`` changed so that the layer's output changes."""
    layer = net[layer_name]
    base = GoldenModel(net).run(images)[layer_name].numpy()
    for k in range(layer.weights.shape[1]):
        w = np.array(layer.weights)
        w[channel, k] = -w[channel, k] if w[channel, k] else 1
        cand = Network(tuple(dataclasses.replace(layer, weights=w) if l is layer else l for l in net.layers),
                       output=net.output, meta=net.meta)
        out = GoldenModel(cand).run(images)[layer_name].numpy()
        if (out[:, channel] != base[:, channel]).any():
            return cand
    raise AssertionError(f"no single weight of {layer_name} channel {channel} changes its output on these images")


def test_odd_build_catches_a_wrong_code_in_the_short_last_neuron_group(odd_build, cache):
    """Fault injection: the hardware is right, the network it is checked against is not, in channel 9 of
    s2.b1.conv1 (10 channels on 8 columns: the last neuron group holds channels 8 and 9 only)."""
    require_simulator("verilator")
    net, folds, res = odd_build
    assert folds["s2.b1.conv1"].cols == 8 and net["s2.b1.conv1"].out_channels == 10
    images, _ = odd_images(2)
    altered = _altered(net, "s2.b1.conv1", 9, images)
    with pytest.raises(SimulationMismatch) as err:
        simulate_build(res.out, images=images, simulator="verilator", net=altered, cache_dir=cache, progress=say)
    message = str(err.value)
    say(message)
    assert re.match(r"layer s2\.b1\.conv1: frame \d+, pixel \(y=\d+, x=\d+\), channel 9: expected code -?\d+, "
                    r"got -?\d+", message)
    by_name = {l.name: l for l in err.value.report.layers}
    assert by_name["s1.b1.add"].mismatches == 0 and by_name["s2.b1.conv1"].mismatches > 0

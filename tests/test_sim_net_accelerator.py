"""``qhw sim``: whole built accelerators in cocotb on real images, every layer against the golden model.

* the digits w4a4 ResNet-8 on Icarus with stalls 0.3: every layer bit-exact,
  class agreement 100 %, measured cycles per frame equal to the manifest's;
* the digits binary_body net (bipolar padding correction) on Verilator with
  100 images (acceptance run only: ``QHW_SIM_FULL=1``);
* the tiny residual network of tests/net_layers.py for the failure paths: a
  skip FIFO one beat below the smallest depth that runs must deadlock with
  the watchdog naming the engines (and the smallest one must run), a
  network altered after the build must fail naming layer, frame, pixel and
  channel of the first wrong code, and ``qhw sim`` itself must print one
  line and exit non-zero.

Builds use 16-wide folds (``default_fold(layer, max_simd=16, max_cols=16)``):
Icarus spends about the same per frame whatever the fold (a w4a4 frame is
576 cycles at 26 ms with 16-wide folds, 2304 cycles at 8 ms with 8-wide),
so the widest folds keep the Verilog emission and the cycle count lowest;
on Verilator a binary_body frame takes 0.3 s. Every build uses the skip-FIFO
depths :mod:`qhw.net.fifo_depth` computes, and every one runs at the
manifest's cycles per frame.

At 15 s per w4a4 frame on Icarus, 20 images take 8 minutes, so CI runs 4
(plus 3 without stalls to measure cycles per frame, about 3.5 minutes);
the acceptance run (20 images) is::

    QHW_SIM_FULL=1 pytest tests/test_sim_net_accelerator.py -s
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from qhw.errors import SimulationMismatch
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Network
from qhw.net.build import build
from qhw.net.compile import default_fold
from qhw.net.simulate import Deadlock, format_report, simulate_build, synthetic_images
from qhw.net.stream import FrameFormat
from digits_nets import digits_network, digits_test_images
from net_layers import tiny_resnet
from sim_hw_support import require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
FULL = os.environ.get("QHW_SIM_FULL") == "1"
ICARUS_IMAGES = 20 if FULL else 4
VERILATOR_IMAGES = 100
#: The tiny network's skip FIFO into b.add input 1: 21 beats built (the full-rate depth; the
#: deadlock-free bound is 13); 12 is the smallest that runs, 16 the smallest at full rate (Icarus).
TINY_COMPUTED, TINY_SMALLEST, TINY_FULL_RATE = 21, 12, 16


def wide_folds(net) -> dict:
    return {l.name: default_fold(l, max_simd=16, max_cols=16) for l in net.layers[1:]}


def say(message: str) -> None:
    print(message, flush=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("acc_sim")


def digits_build(root: Path, name: str):
    net = digits_network(name, root / "nets")
    path = Path(os.environ.get("QHW_NET_CACHE", root / "nets")) / name / "net.json"
    res = build(net, root / f"build_{name}", folds=wide_folds(net),
                network_path=str(path) if path.is_file() else None)
    return net, res


def check_clean(rep, images: int, tail: int) -> None:
    assert rep.images == images and rep.frames == images + tail
    assert rep.mismatches == 0 and rep.logits_wrong == 0 and rep.failure is None
    assert rep.class_agreement == 100.0 and rep.classes_agree == rep.frames
    assert rep.values_compared == sum(l.values for l in rep.layers) > 0
    assert rep.ok


def expected_values(net, images, tail: int) -> int:
    frames = np.concatenate([images, images[:tail]]) if tail else images
    values = GoldenModel(net).run(frames)
    return sum(int(values[l.name].numel()) for l in net.layers[1:])


def test_w4a4_on_icarus_every_layer_bit_exact_at_the_manifest_rate(root, cache):
    require_simulator("icarus")
    net, res = digits_build(root, "w4a4")
    images, _ = digits_test_images(ICARUS_IMAGES)
    tail = 3
    rep = simulate_build(res.out, images=images, simulator="icarus", stall=0.3, seed=7, cache_dir=cache,
                         throughput_frames=tail, progress=say)
    say(format_report(rep))
    check_clean(rep, ICARUS_IMAGES, tail)
    assert rep.values_compared == expected_values(net, images, tail)
    assert len(rep.layers) == 14 and all(l.mismatches == 0 and l.beats > 0 for l in rep.layers)
    # frames back to back: exactly the slowest engine's initiation interval, every interval
    assert rep.manifest_cycles_per_frame == res.manifest["cycles_per_frame"] == 576
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame
    assert rep.cycles_per_frame_min == rep.cycles_per_frame_max == 576 and rep.measured_intervals == tail - 1
    assert all(l.interval == 576 for l in rep.layers)
    assert 0 < rep.latency < 4 * 576
    # the sink stalled: result beats waited on m_axis (the fork ahead of it absorbs most of that, so
    # the engines' outputs, one logit every SF cycles, rarely see it)
    assert rep.m_axis_stalled > 0
    assert all(0 < l.busy <= l.ideal_busy for l in rep.layers)


@pytest.mark.skipif(not FULL, reason="acceptance run (QHW_SIM_FULL=1): CI's 30-minute budget; whole accelerators run "
                                     "on Verilator in CI in tests/test_sim_net_networks.py, binary_body's engines in "
                                     "tests/test_sim_net_engines.py")
def test_binary_body_on_verilator_100_images(root, cache):
    require_simulator("verilator")
    net, res = digits_build(root, "binary_body")
    images, labels = digits_test_images(VERILATOR_IMAGES)
    rep = simulate_build(res.out, images=images, simulator="verilator", stall=0.2, seed=3, cache_dir=cache,
                         progress=say)
    say(format_report(rep))
    check_clean(rep, VERILATOR_IMAGES, 4)
    assert rep.values_compared == expected_values(net, images, 4)
    # the bipolar padding correction (binary convs with padded bipolar inputs) is built and checked
    padded = [l.name for l in net.layers[1:] if l.kind == "conv" and l.in_spec.code.value == "bipolar"
              and tuple(l.padding) != (0, 0)]
    assert len(padded) == 6
    assert all(l.values > 0 and l.mismatches == 0 for l in rep.layers if l.name in padded)
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame == res.manifest["cycles_per_frame"]
    accuracy = float(np.mean(GoldenModel(net).predict(images).numpy() == labels))
    say(f"binary_body golden (= hardware) accuracy on {VERILATOR_IMAGES} digits test images: {accuracy:.2%}")


# -- the tiny network: deadlock, mismatch, CLI ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny(root):
    from qhw.ir.serialize import save_network

    net, _ = tiny_resnet(np.random.default_rng(0))
    path = save_network(net, root / "tiny" / "net.json")
    return net, path, synthetic_images(net.input.out, 6, seed=3)


def tiny_build(root, tiny, depth: int | None = None):
    """The tiny network built with its skip FIFO into b.add input 1 cut to ``depth`` beats (None: computed)."""
    net, path, _ = tiny
    scale = 1.0 if depth is None else depth / TINY_COMPUTED
    res = build(net, root / f"tiny_{depth}", network_path=str(path), fifo_scale=scale)
    fifo = next(f for f in res.manifest["fifos"] if (f["dst"], f["port"]) == ("b.add", 1))
    assert fifo["depth"] == (TINY_COMPUTED if depth is None else depth)
    return res


def test_a_skip_fifo_below_the_smallest_that_runs_deadlocks_naming_the_engines(root, cache, tiny, qhw_cli):
    require_simulator("icarus")
    net, _, images = tiny
    ok = simulate_build(tiny_build(root, tiny, TINY_SMALLEST).out, images=images, cache_dir=cache, progress=say)
    assert ok.ok and ok.cycles_per_frame > ok.manifest_cycles_per_frame  # runs, slowly
    res = tiny_build(root, tiny, TINY_SMALLEST - 1)
    with pytest.raises(Deadlock) as err:
        simulate_build(res.out, images=images, cache_dir=cache, progress=say)
    message = str(err.value)
    say(message)
    assert "\n" not in message
    assert re.match(r"deadlock: no transfer anywhere for \d+ cycles \(cycle \d+, 0 of 6 results out\); "
                    r"stalled engines: ", message)
    assert ("b.add [input 0 from b.conv2 (FIFO depth 3): empty; input 1 from stem (FIFO depth 11): offered, "
            "not taken]") in message
    assert "stem [input from input: offered, not taken; output: blocked]" in message
    assert err.value.report.frames == 6 and err.value.report.values_compared < ok.values_compared
    # the command line: one error line, non-zero exit, progress on stderr
    proc = qhw_cli("sim", str(res.out), "--images", "3", "--dataset", "synthetic", "--cache-dir", str(cache))
    assert proc.returncode == 5 and proc.stdout == ""
    errors = [l for l in proc.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and errors[0].startswith("qhw sim: error: deadlock: ") and "b.add [" in errors[0]


def test_a_network_changed_after_the_build_fails_at_the_first_wrong_code(root, cache, tiny):
    require_simulator("icarus")
    net, _, images = tiny
    res = tiny_build(root, tiny)
    layer = net["b.conv1"]
    w = np.array(layer.weights)
    w[1, 4] = -w[1, 4]  # one weight of output channel 1
    altered = Network(tuple(dataclasses.replace(layer, weights=w) if l is layer else l for l in net.layers),
                      output=net.output, meta=net.meta)
    # where the golden streams first differ: that is what the hardware must be caught at
    fmt = FrameFormat(**{**res.manifest["layers"][1]["out_format"],
                         "shape": tuple(res.manifest["layers"][1]["out_format"]["shape"])})
    assert res.manifest["layers"][1]["name"] == "b.conv1"
    want = fmt.encode(GoldenModel(altered).run(images)["b.conv1"].numpy())
    got = fmt.encode(GoldenModel(net).run(images)["b.conv1"].numpy())
    differ = [k for k, (a, b) in enumerate(zip(want, got)) if a != b]
    assert differ, "the altered weight must change b.conv1's output on these images"
    beat = differ[0]
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
    from qhw_tb.frames import mismatch_message

    first = mismatch_message("b.conv1", fmt, beat, got[beat], want[beat])
    with pytest.raises(SimulationMismatch) as err:
        simulate_build(res.out, images=images, net=altered, cache_dir=cache, progress=say)
    message = str(err.value)
    say(message)
    assert message.startswith(first + " (first of ")
    assert re.match(r"layer b\.conv1: frame \d+, pixel \(y=\d+, x=\d+\), channel 1: expected code \d+, got \d+",
                    message)
    rep = err.value.report
    by_name = {l.name: l for l in rep.layers}
    assert by_name["stem"].mismatches == 0 and by_name["b.conv1"].mismatches > 0
    assert rep.mismatches > 0 and not rep.ok


def test_an_engine_output_breaking_the_handshake_is_caught(root, cache, tiny, tmp_path):
    """Fault injection on the probe wires only (the design is untouched): the stem's output as the
    wrapper sees it drops valid every other cycle while its consumer stalls, like a transmitter that
    withdraws an offer. The values all still match; the handshake check must fail the run. The build
    uses the smallest skip FIFO that runs: at the computed (full-rate) depth the stem is never
    back-pressured, so the fault would never fire."""
    import shutil

    require_simulator("icarus")
    net, _, images = tiny
    src = tiny_build(root, tiny, TINY_SMALLEST)
    out = tmp_path / "faulty"
    shutil.copytree(src.out, out, ignore=shutil.ignore_patterns("sim"))
    verilog = out / src.manifest["verilog"]
    text = verilog.read_text()
    probe = re.compile(r"^  assign l_stem__o_stream__valid = (.+);$", flags=re.M)
    assert len(probe.findall(text)) == 1
    text = probe.sub(r"  assign l_stem__o_stream__valid = (\1) & (l_stem__o_stream__ready | qhw_fault_t);", text)
    top_end = text.index("endmodule", text.index(f"module {src.manifest['top']}("))
    text = text[:top_end] + ("  reg qhw_fault_t = 1'b0;\n  always @(posedge clk) qhw_fault_t <= ~qhw_fault_t;\n"
                             + text[top_end:])
    verilog.write_text(text)
    with pytest.raises(SimulationMismatch) as err:
        simulate_build(out, images=images, net=net, cache_dir=cache, progress=say)
    say(str(err.value))
    assert re.match(r"layer stem output: protocol violation at cycle \d+: valid dropped before its payload was "
                    r"taken", str(err.value))


def test_cli_reports_every_layer(root, cache, tiny, qhw_cli):
    require_simulator("icarus")
    res = tiny_build(root, tiny, 16)  # full rate for the tiny network
    proc = qhw_cli("sim", str(res.out), "--images", "5", "--stall", "0.3", "--seed", "2", "--dataset", "synthetic",
                   "--cache-dir", str(cache), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["frames"] == 9 and doc["mismatches"] == 0
    assert [l["name"] for l in doc["layers"]] == ["stem", "b.conv1", "b.conv2", "b.add", "gap", "fc"]
    assert doc["cycles_per_frame"] == doc["manifest_cycles_per_frame"] == 270
    assert doc["class_agreement"] == 100.0 and doc["values_compared"] > 0
    assert "frames" in proc.stderr  # progress went to stderr
    # a relative build directory and its default cache (BUILD/sim), as `qhw demo` passes them
    text = qhw_cli("sim", res.out.name, "--images", "2", "--dataset", "synthetic", cwd=res.out.parent)
    assert text.returncode == 0, text.stderr
    assert re.search(r"^b\.add\s+add\s+\d+\s+0\s", text.stdout, flags=re.M)
    assert "cycles/frame 270.0" in text.stdout and "class agreement 100.0 %" in text.stdout


def test_computed_fifo_depths_reach_the_manifest_rate(root, cache, tiny):
    require_simulator("icarus")
    _, _, images = tiny
    rep = simulate_build(tiny_build(root, tiny).out, images=images, cache_dir=cache, progress=say)
    assert rep.ok
    assert rep.cycles_per_frame == rep.manifest_cycles_per_frame == 270
    smallest = simulate_build(tiny_build(root, tiny, TINY_FULL_RATE).out, images=images, cache_dir=cache,
                              progress=say)
    below = simulate_build(tiny_build(root, tiny, TINY_FULL_RATE - 1).out, images=images, cache_dir=cache,
                           progress=say)
    assert smallest.cycles_per_frame == 270 < below.cycles_per_frame  # the margin built is 5 beats

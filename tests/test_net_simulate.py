"""qhw.net.simulate, the pure-Python parts of ``qhw sim``: stimulus, event wrapper, figures, argument checks.

The cocotb runs are in tests/test_sim_net_accelerator.py. The build here is
of the tiny residual network of tests/net_layers.py (a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from qhw.errors import InputError
from qhw.ir.golden import GoldenModel
from qhw.net import simulate as S
from qhw.net.build import build, load_build
from qhw.net.stream import FrameFormat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))  # qhw_tb

from net_layers import tiny_resnet  # noqa: E402


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(network, 6 images, build directory, manifest) of the tiny residual network, saved and built."""
    from qhw.ir.serialize import save_network

    root = tmp_path_factory.mktemp("tiny_sim")
    net, _ = tiny_resnet(np.random.default_rng(0))
    path = save_network(net, root / "net" / "net.json")
    res = build(net, root / "build", network_path=str(path))
    images = S.synthetic_images(net.input.out, 6, seed=3)
    return net, images, res.out, res.manifest


# -- inputs ----------------------------------------------------------------------------------

def test_synthetic_images_are_valid_codes_of_the_spec():
    from qhw.ir.graph import TensorSpec

    for spec in (TensorSpec((3, 4, 5), "unsigned", 8), TensorSpec((2, 3, 3), "bipolar", 1),
                 TensorSpec((2, 3, 3), "signed", 4)):
        x = S.synthetic_images(spec, 7, seed=1)
        assert x.shape == (7, *spec.shape) and x.dtype == np.int64
        assert x.min() >= spec.lo and x.max() <= spec.hi
        if spec.code.value == "bipolar":
            assert set(np.unique(x)) == {-1, 1}
        else:
            assert len(np.unique(x)) > 4
        assert np.array_equal(x, S.synthetic_images(spec, 7, seed=1))
        assert not np.array_equal(x, S.synthetic_images(spec, 7, seed=2))


def test_digits_images_need_a_digits_shaped_input(tiny):
    net = tiny[0]
    with pytest.raises(InputError, match=r"digits images are 8-bit unsigned \(1, 8, 8\).*--dataset synthetic"):
        S.dataset_images("digits", net, 3)
    assert S.dataset_images("synthetic", net, 3, seed=4).shape == (3, 1, 6, 5)
    with pytest.raises(InputError, match="unknown dataset"):
        S.dataset_images("cifar", net, 3)


def test_watchdog_is_four_frames_plus_1000_and_grows_with_stalls():
    assert S.watchdog_cycles(2304) == 4 * 2304 + 1000
    assert S.watchdog_cycles(2304, 0.5) == 8 * 2304 + 1000


def test_in_port_names_follow_the_engines(tiny):
    from qhw.net.compile import compile_network
    from qhw.net.top import Accelerator

    net = tiny[0]
    acc = Accelerator(plan=compile_network(net).plan)
    for layer in net.layers[1:]:
        assert S.in_port_names(len(layer.inputs)) == list(acc.engines[layer.name].in_ports)


# -- stimulus ----------------------------------------------------------------------------------

def test_stimulus_is_the_golden_model_beat_for_beat(tiny):
    net, images, _, manifest = tiny
    stim = S.stimulus(manifest, net, images, tail=2)
    frames = np.concatenate([images, images[:2]])
    values = GoldenModel(net).run(frames)
    assert stim["frames"] == 8 and stim["images"] == 6
    for doc in stim["layers"]:
        fmt = FrameFormat(tuple(doc["out_format"]["shape"]), doc["out_format"]["code"], doc["out_format"]["bits"],
                          doc["out_format"]["simd"])
        assert np.array_equal(fmt.decode(doc["expected"]), values[doc["name"]].numpy()), doc["name"]
        assert doc["values"] == values[doc["name"]].numel()
    s_fmt = FrameFormat(tuple(manifest["ports"]["s_axis"]["format"]["shape"]), "unsigned", 8,
                        manifest["ports"]["s_axis"]["format"]["simd"])
    beats = stim["s_axis"]["beats"]
    assert len(beats) == 8 * s_fmt.beats and stim["s_axis"]["stalled_beats"] == 6 * s_fmt.beats
    lasts = [b >> s_fmt.data_width for b in beats]
    assert sum(lasts) == 8 and all(lasts[k * s_fmt.beats - 1] for k in range(1, 9))
    m = stim["m_axis"]
    logits = values[net.output].numpy()
    predicted = GoldenModel(net).predict(frames).numpy()
    lg, width = manifest["ports"]["m_axis"]["logits"], manifest["ports"]["m_axis"]["width"]
    assert m["predicted"] == predicted.tolist() and m["stalled_beats"] == 6 * (lg["channels"] + 1)
    assert manifest["ports"]["m_axis"]["beats"] == lg["channels"] + 1
    for beats, row, k in zip(m["expected"], logits, predicted):
        assert len(beats) == lg["channels"] + 1 and beats[-1] == k
        # each logit beat is the code extended to the port's width: read back as a width-bit signed value
        signed = lg["extended"] == "sign"
        got = [v - (1 << width) if signed and v >> (width - 1) else v for v in beats[:-1]]
        assert got == row.tolist() and all(0 <= v < 1 << width for v in beats)
    assert stim["fifos"] == [{"dst": f["dst"], "port": f["port"], "depth": f["depth"]} for f in manifest["fifos"]]


def test_images_outside_the_input_range_are_an_input_error(tiny):
    net, images, _, manifest = tiny
    with pytest.raises(InputError, match=r"images: .*\[0, 255\]"):
        S.stimulus(manifest, net, images + 300)


# -- probes and the wrapper --------------------------------------------------------------------

def test_the_build_has_every_probe_wire(tiny):
    _, _, out, manifest = tiny
    verilog = (out / manifest["verilog"]).read_text()
    assert S.missing_probes(manifest, verilog) == []
    names = S.probe_names(manifest)
    assert "l_b_add__i_stream_1__payload" in names and "l_fc__o_stream__valid" in names
    assert len(names) == 3 * sum(1 + len(l["inputs"]) for l in manifest["layers"])
    cut = verilog.replace("l_b_conv2__o_stream__ready;", "l_b_conv2__o_stream__readx;")
    assert S.missing_probes(manifest, cut) == ["l_b_conv2__o_stream__ready"]
    assert len(S.missing_probes(manifest, f"module {manifest['top']}(clk);\n  wire x;\nendmodule\n")) == len(names)


def test_verilator_flags_go_into_the_build_and_its_cache_key(tmp_path):
    from qhw.bench.simcache import build_dir_for

    plain = build_dir_for("module m; endmodule", name="m", cache_dir=tmp_path)
    flagged = build_dir_for("module m; endmodule", name="m", cache_dir=tmp_path, build_args=S.VERILATOR_FLAGS)
    assert plain != flagged and plain.parent == flagged.parent == tmp_path
    assert S.VERILATOR_FLAGS == ("--no-public-flat-rw", "--public-depth", "1")

def test_wrapper_reads_every_probe_and_is_deterministic(tiny):
    _, _, _, manifest = tiny
    text = S.wrapper_verilog(manifest)
    assert text == S.wrapper_verilog(json.loads(json.dumps(manifest)))
    assert f"module {S.wrapper_name(manifest)}(" in text and f"  {manifest['top']} acc (" in text
    for name in S.probe_names(manifest):
        if name.endswith("__payload") and "__i_stream" in name:
            continue  # input payloads are not needed: only their handshake is diagnosed
        assert f"acc.{name}" in text, name
    n = len(manifest["layers"])
    assert all(f"output reg [{w}:0] cap_{k};" in text for k, w in
               enumerate(l["out_format"]["simd"] * l["out_format"]["bits"] for l in manifest["layers"]))
    assert f"output reg [{n + 1}:0] ev_fired;" in text
    assert "$" not in text  # no system tasks, no escaped names: plain Verilog-2001 for both simulators


# -- figures -----------------------------------------------------------------------------------

def _result(manifest, stim, *, m_cycles, s_first=10):
    layers = {}
    for doc, st in zip(manifest["layers"], stim["layers"]):
        beats = len(st["expected"])
        per = beats // stim["frames"]
        layers[doc["name"]] = {"beats": beats, "transfers": beats, "stalls": 5, "mismatched_beats": 0,
                               "mismatched_codes": 0, "first": None,
                               "frame_ends": [c - 3 for c in m_cycles][:beats // per]}
    return {"cycles": m_cycles[-1] + 20, "s_first": s_first, "m_cycles": m_cycles, "agree": stim["frames"],
            "logit_frames_wrong": 0, "layers": layers}


def test_summary_measures_the_unstalled_tail(tiny):
    net, images, out, manifest = tiny
    stim = S.stimulus(manifest, net, images[:3], tail=3)
    m_cycles = [500, 900, 1300, 1610, 1880, 2150]  # stalled frames 400 apart, then back to back 270
    rep = S.summarize(manifest, stim, _result(manifest, stim, m_cycles=m_cycles), build=str(out),
                      simulator="icarus", stall=0.3, seed=1, watchdog=99, wall_seconds=1.0)
    assert rep.cycles_per_frame == 270.0 and rep.measured_intervals == 2
    assert (rep.cycles_per_frame_min, rep.cycles_per_frame_max) == (270, 270)
    assert rep.latency == 490 and rep.total_cycles == 2170
    assert rep.values_compared == sum(d["values"] for d in stim["layers"]) and rep.mismatches == 0
    assert rep.class_agreement == 100.0 and rep.ok
    stem = rep.layers[0]
    assert stem.busy == pytest.approx(len(stim["layers"][0]["expected"]) / (2150 - 10 + 1))
    assert stem.stalled == pytest.approx(5 / 2141) and stem.interval == 270.0
    assert stem.ideal_busy == pytest.approx(
        FrameFormat.of(net["stem"].out, manifest["layers"][0]["out_format"]["simd"]).beats
        / manifest["cycles_per_frame"])
    d = rep.to_dict()
    assert d["ok"] is True and d["layers"][0]["name"] == "stem" and json.loads(json.dumps(d)) == d
    text = S.format_report(rep)
    assert all(l["name"] in text for l in manifest["layers"])
    assert f"cycles/frame 270.0 (min 270, max 270, 2 intervals); manifest {manifest['cycles_per_frame']}" in text


def test_values_of_a_partial_stream_count_only_real_channels():
    fmt = FrameFormat((5, 2, 3), "unsigned", 4, 2)  # groups of 2, 2, 1 channels
    assert [S._codes_in(fmt, b) for b in (0, 1, 2, 3, 4, 18)] == [0, 2, 4, 5, 7, 30]


def test_summary_without_stalls_measures_every_interval(tiny):
    net, images, out, manifest = tiny
    stim = S.stimulus(manifest, net, images[:4])
    rep = S.summarize(manifest, stim, _result(manifest, stim, m_cycles=[600, 870, 1140, 1412]), build=str(out),
                      simulator="icarus", stall=0.0, seed=0, watchdog=99, wall_seconds=1.0)
    assert rep.measured_intervals == 3 and rep.cycles_per_frame == pytest.approx(812 / 3)
    assert (rep.cycles_per_frame_min, rep.cycles_per_frame_max) == (270, 272)


# -- argument and build checks -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"simulator": "ghdl"}, "unknown simulator 'ghdl'"),
    ({"stall": 1.0}, r"stall must be a probability in \[0, 1\)"),
    ({"stall": -0.1}, "stall must be"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"throughput_frames": -1}, "throughput_frames must be"),
    ({"images": np.zeros((2, 1, 6, 5))}, "images must be integer input codes"),
    ({"images": np.zeros((1, 6, 5), dtype=np.int64)}, r"non-empty \(N, C, H, W\)"),
    ({"images": np.zeros((0, 1, 6, 5), dtype=np.int64)}, r"non-empty \(N, C, H, W\)"),
    ({"images": np.zeros((2, 1, 5, 6), dtype=np.int64)}, r"images: .*shape"),
])
def test_bad_arguments_are_one_line_input_errors(tiny, kwargs, message):
    _, images, out, _ = tiny
    args = {"images": images, **kwargs}
    with pytest.raises(InputError, match=message):
        S.simulate_build(out, progress=lambda _: None, **args)


def test_a_changed_network_file_is_refused(tiny, tmp_path):
    from qhw.ir.serialize import load_network, save_network

    net, images, out, manifest = tiny
    build_dir = tmp_path / "b"
    shutil.copytree(out, build_dir)
    other, _ = tiny_resnet(np.random.default_rng(1))
    path = save_network(other, tmp_path / "other.json")
    doc = json.loads((build_dir / "manifest.json").read_text())
    doc["network"]["path"] = str(path)
    (build_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"other.json has changed since .* was built"):
        S.simulate_build(build_dir, images=images, progress=lambda _: None)
    assert S.load_build_network(load_build(out), out).layers[1].name == "stem"
    doc["network"]["path"] = None
    (build_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="names no network file"):
        S.simulate_build(build_dir, images=images, progress=lambda _: None)
    # a network given explicitly is checked for shape only; one of another shape is refused
    wide, _ = tiny_resnet(np.random.default_rng(0), width=5)
    with pytest.raises(InputError, match=r"layer stem: the network has a conv giving .*'shape': \[5, 6, 5\]"):
        S.simulate_build(out, images=images, net=wide, progress=lambda _: None)
    assert load_network(path).layers[1].name == "stem"


def test_a_build_without_probe_wires_is_refused(tiny, tmp_path):
    _, images, out, manifest = tiny
    build_dir = tmp_path / "b"
    shutil.copytree(out, build_dir)
    v = build_dir / manifest["verilog"]
    v.write_text(v.read_text().replace("l_stem__o_stream__valid;", "l_stem__o_stream__valix;"))
    with pytest.raises(InputError, match=r"no probe wire l_stem__o_stream__valid \(and 0 more\): rebuild"):
        S.simulate_build(build_dir, images=images, progress=lambda _: None)


def test_cli_missing_build_is_one_line(qhw_cli, tmp_path):
    proc = qhw_cli("sim", str(tmp_path / "nope"), "--images", "2")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("qhw sim: error: ") and "manifest.json" in proc.stderr


# -- the shared frame checker (sim/qhw_tb/frames.py) -------------------------------------------

def test_frame_checker_names_layer_frame_pixel_channel():
    from qhw_tb.frames import FrameChecker, mismatch_message

    fmt = FrameFormat((5, 2, 3), "unsigned", 4, 2)  # 3 groups per pixel, 18 beats per frame
    values = np.arange(2 * 30).reshape(2, 5, 2, 3) % 16
    beats = fmt.encode(values)
    bad = list(beats)
    k = 18 + 3 * 4 + 1  # frame 1, pixel 4 = (y=1, x=1), group 1: channels 2, 3
    bad[k] ^= 0b1 << 4  # slot 1: channel 3
    assert mismatch_message("s1.conv", fmt, k, bad[k], beats[k]) == (
        f"layer s1.conv: frame 1, pixel (y=1, x=1), channel 3: expected code {values[1, 3, 1, 1]}, "
        f"got {values[1, 3, 1, 1] ^ 1} (beat {k})")
    check = FrameChecker("s1.conv", fmt, beats, fail_fast=False)
    for b in bad:
        check(b)
    assert (check.seen, check.mismatched_beats, check.mismatched_codes) == (36, 1, 1)
    assert check.first.startswith("layer s1.conv: frame 1, pixel (y=1, x=1), channel 3")
    check(0)
    assert check.mismatched_beats == 2 and "unexpected output beat #36" not in check.first
    strict = FrameChecker("s1.conv", fmt, beats)
    with pytest.raises(AssertionError, match="frame 1, pixel"):
        for b in bad:
            strict(b)
    last = beats[17] ^ (1 << fmt.data_width)
    assert mismatch_message("x", fmt, 17, last, beats[17]) == "layer x: beat 17: last flag expected 1, got 0"

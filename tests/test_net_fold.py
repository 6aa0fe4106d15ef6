"""Fold: the requant style and the weight memory (validated, serialized only when not the default) and what
they do to a conv engine (the serial requantizer only within the engine's SF, the weights in block RAM
with the same timing: its cycles never change)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from qhw.backends.verilog import to_verilog
from qhw.ir.graph import Conv, Dense
from qhw.hw.requant import MulShiftRequantizer, ThresholdRequantizer
from qhw.hw.requant_serial import SerialMulShiftRequantizer
from qhw.net.compile import parse_fold_config
from qhw.net.engines import build_engine
from qhw.net.fold import Fold
from net_layers import tiny_resnet


def test_requant_style_round_trips_and_defaults_serialize_as_before():
    assert Fold(rows=2, cols=3, lanes=2).to_dict() == {"rows": 2, "cols": 3, "lanes": 2, "simd": 4}
    serial = Fold(rows=2, cols=3, lanes=2, requant="serial")
    assert serial.to_dict() == {"rows": 2, "cols": 3, "lanes": 2, "simd": 4, "requant": "serial"}
    assert Fold.from_dict(serial.to_dict()) == serial
    assert Fold.from_dict({"rows": 1, "cols": 1}).requant == "parallel"
    assert Fold.from_dict({"rows": 1, "cols": 1, "requant": "parallel"}) == Fold(rows=1, cols=1)
    for bad in ("Serial", "", None, 1):
        with pytest.raises(ValueError, match="requant"):
            Fold(rows=1, cols=1, requant=bad)
    with pytest.raises(ValueError, match="requant"):
        Fold.from_dict({"rows": 1, "cols": 1, "requant": "bitserial"})


def test_fold_files_take_the_requant_style():
    net, _ = tiny_resnet(np.random.default_rng(0))
    folds = parse_fold_config({"layers": {"stem": {"rows": 1, "cols": 1, "requant": "serial"}}}, net)
    assert folds["stem"] == Fold(rows=1, cols=1, lanes=1, requant="serial")
    from qhw.errors import InputError

    with pytest.raises(InputError, match="stem.*requant"):
        parse_fold_config({"layers": {"stem": {"rows": 1, "cols": 1, "requant": "fast"}}}, net)


def test_serial_engines_keep_their_cycles():
    net, _ = tiny_resnet(np.random.default_rng(0))
    slow = Fold(rows=1, cols=1, lanes=1)
    for name in ("b.conv2", "fc"):  # 7-bit signed and logits: ROM-fed multipliers in parallel
        layer = net[name]
        par, ser = build_engine(layer, fold=slow), build_engine(layer, fold=dataclasses.replace(slow, requant="serial"))
        assert type(par.requant) is MulShiftRequantizer and type(ser.requant) is SerialMulShiftRequantizer
        assert 1 < ser.requant.interval <= ser.window.sf
        assert ser.cycles_per_frame() == par.cycles_per_frame()
        assert ser.latency == par.latency + ser.requant.latency - 1
        assert ser.estimate_cycles(2) == par.estimate_cycles(2) + ser.requant.latency - 1
        for family in ("xilinx", "ice40", "ecp5", "gowin"):
            assert ser.estimate_resources(family)["lut"] < par.estimate_resources(family)["lut"]
    # the 4-bit stem's thresholds become a binary search (one comparator a lane, a few of its 9 cycles a beat),
    # both where parallel thresholds and where parallel multipliers were chosen; cycles per frame kept
    from qhw.hw.requant import _cost
    from qhw.hw.requant_search import SearchThresholdRequantizer

    for fold, kind in ((slow, ThresholdRequantizer), (Fold(rows=1, cols=4, lanes=1), MulShiftRequantizer)):
        par = build_engine(net["stem"], fold=fold)
        ser = build_engine(net["stem"], fold=dataclasses.replace(fold, requant="serial"))
        assert type(par.requant) is kind and type(ser.requant) is SearchThresholdRequantizer
        assert 1 < ser.requant.steps <= ser.requant.interval <= ser.window.sf
        assert ser.cycles_per_frame() == par.cycles_per_frame()
        for family in ("xilinx", "ice40", "ecp5", "gowin"):
            assert _cost(ser.requant, family) < _cost(par.requant, family)
    # what no serial form fits or beats on every family stays exactly as it was: the fc's multipliers
    # at one beat a cycle (SF 1) and at 4 lanes (the serial form costs the same or more there)
    for fold in (Fold(rows=9, cols=1, lanes=1), Fold(rows=1, cols=4, lanes=1)):
        par = build_engine(net["fc"], fold=fold)
        ser = build_engine(net["fc"], fold=dataclasses.replace(fold, requant="serial"))
        assert type(ser.requant) is type(par.requant) is MulShiftRequantizer
        assert to_verilog(ser, name="e") == to_verilog(par, name="e")


def test_fold_options_apply_to_every_conv_and_dense_fold():
    from qhw.net.folding import with_fold_options
    from qhw.ir.graph import Conv, Dense
    from qhw.net.compile import default_fold

    net, _ = tiny_resnet(np.random.default_rng(0))
    given = {"stem": Fold(rows=1, cols=1), "b.add": 2}
    assert with_fold_options(net, given, requant="parallel", weights="auto") is given
    assert with_fold_options(net, None, requant="parallel", weights="auto") is None
    mac = [l for l in net.layers[1:] if isinstance(l, (Conv, Dense))]
    for options in ({"requant": "serial"}, {"weights": "block"}, {"requant": "serial", "weights": "block"}):
        out = with_fold_options(net, given, **options)
        assert out["stem"] == Fold(rows=1, cols=1, **options) and out["b.add"] == 2
        for layer in mac[1:]:  # no fold given: the default one, changed
            assert out[layer.name] == dataclasses.replace(default_fold(layer), **options)
        assert set(out) == {l.name for l in mac} | {"b.add"}


def test_weight_memory_round_trips_and_is_validated():
    block = Fold(rows=1, cols=2, weights="block")
    assert block.to_dict() == {"rows": 1, "cols": 2, "lanes": 1, "simd": 1, "weights": "block"}
    assert Fold.from_dict(block.to_dict()) == block and Fold.from_dict({"rows": 1, "cols": 2}).weights == "auto"
    for bad in ("lut", "BLOCK", None, 0):
        with pytest.raises(ValueError, match="weights"):
            Fold(rows=1, cols=1, weights=bad)
    net, _ = tiny_resnet(np.random.default_rng(0))
    from qhw.errors import InputError

    with pytest.raises(InputError, match="stem.*weights"):
        parse_fold_config({"layers": {"stem": {"rows": 1, "cols": 1, "weights": "spram"}}}, net)


@pytest.mark.parametrize("family", ["ice40", "ecp5", "xilinx", "gowin"])
def test_block_weights_trade_luts_for_block_ram_at_the_same_cycles(family):
    net, _ = tiny_resnet(np.random.default_rng(0))
    slow = Fold(rows=1, cols=1, lanes=1)
    for name in ("b.conv1", "b.conv2", "fc"):
        auto = build_engine(net[name], fold=slow)
        block = build_engine(net[name], fold=dataclasses.replace(slow, weights="block"))
        assert auto.array.block_columns == () and block.array.block_columns == (0,)
        a, b = auto.estimate_resources(family), block.estimate_resources(family)
        assert b["bram"] - a["bram"] == block.array.estimate_resources(family)["bram"] > 0, (name, a, b)
        assert b["lut"] < a["lut"], (name, a, b)
        assert block.cycles_per_frame() == auto.cycles_per_frame()
        assert block.estimate_cycles(2) == auto.estimate_cycles(2) and block.latency == auto.latency


def test_fit_builds_every_candidate_with_the_fold_style(qhw_cli, tmp_path):
    """``qhw fit`` / ``qhw build --board`` with --requant-style and --weight-memory: the fit searches folds
    for engines built that way (the manifest records it per layer), and the estimate is the one of those engines."""
    from qhw.ir.serialize import save_network

    net, _ = tiny_resnet(np.random.default_rng(0))
    path = save_network(net, tmp_path / "net.json")
    docs = {}
    for style in ([], ["--requant-style", "serial", "--weight-memory", "block"]):
        r = qhw_cli("fit", str(path), "--board", "ulx3s_85f", "--no-confirm", "--json", *style)
        assert r.returncode == 0, r.stderr
        docs[bool(style)] = json.loads(r.stdout)["fit"]
    plain, styled = docs[False], docs[True]
    mac = {l.name for l in net.layers[1:] if isinstance(l, (Conv, Dense))}
    assert all("weights" not in plain["folds"][n] and "requant" not in plain["folds"][n] for n in mac)
    assert all(styled["folds"][n]["weights"] == "block" and styled["folds"][n]["requant"] == "serial" for n in mac)
    assert styled["estimate"]["bram"] > plain["estimate"]["bram"]
    r = qhw_cli("build", str(path), "--board", "ulx3s_85f", "--no-confirm", "--out", str(tmp_path / "b"),
                "--requant-style", "serial", "--weight-memory", "block", "--json")
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    # the layers' folds are fit's, each serial one paced by compile's pace_requantizers where it can be
    built = [l["fold"] for l in man["layers"]]
    assert man["fit"] == styled and [{k: v for k, v in f.items() if k != "requant_interval"} for f in built] == \
        [styled["folds"][l["name"]] for l in man["layers"]]
    assert any(f.get("requant_interval", 0) > 1 for f in built)


def test_requant_interval_is_validated_and_serialized_only_when_set():
    paced = Fold(rows=1, cols=2, requant="serial", requant_interval=40)
    assert paced.to_dict() == {"rows": 1, "cols": 2, "lanes": 1, "simd": 1, "requant": "serial", "requant_interval": 40}
    assert Fold.from_dict(paced.to_dict()) == paced
    assert "requant_interval" not in Fold(rows=1, cols=2, requant="serial").to_dict()
    for bad in (-1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="requant_interval"):
            Fold(rows=1, cols=1, requant="serial", requant_interval=bad)
    with pytest.raises(ValueError, match="requant_interval 8 needs requant 'serial'"):
        Fold(rows=1, cols=1, requant_interval=8)


def test_pace_requantizers_slows_serial_requantizers_to_the_bottleneck_and_keeps_the_frame_rate():
    from qhw.net.compile import compile_network
    from qhw.net.folding import conv_cycles
    from qhw.net.top import Accelerator

    net, _ = tiny_resnet(np.random.default_rng(0))
    mac = [l.name for l in net.layers[1:] if isinstance(l, (Conv, Dense))]
    serial = {n: Fold(rows=1, cols=1, requant="serial") for n in mac}
    compiled = compile_network(net, serial)
    budget = max(conv_cycles(net[n], serial[n]) for n in mac)
    assert budget == 6 * 5 * 4 * 36  # b.conv1 / b.conv2: 30 pixels × 4 groups × SF 36
    got = {n: compiled.folded.folds[n].requant_interval for n in mac}
    # the stem (SF 9, 120 beats) and the fc (SF 4, 3 beats) may take budget / beats; the bottleneck convs stay
    assert got == {"stem": budget // 120, "b.conv1": 0, "b.conv2": 0, "fc": budget // 3}
    assert compiled.assigned.folds["stem"].requant_interval == 0  # assign_folds' result is kept as it was
    assert set(compiled.intermediates()) == {"assign_folds", "pace_requantizers", "plan_streams", "size_fifos"}
    paced = Accelerator(plan=compiled.plan)
    cycles = {n: e.cycles_per_frame() for n, e in paced.engines.items()}
    assert max(cycles.values()) == budget and all(c <= budget for c in cycles.values())
    fc = paced.engines["fc"]  # its serial multiplier takes more cycles than the array gives
    assert fc.beat_interval == fc.requant.interval > fc.window.sf
    # an interval given by hand is kept, parallel folds are never paced
    hand = dict(serial, stem=Fold(rows=1, cols=1, requant="serial", requant_interval=12))
    assert compile_network(net, hand).folded.folds["stem"].requant_interval == 12
    parallel = {n: Fold(rows=1, cols=1) for n in mac}
    assert compile_network(net, parallel).folded.folds == parallel

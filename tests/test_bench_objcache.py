"""The Verilator object cache: hits for identical compiles, misses when anything changes."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from qhw.bench.objcache import compile_cached, main


@pytest.fixture
def fake_cxx(tmp_path):
    """A 'compiler' that writes ``-o`` and a make-style ``.d`` file and counts its runs."""
    script = tmp_path / "fakecxx.py"
    script.write_text(textwrap.dedent('''
        import sys, pathlib
        args = sys.argv[1:]
        out = pathlib.Path(args[args.index("-o") + 1])
        src = pathlib.Path(args[-1])
        hdr = src.with_suffix(".h")
        out.write_text("obj of " + src.read_text())
        out.with_suffix(".d").write_text(f"{out.name}: \\\\\\n {src} \\\\\\n {hdr}\\n")
        counter = pathlib.Path(sys.argv[0]).with_name("runs")
        counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
    '''))
    src = tmp_path / "lib" / "verilated.cpp"
    src.parent.mkdir()
    src.write_text("v1")
    src.with_suffix(".h").write_text("h1")
    return script, src, tmp_path / "runs"


def _compile(cache, script, src, build):
    build.mkdir(exist_ok=True)
    old = os.getcwd()
    os.chdir(build)
    try:
        return compile_cached(cache, [sys.executable, str(script), "-Os", "-c", "-o", "verilated.o", str(src)])
    finally:
        os.chdir(old)


def test_second_build_reuses_the_object(tmp_path, fake_cxx):
    script, src, runs = fake_cxx
    cache = tmp_path / "cache"
    assert _compile(cache, script, src, tmp_path / "b1") == 0
    assert _compile(cache, script, src, tmp_path / "b2") == 0
    assert runs.read_text() == "1"
    assert (tmp_path / "b2" / "verilated.o").read_text() == "obj of v1"
    assert (tmp_path / "b2" / "verilated.d").is_file()


def test_changed_source_or_header_recompiles(tmp_path, fake_cxx):
    script, src, runs = fake_cxx
    cache = tmp_path / "cache"
    _compile(cache, script, src, tmp_path / "b1")
    src.write_text("v2")
    _compile(cache, script, src, tmp_path / "b2")
    assert runs.read_text() == "2" and (tmp_path / "b2" / "verilated.o").read_text() == "obj of v2"
    time.sleep(0.01)
    src.with_suffix(".h").write_text("h2 is longer")  # a dependency from the .d file
    _compile(cache, script, src, tmp_path / "b3")
    assert runs.read_text() == "3"


def test_design_files_are_not_cached(tmp_path, fake_cxx):
    script, _, runs = fake_cxx
    build = tmp_path / "b"
    build.mkdir()
    (build / "Vtop.cpp").write_text("design")
    (build / "Vtop.h").write_text("")
    old = os.getcwd()
    os.chdir(build)
    try:
        for _ in range(2):  # relative source path: the design's own file
            assert compile_cached(tmp_path / "cache", [sys.executable, str(script), "-c", "-o", "Vtop.o",
                                                       "Vtop.cpp"]) == 0
    finally:
        os.chdir(old)
    assert runs.read_text() == "2"
    assert not (tmp_path / "cache").exists()


def test_usage_error():
    assert main([]) == 2

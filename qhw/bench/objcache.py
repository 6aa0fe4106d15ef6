"""A tiny compiler cache for Verilator's design-independent objects.

Every Verilator build compiles the same five support files (``verilated.cpp``,
``verilated_vpi.cpp``, ... and cocotb's ``verilator.cpp``); they take most of
a build's ~20-35 s, and ``make`` rebuilds them because they depend on the
freshly generated ``Vtop.mk``. Verilator's makefiles prefix every compile
with ``$(OBJCACHE)`` (meant for ccache, which is not always installed), so
:mod:`qhw.bench.simcache` sets ``OBJCACHE`` to this script::

    python -m qhw.bench.objcache CACHE_DIR c++ <flags> -c -o verilated.o /abs/path/verilated.cpp

Only compiles of a source given by absolute path (the support files; the
design's own files are relative to the build directory) are cached. The key
is the full command line (output name included) and the source's content;
a hit also checks that every dependency listed in the stored ``.d`` file is
unchanged (size and mtime), so an upgraded Verilator never reuses stale
objects. Anything unexpected falls back to running the compiler.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _output_and_source(cmd: list[str]) -> tuple[str, str] | None:
    if "-c" not in cmd or "-o" not in cmd:
        return None
    i = cmd.index("-o")
    if i + 1 >= len(cmd):
        return None
    out = cmd[i + 1]
    sources = [a for a in cmd if a.endswith((".cpp", ".cc", ".c")) and a != out]
    if len(sources) != 1 or not os.path.isabs(sources[0]) or not out.endswith(".o"):
        return None
    return out, sources[0]


def _dep_files(d_text: str) -> list[str]:
    """Paths named in a make-style ``.d`` file (after the ``target:``)."""
    body = d_text.replace("\\\n", " ").split(":", 1)[-1]
    return [p for p in body.split() if p]


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _store(entry: Path, files: dict[str, Path], meta: dict) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
    try:
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, entry)  # atomic; loses harmlessly to a concurrent writer
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def compile_cached(cache_dir: Path, cmd: list[str]) -> int:
    found = _output_and_source(cmd)
    if found is None:
        return subprocess.call(cmd)
    out, source = found
    dep = str(Path(out).with_suffix(".d"))
    try:
        content = Path(source).read_bytes()
    except OSError:
        return subprocess.call(cmd)
    key = hashlib.sha256(json.dumps(cmd).encode() + b"\0" + content).hexdigest()[:24]
    entry = cache_dir / key
    meta_path = entry / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if all(_stamp(p) == s for p, s in meta["deps"].items()):
                shutil.copyfile(entry / "obj.o", out)
                if (entry / "obj.d").is_file():
                    shutil.copyfile(entry / "obj.d", dep)
                return 0
        except (OSError, ValueError, KeyError):
            pass
    rc = subprocess.call(cmd)
    if rc != 0 or not os.path.isfile(out):
        return rc
    files = {"obj.o": Path(out)}
    deps = {source: _stamp(source)}
    if os.path.isfile(dep):
        files["obj.d"] = Path(dep)
        for p in _dep_files(Path(dep).read_text(errors="replace")):
            deps[p] = _stamp(p)
    if all(s is not None for s in deps.values()):
        shutil.rmtree(entry, ignore_errors=True)
        _store(entry, files, {"cmd": cmd, "deps": deps})
    return rc


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m qhw.bench.objcache CACHE_DIR COMPILER ARGS...", file=sys.stderr)
        return 2
    return compile_cached(Path(argv[0]), argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

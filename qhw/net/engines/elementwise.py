"""Engines that work pixel by pixel on the stream format: residual add, global pool, max pool, argmax.

None of them multiplies by a weight matrix, so none has a fold: each runs
at the ``simd`` of its input stream, one beat per cycle.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from qhw.hw.pe.datapath import lanes_of
from qhw.hw.pe.params import check_positive
from qhw.hw.regroup import Regroup
from qhw.hw.requant import choose_requantizer
from qhw.hw.rom import ram_mapping, scaled_luts
from qhw.hw.window import WindowGenerator
from qhw.ir.graph import Add, GlobalPool, MaxPool, TensorSpec
from qhw.ir.intmath import ActCode, signed_width

from ..stream import FrameFormat
from .base import Engine, packer_tail
from .blocks import Truncate
from .resources import add_resources, stage_resources


def code_value(raw, code: ActCode):
    """A lane's raw code as its IR value (Amaranth expression)."""
    if code is ActCode.SIGNED:
        return raw.as_signed()
    if code is ActCode.BIPOLAR:
        return Mux(raw[0], Const(1, signed(2)), Const(-1, signed(2)))
    return raw


def _counter(m, name: str, n: int, advance) -> tuple[Signal, object]:
    """A 0..n−1 counter stepping on ``advance``; returns (value, at_last)."""
    sig = Signal(range(max(n, 2)), name=name)
    last = sig == n - 1
    with m.If(advance):
        m.d.sync += sig.eq(Mux(last, 0, sig + 1))
    return sig, last


def register(m, out, take, payload) -> None:
    """Registered stream output: ``payload`` is offered from the cycle after ``take``.

    The producer may take a new beat when ``~out.valid | out.ready``.
    """
    with m.If(out.valid & out.ready):
        m.d.sync += out.valid.eq(0)
    with m.If(take):
        m.d.sync += [out.payload.eq(payload), out.valid.eq(1)]


def output_chain(m, engine, mid, **stages) -> None:
    """``mid`` (an internal stream) → the named stages in order → the engine's ``o_stream``."""
    src = mid
    for name, stage in stages.items():
        m.submodules[name] = stage
        m.d.comb += [stage.i_stream.payload.eq(src.payload), stage.i_stream.valid.eq(src.valid),
                     src.ready.eq(stage.i_stream.ready)]
        src = stage.o_stream
    wiring.connect(m, src, wiring.flipped(engine.o_stream))


def _requant_or_truncate(layer, lanes: int, width: int, form: str):
    if layer.requant is None:
        return Truncate(lanes=lanes, in_width=width, out_width=layer.out.bits)
    return choose_requantizer(layer.requant, acc_lo=layer.acc_lo, acc_hi=layer.acc_hi, acc_width=width,
                              lanes=lanes, form=form)


class AddEngine(Engine):
    """Residual add: ``z[c] = Σ_i coeffs[i, c] · x_i[c]`` on every pixel, then the layer's requantizer.

    Parameters (keyword-only)
    -------------------------
    layer : Add
    simd : int
        Channels per beat of every input and of the output.
    requant_form : {"auto", "thresholds", "mul_shift"}

    Attributes
    ----------
    i_stream_0 … i_stream_{n−1} : In(stream.Signature(in_formats[k].payload_width))
        One per branch, in ``layer.inputs`` order; a beat is taken from all
        of them at once (the join).
    o_stream : Out(stream.Signature(out_format.payload_width))

    A coefficient that is the same for every channel costs a shift when it
    is a power of two (the identity shortcut's ``2^F``) and a constant
    multiplier otherwise; per-channel coefficients are muxed by channel group.
    """

    def __init__(self, *, layer, simd: int, requant_form: str = "auto"):
        if not isinstance(layer, Add):
            raise TypeError(f"layer must be an Add, not {type(layer).__name__}")
        self.layer = layer
        simd = check_positive("simd", simd)
        self.in_formats = tuple(FrameFormat.of(s, simd) for s in layer.in_specs)
        self.out_format = FrameFormat.of(layer.out, simd)
        fmt = self.in_formats[0]
        self.width = signed_width(min(0, int(layer.acc_lo.min())), max(0, int(layer.acc_hi.max())))
        self.requant = _requant_or_truncate(layer, simd, self.width, requant_form)
        self.packer = Regroup(channels=fmt.channels, pixels=fmt.pixels, in_simd=simd, out_simd=simd,
                              bits=layer.out.bits, in_last=False, out_last=True)
        members = {f"i_stream_{k}": In(stream.Signature(f.payload_width)) for k, f in enumerate(self.in_formats)}
        members["o_stream"] = Out(stream.Signature(self.out_format.payload_width))
        super().__init__(members)

    def _coeff_terms(self, m, k: int, x, group, lane: int):
        """``coeffs[k, channel] · x`` for the lane's channel in the current group."""
        fmt = self.in_formats[0]
        coeffs = self.layer.coeffs[k]
        chans = [g * fmt.simd + lane for g in range(fmt.groups)]
        vals = [int(coeffs[c]) if c < fmt.channels else 0 for c in chans]
        real = [v for c, v in zip(chans, vals) if c < fmt.channels]
        if len(set(real)) == 1:
            return _times_const(x, real[0])
        options = [_times_const(x, v) for v in vals]
        out = options[-1]
        for g in range(len(options) - 2, -1, -1):
            out = Mux(group == g, options[g], out)
        return out

    def elaborate(self, platform):
        m = Module()
        fmt, n = self.in_formats[0], len(self.in_formats)
        ins = [self.in_port(k) for k in range(n)]
        mid = stream.Signature(unsigned(fmt.simd * self.width)).create()
        all_valid = ins[0].valid
        for s in ins[1:]:
            all_valid = all_valid & s.valid
        take = Signal()
        m.d.comb += take.eq(all_valid & (~mid.valid | mid.ready))
        m.d.comb += [s.ready.eq(take) for s in ins]
        group, _ = _counter(m, "group", fmt.groups, take)
        lanes = []
        for lane in range(fmt.simd):
            terms = []
            for k, (s, f) in enumerate(zip(ins, self.in_formats)):
                raw = s.payload[lane * f.bits:(lane + 1) * f.bits]
                terms.append(self._coeff_terms(m, k, code_value(raw, f.code), group, lane))
            z = Signal(signed(self.width), name=f"z_{lane}")
            total = terms[0]
            for t in terms[1:]:
                total = total + t
            m.d.comb += z.eq(total)
            lanes.append(z)
        register(m, mid, take, Cat(*lanes))
        output_chain(m, self, mid, requant=self.requant, packer=self.packer)
        return m

    latency = 1

    def estimate_cycles(self, frames: int = 1) -> int:
        beats = frames * self.in_formats[0].beats
        return beats + self.latency + getattr(self.requant, "latency", 0) + packer_tail(self.packer)

    def cycles_per_frame(self) -> int:
        return self.in_formats[0].beats

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Own logic: per lane, ``n - 1`` adders of the sum's width (a power-of-two coefficient is
        wiring; a per-channel one adds a mux of its products over the groups), in ``family``'s
        LUTs (:func:`qhw.hw.rom.scaled_luts`, kind ``add``); then the requantizer and packer."""
        fmt = self.in_formats[0]
        n = len(self.in_formats)
        per_channel = sum(1 for k in range(n) for lane in range(fmt.simd)
                          if len({int(v) for v in self.layer.coeffs[k][lane::fmt.simd]}) > 1)
        lut = fmt.simd * self.width * max(n - 1, 1) + per_channel * self.width * max(fmt.groups - 1, 0)
        own = {"lut": scaled_luts(lut, family, "add"), "ff": fmt.simd * self.width + 2, "dsp": 0, "bram": 0}
        return add_resources([own, stage_resources(self.requant, family), stage_resources(self.packer, family)])


def _times_const(x, c: int):
    """``x · c`` for a constant: a shift for ±2^k, else a constant multiplier."""
    if c == 0:
        return Const(0, 1)
    mag = abs(c)
    if mag & (mag - 1) == 0:
        shifted = x << (mag.bit_length() - 1)
        return -shifted if c < 0 else shifted
    return x * c


class GlobalPoolEngine(Engine):
    """Global pool as an exact integer sum over the H·W pixels, then the layer's requantizer (if any).

    One running sum per channel, in a RAM of ``groups`` words (registers for one group); the sums of group ``g`` leave
    while the last pixel's beat ``g`` arrives, so the engine never stalls
    its input between frames.

    Parameters (keyword-only)
    -------------------------
    layer : GlobalPool
    simd : int
        Channels per beat of the input and of the output vector.
    requant_form : {"auto", "thresholds", "mul_shift"}

    Attributes
    ----------
    i_stream : In(stream.Signature(in_formats[0].payload_width))
    o_stream : Out(stream.Signature(out_format.payload_width))
        One pixel (the vector) per frame, ``groups`` beats.
    """

    latency = 1

    def __init__(self, *, layer, simd: int, requant_form: str = "auto"):
        if not isinstance(layer, GlobalPool):
            raise TypeError(f"layer must be a GlobalPool, not {type(layer).__name__}")
        self.layer = layer
        simd = check_positive("simd", simd)
        self.in_formats = (FrameFormat.of(layer.in_spec, simd),)
        self.out_format = FrameFormat.of(layer.out, simd)
        lo, hi = int(layer.acc_lo.min()), int(layer.acc_hi.max())
        self.sum_shape = unsigned(max(1, hi.bit_length())) if lo >= 0 else signed(signed_width(lo, hi))
        self.width = signed_width(min(lo, 0), max(hi, 0))
        self.requant = _requant_or_truncate(layer, simd, self.width, requant_form)
        self.packer = Regroup(channels=layer.in_spec.channels, pixels=1, in_simd=simd, out_simd=simd,
                              bits=layer.out.bits, in_last=False, out_last=True)
        super().__init__({
            "i_stream": In(stream.Signature(self.in_formats[0].payload_width)),
            "o_stream": Out(stream.Signature(self.out_format.payload_width)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, i = self.in_formats[0], self.i_stream
        mid = stream.Signature(unsigned(fmt.simd * self.width)).create()
        pixel_last = Signal()
        take = Signal()
        m.d.comb += [i.ready.eq(~pixel_last | ~mid.valid | mid.ready), take.eq(i.valid & i.ready)]
        group, group_last = _counter(m, "group", fmt.groups, take)
        pixel, _ = _counter(m, "pixel", fmt.pixels, take & group_last)
        m.d.comb += pixel_last.eq(pixel == fmt.pixels - 1)
        w, G = self.sum_shape.width, fmt.groups
        if G > 1:
            # The groups' running sums in a RAM (block RAM on iCE40, LUT-RAM elsewhere): groups come in
            # cyclic order, so the next group's sum is read while this one's is written (never the
            # same word, hence ``no_rw_check``). In registers they were a G:1 read mux per bit and
            # flip-flops sharing one write value, each in its own iCE40 logic cell.
            m.submodules.sums = mem = Memory(shape=unsigned(fmt.simd * w), depth=G, init=[],
                                             attrs={"no_rw_check": 1})
            wp, rp = mem.write_port(), mem.read_port(domain="sync")
            m.d.comb += [rp.addr.eq(Mux(group_last, 0, group + 1)), rp.en.eq(take),
                         wp.addr.eq(group), wp.en.eq(take)]
            held = rp.data
        else:
            held = Signal(fmt.simd * w, name="sums", reset_less=True)
        news, outs = [], []
        for j in range(fmt.simd):
            x = code_value(i.payload[j * fmt.bits:(j + 1) * fmt.bits], fmt.code)
            cur = held[j * w:(j + 1) * w]
            cur = cur.as_signed() if self.sum_shape.signed else cur
            new = Signal(self.sum_shape, name=f"new_{j}")
            m.d.comb += new.eq(Mux(pixel == 0, x, cur + x))  # the first pixel's beat starts the sum
            news.append(new)
            wide = Signal(signed(self.width), name=f"pooled_{j}")
            m.d.comb += wide.eq(new)
            outs.append(wide)
        if G > 1:
            m.d.comb += wp.data.eq(Cat(*news))
        else:
            with m.If(take):
                m.d.sync += held.eq(Cat(*news))
        register(m, mid, take & pixel_last, Cat(*outs))
        output_chain(m, self, mid, requant=self.requant, packer=self.packer)
        return m

    def estimate_cycles(self, frames: int = 1) -> int:
        return frames * self.in_formats[0].beats + self.latency + getattr(self.requant, "latency", 0) \
            + packer_tail(self.packer)

    def cycles_per_frame(self) -> int:
        return self.in_formats[0].beats

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        fmt = self.in_formats[0]
        w = self.sum_shape.width
        own = {"lut": scaled_luts(fmt.simd * w, family, "pool"), "ff": fmt.simd * self.width + 8, "dsp": 0, "bram": 0}
        if fmt.groups > 1:  # the sums' RAM where yosys puts it (its read register included)
            placed = ram_mapping(fmt.groups, fmt.simd * w, family, sync_read=True)
            own["lut"] += placed["lut"]
            own["ff"] += placed["ff"]
            own["bram"] = placed["bram"]
        else:
            own["ff"] += fmt.simd * w
        return add_resources([own, stage_resources(self.requant, family), stage_resources(self.packer, family)])


class MaxPoolEngine(Engine):
    """k×k max pool (stride s): window generator, then a running maximum per channel over the taps.

    Padded taps come out of the window generator as code 0, the smallest
    value of an ``unsigned`` or ``bipolar`` input, so they never win, as the
    IR's −∞ padding requires; a padded max pool on ``signed`` inputs is refused.

    Parameters (keyword-only)
    -------------------------
    layer : MaxPool
    simd : int

    Attributes
    ----------
    i_stream : In(stream.Signature(in_formats[0].payload_width))
    o_stream : Out(stream.Signature(out_format.payload_width))
    """

    latency = 1

    def __init__(self, *, layer, simd: int):
        if not isinstance(layer, MaxPool):
            raise TypeError(f"layer must be a MaxPool, not {type(layer).__name__}")
        spec = layer.in_spec
        if spec.code is ActCode.SIGNED and tuple(layer.padding) != (0, 0):
            raise ValueError(f"layer {layer.name}: a padded max pool on signed inputs cannot be built "
                             "(code 0 is not the smallest value)")
        self.layer = layer
        simd = check_positive("simd", simd)
        self.in_formats = (FrameFormat.of(spec, simd),)
        self.out_format = FrameFormat.of(layer.out, simd)
        c, h, w = spec.shape
        self.window = WindowGenerator(channels=c, height=h, width=w, simd=simd, bits=spec.bits,
                                      kernel=layer.kernel, stride=layer.stride, padding=layer.padding, replays=1)
        oh, ow = layer.out.shape[1:]
        self.packer = Regroup(channels=c, pixels=oh * ow, in_simd=simd, out_simd=simd, bits=spec.bits,
                              in_last=False, out_last=True)
        super().__init__({
            "i_stream": In(stream.Signature(self.in_formats[0].payload_width)),
            "o_stream": Out(stream.Signature(self.out_format.payload_width)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.in_formats[0]
        taps = self.layer.kernel[0] * self.layer.kernel[1]
        m.submodules.window = win = self.window
        wiring.connect(m, wiring.flipped(self.i_stream), win.i_stream)
        x = win.o_stream
        mid = stream.Signature(unsigned(fmt.data_width)).create()
        tap_last = Signal()
        take = Signal()
        m.d.comb += [x.ready.eq(~tap_last | ~mid.valid | mid.ready), take.eq(x.valid & x.ready)]
        group, group_last = _counter(m, "group", fmt.groups, take)
        tap, _ = _counter(m, "tap", taps, take & group_last)
        m.d.comb += tap_last.eq(tap == taps - 1)
        signed_codes = fmt.code is ActCode.SIGNED
        best = [[Signal(fmt.bits, name=f"max_{g}_{j}", reset_less=True) for j in range(fmt.simd)]
                for g in range(fmt.groups)]
        outs = []
        for j in range(fmt.simd):
            a = x.payload[j * fmt.bits:(j + 1) * fmt.bits]
            cur = best[-1][j]
            for g in range(fmt.groups - 2, -1, -1):
                cur = Mux(group == g, best[g][j], cur)
            bigger = (a.as_signed() > cur.as_signed()) if signed_codes else (a > cur)
            new = Signal(fmt.bits, name=f"new_{j}")
            m.d.comb += new.eq(Mux((tap == 0) | bigger, a, cur))
            with m.If(take):
                for g in range(fmt.groups):
                    with m.If(group == g):
                        m.d.sync += best[g][j].eq(new)
            outs.append(new)
        register(m, mid, take & tap_last, Cat(*outs))
        output_chain(m, self, mid, packer=self.packer)
        return m

    def estimate_cycles(self, frames: int = 1) -> int:
        return self.window.estimate_cycles(frames) + self.latency + packer_tail(self.packer)

    def cycles_per_frame(self) -> int:
        return self.window.cycles_per_frame()

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        fmt = self.in_formats[0]
        own = {"lut": scaled_luts(fmt.simd * fmt.bits * (2 + max(0, fmt.groups - 1)), family, "maxpool"),
               "ff": fmt.channels * fmt.bits + fmt.data_width + 8, "dsp": 0, "bram": 0}
        return add_resources([own, stage_resources(self.window, family), stage_resources(self.packer, family)])


class ArgmaxHead(wiring.Component):
    """The class index of a logit vector: the first channel holding the largest value.

    Ties go to the first index, as :meth:`qhw.ir.golden.GoldenModel.predict`
    (``argmax`` of the integer logits) does: a later channel replaces the best
    so far only if it is strictly larger.

    Parameters (keyword-only)
    -------------------------
    spec : TensorSpec
        The logits, ``(C,)``.
    simd : int
        Channels per beat of the logit stream.

    Attributes
    ----------
    i_stream : In(stream.Signature(in_format.payload_width))
        The logits in the stream format (one pixel, ``groups`` beats).
    o_stream : Out(stream.Signature(out_format.payload_width))
        One beat per frame: the index (``out_format`` = ``(1,)`` unsigned,
        ``max(1, bit_length(C − 1))`` bits) with ``last`` set. Latency 1
        after the logits' last beat.
    """

    latency = 1

    def __init__(self, *, spec: TensorSpec, simd: int):
        if not isinstance(spec, TensorSpec) or spec.is_map:
            raise TypeError(f"spec must be a (C,) TensorSpec, not {spec!r}")
        self.spec = spec
        self.in_format = FrameFormat.of(spec, check_positive("simd", simd))
        self.index_bits = max(1, (spec.channels - 1).bit_length())
        self.out_format = FrameFormat((1,), ActCode.UNSIGNED, self.index_bits, 1)
        super().__init__({
            "i_stream": In(stream.Signature(self.in_format.payload_width)),
            "o_stream": Out(stream.Signature(self.out_format.payload_width)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, i, o = self.in_format, self.i_stream, self.o_stream
        value_shape = signed(fmt.bits + 1) if fmt.code is not ActCode.SIGNED else signed(fmt.bits)
        take = Signal()
        group_last = Signal()
        m.d.comb += [i.ready.eq(~group_last | ~o.valid | o.ready), take.eq(i.valid & i.ready)]
        group, last = _counter(m, "group", fmt.groups, take)
        m.d.comb += group_last.eq(last)
        best = Signal(value_shape, name="best", reset_less=True)
        index = Signal(self.index_bits, name="index", reset_less=True)
        b, ix = best, index
        for j in range(fmt.simd):
            v = Signal(value_shape, name=f"v_{j}")
            m.d.comb += v.eq(code_value(i.payload[j * fmt.bits:(j + 1) * fmt.bits], fmt.code))
            # Slot j holds a real channel in groups g <= (C - 1 - j) // simd.
            real = group <= (fmt.channels - 1 - j) // fmt.simd if j < fmt.channels else Const(0, 1)
            better = (group == 0) if j == 0 else Const(0, 1)
            better = better | (real & (v > b))
            nb, nix = Signal.like(best, name=f"b_{j}"), Signal.like(index, name=f"ix_{j}")
            m.d.comb += [nb.eq(Mux(better, v, b)), nix.eq(Mux(better, group * fmt.simd + j, ix))]
            b, ix = nb, nix
        with m.If(take):
            m.d.sync += [best.eq(b), index.eq(ix)]
        register(m, o, take & group_last, Cat(ix, Const(1, 1)))
        return m

    def reference(self, logits) -> np.ndarray:
        """First index of the largest value per row of ``(N, C)`` logits."""
        return np.asarray(logits, dtype=np.int64).reshape(-1, self.spec.channels).argmax(axis=1)

    def reference_beats(self, logits) -> list[int]:
        return self.out_format.encode(self.reference(logits)[:, None])

    def estimate_cycles(self, frames: int = 1) -> int:
        return frames * self.in_format.groups + self.latency

    def cycles_per_frame(self) -> int:
        return self.in_format.groups

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        w = self.in_format.bits + 1
        return {"lut": scaled_luts(self.in_format.simd * (w + self.index_bits), family, "argmax"),
                "ff": w + 2 * self.index_bits + 2, "dsp": 0, "bram": 0}

"""Conv and dense engines: window generator → systolic array → requantizer → packer.

Dataflow of one :class:`ConvEngine` (a :class:`~qhw.ir.graph.Dense` layer is
the same engine on a 1×1 map with a 1×1 kernel)::

    i_stream ─► WindowGenerator ─► SystolicArray ─► [OffsetByPosition] ─► requantizer ─► Regroup ─► o_stream
    (C_in, H, W)  SF beats per        NF beats per       bipolar padding      IR codes       (C_out, OH, OW)
    simd = rows·lanes  (pixel, nf)    (pixel, nf)        correction           cols per beat  out_simd, last

* **Feature order.** The window generator emits each window vector in its
  natural order (tap, channel group, slot); the weight columns are permuted
  at build time to that order (:meth:`WindowGenerator.ir_columns`), so no
  beat is ever reordered. Channel-padding slots (``C_in`` not a multiple of
  ``simd``) get the encoding's pad weight (:meth:`PESpec.pad_code`).
* **Padding.** Padded taps and padding slots arrive as code 0. For
  ``unsigned`` and ``signed`` inputs that is the value 0, exactly the IR's
  padding. For ``bipolar`` inputs code 0 is −1, so the array's sum is off by
  ``−Σ w`` over those features; that error depends only on the output
  pixel's padding pattern (row class × column class of
  :func:`qhw.ir.graph.padding_patterns`) and the channel, so :class:`OffsetByPosition` adds it back from a
  small table. This is the same arithmetic as masking padded taps out of
  the XNOR popcount and counting only real taps in the correction, done once
  per dot product instead of per lane.
* **Requantizer.** :func:`qhw.hw.requant.choose_requantizer` picks
  thresholds or multiply-shift by cost where the IR gives both (with
  ``fold.requant == "serial"`` also the digit-serial multiply-shift form
  whose interval fits SF); a ``requant: null`` layer outputs its
  accumulator, cut to its exact width.
* **Packer.** :class:`~qhw.hw.regroup.Regroup` turns the ``cols``-wide
  requantizer beats into the next layer's ``out_simd``-wide beats, drops the
  padded channels of the last neuron group and sets ``last``.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.hw.array import SystolicArray
from qhw.hw.rom import BRAM_FAMILIES
from qhw.hw.pe.spec import PESpec
from qhw.hw.regroup import Regroup
from qhw.hw.requant import choose_requantizer
from qhw.hw.requant_serial import SerialMulShiftRequantizer
from qhw.hw.window import WindowGenerator
from qhw.ir import intmath
from qhw.ir.graph import Conv, Dense, padding_patterns
from qhw.ir.intmath import ActCode, signed_width

from ..fold import Fold
from ..stream import FrameFormat
from .base import Engine, packer_tail
from .blocks import OffsetByPosition, Truncate
from .resources import add_resources, stage_resources


def _cheapest_array(*, weight_code: str, weight_bits: int, **kwargs) -> SystolicArray:
    """The systolic array of the layer's weights, in the cheaper of their two MAC forms.

    Odd weights ``w = 2c + 1`` (DoReFa's levels) are multiplied as ``c`` with the activation sum
    ``Q`` added back (``2P + Q``, :mod:`qhw.hw.pe.spec`): one Booth digit fewer per PE, but a ``Q``
    line, accumulator and adder per array. The same values are also ``weight_bits + 1``-bit plain
    integers, one more Booth digit per PE and no ``Q`` at all, which is cheaper when the array has
    few PEs (one PE per layer on an iCE40 UP5K: the width-2 digits ResNet-8 took 336 fewer logic
    cells). Both compute the same dot products exactly; the form with the lower LUT estimate summed
    over the four families is built (ties keep the odd form)."""
    array = SystolicArray(weight_code=weight_code, weight_bits=weight_bits, **kwargs)
    if weight_code != "odd":
        return array
    try:
        plain = SystolicArray(weight_code="int", weight_bits=weight_bits + 1, **kwargs)
    except ValueError:  # 16-bit odd weights: no 17-bit integer form
        return array

    def luts(a):
        return sum(a.estimate_resources(family)["lut"] for family in BRAM_FAMILIES)

    return plain if luts(plain) < luts(array) else array


class ConvEngine(Engine):
    """One conv or dense layer as a streaming engine.

    Parameters (keyword-only)
    -------------------------
    layer : Conv or Dense
        The IR layer; weights, encodings, requantizer and exact bounds come from it.
    fold : Fold
        Array shape; the input stream carries ``fold.simd`` channels per beat.
    out_simd : int, optional
        Channels per beat of the output stream (default ``fold.cols``).
    requant_form : {"auto", "thresholds", "mul_shift"}
        Which requantizer form to build where the IR gives both.
    weight_memory : {"auto", "lut", "block"}
        Weight ROMs as LUTs or block RAM (see :class:`SystolicArray`); a
        fold with ``weights="block"`` overrides it.
    buffer_memory : {"auto", "lut", "block"}
        The window generator's line buffer, likewise (see :class:`WindowGenerator`).

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(in_format.payload_width)))
    o_stream : Out(stream.Signature(unsigned(out_format.payload_width)))
    in_formats, out_format : FrameFormat
    window, array, correction, requant, packer : the stages (``correction`` is None
        unless the input is bipolar and padded)
    """

    def __init__(self, *, layer, fold: Fold, out_simd: int | None = None, requant_form: str = "auto",
                 weight_memory: str = "auto", buffer_memory: str = "auto"):
        if not isinstance(layer, (Conv, Dense)):
            raise TypeError(f"layer must be a Conv or Dense, not {type(layer).__name__}")
        if not isinstance(fold, Fold):
            raise TypeError(f"fold must be a Fold, not {fold!r}")
        self.layer, self.fold = layer, fold
        spec_in, spec_out = layer.in_spec, layer.out
        c_in = spec_in.shape[0]
        h, w = (spec_in.shape[1], spec_in.shape[2]) if spec_in.is_map else (1, 1)
        self.in_formats = (FrameFormat.of(spec_in, fold.simd),)
        self.out_format = FrameFormat.of(spec_out, fold.cols if out_simd is None else out_simd)
        oh, ow = (spec_out.shape[1], spec_out.shape[2]) if spec_out.is_map else (1, 1)
        C, nf = layer.out_channels, -(-layer.out_channels // fold.cols)
        self.window = WindowGenerator(channels=c_in, height=h, width=w, simd=fold.simd, bits=spec_in.bits,
                                      kernel=layer.kernel, stride=layer.stride, padding=layer.padding, replays=nf,
                                      memory=buffer_memory)
        cols_ir = np.asarray(self.window.ir_columns(), dtype=np.int64)
        pe = PESpec(weight_code=layer.weight_code, weight_bits=layer.weight_bits, act_code=spec_in.code,
                    act_bits=spec_in.bits, lanes=fold.lanes)
        pad_value = int(intmath.decode_weights(layer.weight_code, layer.weight_bits, [pe.pad_code()])[0])
        weights = np.full((C, len(cols_ir)), pad_value, dtype=np.int64)
        real = cols_ir >= 0
        weights[:, real] = layer.weights[:, cols_ir[real]]
        self.weights = weights
        self.array = _cheapest_array(
            weights=weights, rows=fold.rows, cols=fold.cols, lanes=fold.lanes,
            weight_code=layer.weight_code.value, weight_bits=layer.weight_bits,
            act_code=spec_in.code.value, act_bits=spec_in.bits,
            weight_memory=fold.weights if fold.weights != "auto" else weight_memory)
        acc_lo, acc_hi = layer.acc_lo, layer.acc_hi
        width = self.array.acc_width
        self.correction = None
        if spec_in.code is ActCode.BIPOLAR:
            self.correction = self._bipolar_correction(cols_ir, h, w, oh, ow, nf)
        if self.correction is not None:
            width = signed_width(int(acc_lo.min()), int(acc_hi.max()))
            self.correction = OffsetByPosition(**self.correction, in_width=self.array.acc_width, out_width=width)
        if layer.requant is None:
            self.requant = Truncate(lanes=fold.cols, in_width=width, out_width=spec_out.bits)
        else:
            # fold.requant "serial": the requantizer may take up to SF cycles a beat, the cycles between
            # two of the array's output beats, so the engine's cycles do not change; or up to
            # fold.requant_interval (qhw.net.compile.pace_requantizers), the engine then paced by it.
            interval = max(self.window.sf, fold.requant_interval) if fold.requant == "serial" else 1
            self.requant = choose_requantizer(layer.requant, acc_lo=acc_lo, acc_hi=acc_hi, acc_width=width,
                                              lanes=fold.cols, form=requant_form, interval=interval)
            # A digit-serial mul-shift requantizer registers its input the cycle it is offered and is
            # idle again within SF cycles, so the array needs no output FIFO: its accumulators hold the
            # result (24 iCE40 logic cells fewer per 12-bit lane; SystolicArray.hold_output). The
            # search form reads its input for several cycles, so it keeps the FIFO.
            if (isinstance(self.requant, SerialMulShiftRequantizer) and self.correction is None
                    and self.array.mapping.sf >= 2 and self.requant.interval <= self.array.mapping.sf):
                self.array.hold_output()
        self.packer = Regroup(channels=C, pixels=oh * ow, in_simd=fold.cols, out_simd=self.out_format.simd,
                              bits=spec_out.bits, in_last=False, out_last=True)
        super().__init__({
            "i_stream": In(stream.Signature(self.in_formats[0].payload_width)),
            "o_stream": Out(stream.Signature(self.out_format.payload_width)),
        })

    def _bipolar_correction(self, cols_ir, h, w, oh, ow, nf):
        """Offsets undoing code 0 (= −1) on padded taps and padding slots; None if there are none."""
        layer = self.layer
        kh, kw = layer.kernel
        pat = padding_patterns((h, w), layer.kernel, layer.stride, layer.padding)
        per_tap = len(cols_ir) // (kh * kw)
        tap_y = np.arange(len(cols_ir)) // per_tap // kw
        tap_x = np.arange(len(cols_ir)) // per_tap % kw
        cols = self.fold.cols
        offsets = np.zeros((pat.n_row_classes, pat.n_col_classes, nf, cols), dtype=np.int64)
        for r, ry in enumerate(pat.row_taps):
            for q, qx in enumerate(pat.col_taps):
                zero_code = (cols_ir < 0) | ~np.isin(tap_y, ry) | ~np.isin(tap_x, qx)
                # The array computed w·(−1) on these features where the IR has w·0.
                fix = self.weights[:, zero_code].sum(axis=1)
                padded = np.zeros(nf * cols, dtype=np.int64)
                padded[:len(fix)] = fix
                offsets[r, q] = padded.reshape(nf, cols)
        if not offsets.any():
            return None
        return {"row_class": pat.row_class, "col_class": pat.col_class, "offsets": offsets}

    def elaborate(self, platform):
        m = Module()
        stages = [self.window, self.array] + ([self.correction] if self.correction is not None else [])
        stages += [self.requant, self.packer]
        names = ["window", "array"] + (["correction"] if self.correction is not None else []) + ["requant", "packer"]
        for name, stage in zip(names, stages):
            m.submodules[name] = stage
        for a, b in zip(stages, stages[1:]):
            wiring.connect(m, a.o_stream, b.i_stream)
        wiring.connect(m, wiring.flipped(self.i_stream), self.window.i_stream)
        wiring.connect(m, self.packer.o_stream, wiring.flipped(self.o_stream))
        return m

    # -- models --------------------------------------------------------------------------

    @property
    def stages(self) -> list:
        return [s for s in (self.window, self.array, self.correction, self.requant, self.packer) if s is not None]

    @property
    def latency(self) -> int:
        """Cycles a beat spends between the window generator's output and the packer's input."""
        return self.array.latency + sum(getattr(s, "latency", 0) for s in (self.correction, self.requant)
                                        if s is not None)

    @property
    def beat_interval(self) -> int:
        """Cycles between two of the requantizer's input beats at full rate: SF, or more when the
        requantizer is paced slower than the array (``Fold.requant_interval``)."""
        return max(self.window.sf, getattr(self.requant, "interval", 1))

    def estimate_cycles(self, frames: int = 1) -> int:
        """First input transfer to last output transfer, ideal source and sink: the window bound, or
        with a paced requantizer, its first beat's time plus one interval per further beat."""
        tail = self.latency + packer_tail(self.packer)
        window = self.window.estimate_cycles(frames) + tail
        if self.beat_interval == self.window.sf:
            return window
        beats = frames * self.window.out_height * self.window.out_width * self.window.replays
        first = self.window.schedule(frames)[0] - self.window.beats_per_window + self.window.sf + 2
        return max(window, first + (beats - 1) * self.beat_interval + tail)

    def cycles_per_frame(self) -> int:
        paced = self.window.out_height * self.window.out_width * self.window.replays * self.beat_interval
        return max(self.window.cycles_per_frame(), self.packer.cycles_per_frame(), paced)

    def estimate_resources(self, family: str = "xilinx") -> dict[str, int]:
        """Sum of the stages' estimates; block RAM in ``family``'s own blocks (Xilinx: RAMB18)."""
        return add_resources(stage_resources(s, family) for s in self.stages)

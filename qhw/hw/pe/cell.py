"""One processing element of the systolic array: weights from a local ROM or a port, registered links."""

from __future__ import annotations

from amaranth.hdl import Module, Shape, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from qhw.hw.rom import rom_read
from qhw.ir.intmath import PEKind

from .datapath import raw_sum
from .spec import PESpec


class SystolicCell(wiring.Component):
    """A weight-stationary PE: ``psum_out <= psum_in + sum_l t(w_l, a_l)``.

    No handshake: the array advances every cell together with ``en``.

    Parameters
    ----------
    spec : PESpec
        Encodings, bit-widths, lanes.
    words : sequence of int
        Weight ROM, one word per fold step: lane ``l`` raw code at bits
        ``[l·weight_bits, (l+1)·weight_bits)``. One word gives constant weights.
    psum_in_shape : Shape or None
        Shape of the partial sum from the cell above; None for the top row.
    psum_out_shape : Shape
        Exact shape of this cell's partial sum (raw form, see :mod:`.spec`).
    max_exps : sequence of int, optional
        Per lane, the largest pow2 exponent code in ``words`` (shrinks the
        shift mux); ignored for other kinds.
    booth : bool
        MAC only: ``words`` hold Booth codes (``3·ceil(weight_bits/2)`` bits per
        lane, :meth:`PESpec.booth_codes`); the raw sum then lacks
        ``booth_offset`` per weight (see :mod:`.spec`).
    weight_port : bool
        False (default): ``words`` sit in this cell's own asynchronous LUT
        ROM, read at ``addr``. True: the cell has no ROM and takes the
        current word on ``w_in`` (the array reads it from a block ROM shared
        by a column). Either way one word gives constant weights and no port.

    Attributes
    ----------
    a_in : In(unsigned(lanes·act_bits))
        Activation codes, lane ``l`` at bits ``[l·act_bits, (l+1)·act_bits)``.
    a_out : Out(unsigned(lanes·act_bits))
        ``a_in`` registered (to the right-hand neighbour).
    addr : In(range(len(words)))
        Fold step of the activations on ``a_in``; only if ``len(words) > 1``
        and not ``weight_port``.
    w_in : In(unsigned(lanes·rom_lane_bits))
        The word of the fold step of the activations on ``a_in``, same cycle;
        only if ``len(words) > 1`` and ``weight_port``.
    psum_in : In(psum_in_shape)
        Only below the top row.
    psum_out : Out(psum_out_shape)
        Registered partial sum (to the cell below). Latency 1.
    en : In(1)
        Clock enable of both registers (the array's global stall).
    """

    def __init__(self, *, spec: PESpec, words, psum_in_shape: Shape | None, psum_out_shape: Shape,
                 max_exps=None, booth: bool = False, weight_port: bool = False):
        if not isinstance(spec, PESpec):
            raise TypeError(f"spec must be a PESpec, not {spec!r}")
        if not isinstance(weight_port, bool):
            raise TypeError(f"weight_port must be a bool, not {weight_port!r}")
        self.spec = spec
        self.weight_port = weight_port
        self.booth = bool(booth) and spec.kind is PEKind.MAC
        self.word_bits = spec.lanes * spec.rom_lane_bits(self.booth)
        self.words = tuple(int(w) for w in words)
        self.max_exps = None if max_exps is None else tuple(int(x) for x in max_exps)
        act = unsigned(spec.lanes * spec.act_bits)
        members = {"a_in": In(act), "a_out": Out(act), "en": In(1)}
        if len(self.words) > 1:
            if weight_port:
                members["w_in"] = In(unsigned(self.word_bits))
            else:
                members["addr"] = In(range(len(self.words)))
        if psum_in_shape is not None:
            members["psum_in"] = In(psum_in_shape)
        members["psum_out"] = Out(psum_out_shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        if hasattr(self, "w_in"):
            w = self.w_in
        else:
            w = rom_read(m, "rom", self.words, self.word_bits, getattr(self, "addr", None))
        exps = self.max_exps if spec.kind is PEKind.SHIFT else None
        total = raw_sum(spec, self.a_in, w, exps, booth=self.booth, m=m)
        if hasattr(self, "psum_in"):
            total = self.psum_in + total  # the wide add last, on its own carry chain
        with m.If(self.en):
            m.d.sync += [self.a_out.eq(self.a_in), self.psum_out.eq(total)]
        return m

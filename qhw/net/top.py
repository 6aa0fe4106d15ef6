"""The accelerator's top level: engines wired by a :class:`~qhw.net.compile.BuildPlan`, AXI4-Stream ports.

Ports (the ecosystem's convention, one clock, synchronous active-high reset)::

    clk, rst
    s_axis_tdata  [in_format.data_width]   pixels in the stream format of the input layer
    s_axis_tvalid, s_axis_tready           (raster order, ``simd`` channels per beat)
    s_axis_tlast                           on the last beat of every image
    m_axis_tdata  [result_width]           ``channels + 1`` beats per image: the logits, then the class
    m_axis_tvalid, m_axis_tready, m_axis_tlast (on the class beat: one packet is one image)

Beat ``c < channels`` holds logit ``c``'s code (``logit_bits``), sign-extended
when the logits are signed (zero-extended otherwise) to ``result_width =
8·max(logit_bytes, index_bytes)`` bits; the last beat holds the class index
(the argmax, first index on ties), zero-extended. So a byte-serial sink (the
UART wrapper) sends each beat's low bytes as they are. Streaming the logits,
rather than gathering one beat of all of them, keeps no result register:
the width-2 digits ResNet-8's gathered 184-bit word and the UART's byte
multiplexer over it took 323 of the iCE40 UP5K's 5,280 logic cells.

Inside: one engine per layer (Verilog instance ``l_<layer name, dots as
_>``, its output stream ``o_stream``, which ``qhw sim`` monitors to compare
every layer with the golden model); a :class:`~qhw.hw.stream_blocks.Fork`
wherever a stream has several consumers; a :class:`~qhw.hw.regroup.Regroup`
wherever a producer's ``simd`` differs from its consumer's; a
:class:`~qhw.hw.stream_blocks.StreamFIFO` on every skip path, as deep as
:mod:`qhw.net.fifo_depth` computes.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qhw.hw.regroup import Regroup
from qhw.hw.stream_blocks import Fork, StreamFIFO
from qhw.ir.graph import Conv, Dense, Input

from .compile import BuildPlan, instance_name
from .engines import ArgmaxHead, build_engine
from .stream import FrameFormat


class Accelerator(wiring.Component):
    """The whole network as one streaming component (see the module docstring for the ports).

    Parameters (keyword-only)
    -------------------------
    plan : BuildPlan
        From :func:`qhw.net.compile.compile_network`.

    Attributes
    ----------
    engines : dict
        Layer name → engine.
    in_format : FrameFormat
        The ``s_axis`` stream.
    channels, logit_bits, index_bits, result_width : int
        The ``m_axis`` beats (see the module docstring).
    logit_signed : bool
        Logit beats are sign-extended (signed logits), else zero-extended.
    """

    def __init__(self, *, plan: BuildPlan):
        self.plan = plan
        net = plan.net
        self.engines = {}
        for layer in net.layers[1:]:
            if isinstance(layer, (Conv, Dense)):
                self.engines[layer.name] = build_engine(layer, fold=plan.streams.folded.folds[layer.name],
                                                        out_simd=plan.streams.out_simd[layer.name])
            else:
                self.engines[layer.name] = build_engine(layer, simd=plan.streams.folded.simd[layer.name])
        inp = net.input
        self.in_format = FrameFormat.of(inp.out, plan.streams.out_simd[inp.name])
        out = net[net.output]
        self.out_format = self.engines[out.name].out_format
        self.head = ArgmaxHead(spec=out.out, simd=self.out_format.simd)
        self.logit_bits = out.out.bits
        self.logit_signed = out.out.code.value == "signed"
        self.index_bits = self.head.index_bits
        self.channels = out.out.channels
        self.result_width = 8 * max(-(-self.logit_bits // 8), -(-self.index_bits // 8))
        super().__init__({
            "s_axis_tdata": In(self.in_format.data_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self.result_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        net, plan = self.plan.net, self.plan
        outputs = {}  # producer name -> its output stream interface
        source = stream.Signature(self.in_format.payload_width).create()
        m.d.comb += [source.payload.eq(Cat(self.s_axis_tdata, self.s_axis_tlast)),
                     source.valid.eq(self.s_axis_tvalid), self.s_axis_tready.eq(source.ready)]
        outputs[net.input.name] = source
        for name, engine in self.engines.items():
            m.submodules[instance_name(name)] = engine
            outputs[name] = engine.o_stream
        # every producer: fork to its consumers, then per edge an adapter and a FIFO (glue_parts)
        parts = self.glue_parts()
        taps = {}
        for producer, stream_ in outputs.items():
            edges = plan.streams.consumers(producer)
            if producer == net.output:
                edges = edges + [None]  # the result path
            fork = parts.get(f"fork_{instance_name(producer)}")  # glue_parts: one where edges > 1
            if fork is None:
                branches = [stream_]
            else:
                m.submodules[f"fork_{instance_name(producer)}"] = fork
                self._link(m, stream_, fork.i_stream)
                branches = list(fork.o_streams)
            for edge, branch in zip(edges, branches):
                if edge is None:
                    taps["result"] = branch
                    continue
                cur = branch
                tag = self._edge_tag(edge)
                for kind in ("adapt", "fifo"):
                    part = parts.get(f"{kind}_{tag}")
                    if part is not None:
                        m.submodules[f"{kind}_{tag}"] = part
                        self._link(m, cur, part.i_stream)
                        cur = part.o_stream
                self._link(m, cur, self.engines[edge.dst].in_port(edge.port))
        self._result(m, taps["result"], parts)
        self._probes(m)
        return m

    def _probes(self, m) -> None:
        """Named top-level copies of every engine's stream ports, for ``qhw sim`` to watch.

        Amaranth names a submodule's ports after whichever alias of the net
        it meets, so the engines' own port names are not reliably visible in
        either simulator; these wires are (``<instance>__<port>__valid`` /
        ``__ready`` / ``__payload``). They drive nothing: synthesis removes them.
        """
        for name, engine in self.engines.items():
            inst = instance_name(name)
            for port in ("o_stream", *engine.in_ports):
                s = getattr(engine, port)
                for member in ("valid", "ready", "payload"):
                    value = getattr(s, member)
                    probe = Signal(len(value), name=f"{inst}__{port}__{member}")
                    m.d.comb += probe.eq(value)

    @staticmethod
    def _edge_tag(edge) -> str:
        return f"{instance_name(edge.src)}_to_{instance_name(edge.dst)}_{edge.port}"

    def glue_parts(self) -> dict:
        """Every component :meth:`elaborate` places between the engines, by instance name (new objects on
        each call): a ``Fork`` per producer with several consumers (``fork_<producer>``), per edge a
        ``Regroup`` adapter (``adapt_<src>_to_<dst>_<port>``) and a skip ``StreamFIFO``
        (``fifo_<...>``) where the plan has them, and the result head's ``result_fork`` and
        ``result_split`` (one logit a beat, where the output has ``simd > 1``; the argmax is :attr:`head`). :meth:`estimate_resources` counts these same
        objects, so the estimate and the netlist cannot drift apart."""
        plan, net = self.plan, self.plan.net
        widths = {net.input.name: self.in_format.payload_width}
        widths.update((name, e.out_format.payload_width) for name, e in self.engines.items())
        parts = {}
        for producer, width in widths.items():
            edges = plan.streams.consumers(producer)
            count = len(edges) + (1 if producer == net.output else 0)
            if count > 1:
                parts[f"fork_{instance_name(producer)}"] = Fork(shape=width, count=count)
            for edge in edges:
                tag = self._edge_tag(edge)
                if edge.adapter:
                    fmt = edge.produced
                    parts[f"adapt_{tag}"] = Regroup(channels=fmt.channels, pixels=fmt.pixels, in_simd=fmt.simd,
                                                    out_simd=edge.consumed.simd, bits=fmt.bits, in_last=True,
                                                    out_last=True)
                if edge.fifo_depth:
                    parts[f"fifo_{tag}"] = StreamFIFO(shape=edge.consumed.payload_width, depth=edge.fifo_depth)
        fmt = self.out_format
        parts["result_fork"] = Fork(shape=fmt.payload_width, count=2)
        if fmt.simd > 1:  # one logit a beat on m_axis
            parts["result_split"] = Regroup(channels=fmt.channels, pixels=1, in_simd=fmt.simd, out_simd=1,
                                            bits=fmt.bits, in_last=True, out_last=True)
        return parts

    @staticmethod
    def _link(m, src, dst) -> None:
        """Connect a producer's stream to a consumer's (same payload width)."""
        m.d.comb += [dst.payload.eq(src.payload), dst.valid.eq(src.valid), src.ready.eq(dst.ready)]

    def _result(self, m, logits, parts) -> None:
        """Logits → m_axis one a beat (extended to ``result_width``), then the argmax's class beat (tlast)."""
        m.submodules.result_fork = fork = parts["result_fork"]
        self._link(m, logits, fork.i_stream)
        m.submodules.argmax = self.head
        self._link(m, fork.o_streams[1], self.head.i_stream)
        lg = fork.o_streams[0]
        if "result_split" in parts:
            m.submodules.result_split = split = parts["result_split"]
            self._link(m, lg, split.i_stream)
            lg = split.o_stream
        bits, h = self.logit_bits, self.head.o_stream
        code, last = lg.payload[:bits], lg.payload[-1]  # FrameFormat payload: codes, then last on top
        pad = self.result_width - bits
        ext = Cat(code, code[-1].replicate(pad)) if self.logit_signed and pad else Cat(code, Const(0, pad))
        phase = Signal(name="result_class")  # 0: the logits of an image, 1: its class beat
        # Muxes rather than an If: Icarus evaluates no ``always @*`` block before one of its inputs
        # changes, and phase does not change at time 0 (continuous assigns are evaluated at once).
        m.d.comb += [
            self.m_axis_tdata.eq(Mux(phase, h.payload[:self.index_bits], ext)),
            self.m_axis_tvalid.eq(Mux(phase, h.valid, lg.valid)), self.m_axis_tlast.eq(phase),
            lg.ready.eq(~phase & self.m_axis_tready), h.ready.eq(phase & self.m_axis_tready),
        ]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += phase.eq(Mux(phase, 0, last))

    # -- models ------------------------------------------------------------------------------

    def cycles_per_frame(self) -> int:
        """Steady-state initiation interval: the slowest engine's (the skip FIFOs keep every branch busy)."""
        return max(e.cycles_per_frame() for e in self.engines.values())

    def bottleneck(self) -> str:
        return max(self.engines, key=lambda n: self.engines[n].cycles_per_frame())

    def estimate_resources(self, family: str = "xilinx") -> dict:
        """Per engine (``layers``), per glue part (``glue``: :meth:`glue_parts` and the argmax ``head``)
        and in ``total``, in ``family``'s LUTs and block RAM units. Skip FIFOs are the StreamFIFO each
        edge gets, estimated by StreamFIFO itself, so a deep one is placed in block RAM where yosys'
        memory mapper puts it on ``family`` (a ResNet-8's 128-160 beat skip FIFOs are RAMB18s on Xilinx)."""
        from .engines.resources import add_resources, stage_resources

        per = {n: e.estimate_resources(family=family) for n, e in self.engines.items()}
        glue = {}
        for name, part in self.glue_parts().items():
            part._MustUse__silence = True  # estimated here; elaborate() builds its own instances
            glue[name] = stage_resources(part, family)
        glue["argmax"] = stage_resources(self.head, family)
        # _result's m_axis multiplexer: per data bit a 2:1 LUT (the class beat or the extended logit),
        # valid / ready / phase-update LUTs and the phase flop
        glue["result"] = {"lut": self.result_width + 3, "ff": 1, "bram": 0, "dsp": 0}
        return {"layers": per, "glue": glue, "total": add_resources(list(per.values()) + list(glue.values()))}


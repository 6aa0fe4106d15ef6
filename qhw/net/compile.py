"""Network → one streaming accelerator, as an explicit, ordered list of typed passes.

========================  =====================  ======================  ===========================
pass                      takes                  gives                   what it decides
========================  =====================  ======================  ===========================
``check_supported``       Network                Network                 every layer has an engine
``assign_folds``          Network, folds         FoldedNet               fold / simd of every layer
``pace_requantizers``     FoldedNet              FoldedNet               cycles a serial requantizer
                                                                         may take a beat
``plan_streams``          FoldedNet              StreamPlan              formats of every edge, forks,
                                                                         width adapters
``size_fifos``            StreamPlan             BuildPlan               skip FIFO depths
                                                                         (:mod:`qhw.net.fifo_depth`)
========================  =====================  ======================  ===========================

:data:`PASSES` lists them in order; :func:`compile_network` runs them and
returns every intermediate (each has ``to_dict()``, so ``qhw build --keep``
dumps them as JSON). :class:`qhw.net.top.Accelerator` turns the last one
into hardware. Unlike FINN's build steps, nothing depends on an implicit
order: each pass takes exactly the type the previous one returns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from qhw.errors import InputError
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Layer, MaxPool, Network

from .fifo_depth import chain_absorb, chain_need, skip_fifo_pixels, stage_buffer
from .fold import Fold
from .folding import conv_beats, conv_cycles
from .stream import FrameFormat

ENGINE_KINDS = (Conv, Dense, Add, GlobalPool, MaxPool)


def network_digest(net: Network) -> str:
    """SHA-256 of the network's canonical encoding (layers, weights, requantizers; not ``meta``)."""
    import json

    from qhw.ir.serialize import encode_network

    doc, blob = encode_network(net, "net.npz")
    doc = {k: v for k, v in doc.items() if k != "meta"}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode() + blob).hexdigest()


def instance_name(layer_name: str) -> str:
    """Verilog instance name of a layer's engine: ``s1.b1.conv1`` → ``l_s1_b1_conv1``."""
    return "l_" + layer_name.replace(".", "_")


# -- pass 1 ------------------------------------------------------------------------------------

def check_supported(net: Network) -> Network:
    """Every layer but the input must have an engine; the output must be a vector (the logits)."""
    for layer in net.layers[1:]:
        if not isinstance(layer, ENGINE_KINDS):
            raise InputError(f"layer {layer.name} ({layer.kind}): no hardware engine for this layer kind")
    out = net[net.output]
    if out.out.is_map:
        raise InputError(f"output layer {out.name} gives a {out.out.shape} map; the accelerator needs logits (C,)")
    return net


# -- pass 2 ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FoldedNet:
    """The network with a fold (conv / dense) or a stream width (the others) per layer."""

    net: Network
    folds: Mapping[str, Fold]
    simd: Mapping[str, int]  # input simd of every engine layer (conv/dense: fold.simd)

    def to_dict(self) -> dict:
        return {"layers": {n: (self.folds[n].to_dict() if n in self.folds else {"simd": self.simd[n]})
                           for n in self.simd}}


def default_fold(layer: Layer, max_simd: int = 8, max_cols: int = 8) -> Fold | int:
    """A small fold: up to ``max_simd`` input channels per beat, ``max_cols`` output channels at once."""
    if isinstance(layer, (Conv, Dense)):
        simd = min(layer.in_spec.channels, max_simd)
        rows = max(d for d in range(1, min(simd, 4) + 1) if simd % d == 0)
        return Fold(rows=rows, cols=min(layer.out_channels, max_cols), lanes=simd // rows)
    return min(layer.in_specs[0].channels, max_simd)


def parse_fold_config(doc: Any, net: Network) -> dict[str, Fold | int]:
    """A fold file ``{"layers": {name: {"rows", "cols", "lanes"} | {"simd"}}}`` checked against ``net``."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("layers"), Mapping):
        raise InputError('fold config must be an object {"layers": {layer name: fold}}')
    out: dict[str, Fold | int] = {}
    for name, spec in doc["layers"].items():
        if name not in net:
            raise InputError(f"fold config names layer {name!r}, which the network does not have")
        layer = net[name]
        try:
            if isinstance(layer, (Conv, Dense)):
                out[name] = Fold.from_dict(spec)
            elif isinstance(layer, ENGINE_KINDS):
                if not isinstance(spec, Mapping) or set(spec) != {"simd"}:
                    raise ValueError(f"a {layer.kind} layer takes {{\"simd\": n}}, not {spec!r}")
                from ..hw.pe.params import check_positive

                out[name] = check_positive("simd", spec["simd"])
            else:
                raise ValueError(f"a {layer.kind} layer has no fold")
        except (TypeError, ValueError) as exc:
            raise InputError(f"fold config, layer {name}: {exc}") from None
    return out


def assign_folds(net: Network, folds: Mapping[str, Fold | int] | None = None) -> FoldedNet:
    """Folds given for some layers, :func:`default_fold` for the rest."""
    folds = dict(folds or {})
    fold_of: dict[str, Fold] = {}
    simd: dict[str, int] = {}
    for layer in net.layers[1:]:
        f = folds.get(layer.name, default_fold(layer))
        if isinstance(layer, (Conv, Dense)):
            if not isinstance(f, Fold):
                raise InputError(f"layer {layer.name}: a {layer.kind} layer needs a fold (rows, cols, lanes)")
            fold_of[layer.name] = f
            simd[layer.name] = f.simd
        else:
            if isinstance(f, Fold):
                raise InputError(f"layer {layer.name}: a {layer.kind} layer takes a simd, not a fold")
            simd[layer.name] = int(f)
    return FoldedNet(net, fold_of, simd)


def pace_requantizers(folded: FoldedNet) -> FoldedNet:
    """Every serial fold that leaves ``requant_interval`` 0 gets the most cycles a beat that keep its
    engine within the slowest conv / dense engine's cycles per frame (``budget``), where that exceeds SF.

    At SF cycles a beat (what the array gives) a layer far from the bottleneck builds a digit-serial
    requantizer of several multiplier bits a cycle: a 1×1 shortcut over C_in = 4 channels has SF 4 and
    took 161 iCE40 LUTs (yosys) for a 14-bit multiplier in 4-bit digits, 101 in 1-bit digits at the 72
    cycles a beat pacing gives it. The engine then emits one output beat every ``max(SF, interval)``
    cycles and still keeps up with the network (frames/s unchanged). Other folds pass unchanged.
    """
    from dataclasses import replace

    net = folded.net
    convs = [(net[n], f) for n, f in folded.folds.items()]
    if not convs:
        return folded
    budget = max(conv_cycles(layer, f) for layer, f in convs)
    folds = dict(folded.folds)
    for layer, f in convs:
        if f.requant != "serial" or f.requant_interval:
            continue
        sf, beats = conv_beats(layer, f)
        interval = budget // beats
        if interval > sf:
            folds[layer.name] = replace(f, requant_interval=interval)
    return FoldedNet(net, folds, folded.simd)


# -- pass 3 ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Edge:
    """One stream from a producer to one input port of a consumer."""

    src: str
    dst: str
    port: int
    produced: FrameFormat  # as the producer emits it
    consumed: FrameFormat  # as the consumer reads it (a Regroup sits between if they differ)
    fifo_depth: int = 0    # 0: no FIFO

    @property
    def adapter(self) -> bool:
        return self.produced.simd != self.consumed.simd

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "port": self.port, "produced": self.produced.to_dict(),
                "consumed": self.consumed.to_dict(), "adapter": self.adapter, "fifo_depth": self.fifo_depth}


@dataclass(frozen=True)
class StreamPlan:
    folded: FoldedNet
    out_simd: Mapping[str, int]  # per producer (the input layer included)
    edges: tuple[Edge, ...]

    @property
    def net(self) -> Network:
        return self.folded.net

    def consumers(self, src: str) -> list[Edge]:
        return [e for e in self.edges if e.src == src]

    def to_dict(self) -> dict:
        return {"out_simd": dict(self.out_simd), "edges": [e.to_dict() for e in self.edges]}


def plan_streams(folded: FoldedNet) -> StreamPlan:
    """Each producer emits in its consumers' simd when they agree (no adapter), else its own."""
    net = folded.net
    out_simd: dict[str, int] = {}
    for layer in net.layers:
        wants = sorted({folded.simd[c.name] for c in net.consumers(layer.name)})
        if isinstance(layer, Input):
            out_simd[layer.name] = wants[0] if len(wants) == 1 else max(wants)
        elif isinstance(layer, (Conv, Dense)):
            out_simd[layer.name] = wants[0] if len(wants) == 1 else folded.folds[layer.name].cols
        else:  # add / pool engines keep their input simd
            out_simd[layer.name] = folded.simd[layer.name]
    out_simd.setdefault(net.output, out_simd[net.output])
    edges = []
    for layer in net.layers[1:]:
        for port, src in enumerate(layer.inputs):
            spec = net[src].out
            edges.append(Edge(src, layer.name, port, FrameFormat.of(spec, out_simd[src]),
                              FrameFormat.of(spec, folded.simd[layer.name])))
    return StreamPlan(folded, out_simd, tuple(edges))


# -- pass 4 ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildPlan:
    """Everything the top level needs: the stream plan with FIFO depths on the skip paths."""

    streams: StreamPlan
    fifo_pixels: Mapping[tuple[str, int], int] = field(default_factory=dict)      # full rate (built)
    deadlock_pixels: Mapping[tuple[str, int], int] = field(default_factory=dict)  # deadlock-free minimum

    @property
    def net(self) -> Network:
        return self.streams.net

    @property
    def edges(self) -> tuple[Edge, ...]:
        return self.streams.edges

    def to_dict(self) -> dict:
        return {"edges": [e.to_dict() for e in self.edges],
                "fifos": [{"dst": d, "port": p, "pixels": n, "deadlock_free_pixels": self.deadlock_pixels.get((d, p)),
                           "depth": next(e.fifo_depth for e in self.edges if e.dst == d and e.port == p)}
                          for (d, p), n in sorted(self.fifo_pixels.items())]}


def _branch(net: Network, start: str) -> tuple[str, list[Layer]]:
    """Walk back from ``start`` through single-input layers with one consumer, to the fork point."""
    chain: list[Layer] = []
    name = start
    while True:
        layer = net[name]
        if isinstance(layer, Input) or len(net.consumers(name)) > 1 or len(layer.inputs) != 1:
            return name, chain[::-1]
        chain.append(layer)
        name = layer.inputs[0]


def size_fifos(plan: StreamPlan, *, scale: float = 1.0) -> BuildPlan:
    """A FIFO on every branch into an add, as deep as :mod:`qhw.net.fifo_depth` says for full rate.

    Two depths per branch, both from the data dependencies alone: the
    deadlock-free one (:func:`~qhw.net.fifo_depth.chain_need` of the branch
    waited for: what it *must* read) and the full-rate one
    (:func:`~qhw.net.fifo_depth.chain_absorb`: what it *can* read, its line
    buffers ahead and pipelines full), which is built. ``scale`` multiplies
    the built depth (tests cut it below 1 to show the depth is needed).
    """
    net = plan.net
    depth: dict[tuple[str, int], int] = {}
    pixels: dict[tuple[str, int], int] = {}
    deadlock: dict[tuple[str, int], int] = {}
    stages, period = {}, {}  # per engine: its StageBuffer; per layer: fewest cycles between output pixels
    for layer in net.layers:
        if isinstance(layer, Input):
            period[layer.name] = plan.consumers(layer.name)[0].produced.groups
            continue
        stages[layer.name] = stage_buffer(layer, simd=plan.folded.simd[layer.name],
                                          fold=plan.folded.folds.get(layer.name), out_simd=plan.out_simd[layer.name])
        period[layer.name] = stages[layer.name].period
        if isinstance(layer, Add):  # an add is no faster than the faster-bursting of its inputs
            period[layer.name] = max(period[layer.name], min(period[s] for s in layer.inputs))
    for layer in net.layers:
        if not isinstance(layer, Add):
            continue
        branches = [_branch(net, src) for src in layer.inputs]
        sources = {s for s, _ in branches}
        # an input that is itself the fork point has an empty chain
        if len(sources) != 1:
            raise InputError(f"layer {layer.name}: the branches of this add do not start at one fork "
                             f"({', '.join(sorted(sources))}); only residual blocks are supported")
        source = net[sources.pop()]
        spec = source.out
        src_pixels = spec.shape[1] * spec.shape[2] if spec.is_map else 1
        needs = [chain_need(chain, src_pixels) for _, chain in branches]
        fork_period = max([period[source.name]] + [e.consumed.groups for e in plan.consumers(source.name)])
        absorbs = [chain_absorb([stages[l.name] for l in chain], need, fork_period, src_pixels)
                   for (_, chain), need in zip(branches, needs)]
        full = skip_fifo_pixels(needs, absorbs)
        for port, (px, px_dl) in enumerate(zip(full, skip_fifo_pixels(needs))):
            edge = next(e for e in plan.edges if e.dst == layer.name and e.port == port)
            pixels[layer.name, port], deadlock[layer.name, port] = px, px_dl
            depth[layer.name, port] = max(3, int(round(px * edge.consumed.groups * scale)))
    edges = tuple(Edge(e.src, e.dst, e.port, e.produced, e.consumed, depth.get((e.dst, e.port), 0))
                  for e in plan.edges)
    return BuildPlan(StreamPlan(plan.folded, plan.out_simd, edges), pixels, deadlock)


# -- the pipeline --------------------------------------------------------------------------------

PASSES: tuple[tuple[str, Callable], ...] = (
    ("check_supported", check_supported),
    ("assign_folds", assign_folds),
    ("pace_requantizers", pace_requantizers),
    ("plan_streams", plan_streams),
    ("size_fifos", size_fifos),
)


@dataclass(frozen=True)
class Compiled:
    """The result of every pass, in order."""

    net: Network
    folded: FoldedNet  # after pace_requantizers
    streams: StreamPlan
    plan: BuildPlan
    assigned: FoldedNet | None = None  # assign_folds' result, before pacing

    def intermediates(self) -> dict[str, dict]:
        return {"assign_folds": (self.assigned or self.folded).to_dict(),
                "pace_requantizers": self.folded.to_dict(), "plan_streams": self.streams.to_dict(),
                "size_fifos": self.plan.to_dict()}


def compile_network(net: Network, folds: Mapping[str, Fold | int] | None = None, *,
                    fifo_scale: float = 1.0) -> Compiled:
    """Run :data:`PASSES` in order."""
    net = check_supported(net)
    assigned = assign_folds(net, folds)
    folded = pace_requantizers(assigned)
    streams = plan_streams(folded)
    plan = size_fifos(streams, scale=fifo_scale)
    return Compiled(net, folded, streams, plan, assigned)

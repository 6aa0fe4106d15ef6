"""``qhw sim``: a built accelerator in cocotb on real images, every layer's stream against the golden model.

:func:`simulate_build` takes a ``qhw build`` directory (its ``manifest.json``
is the contract: top module, port layout, per-layer engine instance and
stream format, ``cycles_per_frame``), runs the golden model on the images,
and runs the cocotb testbench ``sim/net/test_accelerator.py`` on the
build's Verilog (Icarus or Verilator, builds cached by Verilog digest):

* the images go into ``s_axis`` (``tlast`` on each image's last beat) and
  ``channels + 1`` beats per image come out of ``m_axis`` (each logit, then
  the class index, tlast, as :mod:`qhw.net.top` and the manifest lay them out); both ports stall at random with
  probability ``stall``;
* every engine's output stream is compared, bit for bit, with the golden
  model's output of that layer; the first mismatch in simulated time (the
  most upstream one: later ones are its consequences) fails the run with
  one line naming layer, frame, pixel ``(y, x)``, channel, expected and got
  code, followed by how far the error spread;
* the logits and the class index of every image are checked against
  :class:`~qhw.ir.golden.GoldenModel` and :meth:`~qhw.ir.golden.GoldenModel.predict`;
* a watchdog fails the run when nothing transfers anywhere for
  :func:`watchdog_cycles` cycles, naming the engines that stall (an input
  offered and not taken) and what they wait for: a deadlocked build gives
  that line, never a timeout.

Probes and the wrapper
----------------------
Each engine's streams are read through the named wires the accelerator's
top level drives for ``qhw sim`` (``Accelerator._probes`` in
:mod:`qhw.net.top`), ``<instance>__<port>__valid`` / ``__ready`` /
``__payload`` (e.g. ``l_s1_b1_conv1__o_stream__valid``);
:func:`missing_probes` checks a build has them before anything runs. The
engine instance's own ports cannot be used: Amaranth names a submodule's
ports after whichever alias of the net it meets (``\\i_stream__valid$16``,
payloads split into ``\\port$7453$0`` pieces), so ``dut.l_fc.o_stream__valid``
exists in neither simulator.

The testbench does not reach into the design through VPI at all: the
simulated top is :func:`wrapper_verilog`, a small Verilog module that
instantiates the accelerator unchanged, reads the probe wires by
hierarchical reference (which Icarus and Verilator both resolve at compile
time) and hands the testbench registered events on its own ports. So the
design needs no VPI visibility, and Verilator is built without cocotb's
default ``--public-flat-rw`` (:data:`VERILATOR_FLAGS`): that flag keeps
every signal of the design addressable, and dropping it made the digits
binary_body build (16-wide folds) compile in 67 s instead of 140 s and run
8 times faster (0.57 instead of 4.5 ms per cycle).

Figures (:class:`SimReport`)
----------------------------
``cycles_per_frame``
    Steady state, frames back to back with no stalls: the mean interval
    between consecutive images' class beats on ``m_axis``. With ``stall > 0`` the run
    appends ``throughput_frames`` images (the first ones again, checked
    like every other) sent and taken without stalls, and the intervals
    between their class beats are measured; with ``stall == 0`` every
    interval after the first beat is. Compare ``manifest_cycles_per_frame``.
``latency``
    Cycles from the first ``s_axis`` transfer to the first image's class beat on ``m_axis``.
busy %
    Per layer: cycles in which its output stream transfers, divided by the
    cycles from the first ``s_axis`` transfer to the last ``m_axis`` beat;
    ``ideal_busy`` is the same fraction at the manifest's initiation
    interval (beats per frame / ``cycles_per_frame``), ``stalled`` the
    fraction of cycles its output waits for its consumer.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from qhw.errors import InputError, SimulationMismatch

from .stream import FrameFormat

TEST_MODULE = "net.test_accelerator"
#: Verilator options for the wrapper: only its own ports need to be visible to cocotb (see the module
#: docstring).
VERILATOR_FLAGS = ("--no-public-flat-rw", "--public-depth", "1")
#: Frames appended without stalls to measure the steady state when ``stall > 0``.
THROUGHPUT_FRAMES = 4
SIMULATORS = ("icarus", "verilator")


class Deadlock(SimulationMismatch):
    """Nothing moved anywhere in the accelerator for the watchdog's number of cycles."""


# -- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerReport:
    """One engine's figures from one run (see the module docstring for busy %)."""

    name: str
    kind: str
    instance: str
    beats: int            # output transfers checked
    values: int           # codes compared (frames × channels × pixels)
    mismatches: int       # codes (and last flags) that differed
    busy: float           # output transfers / run cycles
    ideal_busy: float     # beats per frame / manifest cycles per frame
    stalled: float        # cycles its output waited for the consumer / run cycles
    cycles_per_frame: int  # the manifest's, this engine alone
    interval: float | None  # measured: mean cycles between its frames' last beats, over the measured frames

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimReport:
    """Everything one :func:`simulate_build` run measured and checked."""

    build: str
    top: str
    simulator: str
    stall: float
    seed: int
    images: int               # images given
    frames: int               # frames simulated (images + the throughput tail)
    layers: tuple[LayerReport, ...]
    values_compared: int
    mismatches: int
    classes_agree: int        # frames whose class index equals GoldenModel.predict
    class_agreement: float    # percent
    logits_wrong: int         # frames whose logits differ from the golden model's
    cycles_per_frame: float | None  # measured steady state (mean interval)
    cycles_per_frame_min: int | None
    cycles_per_frame_max: int | None
    measured_intervals: int
    manifest_cycles_per_frame: int
    latency: int | None
    total_cycles: int
    watchdog: int
    wall_seconds: float
    failure: str | None = None
    m_axis_stalled: float = 0.0  # cycles an m_axis beat waited for the sink / run cycles

    @property
    def ok(self) -> bool:
        return self.failure is None and self.mismatches == 0 and self.logits_wrong == 0 \
            and self.classes_agree == self.frames

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [l.to_dict() for l in self.layers]
        d["ok"] = self.ok
        return d


# -- inputs --------------------------------------------------------------------------------

def synthetic_images(spec, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` random valid input values of ``spec`` (a :class:`~qhw.ir.graph.TensorSpec`): ±1 if bipolar."""
    rng = np.random.default_rng(seed)
    shape = (n, *spec.shape)
    if spec.code.value == "bipolar":
        return np.where(rng.integers(0, 2, size=shape) == 1, 1, -1).astype(np.int64)
    return rng.integers(spec.lo, spec.hi + 1, size=shape, dtype=np.int64)


def dataset_images(name: str, net, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` input images for ``net``: the digits test set (in order) or :func:`synthetic_images`."""
    spec = net.input.out
    if name == "synthetic":
        return synthetic_images(spec, n, seed=seed)
    if name != "digits":
        raise InputError(f"unknown dataset {name!r}; use digits or synthetic")
    from qhw.quant.data import load_dataset

    ds = load_dataset("digits")
    if tuple(ds.shape) != tuple(spec.shape) or spec.code.value != "unsigned" or spec.bits != 8:
        raise InputError(f"the digits images are 8-bit unsigned {tuple(ds.shape)}; this network takes "
                         f"{spec.bits}-bit {spec.code.value} {tuple(spec.shape)}: use --dataset synthetic")
    if n > len(ds.x_test):
        raise InputError(f"the digits test set has {len(ds.x_test)} images, not {n}")
    return ds.x_test[:n].astype(np.int64)


def watchdog_cycles(cycles_per_frame: int, stall: float = 0.0) -> int:
    """Cycles without any transfer that mean a deadlock: four frames' worth (slower when ports stall) + 1000.

    No engine waits longer than one initiation interval between transfers
    on its streams in a live accelerator, so this never fires on one.
    """
    return int(math.ceil(4 * cycles_per_frame / (1.0 - stall))) + 1000


def in_port_names(inputs: int) -> list[str]:
    """An engine's input stream names (:attr:`qhw.net.engines.Engine.in_ports`' rule)."""
    return ["i_stream"] if inputs == 1 else [f"i_stream_{k}" for k in range(inputs)]


def probe_names(manifest: dict) -> list[str]:
    """Every top-level wire the testbench reads (see "Probes" in the module docstring)."""
    names = []
    for layer in manifest["layers"]:
        for port in ["o_stream", *in_port_names(len(layer["inputs"]))]:
            names += [f"{layer['instance']}__{port}__{m}" for m in ("valid", "ready", "payload")]
    return names


def missing_probes(manifest: dict, verilog: str) -> list[str]:
    """Probe wires the top module does not declare (empty for a build ``qhw sim`` can watch)."""
    top = verilog.find(f"module {manifest['top']}(")
    body = verilog[top: verilog.find("endmodule", top)] if top >= 0 else verilog
    declared = set(re.findall(r"^\s*wire\s+(?:\[[^\]]*\]\s*)?(\S+);", body, flags=re.M))
    return [n for n in probe_names(manifest) if n not in declared]


# -- the testbench wrapper ------------------------------------------------------------------

def _width(fmt: dict) -> int:
    return fmt["simd"] * fmt["bits"] + 1


def wrapper_name(manifest: dict) -> str:
    return f"{manifest['top']}__qhw_sim"


def wrapper_verilog(manifest: dict) -> str:
    """A Verilog module around the accelerator that turns its streams into events for the testbench.

    The accelerator is instantiated unchanged (``acc``) with its AXI ports
    passed through; the wrapper only reads. Per edge it registers which
    streams transferred (``ev_fired``: layer ``k`` at bit ``k``, then
    ``s_axis``, ``m_axis``), the payload each layer's and ``m_axis``' stream
    carried (``cap_<k>``, ``cap_m``, ``tlast`` on top) and toggles
    ``ev_tick`` (``s_tick`` for ``s_axis`` alone), so the Python side wakes
    once per cycle in which something moved, not once per cycle: a run is
    hundreds of thousands of cycles and one Python wake-up costs as much as
    a cycle of the simulator. It also checks the handshake rules of every
    layer's output and ``m_axis`` (``viol_drop``: valid withdrawn before
    the transfer, ``viol_change``: payload changed while waiting, sticky,
    ``bad`` = any), counts each layer's stalled cycles (``stalls``, 32 bits
    per layer) and raises ``stuck`` after ``wd_limit`` cycles without any
    transfer; ``st_valid`` / ``st_ready`` give every probed port's
    handshake for the watchdog's diagnosis (per layer: inputs, then output).
    """
    top, layers = manifest["top"], manifest["layers"]
    ports = manifest["ports"]
    sw, mw = ports["s_axis"]["width"], ports["m_axis"]["width"]
    n = len(layers)
    streams = []  # (probe prefix, payload width) in st_valid order
    for doc in layers:
        for k, port in enumerate(in_port_names(len(doc["inputs"]))):
            streams.append((f"{doc['instance']}__{port}", _width(doc["in_formats"][k])))
        streams.append((f"{doc['instance']}__o_stream", _width(doc["out_format"])))
    outs = [(f"{doc['instance']}__o_stream", _width(doc["out_format"])) for doc in layers]
    p = len(streams)
    v = n + 1  # handshake-checked: every layer output, then m_axis

    def cat(items):  # Verilog concatenation, item 0 in the least significant bit
        return "{" + ", ".join(reversed(items)) + "}"

    names = ["clk", "rst", "s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast", "m_axis_tdata",
             "m_axis_tvalid", "m_axis_tready", "m_axis_tlast", "wd_limit", "ev_tick", "s_tick", "ev_fired",
             "ev_cycle", "stuck", "bad", "viol_drop", "viol_change", "viol_cycle", "st_valid", "st_ready",
             "stalls", "cap_m"]
    names += [f"cap_{k}" for k in range(n)]
    L = [f"// qhw sim: event wrapper around {top} (qhw.net.simulate.wrapper_verilog); it only observes.",
         # The flags are part of the text so that a simulator build cached by digest was built with them
         # (a comment starting with the simulator's name would be read as one of its pragmas).
         f"// built by qhw sim for Verilator with {' '.join(VERILATOR_FLAGS)}",
         f"module {wrapper_name(manifest)}({', '.join(names)});",
         "  input clk;", "  input rst;",
         f"  input [{sw - 1}:0] s_axis_tdata;", "  input s_axis_tvalid;", "  output s_axis_tready;",
         "  input s_axis_tlast;",
         f"  output [{mw - 1}:0] m_axis_tdata;", "  output m_axis_tvalid;", "  input m_axis_tready;",
         "  output m_axis_tlast;",
         "  input [31:0] wd_limit;",
         "  output reg ev_tick;", "  output reg s_tick;", f"  output reg [{n + 1}:0] ev_fired;",
         "  output reg [31:0] ev_cycle;", "  output reg stuck;", "  output bad;",
         f"  output reg [{v - 1}:0] viol_drop;", f"  output reg [{v - 1}:0] viol_change;",
         "  output reg [31:0] viol_cycle;",
         f"  output [{p - 1}:0] st_valid;", f"  output [{p - 1}:0] st_ready;",
         f"  output reg [{32 * n - 1}:0] stalls;", f"  output reg [{mw}:0] cap_m;"]
    L += [f"  output reg [{w - 1}:0] cap_{k};" for k, (_, w) in enumerate(outs)]
    L += [f"  {top} acc (.clk(clk), .rst(rst), .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid),",
          "    .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast), .m_axis_tdata(m_axis_tdata),",
          "    .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready), .m_axis_tlast(m_axis_tlast));",
          f"  assign st_valid = {cat([f'acc.{s}__valid' for s, _ in streams])};",
          f"  assign st_ready = {cat([f'acc.{s}__ready' for s, _ in streams])};"]
    ov = [f"acc.{s}__valid" for s, _ in outs] + ["m_axis_tvalid"]
    orr = [f"acc.{s}__ready" for s, _ in outs] + ["m_axis_tready"]
    op = [f"acc.{s}__payload" for s, _ in outs] + ["{m_axis_tlast, m_axis_tdata}"]
    L += [f"  wire [{v - 1}:0] o_valid = {cat(ov)};", f"  wire [{v - 1}:0] o_ready = {cat(orr)};",
          "  wire s_fire = s_axis_tvalid & s_axis_tready;",
          f"  wire [{n + 1}:0] fire = {{m_axis_tvalid & m_axis_tready, s_fire, o_valid[{n - 1}:0] & o_ready[{n - 1}:0]}};",
          "  assign bad = |viol_drop | |viol_change;",
          f"  reg [{v - 1}:0] held;", "  reg [31:0] idle;"]
    L += ["  always @(posedge clk) begin",
          "    if (rst) begin",
          "      ev_tick <= 1'b0; s_tick <= 1'b0; ev_fired <= 0; ev_cycle <= 0; idle <= 0; stuck <= 1'b0;",
          "      held <= 0; viol_drop <= 0; viol_change <= 0; viol_cycle <= 0; stalls <= 0;",
          "    end else begin",
          "      ev_cycle <= ev_cycle + 1;",
          "      ev_fired <= fire;",
          "      if (|fire) ev_tick <= ~ev_tick;",
          "      if (s_fire) s_tick <= ~s_tick;",
          "      idle <= (|fire) ? 32'd0 : idle + 32'd1;",
          "      if (wd_limit != 0 && idle >= wd_limit) stuck <= 1'b1;",
          "      held <= o_valid & ~o_ready;",
          "      viol_drop <= viol_drop | (held & ~o_valid);",
          "      if (!bad) viol_cycle <= ev_cycle + 1;  // frozen at the edge that found the first violation"]
    for k in range(n):
        L.append(f"      stalls[{32 * k + 31}:{32 * k}] <= stalls[{32 * k + 31}:{32 * k}] + "
                 f"{{31'd0, o_valid[{k}] & ~o_ready[{k}]}};")
    # cap_<k> holds last cycle's payload: the one offered and not taken if held[k]
    caps = [f"cap_{k}" for k in range(n)] + ["cap_m"]
    for k, (expr, cap) in enumerate(zip(op, caps)):
        L.append(f"      if (held[{k}] && o_valid[{k}] && {expr} != {cap}) viol_change[{k}] <= 1'b1;")
    L.append("    end")
    for k, (s, _) in enumerate(outs):
        L.append(f"    cap_{k} <= acc.{s}__payload;")
    L += ["    cap_m <= {m_axis_tlast, m_axis_tdata};", "  end", "endmodule", ""]
    return "\n".join(L)


# -- checking a network against a build -----------------------------------------------------

def _check_net(manifest: dict, net) -> None:
    """``net`` has the build's layers, each producing the stream format its engine emits."""
    ours = [l.name for l in net.layers[1:]]
    theirs = [l["name"] for l in manifest["layers"]]
    if ours != theirs:
        raise InputError(f"the network's layers ({', '.join(ours)}) are not the build's ({', '.join(theirs)})")
    for doc in manifest["layers"]:
        layer = net[doc["name"]]
        out = doc["out_format"]
        want = FrameFormat.of(layer.out, out["simd"]).to_dict()
        if want != out or layer.kind != doc["kind"]:
            raise InputError(f"layer {layer.name}: the network has a {layer.kind} giving {want}, the build's "
                             f"engine a {doc['kind']} giving {out}")
    inp = FrameFormat.of(net.input.out, manifest["ports"]["s_axis"]["format"]["simd"]).to_dict()
    if inp != manifest["ports"]["s_axis"]["format"]:
        raise InputError(f"the network's input {inp} is not the build's s_axis {manifest['ports']['s_axis']['format']}")


def load_build_network(manifest: dict, build_dir: Path):
    """The network the manifest names, checked against its digest."""
    from qhw.ir.serialize import load_network

    from .compile import network_digest

    path = manifest["network"].get("path")
    if not path:
        raise InputError(f"{build_dir}: the manifest names no network file; pass the network (net=)")
    net = load_network(path)
    if network_digest(net) != manifest["network"]["digest"]:
        raise InputError(f"{path} has changed since {build_dir} was built (network digest differs): rebuild it")
    return net


# -- stimulus ------------------------------------------------------------------------------

def result_beats(manifest: dict, logits: np.ndarray, index: np.ndarray) -> list[list[int]]:
    """The ``m_axis_tdata`` beats of each frame: every logit's code, extended to the port's width as the
    manifest says (sign or zero), then the class index (:mod:`qhw.net.top`)."""
    from qhw.ir import intmath

    m = manifest["ports"]["m_axis"]
    lg, width = m["logits"], int(m["width"])
    codes = intmath.encode_acts(intmath.ActCode(lg["code"]), lg["bits"], np.asarray(logits, dtype=np.int64))
    sign = lg.get("extended") == "sign"
    frames = []
    for row, k in zip(codes.reshape(len(codes), -1).tolist(), np.asarray(index).tolist()):
        beats = []
        for code in row:
            code = int(code)
            if sign and code >> (lg["bits"] - 1) & 1:
                code |= ((1 << width) - 1) & ~((1 << lg["bits"]) - 1)
            beats.append(code)
        frames.append(beats + [int(k)])
    return frames


def stimulus(manifest: dict, net, images: np.ndarray, *, tail: int = 0) -> dict:
    """The testbench's stimulus: input beats, every layer's expected beats, the expected results.

    ``tail`` frames (the first images again) are appended for the throughput
    measurement; the two ports' ``stalled_beats`` say where they start.
    """
    from qhw.ir.golden import GoldenModel

    frames = np.concatenate([images, images[np.arange(tail) % len(images)]]) if tail else images
    golden = GoldenModel(net)
    try:
        values = golden.run(frames)
        predicted = golden.predict(frames)
    except (TypeError, ValueError) as exc:
        raise InputError(f"images: {exc}") from None
    s_fmt = _fmt(manifest["ports"]["s_axis"]["format"])
    layers = []
    for doc in manifest["layers"]:
        fmt = _fmt(doc["out_format"])
        layers.append({"name": doc["name"], "kind": doc["kind"], "instance": doc["instance"],
                       "inputs": list(doc["inputs"]), "in_ports": in_port_names(len(doc["inputs"])),
                       "out_format": doc["out_format"], "expected": fmt.encode(values[doc["name"]].numpy()),
                       "values": int(values[doc["name"]].numel())})
    m = manifest["ports"]["m_axis"]
    out = values[manifest["network"]["output"]]
    return {
        "s_axis": {"width": manifest["ports"]["s_axis"]["width"], "beats": s_fmt.encode(frames),
                   "stalled_beats": len(images) * s_fmt.beats},
        "m_axis": {"expected": result_beats(manifest, out.numpy(), predicted.numpy()),
                   "predicted": [int(v) for v in predicted.tolist()],
                   "logit_bits": m["logits"]["bits"], "channels": m["logits"]["channels"],
                   "index_bits": m["class_index"]["bits"], "width": m["width"],
                   "stalled_beats": len(images) * (m["logits"]["channels"] + 1)},
        "layers": layers,
        "fifos": [{"dst": f["dst"], "port": f["port"], "depth": f["depth"]} for f in manifest["fifos"]],
        "frames": len(frames),
        "images": len(images),
    }


def _codes_in(fmt: FrameFormat, beats: int) -> int:
    """Real channel codes in the first ``beats`` beats of a stream (the last group of a pixel may be short)."""
    per_group = [min(fmt.simd, fmt.channels - g * fmt.simd) for g in range(fmt.groups)]
    pixels, rest = divmod(beats, fmt.groups)
    return pixels * fmt.channels + sum(per_group[:rest])


def _fmt(doc: dict) -> FrameFormat:
    return FrameFormat(tuple(doc["shape"]), doc["code"], doc["bits"], doc["simd"])


# -- figures -------------------------------------------------------------------------------

def summarize(manifest: dict, stim: dict, result: dict, *, build: str, simulator: str, stall: float, seed: int,
              watchdog: int, wall_seconds: float, failure: str | None = None) -> SimReport:
    """A :class:`SimReport` from the testbench's ``result`` record (see the module docstring)."""
    m_cycles = list(result.get("m_cycles", []))
    images, frames = stim["images"], stim["frames"]
    start = images if frames > images else 0
    measured = np.diff(np.asarray(m_cycles[start:], dtype=np.int64))
    s_first = result.get("s_first")
    window = (m_cycles[-1] - s_first + 1) if m_cycles and s_first is not None else max(1, result.get("cycles", 1))
    cpf = manifest["cycles_per_frame"]
    per = result.get("layers", {})
    layers = []
    for doc, st in zip(manifest["layers"], stim["layers"]):
        r = per.get(doc["name"], {})
        ends = np.diff(np.asarray(r.get("frame_ends", [])[start:], dtype=np.int64))
        fmt = _fmt(doc["out_format"])
        values = _codes_in(fmt, min(r.get("beats", 0), len(st["expected"])))
        layers.append(LayerReport(
            name=doc["name"], kind=doc["kind"], instance=doc["instance"], beats=r.get("beats", 0), values=values,
            mismatches=r.get("mismatched_codes", 0), busy=r.get("transfers", 0) / window,
            ideal_busy=fmt.beats / cpf, stalled=r.get("stalls", 0) / window,
            cycles_per_frame=doc["cycles_per_frame"], interval=float(ends.mean()) if ends.size else None))
    agree = result.get("agree", 0)
    return SimReport(
        build=build, top=manifest["top"], simulator=simulator, stall=stall, seed=seed, images=images, frames=frames,
        layers=tuple(layers), values_compared=sum(l.values for l in layers),
        mismatches=sum(l.mismatches for l in layers), classes_agree=agree,
        class_agreement=100.0 * agree / frames if frames else 0.0,
        logits_wrong=result.get("logit_frames_wrong", 0),
        cycles_per_frame=float(measured.mean()) if measured.size else None,
        cycles_per_frame_min=int(measured.min()) if measured.size else None,
        cycles_per_frame_max=int(measured.max()) if measured.size else None,
        measured_intervals=int(measured.size), manifest_cycles_per_frame=cpf,
        latency=(m_cycles[0] - s_first) if m_cycles and s_first is not None else None,
        total_cycles=result.get("cycles", 0), watchdog=watchdog, wall_seconds=round(wall_seconds, 2),
        failure=failure, m_axis_stalled=result.get("m_waits", 0) / window)


# -- the run -------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_args(images, simulator: str, stall: float, seed: int, throughput_frames: int) -> np.ndarray:
    if simulator not in SIMULATORS:
        raise InputError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 0.0 <= stall < 1.0:
        raise InputError(f"stall must be a probability in [0, 1), not {stall!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, not {seed!r}")
    if isinstance(throughput_frames, bool) or not isinstance(throughput_frames, int) or throughput_frames < 0:
        raise InputError(f"throughput_frames must be a non-negative integer, not {throughput_frames!r}")
    arr = np.asarray(images)
    if arr.dtype.kind not in "iu":
        raise InputError(f"images must be integer input codes, not {arr.dtype}")
    if arr.ndim != 4 or len(arr) == 0:
        raise InputError(f"images must be a non-empty (N, C, H, W) array, not shape {arr.shape}")
    return arr.astype(np.int64)


def simulate_build(build_dir, *, images: np.ndarray, simulator: str = "icarus", stall: float = 0.0,
                   seed: int = 0, net=None, cache_dir=None, progress: Callable[[str], None] = print,
                   throughput_frames: int = THROUGHPUT_FRAMES) -> SimReport:
    """Simulate the build in ``build_dir`` on ``images`` and check every layer (see the module docstring).

    Parameters
    ----------
    build_dir : path
        A ``qhw build`` output directory.
    images : int array (N, C, H, W)
        Input values (for 8-bit unsigned inputs, the pixel codes).
    simulator : {"icarus", "verilator"}
    stall : float in [0, 1)
        Probability that ``s_axis`` withholds valid / ``m_axis`` withholds ready in a cycle.
    seed : int
        Seeds the stalls (and cocotb).
    net : Network, optional
        The network to compare with. Default: the file the manifest names,
        whose digest must equal the build's. A network given here is only
        checked for the same layers and stream formats, so a different
        network of the same shape shows up as mismatches.
    cache_dir : path, optional
        Simulator builds and run files (default ``<build_dir>/sim``).
    progress : callable
        Gets one line per step and, while simulating, frames done.
    throughput_frames : int
        Frames appended without stalls when ``stall > 0`` to measure the
        steady state (0: none, then no cycles per frame is measured).

    Returns
    -------
    SimReport
        Raises :class:`Deadlock` when the watchdog fires and
        :class:`~qhw.errors.SimulationMismatch` on any mismatch, each with a
        one-line message; the exception's ``report`` holds the figures when
        the run got far enough to give them.
    """
    from qhw.bench.simcache import simulate

    from .build import load_build

    t0 = time.monotonic()
    images = _check_args(images, simulator, stall, seed, throughput_frames)
    build_dir = Path(build_dir)
    manifest = load_build(build_dir)
    if net is None:
        net = load_build_network(manifest, build_dir)
    _check_net(manifest, net)
    verilog = (build_dir / manifest["verilog"]).read_text()
    missing = missing_probes(manifest, verilog)
    if missing:
        raise InputError(f"{build_dir}: the top module has no probe wire {missing[0]} (and {len(missing) - 1} "
                         "more): rebuild it with a qhw whose top level names the engines' streams")
    tail = throughput_frames if stall > 0 else 0
    progress(f"golden model on {len(images)} images" + (f" (+{tail} back to back for cycles/frame)" if tail else ""))
    stim = stimulus(manifest, net, images, tail=tail)
    watchdog = watchdog_cycles(manifest["cycles_per_frame"], stall)
    # absolute: the cocotb test runs in the simulator's build directory and reads the stimulus from there
    cache = (Path(cache_dir) if cache_dir is not None else build_dir / "sim").resolve()
    (cache / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=cache / "runs", prefix=f"{simulator}-"))
    try:
        stim_path, status_path = run_dir / "stimulus.json", run_dir / "status.json"
        stim_path.write_text(json.dumps(stim))
        params = {"stimulus": str(stim_path), "status": str(status_path), "stall": stall, "seed": seed,
                  "watchdog": watchdog}
        progress(f"{simulator}: building (cached by Verilog digest) and running {stim['frames']} frames, "
                 f"{len(stim['layers'])} layers watched")
        common = dict(build=str(build_dir), simulator=simulator, stall=stall, seed=seed, watchdog=watchdog)
        try:
            design = verilog + wrapper_verilog(manifest)
            flags = VERILATOR_FLAGS if simulator == "verilator" else ()
            res = _run_with_progress(
                lambda: simulate(design, name=wrapper_name(manifest), test_module=TEST_MODULE, cache_dir=cache,
                                 simulator=simulator, parameters=params, seed=seed, build_args=flags),
                status_path, progress)
        except SimulationMismatch as exc:
            status = _read_json(status_path) or {}
            failure = status.get("failure")
            if not failure:
                raise
            log = re.search(r"\(log: ([^)]*)\)$", str(exc))
            kind = Deadlock if failure.startswith("deadlock") else SimulationMismatch
            err = kind(failure + (f" (log: {log.group(1)})" if log else ""))
            if status.get("result"):
                err.report = summarize(manifest, stim, status["result"], wall_seconds=time.monotonic() - t0,
                                       failure=failure, **common)
            raise err from None
        report = summarize(manifest, stim, res.records["result"], wall_seconds=time.monotonic() - t0, **common)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    progress(f"{simulator}: {report.frames} frames, {report.values_compared} values compared, "
             f"{report.mismatches} mismatches, {report.wall_seconds:.0f} s")
    return report


def _run_with_progress(job: Callable, status_path: Path, progress: Callable[[str], None], every: float = 5.0):
    """Run ``job`` in a thread; meanwhile report the testbench's frames done every ``every`` seconds."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(job)
        shown, last = None, time.monotonic()
        while True:
            try:
                return future.result(timeout=0.5)
            except TimeoutError:
                pass
            if time.monotonic() - last < every:
                continue
            status = _read_json(status_path)
            if status and status.get("frames_done") != shown:
                shown, last = status.get("frames_done"), time.monotonic()
                progress(f"  {shown}/{status.get('frames')} frames (cycle {status.get('cycle')})")


def format_report(report: SimReport) -> str:
    """The ``qhw sim`` text: one line per layer, then the whole-network figures."""
    from qhw.cli import table

    rows = [{"layer": l.name, "kind": l.kind, "values": l.values, "mismatches": l.mismatches,
             "busy %": round(100 * l.busy, 1), "ideal %": round(100 * l.ideal_busy, 1),
             "stalled %": round(100 * l.stalled, 1), "cycles/frame": l.cycles_per_frame,
             "measured": "-" if l.interval is None else round(l.interval, 1)} for l in report.layers]
    text = table(rows, ["layer", "kind", "values", "mismatches", "busy %", "ideal %", "stalled %", "cycles/frame",
                        "measured"])
    cpf = "not measured" if report.cycles_per_frame is None else (
        f"{report.cycles_per_frame:.1f} (min {report.cycles_per_frame_min}, max {report.cycles_per_frame_max}, "
        f"{report.measured_intervals} intervals)")
    text += (f"\n\n{report.frames} frames ({report.images} images) x {len(report.layers)} layers on "
             f"{report.simulator}, stall {report.stall}: {report.values_compared} values compared, "
             f"{report.mismatches} mismatches; m_axis beats waited {100 * report.m_axis_stalled:.1f} % of cycles"
             f"\ncycles/frame {cpf}; manifest {report.manifest_cycles_per_frame}"
             f"\nlatency {report.latency} cycles (first s_axis transfer to the first class beat on m_axis); "
             f"{report.total_cycles} cycles simulated in {report.wall_seconds:.0f} s"
             f"\nclass agreement {report.class_agreement:.1f} % ({report.classes_agree} of {report.frames}); "
             f"logits wrong on {report.logits_wrong} frames")
    return text

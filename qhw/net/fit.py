"""``qhw fit``: the fastest folds of a network that fit a board, confirmed with yosys.

A dataflow accelerator runs at its slowest engine, so its frames per
second at the board clock are ``clock / cycles_per_frame``: the fastest
fit is the smallest cycle target whose folds fit. The search
(:class:`FitSearch`) walks :func:`qhw.net.folding.candidate_targets` (the
targets at which some layer's cheapest fold changes, as ``--fold auto
--lut-budget`` does) and checks each candidate's estimate in the board's
family (:meth:`qhw.net.top.Accelerator.estimate_resources`, what the
manifest states) against every resource the board has:

* ``lut`` and ``ff`` against ``capacity × lut_margin`` (logic a placer can
  still route: 0.85 by default),
* ``bram`` and ``dsp`` against ``capacity × bram_margin`` (hard blocks:
  0.90). The estimates map every multiplier to logic (they are fitted on
  ``-nodsp`` synthesis), so DSP is 0 and the confirmation synthesizes with
  DSP inference off, the same netlist the estimate describes.

Each candidate's engines are built once (not elaborated) and give all four
figures. The slowest candidate is checked first (if it does not fit,
nothing does), then the candidates fastest first until one fits: the
estimates are not monotone in the target, so no bisection, and every
faster candidate than the chosen one is known not to fit.

:func:`fit` then (unless ``confirm=False``) builds the winner in a
temporary directory and synthesizes it flat with yosys for the board's
family; if yosys exceeds a margin the next slower candidate that the
estimate fits is tried, and so on. On iCE40 the board's ``lut`` is logic
cells, and only packing knows how many a netlist needs (a flip-flop or
carry that cannot share a cell with a LUT takes its own): the confirmation
packs the netlist with ``nextpnr-ice40 --pack-only``
(:func:`qhw.backends.pnr.with_logic_cells`) and checks the cells. The
estimates count LUT sites, so on iCE40 it is this step that catches a
design short of cells. ``fold_options`` (``qhw fit --requant-style serial
--weight-memory block``) build every candidate's engines that way. The build written to ``out`` (via
:func:`qhw.net.build.build`, atomically) carries a ``fit`` section in its
manifest (:func:`fit_section`). When even the slowest candidate does not
fit, :class:`~qhw.errors.InputError` says in one line which resource is
short, by how much, and which three layers take most of it, and nothing is
written.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from qhw.backends.boards import Board
from qhw.backends.pnr import PACKED_FAMILIES, with_logic_cells
from qhw.errors import InputError
from qhw.ir.graph import Network

from .fold import Fold
from .folding import candidate_targets, folds_for_target, with_fold_options

#: the resources a fit checks, in message order
RESOURCES = ("lut", "ff", "bram", "dsp")
LABELS = {"lut": "LUT", "ff": "FF", "bram": "BRAM", "dsp": "DSP"}
#: which margin bounds each resource
MARGIN_OF = {"lut": "lut", "ff": "lut", "bram": "bram", "dsp": "bram"}


@dataclass(frozen=True, kw_only=True)
class Margins:
    """Fractions of the board's capacity a fit may use.

    Parameters (keyword-only)
    -------------------------
    lut : float
        Of LUTs and flip-flops (default 0.85), in (0, 1].
    bram : float
        Of block RAMs and DSP blocks (default 0.90), in (0, 1].
    """

    lut: float = 0.85
    bram: float = 0.90

    def __post_init__(self):
        for name in ("lut", "bram"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 1):
                raise InputError(f"--{name}-margin must be a fraction in (0, 1], not {v!r}")
            object.__setattr__(self, name, float(v))

    def of(self, resource: str) -> float:
        return getattr(self, MARGIN_OF[resource])

    def limits(self, board: Board) -> dict[str, int]:
        """Resource -> the most a fit may use on ``board`` (``floor(capacity × margin)``)."""
        missing = [r for r in RESOURCES if r not in board.resources]
        if missing:
            raise InputError(f"board {board.name}: its resources lack {', '.join(repr(m) for m in missing)} "
                             f"(a fit checks {', '.join(RESOURCES)})")
        # the epsilon keeps 5280 × 0.85 at 4488, not 4487 from its binary rounding
        return {r: math.floor(board.resources[r] * self.of(r) + 1e-9) for r in RESOURCES}

    def to_dict(self) -> dict[str, float]:
        return {r: self.of(r) for r in RESOURCES}


@dataclass(frozen=True)
class Candidate:
    """One candidate's folds and their estimate in the board's family."""

    target: int
    folds: dict
    cycles: int                # the accelerator's cycles per frame (at most ``target``)
    total: dict                # resource -> estimate, the whole accelerator
    layers: dict = field(repr=False)  # layer name -> resource -> estimate

    def over(self, limits: Mapping[str, int]) -> list[str]:
        """The resources whose estimate exceeds ``limits``."""
        return [r for r in RESOURCES if self.total[r] > limits[r]]

    def folds_dict(self) -> dict:
        return {n: (f.to_dict() if isinstance(f, Fold) else {"simd": f}) for n, f in self.folds.items()}


def estimate(net: Network, folds: Mapping[str, Fold | int], family: str) -> tuple[int, dict, dict]:
    """``(cycles per frame, total, per layer)`` of the accelerator with ``folds``, estimated for ``family``.

    Builds the engines once, without elaborating them (about a second for the
    digits ResNet-8): every resource comes from that one build.
    """
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from .compile import compile_network
    from .top import Accelerator

    with warnings.catch_warnings():
        # The engines are built for their estimates only and never elaborated: not a mistake here, and
        # dozens of lines of noise otherwise. What their constructors weigh and drop warns at once (in
        # this filter); what the accelerator holds is silenced, as a gc.collect() here would cost 0.2 s
        # a candidate once torch is loaded.
        warnings.simplefilter("ignore", UnusedElaboratable)
        acc = Accelerator(plan=compile_network(net, folds).plan)
        _silence(acc)
        est = acc.estimate_resources(family)
        cycles = acc.cycles_per_frame()
    total = {r: int(est["total"].get(r, 0)) for r in RESOURCES}
    layers = {name: {r: int(e.get(r, 0)) for r in RESOURCES} for name, e in est["layers"].items()}
    return cycles, total, layers


def _silence(root) -> None:
    """Mark every Elaboratable reachable from ``root`` (through qhw objects and containers) as used."""
    from amaranth.hdl import Elaboratable

    seen, todo = set(), [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, Elaboratable) or type(obj).__module__.startswith("qhw."):
            if isinstance(obj, Elaboratable):
                obj._MustUse__silence = True
            todo.extend(getattr(obj, "__dict__", {}).values())


def _n(x: int) -> str:
    return f"{x:,}"


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


class FitSearch:
    """The candidates of ``net`` on ``board`` within ``margins``, estimated on demand (memoized by folds).

    Parameters (keyword-only)
    -------------------------
    net : Network
    board : Board
    margins : Margins
    progress : callable, optional
        Gets one line per candidate estimated.
    fold_options : mapping, optional
        :class:`Fold` fields every candidate's conv / dense folds get (``requant``,
        ``weights``; :func:`qhw.net.folding.with_fold_options`): how the engines are built,
        whatever the fold.
    """

    def __init__(self, *, net: Network, board: Board, margins: Margins,
                 progress: Callable[[str], None] = lambda _: None, fold_options: Mapping[str, str] | None = None):
        if not isinstance(net, Network):
            raise TypeError(f"net must be a Network, not {net!r}")
        if not isinstance(board, Board):
            raise TypeError(f"board must be a Board, not {board!r}")
        if not isinstance(margins, Margins):
            raise TypeError(f"margins must be Margins, not {margins!r}")
        self.net, self.board, self.margins, self.progress = net, board, margins, progress
        self.fold_options = dict(fold_options or {})
        with_fold_options(net, None, **self.fold_options)  # an unknown option fails here, not per candidate
        self.limits = margins.limits(board)
        self.targets = candidate_targets(net)
        self._by_folds: dict[str, Candidate] = {}
        self._by_index: dict[int, Candidate] = {}

    def candidate(self, i: int) -> Candidate:
        """The candidate of ``targets[i]`` (its folds estimated once however many targets give them)."""
        if i in self._by_index:
            return self._by_index[i]
        target = self.targets[i]
        folds = with_fold_options(self.net, folds_for_target(self.net, target), **self.fold_options)
        key = repr(sorted((n, f.to_dict() if isinstance(f, Fold) else f) for n, f in folds.items()))
        if key not in self._by_folds:
            cycles, total, layers = estimate(self.net, folds, self.board.family)
            cand = Candidate(target, folds, cycles, total, layers)
            over = cand.over(self.limits)
            self.progress(f"fit: {_n(cycles)} cycles/frame -> " + ", ".join(
                f"{LABELS[r]} {_n(total[r])}/{_n(self.limits[r])}" for r in RESOURCES)
                + (f": over in {', '.join(LABELS[r] for r in over)}" if over else ": fits"))
            self._by_folds[key] = cand
        self._by_index[i] = self._by_folds[key]
        return self._by_index[i]

    def fits(self, i: int) -> bool:
        return not self.candidate(i).over(self.limits)

    def fastest(self) -> int:
        """Index of the fastest candidate whose estimate fits (:class:`InputError` if none does)."""
        last = len(self.targets) - 1
        if not self.fits(last):
            raise InputError(self.too_small(self.candidate(last)))
        # Fastest first, not a bisection: the estimates are not monotone in the target (resnet8-mlperf W4A4
        # on the ULX3S: 36,864 cycles/frame take 66,167 LUT, 55,296 take 66,846), and each candidate is
        # one estimate (~0.2 s for a ResNet-8), so every faster candidate is known not to fit.
        return next(i for i in range(last + 1) if self.fits(i))

    def next_slower(self, i: int) -> int | None:
        """Index of the next slower candidate with other folds that the estimate fits, or None."""
        here = self.candidate(i).folds
        for j in range(i + 1, len(self.targets)):
            if self.candidate(j).folds != here and self.fits(j):
                return j
        return None

    def too_small(self, cand: Candidate, used: Mapping[str, int] | None = None, *, by: str = "") -> str:
        """The one-line message of a board too small for ``cand`` (``used``: measured counts, else the estimate)."""
        used = dict(cand.total if used is None else used)
        over = [r for r in RESOURCES if used[r] > self.limits[r]]
        worst = max(over, key=lambda r: used[r] / max(self.limits[r], 1e-9))
        need, cap, limit = used[worst], self.board.resources[worst], self.limits[worst]
        short = need - limit
        share = f" ({_pct(short / limit)})" if limit else ""
        label = LABELS[worst]
        # On iCE40 a confirmed count's ``lut`` is the logic cells nextpnr packs (with_logic_cells)
        cells = worst == "lut" and "logic_cells" in used
        top = sorted(cand.layers.items(), key=lambda kv: (-kv[1][worst], kv[0]))[:3]
        most = ", ".join(f"{name} ({_n(e[worst])})" for name, e in top if e[worst] > 0)
        at = "at the smallest fold" if cand is self.candidate(len(self.targets) - 1) else \
            f"at {_n(cand.cycles)} cycles/frame"
        msg = (f"board {self.board.name} too small{by}: {'logic cells' if cells else label} {_n(need)} needed {at}, "
               f"{_n(limit)} available ({_pct(self.margins.of(worst))} of {_n(cap)}): short by {_n(short)}{share}")
        if cells:
            msg += (f" (nextpnr packs {_n(used['lut_sites'])} LUT, {_n(used['ff'])} FF and {_n(used['carry'])} "
                    f"carries into them)")
        if most:
            msg += f"; most {label} in {most}" + (" (by estimate)" if by else "")
        if worst == "lut" and not by and self.board.family in PACKED_FAMILIES:
            # The estimate counts LUT sites; a flip-flop that shares no LUT takes a cell of its own, and
            # the packed small builds measured 0.95-1.00 of LUT + FF (qhw pnr), so say where that lands.
            msg += (f"; as logic cells up to {_n(used['lut'] + used['ff'])} (LUT + FF: a flip-flop sharing no "
                    f"LUT takes its own cell)")
        others = [r for r in over if r != worst]
        if others:
            msg += "; also short: " + ", ".join(f"{LABELS[r]} {_n(used[r])} needed, {_n(self.limits[r])} available"
                                                for r in others)
        return msg


def _utilization(used: Mapping[str, int], board: Board) -> dict[str, float | None]:
    return {r: (round(used[r] / board.resources[r], 4) if board.resources[r] else None) for r in RESOURCES}


def fit_section(search: FitSearch, cand: Candidate, *, yosys: dict | None, rejected: list[dict]) -> dict:
    """The manifest's ``fit`` section (also what ``qhw fit --json`` reports)."""
    b = search.board
    return {
        "board": {"name": b.name, "family": b.family, "device": b.device, "clock_mhz": b.clock_mhz,
                  "resources": {r: b.resources[r] for r in RESOURCES}, "path": b.path},
        "margins": search.margins.to_dict(),
        "limits": dict(search.limits),
        "cycles_per_frame": cand.cycles,
        "frames_per_s": round(b.clock_mhz * 1e6 / cand.cycles, 2),
        "target_cycles": cand.target,
        "estimate": dict(cand.total),
        "estimate_utilization": _utilization(cand.total, b),
        "yosys": yosys,
        "yosys_utilization": _utilization(yosys, b) if yosys else None,
        "confirmed": yosys is not None,
        "rejected_by_yosys": rejected,
        "candidates": [{"cycles_per_frame": c.cycles, "target_cycles": c.target, "estimate": dict(c.total),
                        "fits": not c.over(search.limits)}
                       for c in sorted(search._by_folds.values(), key=lambda c: c.cycles)],
        "folds": cand.folds_dict(),
    }


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` chose: the candidate, the ``fit`` section and the build written (None without ``out``)."""

    candidate: Candidate
    section: dict
    build: object | None


def _synthesize(net, cand: Candidate, *, board: Board, work: Path, top: str, network_path: str | None,
                timeout: float | None, progress) -> dict:
    """yosys counts of ``cand`` for the board's family, flat, multipliers in logic (as the estimates count)."""
    from qhw.backends.synth import synthesize_build

    from .build import build

    res = build(net, work / f"c{cand.cycles}", folds=cand.folds, top=top, network_path=network_path)
    progress(f"fit: confirming {_n(cand.cycles)} cycles/frame with yosys ({board.family}, flat, DSP off) ...")
    r = synthesize_build(res.out, target=board.family, work_dir=work / f"synth{cand.cycles}", dsp=False,
                         per_layer=False, timeout=timeout, progress=progress,
                         write_netlist=board.family in PACKED_FAMILIES)
    t = r["total"]
    # lut: LUT sites (CCU2C = 2 LUT4, RAM32M = 4 LUT6), what a device's LUT capacity counts
    counts = {"lut": t["lut_sites"], "ff": t["ff"], "bram": t["bram"], "dsp": t["dsp"], "lut_cells": t["lut"],
              "carry": t["carry"], "lutram": t["lutram"], "seconds": r["seconds"], "dsp_inference": False}
    return with_logic_cells(counts, r.get("netlist"), board)


def fit(net: Network, *, board: Board, margins: Margins = Margins(), confirm: bool = True,
        out: str | os.PathLike | None = None, top: str | None = None, network_path: str | None = None,
        keep: bool = False, synth_timeout: float | None = 3600,
        progress: Callable[[str], None] = lambda _: None, synthesize: Callable | None = None,
        fold_options: Mapping[str, str] | None = None) -> FitResult:
    """The fastest folds of ``net`` that fit ``board`` within ``margins`` (see the module docstring).

    ``fold_options`` go to every candidate's conv / dense folds (:class:`FitSearch`).

    With ``out``, writes the build there (atomically; nothing when no candidate fits). ``synthesize``
    replaces the confirming synthesis (same arguments and counts as ``_synthesize``): ``qhw bench net
    --boards`` passes one that builds and synthesizes through its content-keyed caches.
    """
    synthesize = synthesize or _synthesize
    from .build import build, top_name

    search = FitSearch(net=net, board=board, margins=margins, progress=progress, fold_options=fold_options)
    progress(f"fit: {len(search.targets)} candidate cycle targets on {board.name} ({board.family} {board.device}, "
             f"{board.clock_mhz:g} MHz), from {_n(search.targets[0])} to {_n(search.targets[-1])} cycles/frame")
    i = search.fastest()
    top = top or top_name(Path(network_path).stem if network_path else "net")
    yosys, rejected = None, []
    if confirm:
        parent = Path(out).resolve().parent if out is not None else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".qhw-fit.", dir=parent) as tmp:
            while True:
                cand = search.candidate(i)
                counts = synthesize(net, cand, board=board, work=Path(tmp), top=top, network_path=network_path,
                                    timeout=synth_timeout, progress=progress)
                over = [r for r in RESOURCES if counts[r] > search.limits[r]]
                if not over:
                    yosys = counts
                    break
                rejected.append({"cycles_per_frame": cand.cycles, "estimate": dict(cand.total), "yosys": counts,
                                 "over": over})
                j = search.next_slower(i)
                what = ", ".join(f"{LABELS[r]} {_n(counts[r])} > {_n(search.limits[r])}" for r in over)
                if j is None:
                    raise InputError(search.too_small(cand, counts, by=" by yosys"))
                progress(f"fit: yosys exceeds the margin at {_n(cand.cycles)} cycles/frame ({what}): "
                         f"stepping to the next slower candidate, {_n(search.candidate(j).cycles)} cycles/frame")
                i = j
    cand = search.candidate(i)
    section = fit_section(search, cand, yosys=yosys, rejected=rejected)
    res = None
    if out is not None:
        res = build(net, out, folds=cand.folds, top=top, network_path=network_path, keep=keep, progress=progress,
                    extra={"fit": section})
    return FitResult(cand, section, res)

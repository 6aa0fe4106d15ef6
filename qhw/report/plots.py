"""The report's charts as inline SVG strings (matplotlib, no pyplot, no global state).

Every chart is drawn on its own :class:`matplotlib.figure.Figure` under a
fixed ``rc_context``: text stays text (``svg.fonttype: none``, DejaVu Sans,
which matplotlib ships), ids are hashed with a salt of the chart's name
(the same bytes every run, and no id shared by two charts on one page), and
the metadata block (date, creator, namespaces) is dropped, so the page
refers to nothing outside itself.
"""

from __future__ import annotations

import io
import re
from typing import Sequence

#: bars: the rest, the bottleneck, measured / yosys, the four families
BLUE, RED, ORANGE, GREY = "#4c78a8", "#d62728", "#f58518", "#9d9d9d"
FAMILY_COLOURS = {"xilinx": "#4c78a8", "ecp5": "#f58518", "ice40": "#54a24b", "gowin": "#b279a2"}
WIDTH_IN = 11.0  # inches: 1056 px at 96 dpi, the page's content width

_RC = {
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e5e5e5",
    "figure.dpi": 96,
}


def _svg(fig, name: str) -> str:
    """``fig`` as an ``<svg>`` element to inline in HTML (deterministic, self-contained)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"qhw-report-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
                    bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # the namespaces are implied for <svg> inside HTML (and xlink:href is parsed as such)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    # matplotlib numbers its groups per figure (patch_1, ...): prefix every id and reference with the
    # chart's name so that ids stay unique on a page of several charts
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'url\(#([^)]+)\)', rf'url(#{name}-\1)', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', text)
    return text.replace("<svg ", f'<svg class="chart" id="chart-{name}" ', 1).strip() + "\n"


def _figure(height_in: float, ncols: int = 1, sharey: bool = False):
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(WIDTH_IN, height_in))
        axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def _rows_height(n: int, per: float = 0.32, extra: float = 1.2, least: float = 2.2) -> float:
    return max(least, extra + per * n)


def cycles_chart(names: Sequence[str], cycles: Sequence[int], bottleneck: str, network_cycles: int) -> str:
    """Horizontal bars of each engine's cycles per frame; engines at the network's rate in red, the
    manifest's bottleneck labelled."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(_rows_height(len(names)))
        y = range(len(names))
        colours = [RED if c == network_cycles else BLUE for c in cycles]
        ax.barh(list(y), list(cycles), color=colours)
        ax.set_yticks(list(y), list(names))
        ax.invert_yaxis()
        ax.set_xlabel("cycles per frame (estimate, this engine alone)")
        ax.set_xlim(0, max(cycles) * 1.28)
        for k, (n, c) in enumerate(zip(names, cycles)):
            label = f"{c}  ◀ bottleneck" if n == bottleneck else str(c)
            ax.text(c, k, " " + label, va="center", fontsize=9, color=RED if n == bottleneck else "#333333",
                    fontweight="bold" if n == bottleneck else "normal")
        ties = sum(c == network_cycles for c in cycles)
        ax.set_title(f"network: {network_cycles} cycles per frame, set by {bottleneck}"
                     + (f" (red: the {ties} engines at that rate)" if ties > 1 else " (red)"), loc="left")
        return _svg(fig, "cycles")


def resources_chart(names: Sequence[str], estimates: Sequence[dict], families: Sequence[str]) -> str:
    """Grouped horizontal bars: estimated LUT, FF and BRAM per layer, one bar per family."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        n, k = len(names), len(families)
        fig, axes = _figure(_rows_height(n, per=0.48), ncols=3, sharey=True)
        h = 0.8 / k
        for ax, res, title in zip(axes, ("lut", "ff", "bram"), ("LUT", "FF", "BRAM (family units)")):
            for j, fam in enumerate(families):
                vals = [int(e[fam].get(res, 0) or 0) for e in estimates]
                ax.barh([i - 0.4 + h * (j + 0.5) for i in range(n)], vals, height=h, color=FAMILY_COLOURS[fam],
                        label=fam)
            ax.set_title(f"{title}, estimated", loc="left")
        axes[0].set_yticks(list(range(n)), list(names))
        axes[0].invert_yaxis()
        axes[-1].legend(loc="lower right", fontsize=9)
        fig.tight_layout()
        return _svg(fig, "resources")


def compare_chart(name: str, names: Sequence[str], estimate: Sequence[float | None],
                  measured: Sequence[float | None], *, what: str, measured_label: str,
                  title: str) -> str:
    """Estimate next to a measurement per row, ``estimate / measured`` written at the end of each pair."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        n = len(names)
        fig, (ax,) = _figure(_rows_height(n, per=0.42, least=1.8))
        est = [0 if v is None else v for v in estimate]
        mea = [0 if v is None else v for v in measured]
        ax.barh([i - 0.2 for i in range(n)], est, height=0.4, color=BLUE, label="estimate")
        ax.barh([i + 0.2 for i in range(n)], mea, height=0.4, color=ORANGE, label=measured_label)
        top = max([*est, *mea, 1])
        ax.set_xlim(0, top * 1.22)
        for i, (e, m) in enumerate(zip(estimate, measured)):
            txt = f"×{e / m:.2f}" if e is not None and m else "n/a"
            ax.text(max(e or 0, m or 0), i, " " + txt, va="center", fontsize=9)
        ax.set_yticks(list(range(n)), list(names))
        ax.invert_yaxis()
        ax.set_xlabel(what + "   (×: estimate / " + measured_label + ")")
        ax.set_title(title, loc="left")
        ax.legend(loc="lower right", fontsize=9)
        return _svg(fig, name)


def fmax_chart(boards: Sequence[str], fmax: Sequence[float], clock: Sequence[float]) -> str:
    """Achieved Fmax per board as bars, the board clock as a black tick on each."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        n = len(boards)
        fig, (ax,) = _figure(max(1.8, 1.0 + 0.5 * n))
        colours = [BLUE if f >= c else RED for f, c in zip(fmax, clock)]
        ax.barh(list(range(n)), list(fmax), height=0.5, color=colours)
        for i, (f, c) in enumerate(zip(fmax, clock)):
            ax.plot([c, c], [i - 0.35, i + 0.35], color="black", linewidth=2.5)
            ax.text(max(f, c), i, f"  Fmax {f:g} MHz, board clock {c:g} MHz: {'met' if f >= c else 'NOT met'}",
                    va="center", fontsize=9)
        ax.set_xlim(0, max([*fmax, *clock]) * 1.9)
        ax.set_yticks(list(range(n)), list(boards))
        ax.invert_yaxis()
        ax.set_xlabel("MHz (nextpnr, worst clock; black tick: the board clock)")
        return _svg(fig, "fmax")


def train_chart(labels: Sequence[str], top1: Sequence[float], bitops: Sequence[int],
                luts: Sequence[int | None], family: str) -> str:
    """Accuracy against BitOPs and, for the configurations with a build, against estimated LUTs."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        with_lut = [i for i, v in enumerate(luts) if v is not None]
        fig, axes = _figure(3.6, ncols=2 if with_lut else 1)
        ax = axes[0]
        ax.scatter([b / 1e6 for b in bitops], top1, color=BLUE, zorder=3)
        for lab, b, t in zip(labels, bitops, top1):
            ax.annotate(lab, (b / 1e6, t), textcoords="offset points", xytext=(6, 4), fontsize=9)
        ax.set_xlabel("BitOPs per image (millions)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title("accuracy vs BitOPs", loc="left")
        if with_lut:
            ax2 = axes[1]
            ax2.scatter([luts[i] for i in with_lut], [top1[i] for i in with_lut], color=ORANGE, zorder=3)
            for i in with_lut:
                ax2.annotate(labels[i], (luts[i], top1[i]), textcoords="offset points", xytext=(6, 4), fontsize=9)
            ax2.set_xlabel(f"LUTs of its build (estimate, {family})")
            ax2.set_title("accuracy vs LUTs", loc="left")
        for a in axes:  # room for the labels at the right and top; no accuracy above 100 %
            lo, hi = a.get_xlim()
            a.set_xlim(lo, hi + 0.35 * (hi - lo))
            lo, hi = a.get_ylim()
            a.set_ylim(lo, min(100.5, hi + 0.1 * (hi - lo)))
        fig.tight_layout()
        return _svg(fig, "train")

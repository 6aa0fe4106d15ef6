"""Write a report page (and its screenshot): what ``qhw report`` and ``qhw demo`` both do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence


def write_report(build: str | os.PathLike, out: str | os.PathLike, *, family: str = "xilinx",
                 train: Sequence[str] = (), train_builds: Sequence[str] = (),
                 screenshot: str | os.PathLike | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> dict:
    """Collect ``build``'s data, render the page to ``out`` (atomically) and, with ``screenshot``, its PNG.

    Returns ``out``, ``bytes``, ``charts`` (SVG count), ``sections`` (which result sections have
    data), ``bottleneck``, ``cycles_per_frame`` and ``screenshot`` (None, or
    :func:`qhw.report.screenshot.screenshot`'s dictionary). Chromium is looked up before anything
    is written, so a missing one (:class:`~qhw.errors.ToolMissingError`) leaves no page either.
    """
    from qhw.fileio import atomic_write_text

    from .data import collect
    from .html import render

    if screenshot is not None:
        from qhw.backends.toolchain import require_program

        require_program("chromium")
    data = collect(build, family=family, train=train, train_builds=train_builds)
    progress(f"drawing {len(data.layers)} layers' charts ...")
    page = render(data)
    atomic_write_text(out, page)
    sections = {"sim": bool(data.sim), "synth": bool(data.synth), "pnr": bool(data.pnr), "train": bool(data.train)}
    doc = {"out": str(out), "bytes": len(page.encode()), "charts": page.count("<svg"), "sections": sections,
           "bottleneck": data.bottleneck, "cycles_per_frame": data.cycles_per_frame, "screenshot": None}
    if screenshot is not None:
        from .screenshot import screenshot as shoot

        progress("rendering the page in headless chromium ...")
        doc["screenshot"] = shoot(out, screenshot)
    return doc

"""A PNG of the report page, rendered by headless Chromium.

Chromium's ``--screenshot`` captures the window, not the page, so the page's
height is measured first: a copy of the page with one line of script that
writes ``scrollHeight`` into the DOM is loaded with ``--dump-dom``, then the
page itself is shot in a window of its width and that height. The report
page itself carries no script.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from qhw.errors import ToolFailedError

WIDTH = 1280
#: used when the measurement fails, and the most a window gets (Chromium's texture limit is 16384)
FALLBACK_HEIGHT, MAX_HEIGHT = 4000, 16000
_MEASURE = ("<script>document.body.setAttribute('data-qhw-height', "
            "String(Math.ceil(document.documentElement.scrollHeight)));</script>")


def _chromium(exe: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolFailedError(f"chromium did not finish within {timeout:g} s ({' '.join(cmd[:2])} ...)") from None


def page_height(exe: str, html: str, work: Path, timeout: float = 120) -> int:
    """The page's height in CSS pixels at :data:`WIDTH` (``FALLBACK_HEIGHT`` if it cannot be read)."""
    probe = work / "measure.html"
    probe.write_text(html.replace("</body>", _MEASURE + "</body>", 1), encoding="utf-8")
    proc = _chromium(exe, [f"--window-size={WIDTH},800", "--dump-dom", probe.as_uri()], work / "profile", timeout)
    m = re.search(r'data-qhw-height="(\d+)"', proc.stdout)
    return min(MAX_HEIGHT, int(m.group(1))) if m else FALLBACK_HEIGHT


def screenshot(html_path: str | os.PathLike, out: str | os.PathLike, *, timeout: float = 120) -> dict:
    """Render ``html_path`` in headless Chromium and write the PNG to ``out`` (atomically).

    Returns ``{"png": out, "width": WIDTH, "height": h, "bytes": n}``; raises
    :class:`~qhw.errors.ToolMissingError` without Chromium and
    :class:`~qhw.errors.ToolFailedError` when it writes no image.
    """
    from qhw.backends.toolchain import require_program
    from qhw.fileio import atomic_write_bytes

    exe = require_program("chromium")
    html_path = Path(html_path).resolve()
    with tempfile.TemporaryDirectory(prefix="qhw-shot-") as tmp:
        work = Path(tmp)
        height = page_height(exe, html_path.read_text(encoding="utf-8"), work, timeout)
        png = work / "page.png"
        proc = _chromium(exe, [f"--window-size={WIDTH},{height}", f"--screenshot={png}", html_path.as_uri()],
                         work / "profile", timeout)
        if not png.is_file() or png.stat().st_size == 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ToolFailedError(f"chromium wrote no screenshot of {html_path} (exit {proc.returncode}: {last})")
        data = png.read_bytes()
    atomic_write_bytes(out, data)
    return {"png": str(out), "width": WIDTH, "height": height, "bytes": len(data)}

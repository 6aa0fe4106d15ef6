"""Atomic file writes: a reader sees the old file or the new one, never half.

Every generator in qhw writes through these helpers so that a failure midway
(bad input, a tool crash, Ctrl-C) leaves whatever was already on disk intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from qhw.errors import InputError


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; done once, at import, before any thread
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            # mkstemp creates 0600; give the file the mode open() would (0666 less the umask)
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning every failure into one clear :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from None


def require_file(path: str | os.PathLike, what: str = "input file") -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}")
    return path

"""Tool results saved in a build directory, for ``qhw report`` to read.

``qhw sim``, ``qhw synth BUILD`` and ``qhw board flash-file`` each write
the JSON document their ``--json`` prints into ``BUILD/results/``:

``sim_<simulator>.json``                      one :class:`qhw.net.simulate.SimReport`
``synth_<target>[_flat][_nodsp].json``        one :func:`qhw.backends.synth.breakdown`
``pnr_<board>.json``                          one :class:`qhw.backends.board_top.BoardReport`

A later run of the same kind replaces its file (atomically). ``qhw build``
renames a fresh directory over the old one, so results never outlive the
build they measured; each file still carries the build's ``top`` and
network digest, which :func:`load_results` checks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from qhw.errors import InputError
from qhw.fileio import atomic_write_json, read_json

RESULTS_DIR = "results"
KINDS = ("sim", "synth", "pnr")

#: what a result file carries about the build it measured
STAMP = "build_stamp"


def _stamp(manifest: dict) -> dict:
    return {"top": manifest["top"], "digest": manifest["network"]["digest"]}


def result_name(kind: str, *parts: str) -> str:
    """``<kind>_<part>_<part>.json``, each part reduced to ``[A-Za-z0-9.-]``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    clean = [re.sub(r"[^A-Za-z0-9.-]+", "-", p) for p in parts if p]
    return "_".join([kind, *clean]) + ".json"


def synth_parts(target: str, *, flat: bool, dsp: bool) -> tuple[str, ...]:
    """The ``parts`` of a synthesis result: target, ``flat`` or per layer, ``nodsp`` or DSP allowed."""
    return (target, "flat" if flat else "", "" if dsp else "nodsp")


def save_result(build_dir: str | os.PathLike, kind: str, parts: tuple[str, ...], data: dict) -> Path:
    """Write ``data`` (what the command's ``--json`` prints) to ``build_dir/results/``, atomically.

    Parameters
    ----------
    build_dir : path
        The ``qhw build`` directory the result belongs to.
    kind : {"sim", "synth", "pnr"}
    parts : tuple of str
        What tells runs of the same kind apart (simulator; target and options; board).
    data : dict
        JSON-ready result; the build's top and network digest are added under ``build_stamp``.

    Returns
    -------
    Path of the file written.
    """
    from qhw.net.build import load_build

    manifest = load_build(build_dir)
    path = Path(build_dir) / RESULTS_DIR / result_name(kind, *parts)
    return atomic_write_json(path, {**data, STAMP: _stamp(manifest)})


def load_results(build_dir: str | os.PathLike, manifest: dict) -> dict[str, dict[str, dict]]:
    """Every saved result of ``build_dir``: kind -> file stem -> document, in file-name order.

    A file that is not valid JSON, or was measured on another build (its
    ``build_stamp`` differs from ``manifest``'s), is an :class:`InputError`.
    """
    out: dict[str, dict[str, dict]] = {k: {} for k in KINDS}
    folder = Path(build_dir) / RESULTS_DIR
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        kind = path.stem.split("_", 1)[0]
        if kind not in out:
            continue
        doc = read_json(path, f"{kind} result")
        if not isinstance(doc, dict) or doc.get(STAMP) != _stamp(manifest):
            raise InputError(f"{path} was not measured on this build (top / network digest differ): "
                             "delete it or run the command again")
        out[kind][path.stem] = doc
    return out

"""Board and device definitions from ``boards/*.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qhw.errors import FormatVersionError, InputError

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"
BOARD_FORMAT_VERSION = 1

#: bare nextpnr devices accepted by ``--device`` (family, device, default package)
NEXTPNR_DEVICES = {
    "ice40": {"lp384": "qn32", "lp1k": "tq144", "lp8k": "cm81", "hx1k": "tq144", "hx8k": "ct256",
              "up3k": "sg48", "up5k": "sg48", "u4k": "sg48"},
    "ecp5": {"12k": "CABGA381", "25k": "CABGA381", "45k": "CABGA381", "85k": "CABGA381",
             "um-25k": "CABGA381", "um-45k": "CABGA381", "um-85k": "CABGA381",
             "um5g-25k": "CABGA381", "um5g-45k": "CABGA381", "um5g-85k": "CABGA381"},
}


@dataclass(frozen=True)
class Board:
    name: str
    family: str
    device: str
    package: str
    clock_mhz: float
    resources: dict
    description: str = ""


def _load(path: Path) -> Board:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"board file {path} is not valid JSON: {exc}") from None
    if raw.get("format_version") != BOARD_FORMAT_VERSION:
        raise FormatVersionError(
            f"board file {path} has format_version {raw.get('format_version')!r}; this qhw reads {BOARD_FORMAT_VERSION}"
        )
    try:
        return Board(raw["name"], raw["family"], raw["device"], raw["package"], float(raw["clock_mhz"]),
                     dict(raw["resources"]), raw.get("description", ""))
    except KeyError as exc:
        raise InputError(f"board file {path} lacks field {exc.args[0]!r}") from None


def boards() -> dict[str, Board]:
    return {b.name: b for b in map(_load, sorted(BOARDS_DIR.glob("*.json")))}


def resolve_device(name: str) -> Board:
    """A board by name, or a bare nextpnr device (iCE40 / ECP5) as a pseudo-board."""
    known = boards()
    if name in known:
        return known[name]
    key = name.lower().removeprefix("ice40-").removeprefix("lfe5u-").removeprefix("ecp5-")
    for family, devices in NEXTPNR_DEVICES.items():
        if key in devices:
            return Board(key, family, key, devices[key], 12.0, {})
    choices = ", ".join(sorted(known) + sorted(d for ds in NEXTPNR_DEVICES.values() for d in ds))
    raise InputError(f"unknown device or board {name!r}; known: {choices}")

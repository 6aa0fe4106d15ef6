"""Board and device definitions from ``boards/*.json``.

A board file is checked field by field when it is read (:class:`Board`), so
a bad one gives one line naming the file and the field. :func:`load_board`
takes a board name (``boards/<name>.json``) or the path of a board file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from qhw.errors import FormatVersionError, InputError

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"
BOARD_FORMAT_VERSION = 1
#: FPGA families a board can be of (the synthesis targets of :mod:`qhw.backends.synth`)
FAMILIES = ("ice40", "ecp5", "xilinx", "gowin")
#: Bits of one block RAM unit per family (``resources.bram_bits`` = ``bram`` × this): SB_RAM40_4K,
#: DP16KD, RAMB18, BSRAM.
BRAM_UNIT_BITS = {"ice40": 4096, "ecp5": 18432, "xilinx": 18432, "gowin": 18432}

#: a pin entry's optional attributes and their types (see boards/README.md)
PIN_ATTRS = {"invert": bool, "pullup": bool, "io_type": str, "drive": int, "pullmode": str}

#: bare nextpnr devices accepted by ``--device`` (family, device, default package)
NEXTPNR_DEVICES = {
    "ice40": {"lp384": "qn32", "lp1k": "tq144", "lp8k": "cm81", "hx1k": "tq144", "hx8k": "ct256",
              "up3k": "sg48", "up5k": "sg48", "u4k": "sg48"},
    "ecp5": {"12k": "CABGA381", "25k": "CABGA381", "45k": "CABGA381", "85k": "CABGA381",
             "um-25k": "CABGA381", "um-45k": "CABGA381", "um-85k": "CABGA381",
             "um5g-25k": "CABGA381", "um5g-45k": "CABGA381", "um5g-85k": "CABGA381"},
}


@dataclass(frozen=True, kw_only=True)
class Board:
    """One board: its FPGA, default clock, device resources and (optionally) pins.

    Parameters (keyword-only)
    -------------------------
    name, family, device, package : str
        ``family`` is one of :data:`FAMILIES`; ``device`` / ``package`` as nextpnr
        names them (iCE40, ECP5) or as the vendor does.
    clock_mhz : float
        The board clock (positive).
    resources : dict
        Resource -> count of the device (non-negative integers): ``lut``, ``ff``,
        ``dsp``, ``bram`` (in the family's block RAM units, as the estimates and
        :class:`~qhw.backends.synth.SynthReport` count them: RAMB18 on Xilinx),
        ``bram_bits`` (checked: ``bram`` × :data:`BRAM_UNIT_BITS`), ``carry``, ``io``.
    description : str
    pins : dict or None
        Pin name (``clk``, ``uart_rx``, ...) -> ``{"pin": str, ...}`` with the
        attributes of :data:`PIN_ATTRS`, plus ``source`` (where they come from);
        None for a board whose file gives none.
    path : str
        The board file it was read from ("" for a bare device).

    Raises
    ------
    ValueError
        Naming the field that is wrong (:func:`load_board` turns it into one
        :class:`~qhw.errors.InputError` line naming the file).
    """

    name: str
    family: str
    device: str
    package: str
    clock_mhz: float
    resources: dict
    description: str = ""
    pins: dict | None = None
    path: str = field(default="", compare=False)

    def __post_init__(self):
        for key in ("name", "device", "package", "description", "path"):
            if not isinstance(getattr(self, key), str) or (key in ("name", "device") and not getattr(self, key)):
                raise ValueError(f"'{key}' must be a{' non-empty' if key in ('name', 'device') else ''} string, "
                                 f"not {getattr(self, key)!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"'family' must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        clock = self.clock_mhz
        if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not math.isfinite(clock) or clock <= 0:
            raise ValueError(f"'clock_mhz' must be a positive number, not {clock!r}")
        object.__setattr__(self, "clock_mhz", float(clock))
        if not isinstance(self.resources, dict):
            raise ValueError(f"'resources' must be an object of counts, not {self.resources!r}")
        for key, n in self.resources.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"resources.{key} must be a non-negative integer, not {n!r}")
        if "bram_bits" in self.resources:
            want = self.resources.get("bram", 0) * BRAM_UNIT_BITS[self.family]
            if self.resources["bram_bits"] != want:
                raise ValueError(f"resources.bram_bits is {self.resources['bram_bits']}, but {self.resources.get('bram', 0)} "
                                 f"{self.family} block RAM units hold {want} bits")
        if self.pins is not None:
            _check_pins(self.pins)

    @property
    def label(self) -> str:
        """``name (device)`` for messages."""
        return f"{self.name} ({self.device})"


def _check_pins(pins) -> None:
    if not isinstance(pins, dict):
        raise ValueError(f"'pins' must be an object of pin entries, not {pins!r}")
    for name, entry in pins.items():
        if name == "source":
            if not isinstance(entry, str):
                raise ValueError(f"pins.source must be a string, not {entry!r}")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("pin"), str) or not entry["pin"]:
            raise ValueError(f"pins.{name} must be an object with a 'pin' string, not {entry!r}")
        for attr, value in entry.items():
            if attr == "pin":
                continue
            want = PIN_ATTRS.get(attr)
            if want is None:
                raise ValueError(f"pins.{name}: unknown attribute {attr!r} (known: pin, {', '.join(PIN_ATTRS)})")
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ValueError(f"pins.{name}.{attr} must be a{'n' if want is int else ''} "
                                 f"{want.__name__}, not {value!r}")


def _load(path: Path) -> Board:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"board file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(f"board file {path} must hold one JSON object")
    if raw.get("format_version") != BOARD_FORMAT_VERSION:
        raise FormatVersionError(
            f"board file {path} has format_version {raw.get('format_version')!r}; this qhw reads {BOARD_FORMAT_VERSION}"
        )
    missing = [k for k in ("name", "family", "device", "package", "clock_mhz", "resources") if k not in raw]
    if missing:
        raise InputError(f"board file {path} lacks field {missing[0]!r}")
    try:
        return Board(name=raw["name"], family=raw["family"], device=raw["device"], package=raw["package"],
                     clock_mhz=raw["clock_mhz"], resources=raw["resources"], description=raw.get("description", ""),
                     pins=raw.get("pins"), path=str(path))
    except ValueError as exc:
        raise InputError(f"board file {path}: {exc}") from None


def boards() -> dict[str, Board]:
    return {b.name: b for b in map(_load, sorted(BOARDS_DIR.glob("*.json")))}


def load_board(name_or_path: str | os.PathLike) -> Board:
    """A board by name (``boards/<name>.json``) or from a board file's path (ending in ``.json`` or
    holding a path separator); :class:`~qhw.errors.InputError` for an unknown name or a bad file."""
    text = os.fspath(name_or_path)
    if text.endswith(".json") or os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text)
        if not path.is_file():
            raise InputError(f"board file {path} not found")
        return _load(path)
    known = boards()
    if text not in known:
        raise InputError(f"unknown board {text!r}; known: {', '.join(sorted(known))} (or give a board file's path)")
    return known[text]


def resolve_device(name: str) -> Board:
    """A board by name, or a bare nextpnr device (iCE40 / ECP5) as a pseudo-board."""
    known = boards()
    if name in known:
        return known[name]
    key = name.lower().removeprefix("ice40-").removeprefix("lfe5u-").removeprefix("ecp5-")
    for family, devices in NEXTPNR_DEVICES.items():
        if key in devices:
            return Board(name=key, family=family, device=key, package=devices[key], clock_mhz=12.0, resources={})
    choices = ", ".join(sorted(known) + sorted(d for ds in NEXTPNR_DEVICES.values() for d in ds))
    raise InputError(f"unknown device or board {name!r}; known: {choices}")

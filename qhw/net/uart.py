"""A built accelerator behind a UART: image codes in, logits and class out, over one serial line.

The board wrapper (:class:`UartWrapper`) instantiates a ``qhw build``
top level *by name*, unchanged (the build's ``<top>.v`` is synthesized and
simulated as it is), and puts a UART receiver, a framer and a UART
transmitter in front of its AXI4-Stream ports. The same framing is
implemented on the host side by :class:`UartProtocol` and
:class:`UartClient` (``qhw board classify``) and modelled byte for byte by
:class:`BoardModel`.

Line
----
8 data bits, no parity, 1 stop bit (8N1), least significant bit first,
idle high; ``divisor`` clock cycles per bit (``round(f_clk / baud)``:
104 for 115 200 baud at 12 MHz, 217 at 25 MHz).

Framing (protocol version 1)
----------------------------
Host to board, one of::

    0xA5  code_0 ... code_{N-1}     classify one image (N = C·H·W input codes)
    0x3F                            identify

Any other byte while the board waits for a request is ignored (so is a
byte with a framing error), so a host can always start over by waiting for
the timeout and sending a new request.

* **Image**: the ``N`` input codes in raster order, the ``C`` channels of a
  pixel consecutive (``x.transpose(1, 2, 0)``, i.e. HWC), each the raw IR
  code of the input encoding (:func:`qhw.ir.intmath.encode_acts`: the
  unsigned code, the bipolar bit, two's complement) in
  ``code_bytes = ceil(bits / 8)`` bytes, little-endian; bits above ``bits``
  are ignored. For the digits networks (8-bit unsigned 1×8×8) that is the
  64 pixel values, one byte each.
* **Reply** (``reply_length = 1 + channels·logit_bytes + index_bytes``)::

    header  logit_0 ... logit_{K-1}  class

  ``header`` is ``0x5A``, or ``0xE0 | flags`` when the image was damaged
  on the way in (flags: 1 framing error, a stop bit read as 0; 2 overrun,
  a byte arrived while the input buffer was full and was dropped; 4
  timeout, no byte for ``timeout_bits`` bit periods before the image was
  complete). A damaged image is still completed (missing codes are 0) and
  classified, so the reply always has the same length; its logits are
  meaningless. Each logit is its code sign-extended (signed logits) or
  zero-extended to ``logit_bytes = ceil(logit_bits / 8)`` bytes,
  little-endian; ``class`` is the argmax (first index on ties) in
  ``index_bytes = ceil(index_bits / 8)`` bytes, little-endian.
* **Identify reply** (15 bytes)::

    0x49  version  digest[0:4]  N (3 bytes LE)  code_bytes  K (2 bytes LE)  logit_bytes  index_bytes  flags

  ``digest`` is the first four bytes of the network digest in the build's
  manifest (what ``qhw board classify`` checks against the build it is
  given); ``flags`` bit 0 is set when the logits are signed.

One request at a time: the board takes a new request once the previous
reply's last byte is on the line; bytes sent before are ignored. At 115 200
baud a digits image is 65 bytes in, 42 out: 9.2 ms on the line, against
2304 cycles (0.1 ms at 25 MHz) in the accelerator.

Blocks
------
:class:`UartRx`       the line → bytes (with a framing-error flag)
:class:`UartTx`       bytes → the line
:class:`UartFramer`   request bytes → ``s_axis`` beats; the ``m_axis`` result → reply bytes
:class:`UartWrapper`  all three around the accelerator instance: ports ``rx``, ``tx``, ``busy``, ``error``
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from qhw.errors import InputError
from qhw.hw.pe.params import check_positive
from qhw.hw.stream_blocks import _discarded_on_error
from qhw.ir import intmath

from .stream import FrameFormat

__all__ = ["SYNC", "IDENT", "HEADER_OK", "HEADER_ERROR", "HEADER_IDENT", "ERR_FRAMING", "ERR_OVERRUN",
           "ERR_TIMEOUT", "PROTOCOL_VERSION", "UartProtocol", "Reply", "BoardModel", "UartClient",
           "UartRx", "UartTx", "UartFramer", "UartWrapper", "baud_divisor", "default_fifo_depth"]

SYNC = 0xA5
IDENT = 0x3F
HEADER_OK = 0x5A
HEADER_ERROR = 0xE0
HEADER_IDENT = 0x49
ERR_FRAMING, ERR_OVERRUN, ERR_TIMEOUT = 1, 2, 4
PROTOCOL_VERSION = 1
IDENT_LENGTH = 15
#: Bit periods without a byte that end an incomplete image (about 71 ms at 115 200 baud: longer than any
#: gap a USB serial adapter leaves inside one write).
DEFAULT_TIMEOUT_BITS = 8192
#: Bytes the framer buffers while the accelerator does not take input, at least (:func:`default_fifo_depth`).
DEFAULT_FIFO_DEPTH = 4
#: Largest baud-rate error accepted between the divisor's rate and the one asked for.
MAX_BAUD_ERROR = 0.02


def _nbytes(bits: int) -> int:
    return -(-bits // 8)


def baud_divisor(clock_hz: float, baud: float) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``; :class:`InputError` if the rate is off by > 2 %."""
    if not baud > 0 or not clock_hz > 0:
        raise InputError(f"baud rate and clock must be positive, not {baud!r} at {clock_hz!r} Hz")
    divisor = round(clock_hz / baud)
    if divisor < UartRx.MIN_DIVISOR:
        raise InputError(f"{baud:g} baud is too fast for a {clock_hz / 1e6:g} MHz clock (needs at least "
                         f"{UartRx.MIN_DIVISOR} cycles per bit)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise InputError(f"{baud:g} baud at {clock_hz / 1e6:g} MHz is {clock_hz / divisor:.0f} baud with divisor "
                         f"{divisor}: {error:.1%} off (at most {MAX_BAUD_ERROR:.0%})")
    return divisor


def default_fifo_depth(manifest: dict, divisor: int) -> int:
    """Input bytes to buffer: enough for the accelerator to hold its input back for one frame time.

    One request at a time, so the accelerator is empty when an image starts
    and has it all within about ``cycles_per_frame`` (its slowest engine's
    frame time) of being offered it; ``cycles_per_frame / (10·divisor)``
    bytes arrive meanwhile, plus two. At least :data:`DEFAULT_FIFO_DEPTH`. (The
    digits w4a4 build takes 2304 cycles a frame, 2.2 bytes at 115 200 baud and
    12 MHz: 5 bytes, where a fixed 8 cost the iCEBreaker top 24 flip-flops that
    share no logic cell. A byte period close to the accelerator's time per
    input beat needs the deeper buffer: at 40 cycles a byte a fixed 8-byte
    buffer overran on that build.) An overrun is still caught and flagged,
    never silent.
    """
    check_positive("divisor", divisor)
    cpf = int(manifest.get("cycles_per_frame", 0))
    return max(DEFAULT_FIFO_DEPTH, -(-cpf // (10 * divisor)) + 2)


# -- the framing in Python: host side and model -------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """One decoded reply: ``ok`` (header ``0x5A``), the error ``flags``, the logit values and the class."""

    ok: bool
    flags: int
    logits: tuple[int, ...]
    index: int


@dataclass(frozen=True)
class UartProtocol:
    """The byte framing of one build (see the module docstring); from :meth:`from_manifest`.

    Parameters
    ----------
    in_format : FrameFormat
        The accelerator's ``s_axis`` stream.
    channels, logit_bits, logit_code : int, int, str
        The logits: ``m_axis`` beats ``0 .. channels-1`` (:mod:`qhw.net.top`), each the logit's code
        sign-extended (signed logits) or zero-extended to ``result_width`` bits.
    index_bits, result_width : int
        The class beat (the last of an image) and the width of every ``m_axis_tdata`` beat.
    digest : bytes
        First four bytes of the network digest.
    """

    in_format: FrameFormat
    channels: int
    logit_bits: int
    logit_code: str
    index_bits: int
    result_width: int
    digest: bytes

    @classmethod
    def from_manifest(cls, manifest: dict) -> "UartProtocol":
        try:
            s, m = manifest["ports"]["s_axis"], manifest["ports"]["m_axis"]
            f = s["format"]
            fmt = FrameFormat(tuple(f["shape"]), f["code"], f["bits"], f["simd"])
            lg, ci = m["logits"], m["class_index"]
            if int(m["beats"]) != int(lg["channels"]) + 1:
                raise ValueError(f"m_axis has {m['beats']} beats an image, not a logit each and the class")
            digest = bytes.fromhex(manifest["network"]["digest"][:8])
            return cls(fmt, int(lg["channels"]), int(lg["bits"]), str(lg["code"]), int(ci["bits"]), int(m["width"]),
                       digest)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the build manifest's port map is incomplete for the UART wrapper: {exc}") from None

    @classmethod
    def from_ident(cls, info: dict, in_format: FrameFormat) -> "UartProtocol":
        """The framing an identify reply describes (:meth:`parse_ident`), for images of ``in_format``
        (the reply gives the byte counts only: logits decode from their sign-extended bytes)."""
        if info["codes"] != in_format.channels * in_format.pixels or info["code_bytes"] != _nbytes(in_format.bits):
            raise InputError(f"the board takes {info['codes']} codes of {info['code_bytes']} byte(s), not "
                             f"{in_format.channels * in_format.pixels} of {_nbytes(in_format.bits)}")
        lb, ib, k = 8 * info["logit_bytes"], 8 * info["index_bytes"], info["channels"]
        return cls(in_format, k, lb, "signed" if info["signed_logits"] else "unsigned", ib, max(lb, ib),
                   bytes.fromhex(info["digest"]))

    # -- sizes --------------------------------------------------------------------------------

    @property
    def codes(self) -> int:
        """Input codes per image, ``C·H·W``."""
        return self.in_format.channels * self.in_format.pixels

    @property
    def code_bytes(self) -> int:
        return _nbytes(self.in_format.bits)

    @property
    def request_length(self) -> int:
        return 1 + self.codes * self.code_bytes

    @property
    def logit_bytes(self) -> int:
        return _nbytes(self.logit_bits)

    @property
    def index_bytes(self) -> int:
        return _nbytes(self.index_bits)

    @property
    def reply_length(self) -> int:
        return 1 + self.channels * self.logit_bytes + self.index_bytes

    @property
    def signed_logits(self) -> bool:
        return self.logit_code == "signed"

    # -- host → board -------------------------------------------------------------------------

    def encode_image(self, values) -> bytes:
        """One image's request: ``SYNC`` then its codes (HWC order, ``code_bytes`` each, little-endian)."""
        v = np.asarray(values, dtype=np.int64)
        if v.shape != self.in_format.shape:
            raise InputError(f"an image must have shape {self.in_format.shape}, not {v.shape}")
        try:
            codes = intmath.encode_acts(self.in_format.code, self.in_format.bits, v)
        except ValueError as exc:
            raise InputError(f"image: {exc}") from None
        hwc = codes.reshape(self.in_format.channels, -1).T.reshape(-1)
        out = bytearray([SYNC])
        for code in hwc.tolist():
            out += int(code).to_bytes(self.code_bytes, "little")
        return bytes(out)

    def decode_request(self, data: bytes) -> np.ndarray:
        """The image values of a request's ``codes · code_bytes`` bytes after ``SYNC`` (for the model)."""
        mask = (1 << self.in_format.bits) - 1
        n = self.code_bytes
        raw = [int.from_bytes(data[k * n:(k + 1) * n], "little") & mask for k in range(self.codes)]
        chw = np.asarray(raw, dtype=np.int64).reshape(-1, self.in_format.channels).T
        return intmath.decode_acts(self.in_format.code, self.in_format.bits, chw).reshape(self.in_format.shape)

    # -- board → host -------------------------------------------------------------------------

    def result_beats(self, logits, index: int) -> list[int]:
        """The ``m_axis_tdata`` beats of one image for logit values ``logits`` and class ``index``."""
        codes = intmath.encode_acts(self.logit_code, self.logit_bits, np.asarray(logits, dtype=np.int64))
        beats = []
        for code in codes.reshape(-1).tolist():
            code = int(code)
            if self.signed_logits and code >> (self.logit_bits - 1) & 1:
                code |= ((1 << self.result_width) - 1) & ~((1 << self.logit_bits) - 1)
            beats.append(code)
        return beats + [int(index)]

    def reply_bytes(self, beats: Sequence[int], flags: int = 0) -> bytes:
        """The reply the board sends for one image's ``m_axis`` beats (what :class:`UartFramer` serializes:
        the header, then each logit beat's low ``logit_bytes`` bytes and the class beat's ``index_bytes``)."""
        if len(beats) != self.channels + 1:
            raise ValueError(f"an image has {self.channels + 1} result beats, not {len(beats)}")
        out = bytearray([HEADER_ERROR | flags if flags else HEADER_OK])
        for beat in beats[:-1]:
            out += (int(beat) & ((1 << 8 * self.logit_bytes) - 1)).to_bytes(self.logit_bytes, "little")
        out += (int(beats[-1]) & ((1 << 8 * self.index_bytes) - 1)).to_bytes(self.index_bytes, "little")
        return bytes(out)

    def decode_reply(self, data: bytes) -> Reply:
        """A reply's bytes → :class:`Reply`; :class:`InputError` for a wrong length or header."""
        if len(data) != self.reply_length:
            raise InputError(f"a reply is {self.reply_length} bytes, got {len(data)}")
        header = data[0]
        if header != HEADER_OK and (header & 0xF8) != HEADER_ERROR:
            raise InputError(f"reply header 0x{header:02X} is neither 0x{HEADER_OK:02X} nor 0x{HEADER_ERROR:02X}|flags")
        n = self.logit_bytes
        logits = []
        for c in range(self.channels):
            raw = int.from_bytes(data[1 + c * n:1 + (c + 1) * n], "little", signed=self.signed_logits)
            logits.append(int(intmath.decode_acts(self.logit_code, self.logit_bits, raw))
                          if self.logit_code == "bipolar" else raw)
        index = int.from_bytes(data[1 + self.channels * n:], "little")
        return Reply(header == HEADER_OK, 0 if header == HEADER_OK else header & 0x07, tuple(logits), index)

    def ident_bytes(self) -> bytes:
        """The identify reply (see the module docstring)."""
        return bytes([HEADER_IDENT, PROTOCOL_VERSION, *self.digest[:4]]) + self.codes.to_bytes(3, "little") + \
            bytes([self.code_bytes]) + self.channels.to_bytes(2, "little") + \
            bytes([self.logit_bytes, self.index_bytes, int(self.signed_logits)])

    @staticmethod
    def parse_ident(data: bytes) -> dict:
        """An identify reply → its fields; :class:`InputError` if it is not one."""
        if len(data) != IDENT_LENGTH or data[0] != HEADER_IDENT:
            raise InputError(f"no identify reply ({len(data)} bytes: {data[:IDENT_LENGTH].hex() or 'nothing'}); is "
                             "the board programmed with a qhw UART bitstream at this baud rate?")
        return {"version": data[1], "digest": data[2:6].hex(), "codes": int.from_bytes(data[6:9], "little"),
                "code_bytes": data[9], "channels": int.from_bytes(data[10:12], "little"), "logit_bytes": data[12],
                "index_bytes": data[13], "signed_logits": bool(data[14] & 1)}

    # -- the integer model ----------------------------------------------------------------------

    def reference(self, net, images) -> list[bytes]:
        """The replies the board must send for ``images`` (N, C, H, W): :class:`~qhw.ir.golden.GoldenModel`'s
        logits and :meth:`~qhw.ir.golden.GoldenModel.predict`'s class, framed."""
        from qhw.ir.golden import GoldenModel

        golden = GoldenModel(net)
        x = np.asarray(images, dtype=np.int64)
        logits = golden(x).numpy().reshape(len(x), -1)
        index = golden.predict(x).numpy()
        return [self.reply_bytes(self.result_beats(lg, k)) for lg, k in zip(logits, index)]


class BoardModel:
    """The board's byte-level behaviour in Python (requests in, replies out), on the golden model.

    ``feed(data)`` takes any bytes the host writes and returns what the
    board would send back: the same state machine as :class:`UartFramer`
    (requests while idle, other bytes ignored), without line errors or
    timeouts. It stands in for a board in the host-side tests.
    """

    def __init__(self, protocol: UartProtocol, net):
        self.protocol = protocol
        self.net = net
        self._image: bytearray | None = None

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        p = self.protocol
        for byte in data:
            if self._image is not None:
                self._image.append(byte)
                if len(self._image) == p.codes * p.code_bytes:
                    values = p.decode_request(bytes(self._image))
                    self._image = None
                    out += p.reference(self.net, values[None])[0]
            elif byte == SYNC:
                self._image = bytearray()
            elif byte == IDENT:
                out += p.ident_bytes()
        return bytes(out)


class UartClient:
    """The host side over any byte port with ``write(bytes)`` and ``read(n) -> bytes`` (a pyserial ``Serial``).

    ``read`` may return fewer bytes than asked (a timeout); :meth:`classify`
    and :meth:`identify` then fail with one :class:`InputError` line.
    """

    def __init__(self, port, protocol: UartProtocol, *, timeout: float = 2.0):
        self.port = port
        self.protocol = protocol
        self.timeout = timeout

    def _read(self, n: int, what: str) -> bytes:
        data = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(data) < n and time.monotonic() < deadline:
            data += self.port.read(n - len(data))
        if len(data) < n:
            raise InputError(f"the board sent {len(data)} of the {n} bytes of {what} within {self.timeout:g} s "
                             f"(got: {bytes(data).hex() or 'nothing'})")
        return bytes(data)

    def identify(self) -> dict:
        self.port.write(bytes([IDENT]))
        return self.protocol.parse_ident(self._read(IDENT_LENGTH, "the identify reply"))

    def check(self) -> dict:
        """Identify the board and check it runs this protocol's network; returns the identify fields."""
        info = self.identify()
        p = self.protocol
        want = {"version": PROTOCOL_VERSION, "digest": p.digest[:4].hex(), "codes": p.codes,
                "code_bytes": p.code_bytes, "channels": p.channels, "logit_bytes": p.logit_bytes,
                "index_bytes": p.index_bytes, "signed_logits": p.signed_logits}
        wrong = [f"{k} {info[k]} (the build has {v})" for k, v in want.items() if info[k] != v]
        if wrong:
            raise InputError("the board does not run this build: " + ", ".join(wrong))
        return info

    def classify(self, image) -> Reply:
        self.port.write(self.protocol.encode_image(image))
        return self.protocol.decode_reply(self._read(self.protocol.reply_length, "a reply"))


# -- the hardware -------------------------------------------------------------------------------

class UartRx(wiring.Component):
    """8N1 UART receiver.

    Parameters (keyword-only)
    -------------------------
    divisor : int
        Clock cycles per bit, at least :attr:`MIN_DIVISOR`.

    Attributes
    ----------
    rx : In(1)
        The line (idle high), asynchronous: two flip-flops synchronize it.
    o_stream : Out(stream.Signature(unsigned(9), always_ready=True))
        One transfer per byte, ``valid`` for one cycle: payload bits 0-7 the
        byte, bit 8 set on a framing error (stop bit read as 0; the receiver
        then waits for the line to go high before the next start bit).
        ``ready`` is ignored: a line cannot wait.
    latency : int
        Cycles from the clock edge after which ``rx`` is low (the start bit)
        to the edge after which ``valid`` is high: ``3 + divisor // 2 + 9 ·
        divisor`` (two synchronizer stages, the edge detect, then the middle
        of the stop bit), so the byte is out half a bit period into its stop bit. A start bit shorter
        than half a bit is ignored (a glitch).
    """

    MIN_DIVISOR = 4

    def __init__(self, *, divisor: int):
        with _discarded_on_error(self):
            self.divisor = check_positive("divisor", divisor, minimum=self.MIN_DIVISOR)
        self.latency = 3 + self.divisor // 2 + 9 * self.divisor
        super().__init__({"rx": In(1, init=1), "o_stream": Out(stream.Signature(unsigned(9), always_ready=True))})

    @staticmethod
    def reference(byte: int) -> list[int]:
        """The line levels of one byte, one per bit period: start 0, data LSB first, stop 1."""
        return [0] + [(byte >> k) & 1 for k in range(8)] + [1]

    def estimate_cycles(self, n: int) -> int:
        """Cycles from the first start bit to the last ``valid`` for ``n`` bytes sent back to back."""
        return 10 * self.divisor * (n - 1) + self.latency

    def estimate_resources(self) -> dict[str, int]:
        cnt = (self.divisor - 1).bit_length()
        return {"lut": 2 * cnt + 18, "ff": cnt + 4 + 8 + 9 + 1 + 2 + 2, "bram": 0, "dsp": 0}

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        q1, line = Signal(init=1), Signal(init=1)  # two-stage synchronizer: rx is asynchronous
        m.d.sync += [q1.eq(self.rx), line.eq(q1)]
        count = Signal(range(d))
        bit = Signal(range(10))
        shreg = Signal(8)
        valid, payload = Signal(), Signal(9)
        m.d.comb += [self.o_stream.valid.eq(valid), self.o_stream.payload.eq(payload)]
        m.d.sync += valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += [count.eq(d // 2 - 1), bit.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Else():
                    m.d.sync += [count.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 0):
                        with m.If(line):  # the start bit did not last half a bit: a glitch
                            m.next = "IDLE"
                    with m.Elif(bit == 9):
                        m.d.sync += [valid.eq(1), payload.eq(Cat(shreg, ~line))]
                        m.next = "IDLE"
                        with m.If(~line):
                            m.next = "WAIT_HIGH"
                    with m.Else():
                        m.d.sync += shreg.eq(Cat(shreg[1:], line))
            with m.State("WAIT_HIGH"):  # after a framing error (or a break): no start bit until the line is idle
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 UART transmitter.

    Parameters (keyword-only)
    -------------------------
    divisor : int
        Clock cycles per bit, at least 1.

    Attributes
    ----------
    i_stream : In(stream.Signature(unsigned(8)))
        Bytes to send; ``ready`` while the line is idle and in the last cycle
        of a stop bit, so bytes offered back to back leave with no gap.
    tx : Out(1)
        The line, registered, idle high. The start bit begins on the clock
        edge that takes the byte (latency 1 cycle to the pin).
    """

    def __init__(self, *, divisor: int):
        with _discarded_on_error(self):
            self.divisor = check_positive("divisor", divisor)
        super().__init__({"i_stream": In(stream.Signature(unsigned(8))), "tx": Out(1, init=1)})

    @staticmethod
    def reference(data: Sequence[int]) -> list[int]:
        """The line levels, one per bit period, of ``data`` sent back to back."""
        return [lvl for b in data for lvl in UartRx.reference(b)]

    def estimate_cycles(self, n: int) -> int:
        """Cycles from the transfer of the first of ``n`` bytes to the end of the last stop bit (back to back)."""
        return 10 * self.divisor * n

    def estimate_resources(self) -> dict[str, int]:
        cnt = (self.divisor - 1).bit_length()
        return {"lut": 2 * cnt + 14, "ff": cnt + 9 + 4 + 2, "bram": 0, "dsp": 0}

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        busy = Signal()
        count = Signal(range(d))
        left = Signal(range(10))  # bits still to put on the line after the current one
        shreg = Signal(9)         # data bits, then the stop bit
        tx = Signal(init=1)
        m.d.comb += self.tx.eq(tx)
        ending = busy & (count == 0) & (left == 0)  # last cycle of the stop bit
        m.d.comb += self.i_stream.ready.eq(~busy | ending)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [busy.eq(1), tx.eq(0), shreg.eq(Cat(self.i_stream.payload, Const(1, 1))),
                         left.eq(9), count.eq(d - 1)]
        with m.Elif(busy):
            with m.If(count != 0):
                m.d.sync += count.eq(count - 1)
            with m.Elif(left != 0):
                m.d.sync += [tx.eq(shreg[0]), shreg.eq(shreg >> 1), left.eq(left - 1), count.eq(d - 1)]
            with m.Else():
                m.d.sync += busy.eq(0)
        return m


class UartFramer(wiring.Component):
    """The framing of the module docstring between UART bytes and the accelerator's AXI4-Stream ports.

    Parameters (keyword-only)
    -------------------------
    protocol : UartProtocol
    divisor : int
        Clock cycles per bit (for the timeout only).
    timeout_bits : int
        Bit periods without a byte after which an incomplete image is padded
        with code 0 and answered with the timeout flag (default 8192).
    fifo_depth : int
        Bytes buffered while the accelerator does not take input (default 8;
        an asynchronous-read memory, so LUT RAM on ECP5 and flip-flops on
        iCE40, never block RAM). A byte arriving while it is full is dropped
        and flagged (overrun).

    Attributes
    ----------
    rx_stream : In(stream.Signature(unsigned(9), always_ready=True))
        Bytes from :class:`UartRx` (bit 8: framing error); never stalls.
    tx_stream : Out(stream.Signature(unsigned(8)))
        Reply bytes to :class:`UartTx`.
    s_axis : Out(stream.Signature(unsigned(in_format.payload_width)))
        Input beats in the stream format (``last`` on top, set on the image's
        final beat), exactly ``{s_axis_tlast, s_axis_tdata}``. A beat is offered
        one cycle after its last code's byte is taken from the buffer.
    m_axis : In(stream.Signature(unsigned(result_width)))
        The accelerator's result beats (a logit each, then the class). A beat's
        ``ready`` rises only in the cycle its last reply byte is taken by
        ``tx_stream``: the payload is read in place while it is held (the
        stream rule keeps it stable), so no result is copied into a register.
    busy : Out(1)
        A request is being received, computed or answered.
    error : Out(1)
        The last image's reply carried error flags (until the next reply).

    Bytes are taken from the second cycle after reset on.
    """

    def __init__(self, *, protocol: UartProtocol, divisor: int, timeout_bits: int = DEFAULT_TIMEOUT_BITS,
                 fifo_depth: int = DEFAULT_FIFO_DEPTH):
        with _discarded_on_error(self):
            if not isinstance(protocol, UartProtocol):
                raise TypeError(f"protocol must be a UartProtocol, not {protocol!r}")
            self.protocol = protocol
            self.divisor = check_positive("divisor", divisor)
            self.timeout_bits = check_positive("timeout_bits", timeout_bits)
            self.fifo_depth = check_positive("fifo_depth", fifo_depth)
        self.timeout_cycles = self.timeout_bits * self.divisor
        fmt = protocol.in_format
        super().__init__({
            "rx_stream": In(stream.Signature(unsigned(9), always_ready=True)),
            "tx_stream": Out(stream.Signature(unsigned(8))),
            "s_axis": Out(stream.Signature(unsigned(fmt.payload_width))),
            "m_axis": In(stream.Signature(unsigned(protocol.result_width))),
            "busy": Out(1), "error": Out(1),
        })

    def reference(self, net, images) -> list[bytes]:
        """The reply bytes for ``images`` with the accelerator of ``net`` (:meth:`UartProtocol.reference`)."""
        return self.protocol.reference(net, images)

    def estimate_cycles(self, latency: int) -> int:
        """Cycles from the ``rx_stream`` transfer of a request's last byte to the ``tx_stream`` transfer
        of its reply's first byte, if the accelerator answers ``latency`` cycles after taking the last
        beat and nothing else waits: 1 (buffer) + 1 (beat register) + ``latency`` + 1 (into the reply state)."""
        return 3 + latency

    def estimate_resources(self) -> dict[str, int]:
        """LUT4 and flip-flops, structurally: the reply multiplexer (each of the 8 bits selects one of a
        beat's bytes or the header, about one LUT4 per input, plus the identify constants), the buffer
        (flip-flops and its read multiplexer on iCE40) and the counters."""
        p, fmt = self.protocol, self.protocol.in_format
        counters = sum((max(2, n) - 1).bit_length() for n in (p.codes * p.code_bytes + 1, self.timeout_cycles + 1,
                                                             p.code_bytes, fmt.simd, fmt.groups * fmt.simd,
                                                             fmt.pixels, IDENT_LENGTH, p.channels + 1,
                                                             p.result_width // 8))
        ptr = max(1, (self.fifo_depth - 1).bit_length())
        fifo_ff, fifo_lut = 8 * self.fifo_depth + 3 * ptr + 1, 8 * (self.fifo_depth - 1) + 6 * ptr + 4
        ff = counters + 8 * (p.code_bytes - 1) + fmt.data_width + 1 + 3 + 3 + 3 + fifo_ff
        mux = 8 * (p.result_width // 8 + 1 + IDENT_LENGTH // 2)
        lut = mux + fifo_lut + 2 * counters + fmt.data_width + 20
        return {"lut": lut, "ff": ff, "bram": 0, "dsp": 0}

    def elaborate(self, platform):
        m = Module()
        p, fmt = self.protocol, self.protocol.in_format
        n_bytes = p.codes * p.code_bytes
        m.submodules.fifo = fifo = SyncFIFO(width=8, depth=self.fifo_depth)

        rx_valid = self.rx_stream.valid
        rx_byte, rx_ferr = self.rx_stream.payload[:8], self.rx_stream.payload[8]
        flags = Signal(3)
        error = Signal()
        m.d.comb += self.error.eq(error)

        # receive side: count the request's bytes (dropped ones too) until all are in or the line times out
        rx_count = Signal(range(n_bytes + 1))
        idle = Signal(range(self.timeout_cycles + 1))
        timed_out = Signal()
        rx_done = (rx_count == n_bytes) | timed_out

        # assembly side: bytes → codes → beats
        byte_k = Signal(range(p.code_bytes))        # byte of the current code
        slot = Signal(range(fmt.simd))              # slot of the current beat
        chan = Signal(range(fmt.groups * fmt.simd))  # channel slot of the current pixel
        pixel = Signal(range(fmt.pixels))
        code_reg = Signal(8 * p.code_bytes)
        beat = Signal(fmt.data_width)
        beat_valid, beat_last = Signal(), Signal()
        m.d.comb += [self.s_axis.payload.eq(Cat(beat, beat_last)), self.s_axis.valid.eq(beat_valid)]
        with m.If(self.s_axis.valid & self.s_axis.ready):
            m.d.sync += beat_valid.eq(0)

        # reply side (init 1, set to 0 in START: see START below)
        index = Signal(range(IDENT_LENGTH), init=1)
        header = Mux(flags != 0, Cat(flags, Const(HEADER_ERROR >> 3, 5)), Const(HEADER_OK, 8))
        ident = Array([Const(b, 8) for b in p.ident_bytes()])
        # the result beats: byte ``rb`` of beat ``rk`` (logits 0 .. channels-1, then the class)
        beat_bytes = p.result_width // 8
        rk = Signal(range(p.channels + 1), name="reply_beat")
        rb = Signal(range(max(2, beat_bytes)), name="reply_byte")
        is_class = rk == p.channels
        beat_end = Mux(is_class, rb == p.index_bytes - 1, rb == p.logit_bytes - 1)
        beat_byte = Array([self.m_axis.payload[8 * b:8 * b + 8] for b in range(beat_bytes)])[rb] \
            if beat_bytes > 1 else self.m_axis.payload[:8]

        with m.FSM(init="START"):
            with m.State("START"):
                # One cycle after reset so the state and the reply index change after time 0: Icarus (in
                # SystemVerilog mode, as cocotb runs it) evaluates no ``always @*`` block before one of its
                # inputs changes, and the blocks that depend on these alone would stay X. No effect in hardware.
                m.d.sync += index.eq(0)
                m.next = "HUNT"
            with m.State("HUNT"):
                with m.If(rx_valid & ~rx_ferr & (rx_byte == SYNC)):
                    m.d.sync += [flags.eq(0), rx_count.eq(0), idle.eq(0), timed_out.eq(0), byte_k.eq(0),
                                 slot.eq(0), chan.eq(0), pixel.eq(0)]
                    m.next = "IMAGE"
                with m.Elif(rx_valid & ~rx_ferr & (rx_byte == IDENT)):
                    m.d.sync += index.eq(0)
                    m.next = "IDENT"

            with m.State("IMAGE"):
                m.d.comb += self.busy.eq(1)
                # -- the line
                with m.If(~rx_done):
                    with m.If(rx_valid):
                        m.d.sync += [rx_count.eq(rx_count + 1), idle.eq(0)]
                        with m.If(rx_ferr):
                            m.d.sync += flags.eq(flags | ERR_FRAMING)
                        with m.If(fifo.w_rdy):
                            m.d.comb += [fifo.w_en.eq(1), fifo.w_data.eq(rx_byte)]
                        with m.Else():
                            m.d.sync += flags.eq(flags | ERR_OVERRUN)
                    with m.Elif(idle == self.timeout_cycles - 1):
                        m.d.sync += [timed_out.eq(1), flags.eq(flags | ERR_TIMEOUT)]
                    with m.Else():
                        m.d.sync += idle.eq(idle + 1)
                # -- the beats: one step per cycle while the beat register is free
                padding = chan >= fmt.channels
                # a missing byte reads as 0 once the line is done and nothing is left in the buffer
                have = fifo.r_rdy | rx_done
                data = Mux(fifo.r_rdy, fifo.r_data, Const(0, 8))
                step = Signal()
                code = Signal(fmt.bits)
                with m.If(~beat_valid):
                    with m.If(padding):
                        m.d.comb += [step.eq(1), code.eq(0)]
                    with m.Elif(have):
                        m.d.comb += fifo.r_en.eq(fifo.r_rdy)
                        if p.code_bytes == 1:
                            m.d.comb += [step.eq(1), code.eq(data)]
                        else:
                            full = Cat(code_reg[8:], data)
                            with m.If(byte_k == p.code_bytes - 1):
                                m.d.comb += [step.eq(1), code.eq(full)]
                                m.d.sync += byte_k.eq(0)
                            with m.Else():
                                m.d.sync += [code_reg.eq(full), byte_k.eq(byte_k + 1)]
                with m.If(step):
                    m.d.sync += beat.eq(Cat(beat[fmt.bits:], code) if fmt.simd > 1 else code)
                    end_of_beat = slot == fmt.simd - 1
                    end_of_pixel = chan == fmt.groups * fmt.simd - 1
                    m.d.sync += [slot.eq(Mux(end_of_beat, 0, slot + 1)), chan.eq(Mux(end_of_pixel, 0, chan + 1))]
                    with m.If(end_of_beat):
                        m.d.sync += [beat_valid.eq(1), beat_last.eq(end_of_pixel & (pixel == fmt.pixels - 1))]
                    with m.If(end_of_pixel):
                        m.d.sync += pixel.eq(pixel + 1)
                with m.If(self.s_axis.valid & self.s_axis.ready & beat_last):
                    m.next = "RESULT"

            with m.State("RESULT"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.m_axis.valid):
                    m.d.sync += [rk.eq(0), rb.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), self.tx_stream.valid.eq(1), self.tx_stream.payload.eq(header)]
                with m.If(self.tx_stream.ready):
                    m.next = "REPLY"

            with m.State("REPLY"):
                # a beat's bytes while it is held; it is taken with its last byte
                m.d.comb += [self.busy.eq(1), self.tx_stream.valid.eq(self.m_axis.valid),
                             self.tx_stream.payload.eq(beat_byte)]
                with m.If(self.m_axis.valid & self.tx_stream.ready):
                    m.d.sync += rb.eq(rb + 1)
                    with m.If(beat_end):
                        m.d.comb += self.m_axis.ready.eq(1)
                        m.d.sync += [rb.eq(0), rk.eq(rk + 1)]
                        with m.If(is_class):
                            m.d.sync += error.eq(flags != 0)
                            m.next = "HUNT"

            with m.State("IDENT"):
                m.d.comb += [self.busy.eq(1), self.tx_stream.valid.eq(1), self.tx_stream.payload.eq(ident[index])]
                with m.If(self.tx_stream.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == IDENT_LENGTH - 1):
                        m.next = "HUNT"
        return m


class UartWrapper(wiring.Component):
    """A ``qhw build`` accelerator behind a UART (the framing of the module docstring).

    The accelerator is an :class:`~amaranth.hdl.Instance` of the build's top
    module (``manifest["top"]``, Verilog instance ``acc``): synthesize or
    simulate this component's Verilog together with the build's ``<top>.v``.

    Parameters (keyword-only)
    -------------------------
    manifest : dict
        The build's ``manifest.json`` (port map and network digest).
    divisor : int
        Clock cycles per bit (:func:`baud_divisor`), at least 4.
    timeout_bits : int
        As :class:`UartFramer`.
    fifo_depth : int, optional
        As :class:`UartFramer`; by default :func:`default_fifo_depth` of the build and divisor.

    Attributes
    ----------
    rx : In(1)
        Serial input (asynchronous, idle high).
    tx : Out(1)
        Serial output (registered, idle high).
    busy : Out(1)
        A request is being received, computed or answered (for an LED).
    error : Out(1)
        The last image's reply carried error flags (for an LED).
    protocol : UartProtocol
    """

    def __init__(self, *, manifest: dict, divisor: int, timeout_bits: int = DEFAULT_TIMEOUT_BITS,
                 fifo_depth: int | None = None):
        with _discarded_on_error(self):
            if not isinstance(manifest, dict):
                raise TypeError(f"manifest must be a build manifest dict, not {type(manifest).__name__}")
            self.manifest = manifest
            self.top = manifest.get("top")
            if not isinstance(self.top, str) or not self.top.isidentifier():
                raise ValueError(f"manifest must name the accelerator's top module, not {self.top!r}")
            self.protocol = UartProtocol.from_manifest(manifest)
            self.rx_block = UartRx(divisor=divisor)
            if fifo_depth is None:
                fifo_depth = default_fifo_depth(manifest, divisor)
            self.tx_block = UartTx(divisor=divisor)
            self.framer = UartFramer(protocol=self.protocol, divisor=divisor, timeout_bits=timeout_bits,
                                     fifo_depth=fifo_depth)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "error": Out(1)})

    def reference(self, net, images) -> list[bytes]:
        return self.protocol.reference(net, images)

    def estimate_cycles(self, latency: int) -> int:
        """Cycles from the falling edge of a request's first start bit (bytes sent back to back) to the end
        of its reply's last stop bit, if the accelerator answers ``latency`` cycles after taking the last beat."""
        p = self.protocol
        return (self.rx_block.estimate_cycles(p.request_length) + self.framer.estimate_cycles(latency)
                + self.tx_block.estimate_cycles(p.reply_length))

    def estimate_resources(self) -> dict[str, int]:
        parts = [self.rx_block.estimate_resources(), self.tx_block.estimate_resources(),
                 self.framer.estimate_resources()]
        return {k: sum(d[k] for d in parts) for k in ("lut", "ff", "bram", "dsp")}

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = self.rx_block
        m.submodules.tx = tx = self.tx_block
        m.submodules.framer = fr = self.framer
        m.d.comb += [
            rx.rx.eq(self.rx), self.tx.eq(tx.tx), self.busy.eq(fr.busy), self.error.eq(fr.error),
            fr.rx_stream.payload.eq(rx.o_stream.payload), fr.rx_stream.valid.eq(rx.o_stream.valid),
            tx.i_stream.payload.eq(fr.tx_stream.payload), tx.i_stream.valid.eq(fr.tx_stream.valid),
            fr.tx_stream.ready.eq(tx.i_stream.ready),
        ]
        w = self.protocol.in_format.data_width
        m.submodules.acc = Instance(
            self.top,
            i_clk=ClockSignal(), i_rst=ResetSignal(),
            i_s_axis_tdata=fr.s_axis.payload[:w], i_s_axis_tlast=fr.s_axis.payload[w],
            i_s_axis_tvalid=fr.s_axis.valid, o_s_axis_tready=fr.s_axis.ready,
            o_m_axis_tdata=fr.m_axis.payload, o_m_axis_tvalid=fr.m_axis.valid, i_m_axis_tready=fr.m_axis.ready,
            o_m_axis_tlast=Signal(name="m_axis_tlast_unused"),
        )
        return m

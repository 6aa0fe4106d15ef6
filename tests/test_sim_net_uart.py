"""The UART board wrapper end to end in cocotb, on the real generated top: serial bytes in, replies out.

The simulated design is :class:`qhw.net.uart.UartWrapper`'s Verilog plus the
build's ``<top>.v`` as ``qhw build`` wrote it (what ``qhw board flash-file``
synthesizes); the testbench (``sim/net/test_uart_board.py``) drives and reads
the serial lines bit by bit and compares every reply with the golden model's
(:meth:`UartProtocol.reference`: ``GoldenModel`` logits and ``predict``).

* CI: the tiny residual network of tests/net_layers.py on Icarus, 4 clock
  cycles per bit: identify, ignored junk, six images, an image with a framing
  error (error header, same length, the error output set), the next image
  clean again, an image cut short by the timeout (padded with code 0, timeout
  header); and a fault-injected accelerator (the class index's lowest bit
  flipped between the accelerator and the wrapper) that must fail naming the
  image and the reply byte.
* Acceptance (``QHW_SIM_FULL=1``): the digits w4a4 ResNet-8 built as for the
  board (``--fold auto --lut-budget 16384``), 20 digits test images through
  the serial protocol on Verilator::

    QHW_SIM_FULL=1 QHW_NET_CACHE=/tmp/qhw_nets pytest tests/test_sim_net_uart.py -s -k digits
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from qhw.backends.verilog import to_verilog
from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.ir.golden import GoldenModel
from qhw.net.build import build
from qhw.net.simulate import VERILATOR_FLAGS, synthetic_images
from qhw.net.uart import ERR_FRAMING, ERR_TIMEOUT, IDENT, UartProtocol, UartWrapper
from digits_nets import digits_network, digits_test_images
from net_layers import tiny_resnet
from sim_hw_support import require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
FULL = os.environ.get("QHW_SIM_FULL") == "1"
TEST_MODULE = "net.test_uart_board"
DIVISOR = 4
TIMEOUT_BITS = 96


def say(message: str) -> None:
    print(message, flush=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from qhw.ir.serialize import save_network

    root = tmp_path_factory.mktemp("uart_sim")
    net, _ = tiny_resnet(np.random.default_rng(0))
    path = save_network(net, root / "net.json")
    res = build(net, root / "build", network_path=str(path))
    return net, res, root


def design(res, *, accelerator: str | None = None, timeout_bits: int = TIMEOUT_BITS) -> tuple[str, str]:
    """(top name, Verilog): the wrapper and the build's accelerator (or a replacement text for it)."""
    name = f"{res.manifest['top']}_uart"
    wrapper = UartWrapper(manifest=res.manifest, divisor=DIVISOR, timeout_bits=timeout_bits)
    acc = accelerator if accelerator is not None else res.verilog.read_text()
    return name, to_verilog(wrapper, name=name) + "\n" + acc


def wait_cycles(p: UartProtocol, manifest: dict) -> int:
    """Generous cycles to wait for a reply after the request: a few frames plus the reply on the line."""
    return 4 * manifest["cycles_per_frame"] + 10 * DIVISOR * p.reply_length + 2000


def transactions(net, res, images) -> list[dict]:
    p = UartProtocol.from_manifest(res.manifest)
    wait = wait_cycles(p, res.manifest)
    want = p.reference(net, images)
    golden = GoldenModel(net)
    out = [{"name": "identify", "send": [IDENT], "expect": list(p.ident_bytes()), "max_cycles": wait},
           {"name": "junk", "send": [0x00, 0x13, 0xFF], "expect": [], "max_cycles": 50 * DIVISOR}]
    for k, x in enumerate(images):
        out.append({"name": f"image {k}", "send": list(p.encode_image(x)), "expect": list(want[k]),
                    "max_cycles": wait, "error_after": 0})
    x = images[0]
    beats = p.result_beats(golden(x[None]).numpy().reshape(-1), int(golden.predict(x[None])[0]))
    out.append({"name": "framing error", "send": list(p.encode_image(x)), "bad_stop": [5],
                "expect": list(p.reply_bytes(beats, ERR_FRAMING)), "max_cycles": wait, "error_after": 1})
    out.append({"name": "after the framing error", "send": list(p.encode_image(images[1])),
                "expect": list(want[1]), "max_cycles": wait, "error_after": 0})
    cut = 1 + 10 * p.code_bytes
    request = p.encode_image(images[2])
    padded = p.decode_request(request[1:cut] + bytes(len(request) - cut))
    beats = p.result_beats(golden(padded[None]).numpy().reshape(-1), int(golden.predict(padded[None])[0]))
    out.append({"name": "timeout", "send": list(request[:cut]), "idle_after": TIMEOUT_BITS + 20,
                "expect": list(p.reply_bytes(beats, ERR_TIMEOUT)), "max_cycles": wait, "error_after": 1})
    out.append({"name": "after the timeout", "send": list(request), "expect": list(want[2]), "max_cycles": wait})
    return out


def run(name, verilog, stim, root: Path, cache, *, simulator="icarus", build_args=()):
    path = root / f"stim_{name}_{simulator}.json"
    path.write_text(json.dumps(stim))
    t0 = time.monotonic()
    res = simulate(verilog, name=name, test_module=TEST_MODULE, cache_dir=cache, simulator=simulator,
                   parameters={"stimulus": str(path)}, build_args=build_args)
    return res.records["transactions"], time.monotonic() - t0


def test_tiny_net_through_the_uart_matches_the_golden_model(tiny, cache):
    require_simulator("icarus")
    net, res, root = tiny
    images = synthetic_images(net.input.out, 6, seed=4)
    stim = {"divisor": DIVISOR, "transactions": transactions(net, res, images)}
    name, verilog = design(res)
    done, seconds = run(name, verilog, stim, root, cache)
    assert [t["name"] for t in done] == [t["name"] for t in stim["transactions"]]
    p = UartProtocol.from_manifest(res.manifest)
    golden = GoldenModel(net)
    replies = [p.decode_reply(bytes(t["got"])) for t in done if t["name"].startswith("image")]
    assert [r.index for r in replies] == golden.predict(images).tolist()
    assert [list(r.logits) for r in replies] == golden(images).numpy().reshape(len(images), -1).tolist()
    assert all(r.ok for r in replies)
    by_name = {t["name"]: t for t in done}
    assert p.decode_reply(bytes(by_name["framing error"]["got"])).flags == ERR_FRAMING
    assert p.decode_reply(bytes(by_name["timeout"]["got"])).flags == ERR_TIMEOUT
    assert by_name["junk"]["got"] == []
    # an image's round trip: the request and the reply on the line, plus the accelerator
    wrapper = UartWrapper(manifest=res.manifest, divisor=DIVISOR)
    line = 10 * DIVISOR * (p.request_length + p.reply_length)
    cycles = [t["cycles"] for t in done if t["name"].startswith("image")]
    say(f"tiny net over the UART (divisor {DIVISOR}): {len(images)} images, round trip {cycles} cycles "
        f"({line} on the line), {seconds:.1f} s")
    assert all(line < c < wrapper.estimate_cycles(4 * res.manifest["cycles_per_frame"]) for c in cycles)


def test_a_wrong_class_from_the_accelerator_fails_naming_the_image_and_byte(tiny, cache):
    require_simulator("icarus")
    net, res, root = tiny
    top, m = res.manifest["top"], res.manifest["ports"]
    text = res.verilog.read_text()
    assert text.count(f"module {top}(") == 1
    # the real accelerator renamed, and a shim in its place that flips the lowest bit of the class beat (tlast)
    sw, rw = m["s_axis"]["width"], m["m_axis"]["width"]
    shim = "\n".join([
        f"module {top}(clk, rst, s_axis_tdata, s_axis_tvalid, s_axis_tready, s_axis_tlast, m_axis_tdata, "
        "m_axis_tvalid, m_axis_tready, m_axis_tlast);",
        f"  input clk; input rst; input [{sw - 1}:0] s_axis_tdata; input s_axis_tvalid; output s_axis_tready;",
        f"  input s_axis_tlast; output [{rw - 1}:0] m_axis_tdata; output m_axis_tvalid; input m_axis_tready;",
        f"  output m_axis_tlast; wire [{rw - 1}:0] d;",
        f"  {top}__real acc(.clk(clk), .rst(rst), .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid),",
        "    .s_axis_tready(s_axis_tready), .s_axis_tlast(s_axis_tlast), .m_axis_tdata(d),",
        "    .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready), .m_axis_tlast(m_axis_tlast));",
        f"  assign m_axis_tdata = d ^ {{{rw - 1}'d0, m_axis_tlast}};",
        "endmodule", ""])
    broken = text.replace(f"module {top}(", f"module {top}__real(") + "\n" + shim
    images = synthetic_images(net.input.out, 3, seed=4)
    stim = {"divisor": DIVISOR, "transactions": transactions(net, res, images)[:3]}  # identify, junk, image 0
    name, verilog = design(res, accelerator=broken)
    with pytest.raises(SimulationMismatch) as err:
        run(name, verilog, stim, root, cache)
    p = UartProtocol.from_manifest(res.manifest)
    byte = p.reply_length - p.index_bytes
    want = p.reference(net, images)[0][byte]
    say(str(err.value))
    assert re.search(rf"image 0: reply byte {byte} expected 0x{want:02X}, got 0x{want ^ 1:02X}", str(err.value))


def classify_20_digits(net, res, root, cache):
    """The first 20 digits test images through the wrapper around ``res``'s accelerator on Verilator
    (identify, then one request per image): (images, labels, protocol, transactions done, seconds)."""
    images, labels = digits_test_images(20)
    p = UartProtocol.from_manifest(res.manifest)
    wait = wait_cycles(p, res.manifest)
    want = p.reference(net, images)
    stim = {"divisor": DIVISOR, "transactions":
            [{"name": "identify", "send": [IDENT], "expect": list(p.ident_bytes()), "max_cycles": wait}]
            + [{"name": f"image {k}", "send": list(p.encode_image(x)), "expect": list(want[k]), "max_cycles": wait,
                "error_after": 0} for k, x in enumerate(images)]}
    name, verilog = design(res)
    done, seconds = run(name, verilog, stim, root, cache, simulator="verilator", build_args=VERILATOR_FLAGS)
    return images, labels, p, done, seconds


@pytest.mark.skipif(not FULL, reason="acceptance run (minutes on Verilator): QHW_SIM_FULL=1")
def test_digits_w4a4_20_images_through_the_uart_on_verilator(tmp_path_factory, cache):
    require_simulator("verilator")
    from qhw.net.folding import auto_folds

    root = tmp_path_factory.mktemp("uart_digits")
    net = digits_network("w4a4", root / "nets")
    src = Path(os.environ.get("QHW_NET_CACHE", root / "nets")) / "w4a4" / "net.json"
    res = build(net, root / "build_w4a4", folds=auto_folds(net, lut_budget=16384),
                network_path=str(src) if src.is_file() else None)
    images, labels, p, done, seconds = classify_20_digits(net, res, root, cache)
    replies = [p.decode_reply(bytes(t["got"])) for t in done[1:]]
    golden = GoldenModel(net)
    assert [r.index for r in replies] == golden.predict(images).tolist()
    assert [list(r.logits) for r in replies] == golden(images).numpy().reshape(20, -1).tolist()
    correct = int(np.sum(np.array([r.index for r in replies]) == labels))
    cycles = [t["cycles"] for t in done[1:]]
    say(f"digits w4a4 over the UART on Verilator: 20/20 replies equal the golden model (class and all "
        f"{p.channels} logits), {correct}/20 equal the labels; round trip {min(cycles)}-{max(cycles)} cycles at "
        f"divisor {DIVISOR}; {seconds:.1f} s with the Verilator build")


@pytest.mark.skipif(not os.environ.get("QHW_UART_BUILD"), reason="acceptance run on a given build: QHW_UART_BUILD=DIR")
def test_a_board_build_classifies_20_digits_through_the_uart_on_verilator(tmp_path_factory, cache):
    """The build a user flashes (``qhw board flash-file DIR`` wraps DIR's Verilog unchanged), behind the
    same wrapper, classifying 20 digits test images over its serial protocol on Verilator:
    ``QHW_UART_BUILD=/path/to/build pytest tests/test_sim_net_uart.py -s -k board_build``."""
    from types import SimpleNamespace

    from qhw.net.build import load_build
    from qhw.net.simulate import load_build_network

    require_simulator("verilator")
    build_dir = Path(os.environ["QHW_UART_BUILD"])
    manifest = load_build(build_dir)
    net = load_build_network(manifest, build_dir)
    res = SimpleNamespace(manifest=manifest, verilog=build_dir / manifest["verilog"])
    root = tmp_path_factory.mktemp("uart_board_build")
    images, labels, p, done, seconds = classify_20_digits(net, res, root, cache)
    replies = [p.decode_reply(bytes(t["got"])) for t in done[1:]]
    golden = GoldenModel(net)
    assert [r.index for r in replies] == golden.predict(images).tolist()
    assert [list(r.logits) for r in replies] == golden(images).numpy().reshape(20, -1).tolist()
    correct = int(np.sum(np.array([r.index for r in replies]) == labels))
    say(f"{build_dir} over the UART on Verilator: 20/20 replies equal the golden model (class and all "
        f"{p.channels} logits), {correct}/20 equal the labels; {seconds:.1f} s")

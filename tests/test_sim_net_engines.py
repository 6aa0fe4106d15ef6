"""Every layer of the four digits ResNet-8 networks as a standalone engine, in cocotb, bit for bit.

Each layer's engine is fed the golden model's input to that layer for real
test images (through the real exported network) and its output stream is
compared, beat by beat, with the golden model's output of that layer;
random valid/ready stalls on every port. All engines of one network share
one simulator build (a Harness).

The whole matrix (4 networks × Icarus and Verilator × 20 images) takes
about 40 minutes on two cores, more than CI's budget, so by default this
runs 4 images of binary_body (bipolar padding, every engine kind but max
pool) on Verilator; the w4a4 engines run on Icarus in CI inside the whole
accelerator (tests/test_sim_net_accelerator.py, every layer's stream
compared there too). The acceptance run is::

    QHW_LAYER_MATRIX=full QHW_LAYER_IMAGES=20 pytest tests/test_sim_net_engines.py -k every_layer -s
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from qhw.backends.verilog import to_verilog
from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Add, Conv, Dense, Input
from qhw.net import Fold
from qhw.net.engines import build_engine
from digits_nets import CONFIGS, digits_network, digits_test_images
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "net.test_engines"
IMAGES = int(os.environ.get("QHW_LAYER_IMAGES", "4"))
MATRIX = [(c, s) for c in CONFIGS for s in ("icarus", "verilator")] if os.environ.get("QHW_LAYER_MATRIX") == "full" \
    else [("binary_body", "verilator")]


def layer_simd(channels: int) -> int:
    return min(channels, 8)


def layer_fold(layer) -> Fold:
    """Up to 8 input channels per beat and 8 output channels at once: small builds, NF and SF > 1."""
    simd = layer_simd(layer.in_spec.channels)
    rows = min(simd, 4)
    return Fold(rows=rows, cols=min(layer.out_channels, 8), lanes=simd // rows)


def unit_name(layer) -> str:
    return layer.name.replace(".", "_")


def network_engines(net):
    """One engine per layer; each emits in the simd of its (first) consumer."""
    engines = {}
    for layer in net.layers:
        if isinstance(layer, Input):
            continue
        consumers = net.consumers(layer.name)
        out_simd = layer_simd(layer.out.channels) if not consumers or not isinstance(consumers[0], (Conv, Dense)) \
            else layer_fold(consumers[0]).simd
        if isinstance(layer, (Conv, Dense)):
            engines[layer.name] = build_engine(layer, fold=layer_fold(layer), out_simd=out_simd)
        else:
            engines[layer.name] = build_engine(layer, simd=layer_simd(layer.in_specs[0].channels))
            assert engines[layer.name].out_format.simd == engines[layer.name].in_formats[0].simd
    return engines


def unit_stimulus(unit: str, eng, ins, out) -> dict:
    return {"name": unit, "layer": eng.layer.name, "in_ports": list(eng.in_ports),
            "in_beats": eng.input_beats(*ins), "out_beats": eng.out_format.encode(out),
            "out_format": eng.out_format.to_dict(), "values": int(np.asarray(out).size)}


def stimulus(net, engines, images):
    values = GoldenModel(net).run(images)
    units = []
    for name, eng in engines.items():
        layer = net[name]
        ins = [values[src].numpy() for src in layer.inputs]
        out = values[name].numpy()
        assert np.array_equal(eng.reference(*ins), out)  # the engine's model is the golden op
        units.append(unit_stimulus(unit_name(layer), eng, ins, out))
    return units


_VERILOG: dict[tuple, str] = {}


def harness_verilog(key, engines, name: str) -> str:
    """The harness's Verilog, emitted once per pytest session for both simulators."""
    if key not in _VERILOG:
        _VERILOG[key] = to_verilog(Harness(engines), name=name)
    return _VERILOG[key]


def run_units(cache, tmp_path, units, engines, simulator, *, name, seed=1, valid_prob=0.75, ready_prob=0.7,
              key=None):
    path = tmp_path / f"stimulus_{name}.json"
    path.write_text(json.dumps({"units": units}))
    design = Harness(engines) if key is None else harness_verilog(key, engines, name)
    return simulate(design, name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                    parameters={"stimulus": str(path), "valid_prob": valid_prob, "ready_prob": ready_prob,
                                "seed": seed})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_nets")
    class Lazy(dict):  # train a network only when a test asks for it
        def __missing__(self, name):
            self[name] = digits_network(name, root)
            return self[name]

    return Lazy()


def run_net(cache, tmp_path, net, simulator, *, engines=None, seed=1, name="engines"):
    require_simulator(simulator)
    images, _ = digits_test_images(IMAGES)
    engines = engines or network_engines(net)
    units = stimulus(net, engines, images)
    r = run_units(cache, tmp_path, units, {unit_name(net[n]): e for n, e in engines.items()}, simulator,
                  name=name, seed=seed, key=(name, net.meta.get("source", {}).get("sha256"), id(net)))
    return r, units


@pytest.mark.parametrize("config, simulator", MATRIX)
def test_every_layer_of_the_digits_nets(cache, nets, tmp_path, config, simulator):
    net = nets[config]
    r, units = run_net(cache, tmp_path, net, simulator, seed=len(config))
    assert r.passed == ("engines_match_golden",)
    for u in units:
        assert r.records[f"{u['name']}.beats"] == len(u["out_beats"])
    assert sum(r.records[f"{u['name']}.out_stalls"] for u in units) > 0  # backpressure was exercised
    total = sum(u["values"] for u in units)
    print(f"\n{config} on {simulator}: {len(units)} layers x {IMAGES} images, {total} values compared, 0 mismatches")


def test_binary_body_convs_all_build_with_padding(nets):
    net = nets["binary_body"]
    convs = [l for l in net.layers if isinstance(l, Conv)]
    assert len(convs) == 9
    padded_bipolar = [l for l in convs if l.in_spec.code.value == "bipolar" and l.padding != (0, 0)]
    assert len(padded_bipolar) == 6
    engines = network_engines(net)
    assert all(engines[l.name].correction is not None for l in padded_bipolar)


# -- shapes none of the digits nets has ------------------------------------------------

def synthetic_units():
    """(unit name, engine, inputs) for shapes and encodings outside the trained nets."""
    from qhw.ir.graph import MaxPool, TensorSpec
    from net_layers import add_layer, conv_layer, dense_layer, gap_layer, random_values

    rng = np.random.default_rng(11)
    out = []

    def conv(unit, fold, out_simd=None, **kw):
        layer, x = conv_layer(rng, n=3, name=unit, **kw)
        out.append((unit, build_engine(layer, fold=fold, out_simd=out_simd), [x]))

    conv("map7x5_c5", Fold(2, 3), 4, c_in=5, h=7, w=5, c_out=7)
    conv("map12x10_stride2", Fold(2, 4, 2), 3, c_in=6, h=12, w=10, c_out=5, stride=2, weight_code="int", weight_bits=3)
    conv("odd7_stride2", Fold(3, 2), 2, c_in=3, h=7, w=7, c_out=4, stride=2, weight_bits=2)
    conv("shortcut_1x1_s2", Fold(2, 6), 6, c_in=4, h=7, w=5, c_out=6, kernel=1, stride=2, padding=0,
         weight_code="pow2", out_code="signed", out_bits=8)
    conv("k5_pad2", Fold(1, 3, 2), 1, c_in=2, h=6, w=5, c_out=3, kernel=5, padding=2, weight_code="int", weight_bits=3,
         in_bits=2)
    conv("xnor_pad_c6", Fold(2, 2, 2), 3, c_in=6, h=5, w=4, c_out=5, weight_code="binary", weight_bits=1,
         in_code="bipolar", in_bits=1, out_code="signed", out_bits=5)
    layer, x = dense_layer(rng, c_in=20, c_out=7, n=3, name="fc_wide_logits")
    out.append(("fc_wide_logits", build_engine(layer, fold=Fold(2, 3, 2), out_simd=7), [x]))
    spec = TensorSpec((5, 3, 2), "signed", 6)
    layer, xs = add_layer(rng, specs=[spec, TensorSpec((5, 3, 2), "unsigned", 4)], coeffs=[1, 4], n=3,
                          name="add_identity")
    out.append(("add_identity", build_engine(layer, simd=2), xs))
    layer, x = gap_layer(rng, c=7, h=3, w=3, n=3, name="gap7")
    out.append(("gap7", build_engine(layer, simd=3), [x]))
    for unit, k, s, p, shape in [("pool2x2", 2, 2, 0, (3, 6, 4)), ("pool3x3s2", 3, 2, 1, (2, 7, 5))]:
        spec = TensorSpec(shape, "unsigned", 3)
        layer = MaxPool(name=unit, input="x", in_spec=spec, kernel=k, stride=s, padding=p)
        out.append((unit, build_engine(layer, simd=2), [random_values(rng, spec, 3)]))
    return out


def synthetic_stimulus(cases):
    return [unit_stimulus(unit, eng, ins, eng.reference(*ins)) for unit, eng, ins in cases]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_engine_shapes_outside_the_nets(cache, tmp_path, simulator):
    require_simulator(simulator)
    cases = synthetic_units()
    units = synthetic_stimulus(cases)
    r = run_units(cache, tmp_path, units, {u: e for u, e, _ in cases}, simulator, name="engine_shapes",
                  key=("engine_shapes",))
    assert r.passed == ("engines_match_golden",)
    for u in units:
        assert r.records[f"{u['name']}.beats"] == len(u["out_beats"])


class FlipWhenBusy(Rewire):
    """Flips bit 0 of the output payload whenever bit 1 is set: right handshake, wrong values."""

    def corrupt(self, m, outer, inner):
        p = inner.o_stream.payload
        m.d.comb += outer.o_stream.payload.eq(p ^ p[1])


class StutterValid(Rewire):
    """Drops valid for a cycle while the sink stalls: every value right, the stream rules broken."""

    def corrupt(self, m, outer, inner):
        from amaranth.hdl import Signal

        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        m.d.comb += outer.o_stream.valid.eq(inner.o_stream.valid & (outer.o_stream.ready | toggle))


@pytest.mark.parametrize("fault, message", [(FlipWhenBusy, r"layer \S+: frame \d+, pixel \(y=\d+, x=\d+\), channel \d+: "
                                             r"expected code \d+, got \d+"),
                                            (StutterValid, "protocol violation")])
def test_faulty_engines_fail(cache, tmp_path, fault, message):
    require_simulator("icarus")
    unit, eng, ins = synthetic_units()[0]
    units = synthetic_stimulus([(unit, eng, ins)])
    with pytest.raises(SimulationMismatch, match=message):
        run_units(cache, tmp_path, units, {unit: fault(eng)}, "icarus", name=f"fault_{fault.__name__.lower()}")

"""Every layer of the four digits ResNet-8 networks as a standalone engine, in cocotb, bit for bit.

Each layer's engine is fed the golden model's input to that layer for 20
test images (real images through the real exported network) and its
output stream is compared, beat by beat, with the golden model's output of
that layer; random valid/ready stalls on every port. All engines of one
network share one simulator build (a Harness); Icarus and Verilator each
run every network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qhw.bench.simcache import simulate
from qhw.errors import SimulationMismatch
from qhw.ir.golden import GoldenModel
from qhw.ir.graph import Add, Conv, Dense, Input
from qhw.net import Fold
from qhw.net.engines import build_engine
from digits_nets import CONFIGS, digits_network, test_images
from sim_hw_support import Harness, Rewire, require_simulator, sim_cache

pytestmark = pytest.mark.hdl_sim
MODULE = "net.test_engines"
IMAGES = 20


def layer_simd(channels: int) -> int:
    return min(channels, 16)


def layer_fold(layer) -> Fold:
    simd = layer_simd(layer.in_spec.channels)
    rows = min(simd, 4)
    return Fold(rows=rows, cols=min(layer.out_channels, 16), lanes=simd // rows)


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


def stimulus(net, engines, images):
    values = GoldenModel(net).run(images)
    units = []
    for name, eng in engines.items():
        layer = net[name]
        ins = [values[src].numpy() for src in layer.inputs]
        out = values[name].numpy()
        assert np.array_equal(eng.reference(*ins), out)  # the engine's model is the golden op
        units.append({"name": unit_name(layer), "layer": name, "in_ports": list(eng.in_ports),
                      "in_beats": eng.input_beats(*ins), "out_beats": eng.out_format.encode(out),
                      "out_format": eng.out_format.to_dict(), "values": int(out.size)})
    return units


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return sim_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_nets")
    return {name: digits_network(name, root) for name in CONFIGS}


def run_net(cache, tmp_path, net, simulator, *, engines=None, seed=1, name="engines"):
    require_simulator(simulator)
    images, _ = test_images(IMAGES)
    engines = engines or network_engines(net)
    units = stimulus(net, engines, images)
    path = tmp_path / "stimulus.json"
    path.write_text(json.dumps({"units": units}))
    harness = Harness({unit_name(net[n]): e for n, e in engines.items()})
    r = simulate(harness, name=name, test_module=MODULE, cache_dir=cache, simulator=simulator,
                 parameters={"stimulus": str(path), "valid_prob": 0.75, "ready_prob": 0.7, "seed": seed})
    return r, units


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("config", CONFIGS)
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

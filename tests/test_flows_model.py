"""The demo's model flow: digits → W4A4 ResNet-8 → integer network → check."""

from __future__ import annotations

import json
from pathlib import Path

from qhw.ir.serialize import FORMAT_VERSION
from qhw.flows.model import run_model_flow


def test_model_flow_exports_a_network_the_golden_model_agrees_with(tmp_path):
    r = run_model_flow(tmp_path, epochs=1, progress=lambda _: None)
    doc = json.loads(Path(r.network).read_text())
    assert doc["format_version"] == FORMAT_VERSION
    assert r.check["images"] == 359
    # One epoch trains poorly, but golden and fake-quant must still agree.
    assert r.check["same_top1"] >= 99.5
    assert abs(r.check["golden_top1"] - r.check["fake_quant_top1"]) <= 0.5
    assert r.train["layers"]["stem"]["w_bits"] == 8 and r.train["layers"]["fc"]["w_bits"] == 8

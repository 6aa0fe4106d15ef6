"""The smoke MAC in cocotb on both simulators; a broken design must fail."""

from __future__ import annotations

import pytest

from qhw.backends.sim import SIMULATORS, run_cocotb
from qhw.backends.verilog import write_verilog
from qhw.errors import SimulationMismatch
from qhw.hw.smoke_mac import BrokenSmokeMac, SmokeMac

pytestmark = pytest.mark.hdl_sim
PARAMS = {"act_bits": 5, "weight_bits": 3, "max_length": 9}


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_smoke_mac_matches_model(simulator, tmp_path):
    v = write_verilog(SmokeMac(**PARAMS), name="smoke_mac", path=tmp_path / "smoke_mac.v")
    r = run_cocotb(test_module="smoke.test_smoke_mac", toplevel="smoke_mac", sources=[v],
                   build_dir=tmp_path / "build", simulator=simulator, parameters={**PARAMS, "seed": 3})
    assert r.passed == ("random_dot_products_with_stalls",)
    assert r.records["vectors"] == 40 and r.records["terms"] >= 40


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_broken_smoke_mac_fails(simulator, tmp_path):
    v = write_verilog(BrokenSmokeMac(**PARAMS), name="smoke_mac", path=tmp_path / "smoke_mac.v")
    with pytest.raises(SimulationMismatch) as exc:
        run_cocotb(test_module="smoke.test_smoke_mac", toplevel="smoke_mac", sources=[v],
                   build_dir=tmp_path / "build", simulator=simulator, parameters={**PARAMS, "seed": 3})
    msg = str(exc.value)
    assert "random_dot_products_with_stalls" in msg and "mismatch" in msg and simulator in msg

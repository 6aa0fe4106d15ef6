"""Helpers for the tests/test_sim_hw_*.py cocotb tiers (not a test module).

* :func:`sim_cache` - one build directory per distinct Verilog (digest-keyed)
  for the whole pytest session, or persistent across sessions when
  ``QHW_SIM_CACHE`` names a directory.
* :class:`Harness` - several components side by side in one top level,
  ports renamed ``<unit>_<port>``: one simulator build (a Verilator build
  costs ~15-35 s) covers several designs.
* :class:`Rewire` - fault injection without touching the design under test:
  a component with the same signature as an inner block, passing every port
  through except where a test overrides one, to break the design on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from qhw.backends.toolchain import find_program


def sim_cache(tmp_path_factory) -> Path:
    env = os.environ.get("QHW_SIM_CACHE")
    return Path(env) if env else tmp_path_factory.getbasetemp() / "sim_cache"


SIMULATOR_PROGRAMS = {"icarus": ("iverilog", "vvp"), "verilator": ("verilator",)}


def have_simulator(simulator: str) -> bool:
    return all(find_program(p) for p in SIMULATOR_PROGRAMS[simulator])


def require_tool(*programs: str) -> None:
    """Skip the test when a program is missing, or fail it when ``CI`` is set.

    A CI run exists to prove the simulators and yosys work on a clean
    machine: a missing tool there is a broken setup, not a reason to go green.
    """
    missing = [p for p in programs if find_program(p) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (see `qhw doctor` for how to install it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {message}", pytrace=False)
    pytest.skip(message)


def require_simulator(simulator: str) -> None:
    require_tool(*SIMULATOR_PROGRAMS[simulator])


class Rewire(wiring.Component):
    """Wraps ``inner`` with the same ports; :meth:`corrupt` may change one path.

    Every member of ``inner``'s signature is connected straight through
    (flattened to signals), then :meth:`corrupt` is called with the module,
    ``self`` (outer ports) and ``inner`` and may add overriding ``comb``
    assignments: later assignments win in Amaranth.
    """

    def __init__(self, inner: wiring.Component):
        self.inner = inner
        super().__init__(inner.signature)

    def corrupt(self, m: Module, outer, inner) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        for path, member, outer_value in self.signature.flatten(self):
            inner_value = _lookup(self.inner, path)
            if member.flow == wiring.In:
                m.d.comb += inner_value.eq(outer_value)
            else:
                m.d.comb += outer_value.eq(inner_value)
        self.corrupt(m, self, self.inner)
        return m


def _lookup(obj, path):
    for part in path:
        obj = obj[part] if isinstance(part, int) else getattr(obj, part)
    return obj


class Harness(wiring.Component):
    """``units`` {name: component} side by side; port ``p`` of unit ``u`` is ``u_p``.

    Stream ports keep their ``__payload`` / ``__valid`` / ``__ready`` suffixes,
    so the qhw_tb drivers address them as ``f"{unit}_{port}"``.
    """

    def __init__(self, units: dict):
        self.units = dict(units)
        members = {}
        for unit, comp in self.units.items():
            for port, member in comp.signature.members.items():
                members[f"{unit}_{port}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for unit, comp in self.units.items():
            m.submodules[unit] = comp
            for port, member in comp.signature.members.items():
                outer, inner = getattr(self, f"{unit}_{port}"), getattr(comp, port)
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m

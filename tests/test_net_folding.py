"""``--fold auto`` (qhw.net.folding): balanced folds for a cycle target or a LUT budget."""

from __future__ import annotations

import numpy as np
import pytest

from qhw.errors import InputError
from qhw.ir.graph import Conv, Dense
from qhw.net.compile import compile_network
from qhw.net.folding import (accelerator_luts, auto_folds, bottleneck_bound, candidate_targets, candidates,
                             conv_cycles, folds_for_target)
from qhw.net.top import Accelerator
from net_layers import tiny_resnet


@pytest.fixture(scope="module")
def net():
    return tiny_resnet(np.random.default_rng(0), width=6, projection=True)[0]


def _engines_cycles(net, folds) -> int:
    acc = Accelerator(plan=compile_network(net, folds).plan)
    for obj in (acc, acc.head, *acc.engines.values()):
        obj._MustUse__silence = True
        for stage in getattr(obj, "stages", ()):
            stage._MustUse__silence = True
    return acc.cycles_per_frame()


@pytest.mark.parametrize("target", [270, 600, 2000])  # 270: the stem (1 channel, 30 pixels × 9 taps) at best
def test_every_layer_meets_the_target_with_its_cheapest_fold(net, target):
    folds = folds_for_target(net, target)
    for layer in net.layers[1:]:
        if isinstance(layer, (Conv, Dense)):
            assert conv_cycles(layer, folds[layer.name]) <= target
            cheaper = [c for c in candidates(layer) if c.luts < min(x.luts for x in candidates(layer)
                                                                     if x.fold == folds[layer.name])]
            assert all(c.cycles > target for c in cheaper)
    assert _engines_cycles(net, folds) <= target
    assert bottleneck_bound(net, folds) <= _engines_cycles(net, folds)


def test_lut_budget_gives_the_fastest_folds_the_engine_estimate_fits(net):
    slow = accelerator_luts(net, auto_folds(net, target_cycles=10**6))
    fast = accelerator_luts(net, auto_folds(net, target_cycles=270))
    budget = (slow + fast) // 2
    seen = []
    folds = auto_folds(net, lut_budget=budget, progress=seen.append)
    assert accelerator_luts(net, folds) <= budget
    assert seen and all("cycles/frame ->" in s for s in seen)
    # no faster target fits, not only the next one (the estimate is not monotone in the target)
    cycles = _engines_cycles(net, folds)
    faster = [t for t in candidate_targets(net) if t < cycles]
    assert faster and all(accelerator_luts(net, folds_for_target(net, t)) > budget for t in faster)


def test_lut_budget_scans_past_a_non_monotone_estimate(net, monkeypatch):
    """A budget that the fastest and the slowest target fit but a middle one does not: a bisection
    would settle on a slow target; the scan takes the fastest."""
    import qhw.net.folding as folding

    targets = candidate_targets(net)
    assert len(targets) >= 3
    fake = {repr(sorted(folds_for_target(net, t).items(), key=lambda kv: kv[0])): (
        10 if t == targets[0] else 1000 if t == targets[(len(targets) - 1) // 2] else 12) for t in targets}
    monkeypatch.setattr(folding, "accelerator_luts",
                        lambda n, folds, family="xilinx": fake[repr(sorted(folds.items(), key=lambda kv: kv[0]))])
    assert auto_folds(net, lut_budget=15) == folds_for_target(net, targets[0])


def test_a_budget_below_the_smallest_fold_says_by_how_much(net):
    smallest = accelerator_luts(net, auto_folds(net, target_cycles=10**6))
    with pytest.raises(InputError, match=rf"no fold fits 100 LUTs: the smallest needs about {smallest} "
                                         rf"\({smallest - 100} over the budget\)"):
        auto_folds(net, lut_budget=100)


def test_a_target_below_the_fastest_fold_names_the_layer(net):
    with pytest.raises(InputError, match=r"layer stem: no fold reaches 100 cycles per frame \(the fastest takes 270\)"):
        auto_folds(net, target_cycles=100)


def test_exactly_one_of_target_and_budget(net):
    with pytest.raises(InputError, match="exactly one of --target-cycles and --lut-budget"):
        auto_folds(net)
    with pytest.raises(InputError, match="exactly one"):
        auto_folds(net, target_cycles=10, lut_budget=10)

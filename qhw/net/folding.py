"""``--fold auto``: folds that balance cycles per frame across layers.

Every conv / dense engine runs at ``OH·OW·NF·SF`` cycles per frame when its
array is the bottleneck (:mod:`qhw.net.fold`), ``NF = ceil(C_out/cols)``,
``SF = kh·kw·ceil(C_in/simd)``, and costs about ``rows·cols·lanes`` PE
lanes times a LUT/lane that depends on the PE kind (XNOR-popcount lanes
are an order of magnitude cheaper than 8-bit MAC lanes, see
:data:`LUT_PER_LANE`). A dataflow pipeline runs at its slowest engine, so

* ``target_cycles``: each layer gets the cheapest fold that meets the
  target (layers are independent once the target is fixed);
* ``lut_budget``: the smallest target whose cheapest folds fit the budget
  by the engines' own estimate (:func:`accelerator_luts`, what the manifest
  states; a bisection over targets, the cost being monotone in the target).

Candidates use divisors of ``C_in`` for ``simd`` and of ``C_out`` for
``cols`` where possible, so no lane computes padding; the window
generator's writer bound ``H·W·ceil(C_in/simd)`` is respected too.
Elementwise engines (add, pools) stream at one beat per cycle and get the
simd of their producer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from qhw.errors import InputError
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Layer, MaxPool, Network

from .fold import Fold


def _lut_per_lane(layer) -> float:
    """Xilinx LUTs per PE lane, by PE kind and bit-widths (fitted to `qhw bench hw`, 8×8 arrays)."""
    pe = layer.pe.value
    w, a = layer.weight_bits, layer.in_spec.bits
    if pe == "xnor":
        return 4.0
    if pe == "and":
        return 2.0 + 1.5 * a
    if pe == "shift":
        return 4.0 + 1.2 * a * (1 << max(0, w - 2)) ** 0.5 * 2
    return 2.0 + 1.5 * w * a  # mac: W2A2 ~ 11, W4A4 ~ 28, W8A8 ~ 98


LUT_PER_LANE = _lut_per_lane


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class FoldChoice:
    fold: Fold
    cycles: int
    lanes: int
    luts: float


def conv_beats(layer, fold: Fold) -> tuple[int, int]:
    """(SF, output beats a frame) of a conv / dense engine with this fold: array cycles per output
    beat (``kh·kw·ceil(C_in / simd)``) and output pixels × neuron groups."""
    kh, kw = layer.kernel
    oh, ow = (layer.out.shape[1], layer.out.shape[2]) if layer.out.is_map else (1, 1)
    return kh * kw * -(-layer.in_spec.channels // fold.simd), oh * ow * -(-layer.out_channels // fold.cols)


def conv_cycles(layer, fold: Fold) -> int:
    """Cycles per frame of a conv / dense engine with this fold (the window generator's steady state)."""
    h, w = (layer.in_spec.shape[1], layer.in_spec.shape[2]) if layer.in_spec.is_map else (1, 1)
    sf, beats = conv_beats(layer, fold)
    return max(beats * sf, h * w * -(-layer.in_spec.channels // fold.simd))


def candidates(layer, *, max_rows: int = 8) -> list[FoldChoice]:
    c_in, c_out = layer.in_spec.channels, layer.out_channels
    out = []
    for simd in sorted(set(_divisors(c_in)) | {min(c_in, 1 << k) for k in range(0, 7)}):
        for rows in _divisors(simd):
            if rows > max_rows:
                continue
            lanes = simd // rows
            for cols in sorted(set(_divisors(c_out))):
                fold = Fold(rows=rows, cols=cols, lanes=lanes)
                n = rows * cols * lanes
                # fixed cost per engine (window, requantizer, packer) grows with cols and simd
                luts = n * _lut_per_lane(layer) + 40 + 12 * cols + 6 * simd
                out.append(FoldChoice(fold, conv_cycles(layer, fold), n, luts))
    return out


def cheapest_for(layer, target: int) -> FoldChoice | None:
    ok = [c for c in candidates(layer) if c.cycles <= target]
    return min(ok, key=lambda c: (c.luts, c.cycles)) if ok else None


def fastest(layer) -> FoldChoice:
    return min(candidates(layer), key=lambda c: (c.cycles, c.luts))


def folds_for_target(net: Network, target: int) -> dict[str, Fold | int]:
    """The cheapest fold of every conv / dense layer meeting ``target`` cycles per frame."""
    folds: dict[str, Fold | int] = {}
    for layer in net.layers[1:]:
        if isinstance(layer, (Conv, Dense)):
            choice = cheapest_for(layer, target)
            if choice is None:
                best = fastest(layer)
                raise InputError(f"layer {layer.name}: no fold reaches {target} cycles per frame "
                                 f"(the fastest takes {best.cycles})")
            folds[layer.name] = choice.fold
    for layer in net.layers[1:]:
        if isinstance(layer, (Add, GlobalPool, MaxPool)):
            src = net[layer.inputs[0]]
            folds[layer.name] = _producer_simd(net, src, folds)
    return folds


def _producer_simd(net: Network, src: Layer, folds: Mapping[str, Fold | int]) -> int:
    """Elementwise engines read at the width their producer already emits (no adapter)."""
    f = folds.get(src.name)
    if isinstance(f, Fold):
        consumers = [c for c in net.consumers(src.name) if isinstance(folds.get(c.name), Fold)]
        return folds[consumers[0].name].simd if consumers else f.cols
    if isinstance(f, int):
        return f
    return min(src.out.channels, 8)


def estimated_luts(net: Network, folds: Mapping[str, Fold | int]) -> float:
    total = 0.0
    for layer in net.layers[1:]:
        f = folds.get(layer.name)
        if isinstance(layer, (Conv, Dense)) and isinstance(f, Fold):
            total += f.rows * f.cols * f.lanes * _lut_per_lane(layer) + 40 + 12 * f.cols + 6 * f.simd
        elif isinstance(f, int):
            total += 20 * f
    return total


def bottleneck_bound(net: Network, folds: Mapping[str, Fold | int]) -> int:
    """``max_l ceil(MACs_l / lanes_l)``: no fold with these lanes can be faster."""
    bound = 0
    for layer in net.layers[1:]:
        f = folds.get(layer.name)
        if isinstance(layer, (Conv, Dense)) and isinstance(f, Fold):
            macs = layer.weights.size * ((layer.out.shape[1] * layer.out.shape[2]) if layer.out.is_map else 1)
            bound = max(bound, -(-macs // (f.rows * f.cols * f.lanes)))
    return bound


def accelerator_luts(net: Network, folds: Mapping[str, Fold | int], family: str = "xilinx") -> int:
    """The LUT estimate the manifest will state for these folds: every engine's own model plus the glue (forks, adapters, skip FIFOs, result head).

    Builds the engines (without elaborating them): about a second for the
    digits ResNet-8.
    """
    from .compile import compile_network
    from .top import Accelerator

    acc = Accelerator(plan=compile_network(net, folds).plan)
    for obj in (acc, acc.head, *acc.engines.values()):
        obj._MustUse__silence = True  # estimate only: never elaborated
        for stage in getattr(obj, "stages", ()):
            stage._MustUse__silence = True
    return int(acc.estimate_resources(family)["total"]["lut"])


def candidate_targets(net: Network) -> list[int]:
    """The cycle targets at which some layer's cheapest fold changes, fastest first.

    Every target from the slowest layer's fastest fold up: the targets
    :func:`auto_folds` and :mod:`qhw.net.fit` search (any other target gives
    the same folds as the next smaller one of these).
    """
    convs = [l for l in net.layers[1:] if isinstance(l, (Conv, Dense))]
    if not convs:
        raise InputError("the network has no conv or dense layer to fold")
    floor = max(fastest(l).cycles for l in convs)
    return sorted({c.cycles for l in convs for c in candidates(l) if c.cycles >= floor})


def auto_folds(net: Network, *, target_cycles: int | None = None, lut_budget: int | None = None,
               progress=lambda _: None) -> dict:
    """Folds for ``target_cycles``, or the fastest under ``lut_budget`` (exactly one of the two).

    The budget is checked against :func:`accelerator_luts`, the engines' own
    estimate (the figure the manifest gives), not the per-lane model that
    ranks candidates, at the targets where some layer's fold changes: the
    slowest first (if it does not fit, nothing does), then fastest first
    until one fits, as :class:`qhw.net.fit.FitSearch` does. Not a bisection:
    the estimate is not monotone in the target (resnet8-mlperf W4A4: 36,864
    cycles/frame take fewer LUTs than 55,296), so a bisection can step past
    the fastest fold that fits. Each distinct fold set is estimated once.
    """
    if (target_cycles is None) == (lut_budget is None):
        raise InputError("--fold auto needs exactly one of --target-cycles and --lut-budget")
    if target_cycles is not None:
        return folds_for_target(net, int(target_cycles))
    targets = candidate_targets(net)
    cost: dict[tuple, int] = {}

    def luts(target: int) -> int:
        folds = folds_for_target(net, target)
        key = tuple(sorted((n, f.to_dict() if isinstance(f, Fold) else f) for n, f in folds.items()).__repr__())
        if key not in cost:
            cost[key] = accelerator_luts(net, folds)
            progress(f"fold auto: {target} cycles/frame -> {cost[key]} LUTs")
        return cost[key]

    need = luts(targets[-1])
    if need > lut_budget:
        raise InputError(f"no fold fits {lut_budget} LUTs: the smallest needs about {need} "
                         f"({need - lut_budget} over the budget)")
    fastest_fit = next(t for t in targets if luts(t) <= lut_budget)  # the slowest fits: one does
    return folds_for_target(net, fastest_fit)


def with_fold_options(net: Network, folds: Mapping[str, Fold | int] | None, **options) -> dict | None:
    """``folds`` with ``options`` (:class:`Fold` fields ``requant``, ``weights``) on every conv / dense layer.

    Layers ``folds`` does not name get their default fold, changed; options at
    their default values change nothing (``folds`` itself is returned).
    """
    from dataclasses import replace

    from .compile import default_fold

    defaults = {"requant": Fold.requant, "weights": Fold.weights}
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown fold option(s) {sorted(unknown)}")
    changes = {k: v for k, v in options.items() if v != defaults[k]}
    if not changes:
        return folds
    out = dict(folds or {})
    for layer in net.layers[1:]:
        if isinstance(layer, (Conv, Dense)):
            out[layer.name] = replace(out.get(layer.name) or default_fold(layer), **changes)
    return out

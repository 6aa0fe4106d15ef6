"""AdaQAT: bit-widths learned during training (Gernigon et al., §III-B/C).

Each learned bit-width is a real number N; the network uses ``ceil(N)``.
Every ``update_every`` training steps, on the current batch, N moves by

    N <- N - eta * ( L_task(ceil N) - L_task(ceil N - 1) + lam * dL_hard / d ceil N )   (eqs. 3, 4)

where the task-loss difference is measured by one extra forward pass with
that bit-width lowered by one (BatchNorm running statistics untouched) and

    L_hard = sum_l MACs_l * w_bits_l * a_bits_l / sum_l MACs_l

is BitOPs normalized by the MAC count: with one (N_w, N_a) pair for the whole
network it is exactly the paper's ``ceil(N_w) ceil(N_a)``; per layer it is the
sum of the layers' BitOPs, so lam has the same meaning at both granularities.

Granularity ``network``: one N_w for all learned weight layers and one N_a
for all learned activations. ``layer``: one N_w per weight layer and one N_a
per activation tensor (a projection shortcut shares its block's conv1 input).
Learned are uniform (DoReFa / PACT) layers except the first and last (fixed,
8 bits by default); binary, pow2 and float layers keep their spec.

Oscillation freeze: a reversal of the direction in which ``ceil(N)`` moves is
one oscillation; after ``freeze_after`` (10) the bit-width is fixed to the
larger of the two oscillation points and training goes on as plain QAT. A
bit-width pushed to its lower limit is frozen there (it cannot oscillate).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

GRANULARITIES = ("network", "layer")


@dataclass(frozen=True)
class AdaQATConfig:
    """Hyper-parameters of AdaQAT (paper defaults; λ = 0.15 as in its Table I)."""

    granularity: str = "network"
    lam: float = 0.15
    eta_w: float = 1e-3
    eta_a: float = 5e-4
    init_w: float = 8.0
    init_a: float = 8.0
    min_w: int = 2
    max_w: int = 8
    min_a: int = 2
    max_a: int = 8
    freeze_after: int = 10
    update_every: int = 1
    learn_first_last: bool = False

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, not {self.granularity!r}")
        for name in ("lam", "eta_w", "eta_a"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {v!r}")
        if not 2 <= self.min_w <= self.max_w <= 8:
            raise ValueError(f"min_w/max_w must satisfy 2 <= min_w <= max_w <= 8, not {self.min_w}/{self.max_w}")
        if not 1 <= self.min_a <= self.max_a <= 8:
            raise ValueError(f"min_a/max_a must satisfy 1 <= min_a <= max_a <= 8, not {self.min_a}/{self.max_a}")
        if not self.min_w - 1 < self.init_w <= self.max_w:
            raise ValueError(f"init_w must be in ({self.min_w - 1}, {self.max_w}], not {self.init_w}")
        if not self.min_a - 1 < self.init_a <= self.max_a:
            raise ValueError(f"init_a must be in ({self.min_a - 1}, {self.max_a}], not {self.init_a}")
        if not isinstance(self.freeze_after, int) or self.freeze_after < 1:
            raise ValueError(f"freeze_after must be a positive integer, not {self.freeze_after!r}")
        if not isinstance(self.update_every, int) or self.update_every < 1:
            raise ValueError(f"update_every must be a positive integer, not {self.update_every!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BitParam:
    """One learned bit-width and its oscillation bookkeeping."""

    name: str  # "w" / "a" (network) or "w:<layer>" / "a:<layer>"
    side: str  # "w" or "a"
    layers: list[str]  # weight layers it sets (w) or layers reading the activation (a)
    value: float
    lo: int
    hi: int
    eta: float
    frozen: bool = False
    frozen_bits: int | None = None
    oscillations: int = 0
    last_dir: int = 0
    last_bits: int | None = None
    updates: int = 0

    @property
    def bits(self) -> int:
        if self.frozen:
            return self.frozen_bits
        return min(self.hi, max(self.lo, math.ceil(self.value - 1e-9)))

    def state(self) -> dict:
        return {k: v for k, v in asdict(self).items()}


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """Train-mode forward passes that leave BatchNorm running statistics alone."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    try:
        for m in bns:
            m.momentum = 0.0
        yield
    finally:
        for m, (mom, nbt) in zip(bns, saved):
            m.momentum = mom
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


class AdaQAT:
    """Learned bit-widths for a :class:`~qhw.quant.models.QResNet`.

    Call :meth:`step` once per training iteration after ``loss.backward()``
    and before ``optimizer.step()``, passing the batch and its task loss.
    """

    def __init__(self, model, config: AdaQATConfig, loss_fn: Callable | None = None):
        self.model = model
        self.config = config
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.iteration = 0
        self.events: list[dict] = []
        self.history: list[dict] = []
        self.params = self._make_params()
        macs = model.layer_macs()
        self._macs = macs
        self._total_macs = float(sum(macs.values()))
        self.apply()

    # -- set-up ----------------------------------------------------------------

    def _learnable(self):
        cfg, model = self.config, self.model
        fixed = set() if cfg.learn_first_last else {"stem", "fc"}
        w_layers, a_groups = [], {}
        shared = model.shared_inputs()
        for name in model.layer_names():
            lq = model.layer_quant(name)
            if name not in fixed and lq.w_kind == "uniform":
                w_layers.append(name)
            if name == "stem" or (name == "fc" and not cfg.learn_first_last) or lq.a_kind != "uniform":
                continue
            owner = shared.get(name, name)
            a_groups.setdefault(owner, []).append(name)
        return w_layers, a_groups

    def _make_params(self) -> list[BitParam]:
        cfg = self.config
        w_layers, a_groups = self._learnable()
        p = []
        if cfg.granularity == "network":
            if w_layers:
                p.append(BitParam("w", "w", w_layers, cfg.init_w, cfg.min_w, cfg.max_w, cfg.eta_w))
            a_layers = [n for group in a_groups.values() for n in group]
            if a_layers:
                p.append(BitParam("a", "a", a_layers, cfg.init_a, cfg.min_a, cfg.max_a, cfg.eta_a))
        else:
            for n in w_layers:
                p.append(BitParam(f"w:{n}", "w", [n], cfg.init_w, cfg.min_w, cfg.max_w, cfg.eta_w))
            for owner, group in a_groups.items():
                p.append(BitParam(f"a:{owner}", "a", group, cfg.init_a, cfg.min_a, cfg.max_a, cfg.eta_a))
        for q in p:
            q.last_bits = q.bits
        return p

    def _set_bits(self, param: BitParam, bits: int) -> None:
        if param.side == "w":
            for n in param.layers:
                self.model.layers()[n].weight_quant.bits = bits
        else:
            # each activation tensor once, even when several layers read it
            for act in {id(a): a for a in (self.model.input_act(n) for n in param.layers)}.values():
                act.bits = bits

    def apply(self) -> None:
        """Set the model's bit-widths to the current ``ceil(N)``."""
        for p in self.params:
            self._set_bits(p, p.bits)

    # -- the update rule -----------------------------------------------------------

    def hard_gradient(self, param: BitParam) -> float:
        """d L_hard / d ceil(N) for the current bit-widths (MAC-normalized BitOPs)."""
        q = self.model.quant_config()
        if param.side == "w":
            s = sum(self._macs[n] * q[n].a_bits for n in param.layers)
        else:
            s = sum(self._macs[n] * q[n].w_bits for n in param.layers)
        return s / self._total_macs

    def hard_loss(self) -> float:
        q = self.model.quant_config()
        return sum(self._macs[n] * q[n].w_bits * q[n].a_bits for n in self._macs) / self._total_macs

    @property
    def active(self) -> list[BitParam]:
        return [p for p in self.params if not p.frozen]

    @property
    def done(self) -> bool:
        return not self.active

    def step(self, x: torch.Tensor, y: torch.Tensor, task_loss: float, epoch: int | None = None) -> None:
        """One AdaQAT update on batch (x, y) whose loss at the current bits is ``task_loss``."""
        self.iteration += 1
        if self.done or self.iteration % self.config.update_every:
            return
        grads = {}
        with torch.no_grad(), frozen_bn_stats(self.model):
            for p in self.active:
                b = p.bits
                task = 0.0
                if b - 1 >= p.lo:
                    self._set_bits(p, b - 1)
                    task = float(task_loss) - float(self.loss_fn(self.model(x), y))
                    self._set_bits(p, b)
                grads[p.name] = task + self.config.lam * self.hard_gradient(p)
        # all finite differences are taken at the same point, then all N move
        for p in self.active:
            p.value = min(float(p.hi), max(p.lo - 1 + 1e-3, p.value - p.eta * grads[p.name]))
            p.updates += 1
            self._track(p, epoch)
        self.apply()

    def _track(self, p: BitParam, epoch: int | None) -> None:
        b = p.bits
        if b != p.last_bits:
            d = 1 if b > p.last_bits else -1
            if p.last_dir and d != p.last_dir:
                p.oscillations += 1
            p.last_dir = d
            prev, p.last_bits = p.last_bits, b
            if p.oscillations >= self.config.freeze_after:
                self._freeze(p, max(prev, b), epoch, f"{p.oscillations} oscillations between {prev} and {b} bits")
                return
        if p.value <= p.lo - 1 + 1e-3:
            self._freeze(p, p.lo, epoch, f"reached the lower limit of {p.lo} bits")

    def _freeze(self, p: BitParam, bits: int, epoch, reason: str) -> None:
        p.frozen, p.frozen_bits = True, bits
        self.events.append(
            {"event": "freeze", "param": p.name, "bits": bits, "iteration": self.iteration, "epoch": epoch, "reason": reason}
        )

    # -- logging / state -------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict:
        """Per-epoch trajectory entry (N, ceil N, oscillations, frozen)."""
        row = {
            "epoch": epoch,
            "iteration": self.iteration,
            "hard_loss": self.hard_loss(),
            "params": {
                p.name: {"N": round(p.value, 5), "bits": p.bits, "osc": p.oscillations, "frozen": p.frozen}
                for p in self.params
            },
        }
        self.history.append(row)
        return row

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "params": [p.state() for p in self.params],
            "events": list(self.events),
            "history": list(self.history),
        }

    def summary(self) -> str:
        return ", ".join(f"{p.name}={p.bits}{'*' if p.frozen else ''}" for p in self.params)


import pytest
import torch

from qhw.quant.adaqat import AdaQAT, AdaQATConfig
from qhw.quant.config import QuantConfig, uniform_config
from qhw.quant.models import ResNetSpec, build_model

SPEC = ResNetSpec(depth=8, widths=(2, 4, 4), in_channels=1, in_size=(4, 4), num_classes=3)




def _toy(model, w_knee=4, a_knee=3):
    """Task loss that only depends on bit-widths: steep below the knees."""

    def loss(*_):
        q = model.quant_config()
        body = [n for n in q if n not in ("stem", "fc")]
        return torch.tensor(
            sum(10.0 * (q[n].w_bits < w_knee) + 10.0 * (q[n].a_bits < a_knee) for n in body) / len(body)
        )

    return loss


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0])


def test_first_update_follows_eqs_3_and_4():
    model = build_model(SPEC, uniform_config(8, 8)).train()
    cfg = AdaQATConfig(granularity="network", lam=0.15, eta_w=1e-3, eta_a=5e-4, init_w=7.5, init_a=7.5)
    loss = _toy(model, w_knee=8, a_knee=1)  # lowering w costs 10, lowering a costs nothing
    ada = AdaQAT(model, cfg, loss_fn=loss)
    w, a = ada.params
    assert (w.name, a.name) == ("w", "a")
    macs = model.layer_macs()
    total = sum(macs.values())
    body_w = [n for n in macs if n not in ("stem", "fc")]
    hard_w = sum(macs[n] * 8 for n in body_w) / total  # d(sum MACs w a / sum MACs) / d w
    body_a = [n for n in macs if n not in ("stem", "fc")]
    hard_a = sum(macs[n] * 8 for n in body_a) / total
    assert ada.hard_gradient(w) == pytest.approx(hard_w)
    assert ada.hard_loss() == pytest.approx(64.0)  # all 8x8 -> sum MACs*64 / sum MACs
    x, y = _batch()
    ada.step(x, y, float(loss()))
    # L(8,8) - L(7,8) = 0 - 10 for w; 0 for a
    assert w.value == pytest.approx(7.5 - 1e-3 * (-10 + 0.15 * hard_w))
    assert a.value == pytest.approx(7.5 - 5e-4 * (0 + 0.15 * hard_a))
    assert w.bits == 8 and a.bits == 8  # ceil(N) stays 8
    assert all(model.layer_quant(n).w_bits == 8 for n in body_w)


def test_oscillation_freeze_at_the_larger_point():
    model = build_model(SPEC, uniform_config(8, 8)).train()
    x, y = _batch()
    bn = model.stem_bn
    model(x)  # give the BN statistics something to keep
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    cfg = AdaQATConfig(granularity="network", lam=1.0, eta_w=0.05, eta_a=0.05, freeze_after=10)
    loss = _toy(model, w_knee=4, a_knee=3)
    ada = AdaQAT(model, cfg, loss_fn=loss)
    w, a = ada.params
    trajectory = []
    for _ in range(400):
        ada.step(x, y, float(loss()), epoch=1)
        trajectory.append(w.bits)
        if ada.done:
            break
    assert ada.done
    # w fell from 8 to the knee, then bounced between 4 and 5: frozen at 5
    assert w.frozen and w.frozen_bits == 5 and w.oscillations == 10
    assert a.frozen and a.frozen_bits == 4  # bounced between 3 and 4
    assert 8 in trajectory and trajectory.count(4) >= 5
    events = {e["param"]: e for e in ada.events}
    assert events["w"]["bits"] == 5 and "10 oscillations between" in events["w"]["reason"]
    assert all(model.layer_quant(n).w_bits == 5 for n in model.layer_names() if n not in ("stem", "fc"))
    assert model.layer_quant("fc").w_bits == 8 and model.layer_quant("stem").w_bits == 8
    # after the freeze nothing moves any more
    n_before = w.value
    ada.step(x, y, float(loss()))
    assert w.value == n_before
    # the extra forward passes left BatchNorm statistics alone
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(bn.num_batches_tracked, before[2])
    snap = ada.snapshot(epoch=1)
    assert snap["params"]["w"] == {"N": round(w.value, 5), "bits": 5, "osc": 10, "frozen": True}


def test_lower_limit_freezes():
    model = build_model(SPEC, uniform_config(3, 3)).train()
    cfg = AdaQATConfig(granularity="network", lam=1.0, eta_w=0.2, eta_a=0.2, init_w=2.5, init_a=2.5)
    ada = AdaQAT(model, cfg, loss_fn=_toy(model, w_knee=0, a_knee=0))
    x, y = _batch()
    for _ in range(20):
        ada.step(x, y, 0.0)
    assert ada.done
    assert [(p.frozen_bits, "lower limit" in e["reason"]) for p, e in zip(ada.params, ada.events)] == [(2, True), (2, True)]


def test_layer_granularity_params_and_hardware_gradient():
    quant = QuantConfig.from_dict({"default": {"w_bits": 8, "a_bits": 8}, "layers": {"s1.b1.conv2": {"w_kind": "binary", "a_kind": "sign"}}})
    model = build_model(SPEC, quant).train()
    ada = AdaQAT(model, AdaQATConfig(granularity="layer"), loss_fn=_toy(model))
    names = [p.name for p in ada.params]
    # binary conv2 of s1.b1 and the fixed first/last layers are not learned
    assert names == [
        "w:s1.b1.conv1", "w:s2.b1.conv1", "w:s2.b1.conv2", "w:s2.b1.shortcut", "w:s3.b1.conv1", "w:s3.b1.conv2",
        "w:s3.b1.shortcut", "a:s1.b1.conv1", "a:s2.b1.conv1", "a:s2.b1.conv2", "a:s3.b1.conv1", "a:s3.b1.conv2",
    ]
    group = {p.name: p for p in ada.params}["a:s2.b1.conv1"]
    assert group.layers == ["s2.b1.conv1", "s2.b1.shortcut"]  # one tensor, one bit-width
    macs = model.layer_macs()
    total = sum(macs.values())
    assert ada.hard_gradient(group) == pytest.approx((macs["s2.b1.conv1"] + macs["s2.b1.shortcut"]) * 8 / total)
    # lowering the group's bits lowers both consumers' input bits
    ada._set_bits(group, 5)
    assert model.layer_quant("s2.b1.shortcut").a_bits == 5 == model.layer_quant("s2.b1.conv1").a_bits


def test_per_layer_sum_equals_network_hard_loss_when_uniform():
    model = build_model(SPEC, uniform_config(8, 8))
    net = AdaQAT(model, AdaQATConfig(granularity="network", init_w=4.0, init_a=3.0))
    assert net.hard_loss() == pytest.approx(
        sum(m * model.layer_quant(n).w_bits * model.layer_quant(n).a_bits for n, m in model.layer_macs().items())
        / sum(model.layer_macs().values())
    )
    body = [n for n in model.layer_names() if n not in ("stem", "fc")]
    assert all(model.layer_quant(n).w_bits == 4 and model.layer_quant(n).a_bits == 3 for n in body)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"granularity": "channel"}, "granularity must be one of network, layer"),
        ({"lam": -1.0}, "lam must be a finite number >= 0"),
        ({"init_w": 9.0}, "init_w must be in"),
        ({"min_w": 1}, "min_w/max_w"),
        ({"freeze_after": 0}, "freeze_after must be a positive integer"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaQATConfig(**kwargs)

"""Registered optimizers and parameter groups, each against an independent computation
written here: torch's SGD per group, Muon as airbench94_muon publishes it, kinds, until."""

import pytest
import torch
from torch import nn

from netgraph import RecipeError, recipe_from_dict
from netgraph.train.config import train_config
from netgraph.train.engine import TrainConfig, build_optimizers
from netgraph.train.optimizers import OPTIMIZERS, Muon, register_optimizer
from netgraph.train.param_groups import resolve


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)
    )


# --- Muon against the published algorithm -----------------------------------------------


def published_ns5(g, steps=3):
    """airbench94_muon's zeropower_via_newtonschulz5, from its description (anchors.md):
    bfloat16, scaled to norm 1 (+1e-7), made wide, X <- aX + (bA + cA^2)X with A = XX^T."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16)
    x = x / (x.norm() + 1e-7)
    if g.shape[0] > g.shape[1]:
        x = x.t()
    for _ in range(steps):
        A = x @ x.t()
        x = a * x + (b * A + (c * A) @ A) @ x  # airbench: B = b * A + c * A @ A
    return x.t() if g.shape[0] > g.shape[1] else x


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (4, 16, 3, 3)])  # wide and tall as matrices
def test_muon_steps_as_published(shape):
    torch.manual_seed(1)
    w = nn.Parameter(torch.randn(shape))
    opt = Muon([{"params": [w], "lr": 0.24, "momentum": 0.6}])
    expected, buffer = w.detach().clone(), torch.zeros(shape)
    for lr in (0.24, 0.12, 0.06):
        grad = torch.randn(shape)
        w.grad = grad.clone()
        opt.param_groups[0]["lr"] = lr
        opt.step()
        buffer = 0.6 * buffer + grad  # buf = m buf + g
        g = grad + 0.6 * buffer  # Nesterov: g + m buf
        expected = expected * (shape[0] ** 0.5 / expected.norm())  # w <- w sqrt(out) / ||w||
        update = published_ns5(g.reshape(shape[0], -1)).float().reshape(shape)
        expected = expected - lr * update
        torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-6)


def test_muon_orthogonalises_roughly():
    """3 quintic iterations leave the singular values of a random filter in about 0.5 to 1.5."""
    torch.manual_seed(2)
    from netgraph.train.optimizers import newton_schulz

    s = torch.linalg.svdvals(newton_schulz(torch.randn(64, 576), 3).float())
    assert 0.3 < s.min() and s.max() < 1.6


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="shape \\(4,\\) is not one"):
        Muon([{"params": [nn.Parameter(torch.zeros(4))], "lr": 0.1, "momentum": 0.6}])


# --- groups: kinds, per-group optimizers and settings -------------------------------------


def test_kinds_select_filters_batch_norm_and_the_head():
    m = small_model()
    groups = resolve(
        m,
        {},
        [
            {"kind": "filter", "lr_scale": 2.0},
            {"kind": ["batch_norm", "bias"], "lr_scale": 64.0},
            {"kind": "head", "wd_scale": 0.5},
        ],
    )
    names = {tuple(g.names): (g.settings["lr_scale"], g.settings["wd_scale"]) for g in groups}
    assert names == {
        ("0.weight",): (2.0, 1.0),
        ("1.weight",): (1.0, 1.0),
        ("1.bias",): (64.0, 1.0),
        ("3.weight", "3.bias"): (1.0, 0.5),
    }


def groups_config(**train):
    return TrainConfig(batch_size=4, loss="mean", momentum=0.9, weight_decay=0.01, **train)


def test_each_group_gets_its_optimizer_rate_momentum_and_decay():
    """Muon on the filter, torch's SGD (Nesterov) on the head with its own rate, momentum and
    decay, the bag of tricks' form on the rest: each parameter checked against a hand update."""
    m = small_model()
    config = groups_config(
        param_groups=[
            {
                "kind": "filter",
                "optimizer": {"name": "muon", "params": {"nesterov": True, "ns_steps": 3, "normalize": True}},
                "lr": {"knots": [0], "values": [0.24], "unit": "steps"},
                "momentum": 0.6,
            },
            {
                "kind": "head",
                "optimizer": {
                    "name": "sgd",
                    "params": {"nesterov": True, "dampening": 0.0, "foreach": None, "fused": False},
                },
                "lr_scale": 2.0,
                "momentum": 0.85,
                "weight_decay": 0.004,
            },
        ]
    )
    optimizers, runs = build_optimizers(m, config, {}, steps_per_epoch=10, total=10)
    assert [type(o).__name__ for o in optimizers] == ["Muon", "BagOfTricksSGD", "SGD"]
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    for name, p in m.named_parameters():
        p.grad = grads[name].clone()
    for run in runs:
        run.set_lr(1, default=0.5)
    for o in optimizers:
        o.step()
    after = dict(m.named_parameters())
    # the head: torch SGD, first step: v = g + wd w; w -= lr (g + wd w + m v)
    for name in ("3.weight", "3.bias"):
        d = grads[name] + 0.004 * before[name]
        torch.testing.assert_close(after[name].detach(), before[name] - 1.0 * (d + 0.85 * d))
    # batch norm: the bag of tricks' form at train.lr 0.5, momentum 0.9, decay 0.01
    for name in ("1.weight", "1.bias"):
        g = (grads[name] + 0.01 * before[name]) * 0.5
        torch.testing.assert_close(after[name].detach(), before[name] - (g + 0.9 * g))
    # the filter: Muon at its own rate 0.24 (momentum 0.6): w renormalised, decayed (decoupled,
    # train.weight_decay 0.01), minus lr NS(g + 0.6 g)
    w = before["0.weight"] * (4**0.5 / before["0.weight"].norm()) * (1 - 0.24 * 0.01)
    g = grads["0.weight"]
    update = published_ns5((g + 0.6 * g).reshape(4, -1)).float().reshape(4, 3, 3, 3)
    torch.testing.assert_close(after["0.weight"].detach(), w - 0.24 * update, rtol=0, atol=1e-6)


def test_a_summed_loss_scales_linear_optimizers_only():
    """loss: sum divides SGD's rate by the batch and multiplies its decay; Muon's update does not
    depend on the gradient's scale, so its rate stays as written."""
    m = small_model()
    config = TrainConfig(
        batch_size=8,
        loss="sum",
        weight_decay=0.01,
        param_groups=[{"kind": "filter", "optimizer": {"name": "muon", "params": {}}}],
    )
    _, runs = build_optimizers(m, config, {}, steps_per_epoch=10, total=10)
    for run in runs:
        run.set_lr(1, default=0.4)
    muon, rest = runs
    assert (
        muon.optimizer.param_groups[0]["lr"] == 0.4 and muon.optimizer.param_groups[0]["weight_decay"] == 0.01
    )
    assert (
        rest.optimizer.param_groups[0]["lr"] == 0.4 / 8
        and rest.optimizer.param_groups[0]["weight_decay"] == 0.01 * 8
    )


def test_until_freezes_a_group_after_its_steps_or_epochs():
    m = small_model()
    config = groups_config(
        param_groups=[
            {"params": "1.bias", "until": {"steps": 2}},
            {"params": "3.bias", "until": {"epochs": 1.5}},
        ]
    )
    _, runs = build_optimizers(m, config, {}, steps_per_epoch=4, total=20)
    until = {run.group.names[0]: run.until for run in runs}
    assert until == {"0.weight": None, "1.bias": 2, "3.bias": 6}  # 1.5 epochs of 4 steps
    bias = dict(m.named_parameters())["1.bias"]
    for step in (2, 3):
        bias.grad = torch.ones_like(bias)
        for run in runs:
            run.freeze_after_until(step)
        assert (bias.grad is None) == (step == 3)


def test_an_item_that_selects_nothing_is_warned_about():
    with pytest.warns(UserWarning, match=r"train.param_groups item 1 .* matches no trainable parameter"):
        build_optimizers(
            small_model(), groups_config(param_groups=[{"params": "conv.*", "lr_scale": 2.0}]), {}, 10, 10
        )


# --- in a recipe ---------------------------------------------------------------------------

NET = {
    "network": {
        "conv": {"op": "conv2d", "out": 4},
        "pool": {"op": "global_avg_pool"},
        "flat": {"op": "flatten"},
        "fc": {"op": "linear", "out": 10},
    }
}


def recipe(train):
    return recipe_from_dict({**NET, "train": train}, file="r.yaml")


def test_recipe_groups_optimizers_and_spans():
    config = train_config(
        recipe(
            {
                "steps": 476,
                "optimizer": {"sgd": {"nesterov": True}},
                "param_groups": [
                    {"kind": "filter", "optimizer": "muon", "lr": 0.24, "momentum": 0.6, "weight_decay": 0},
                    {
                        "params": "conv.bias",
                        "until": {"epochs": 3},
                        "lr": {
                            "shape": "warmup_linear",
                            "unit": "fraction",
                            "warmup": 0.23,
                            "start": 0.2,
                            "peak": 1,
                            "floor": 0.07,
                        },
                    },
                ],
            }
        )
    )
    assert (config.steps, config.optimizer, config.optimizer_params["nesterov"]) == (476, "sgd", True)
    first, second = config.param_groups
    assert first["optimizer"] == {
        "name": "muon",
        "params": {"nesterov": True, "ns_steps": 3, "normalize": True},
    }
    assert first["lr"] == {"knots": [0], "values": [0.24], "unit": "epochs"}
    assert second["lr"] == {"knots": [0, 0.23, 1], "values": [0.2, 1.0, 0.07], "unit": "fraction"}
    assert second["until"] == {"epochs": 3}


@pytest.mark.parametrize(
    "train, message",
    [
        (
            {"optimizer": "mu0n"},
            r"r.yaml: unknown optimizer 'mu0n' in train.optimizer \(did you mean 'muon'\?\)",
        ),
        ({"optimizer": {"sgd": {"nesterof": True}}}, r"unknown parameter 'nesterof' for optimizer 'sgd'"),
        ({"param_groups": [{"kind": "filtr"}]}, r"unknown parameter kind 'filtr' .*did you mean 'filter'"),
        ({"param_groups": [{"lr_scale": 2}]}, r"selects parameters by params .* or kind, and has neither"),
        ({"param_groups": [{"kind": "bias", "until": 3}]}, r"until is \{epochs: N\}"),
        ({"param_groups": [{"kind": "bias", "until": {"steps": 2.5}}]}, r"until is .*steps whole"),
        (
            {"lr": {"knots": [0, 1], "values": [0, 1], "unit": "hours"}},
            r"train.lr.unit must be one of epochs, steps, fraction",
        ),
        (
            {"lr": {"shape": "warmup_lineer", "warmup": 1, "peak": 1}},
            r"unknown schedule shape 'warmup_lineer'.*did you mean",
        ),
        ({"average": {"lookahed": {}}}, r"unknown averaging 'lookahed' .*did you mean 'lookahead'"),
        ({"ema": {"momentum": 0.9}, "average": {"lookahead": {}}}, r"train.ema and train.average both"),
    ],
)
def test_mistakes_in_the_new_keys_name_the_line(train, message):
    with pytest.raises(RecipeError, match=message):
        train_config(recipe(train))


def test_a_mistake_in_a_group_names_its_line(tmp_path):
    from netgraph import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "network:\n  fc: {op: linear, out: 2}\ntrain:\n  param_groups:\n"
        "    - {kind: filter, optimizer: muon}\n    - {kind: bias, optimizer: sdg}\n"
    )
    with pytest.raises(RecipeError, match=r"r.yaml:6: unknown optimizer 'sdg' .*did you mean 'sgd'"):
        train_config(load_recipe(path))


def test_register_an_optimizer_and_list_it():
    @register_optimizer("plain_sgd", params={"scale": 1.0})
    def build(groups, scale=1.0):
        """Plain SGD, for the test."""
        return torch.optim.SGD(groups, lr=0.0)

    try:
        config = train_config(recipe({"optimizer": {"plain_sgd": {"scale": 2}}}))
        assert (config.optimizer, config.optimizer_params) == ("plain_sgd", {"scale": 2.0})
        from netgraph.core.registry import listing

        line = next(line for line in listing("optimizers").splitlines() if "plain_sgd" in line)
        assert "Plain SGD, for the test." in line and "[scale: 1.0]" in line
    finally:
        del OPTIMIZERS["plain_sgd"]

"""Schedules in epochs, steps and fractions; runs given in fractional epochs or in steps; a
group's own schedule and span, in the real loop."""

import pytest
import torch
from torch import nn

from netgraph.data.synthetic import synthetic
from netgraph.train.engine import TrainConfig, build_optimizers, to_device, total_steps, train
from netgraph.train.schedule import PiecewiseLinear, StepSchedule


def test_fractional_epochs_and_steps_give_the_anchors_step_counts():
    assert total_steps(TrainConfig(epochs=9.9), 48) == 476  # airbench94: ceil(9.9 x 48)
    assert total_steps(TrainConfig(epochs=8), 25) == 200  # airbench94_muon
    assert total_steps(TrainConfig(epochs=0.1), 30) == 3  # 0.1 x 30 = 3.0000000000000004 in floats
    assert total_steps(TrainConfig(epochs=24, steps=476), 48) == 476


@pytest.mark.parametrize(
    "unit, position", [("epochs", lambda k: k / 4), ("steps", lambda k: k), ("fraction", lambda k: k / 10)]
)
def test_step_k_reads_the_schedule_at_k_in_its_unit(unit, position):
    curve = PiecewiseLinear([0, 2, 5], [0.0, 1.0, 0.25])
    schedule = StepSchedule(curve, unit, steps_per_epoch=4, total_steps=10)
    assert [schedule.at(k) for k in range(1, 11)] == [curve(position(k)) for k in range(1, 11)]


def test_knots_may_name_the_runs_steps():
    s = StepSchedule.build(
        [0, "steps/4", "steps"], [0.2, 1.0, 0.07], "steps", steps_per_epoch=48, total_steps=476
    )
    assert s.curve.knots == [0, 119, 476] and s.at(119) == 1.0


def test_a_groups_schedule_and_multiplier():
    m = nn.Sequential(nn.Linear(2, 2))
    config = TrainConfig(
        batch_size=4,
        loss="mean",
        param_groups=[
            {
                "params": "0.bias",
                "lr": {"knots": [0, 4], "values": [1.0, 0.0], "unit": "steps"},
                "lr_scale": 0.5,
            }
        ],
    )
    _, (weight, bias) = build_optimizers(m, config, {}, steps_per_epoch=4, total=8)
    rates = []
    for k in range(1, 6):
        weight.set_lr(k, default=0.3)
        bias.set_lr(k, default=0.3)
        rates.append(
            (weight.optimizer.param_groups[weight.index]["lr"], bias.optimizer.param_groups[bias.index]["lr"])
        )
    assert rates == [(0.3, (1 - k / 4) * 0.5 if k < 4 else 0.0) for k in range(1, 6)]


def small_run(**train_options):
    torch.manual_seed(0)
    data = to_device(
        synthetic(256, 64, shape=(3, 8, 8), classes=4, seed=0),
        "cpu",
        (0.5,) * 3,
        (0.25,) * 3,
        pad=0,
        dtype=torch.float32,
    )
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)
    )
    steps, biases = [], []

    def on_step(i, n):
        steps.append((i, n))
        biases.append(model[4].bias.detach().clone())

    config = TrainConfig(batch_size=64, lr_knots=[0, 1, "epochs"], lr_values=[0.1, 0.4, 0.0], **train_options)
    return train(model, data, config, on_step=on_step), steps, biases


def test_a_run_of_one_and_a_half_epochs_cuts_the_last():
    result, steps, _ = small_run(epochs=1.5)
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 2), (2, 2)]
    assert result.epochs == 2 and [e.epoch for e in result.log] == [1, 2]
    assert result.log[-1].lr == 0.0  # the schedule's end is the run's end, in epochs: 1.5


def test_a_run_in_steps_and_a_group_trained_only_at_first():
    result, steps, biases = small_run(steps=5, param_groups=[{"params": "4.bias", "until": {"steps": 3}}])
    assert [n for _, n in steps] == [4, 4, 4, 4, 1] and result.epochs == 2
    moved = [not torch.equal(a, b) for a, b in zip(biases, biases[1:])]
    assert moved == [True, True, False, False]  # steps 2, 3 move the bias; 4 and 5 do not


def test_a_group_past_its_until_costs_no_backward_and_is_trainable_again_after():
    """airbench94_muon's frozen whitening bias: past ``until`` autograd is not asked for what
    only that group needs (the first layer's output needs no gradient), and the model leaves
    the loop with every parameter trainable, as it came."""
    torch.manual_seed(0)
    images = synthetic(128, 64, shape=(3, 8, 8), classes=4, seed=0)
    data = to_device(images, "cpu", (0.5,) * 3, (0.25,) * 3, pad=0, dtype=torch.float32)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)
    )
    needs_grad = []
    model[0].register_forward_hook(
        lambda m, i, out: needs_grad.append(out.requires_grad) if m.training else None
    )
    groups = [{"params": "0.*", "until": {"steps": 2}}, {"params": "4.*"}]
    config = TrainConfig(batch_size=32, epochs=1, lr_knots=[0, 1], lr_values=[0.1, 0.0], param_groups=groups)
    train(model, data, config)
    assert needs_grad == [True, True, False, False]
    assert all(p.requires_grad for p in model.parameters())


def test_knots_may_round_and_name_the_steps_of_an_epoch():
    """airbench94 warms up for int(0.23 x 476) = 109 steps; airbench94_muon decays its whitening
    bias over ceil(3 x 25) = 75 steps: knots that say so follow the run's length."""
    s = StepSchedule.build([1, "floor(0.23 * steps) + 1", "steps + 1"], [0.3, 1.5, 0.105], "steps", 48, 476)
    assert s.curve.knots == [1, 110, 477]
    s = StepSchedule.build([1, "ceil(3 * epoch_steps) + 1"], [1.0, 0.0], "steps", 25, 200)
    assert s.curve.knots == [1, 76]
    from netgraph.train.schedule import knot_value

    with pytest.raises(Exception, match="may use only numbers, epochs, steps, epoch_steps"):
        knot_value("round(steps)", 1, 10, 5)


def test_fractional_epochs_shorter_than_the_knots_get_a_set_that_fits(write):
    """train.epochs 1.5 with knots that need 2: the error's ready --set (it was a TypeError:
    the search for fitting epochs took range(1.5 + 1, ...))."""
    from netgraph.core.errors import RecipeError
    from netgraph.recipe.load import load_recipe
    from netgraph.train.config import train_config

    path = write(
        "short.yaml",
        """\
        train: {epochs: 1.5, lr: {knots: [0, 2, epochs], values: [0, 0.4, 0]}}
        network: {fc: {op: linear, out: 2}}
        """,
    )
    with pytest.raises(RecipeError, match=r"needs epochs >= 2.*--set 'train.lr.knots=\[0, 1.5, 1.5\]'"):
        train_config(load_recipe(path))

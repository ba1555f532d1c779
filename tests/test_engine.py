"""The training engine: schedule, optimizer, loss, moving average, TTA, reproducibility."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netgraph import RecipeError, recipe_from_dict
from netgraph.data.synthetic import synthetic
from netgraph.train import augment
from netgraph.train.averaging import MovingAverage
from netgraph.train.engine import TrainConfig, evaluate, label_smoothing_loss, predict, to_device, train
from netgraph.train.optimizers import BagOfTricksSGD
from netgraph.train.param_groups import resolve
from netgraph.train.schedule import PiecewiseLinear, knot_value


def test_knots_in_epochs_that_decrease_say_how_many_epochs_they_need():
    with pytest.raises(
        RecipeError,
        match=r"schedule knots \[0, epochs/5, epochs - 2\] decrease at "
        r"epochs = 1: \[0.0, 0.2, -1.0\] \(this schedule needs "
        r"epochs >= 3",
    ):
        PiecewiseLinear.in_epochs([0, "epochs/5", "epochs - 2"], [0, 1.0, 0.1], epochs=1)
    with pytest.raises(RecipeError, match=r"knots \[2, epochs\] decrease .* needs epochs >= 2"):
        PiecewiseLinear.in_epochs([2, "epochs"], [0, 1.0], epochs=1)
    PiecewiseLinear.in_epochs([0, "epochs/5", "epochs - 2"], [0, 1.0, 0.1], epochs=3)
    # knots that fit only below some epochs, or have no value at other epochs, get no count
    with pytest.raises(RecipeError, match=r"decrease at epochs = 4: .*\(write knots that do not"):
        PiecewiseLinear.in_epochs([0, "3 - epochs"], [0, 1.0], epochs=4)
    with pytest.raises(RecipeError, match=r"decrease at epochs = 1: .* needs epochs >= 3"):
        PiecewiseLinear.in_epochs([0, "epochs - 2", "epochs * epochs / (epochs - 2)"], [0, 1.0, 0], epochs=1)


def test_schedule_at_its_knots_and_between():
    s = PiecewiseLinear.in_epochs([0, "epochs/5", "epochs - 2"], [0, 1.0, 0.1], epochs=10)
    assert s.knots == [0, 2, 8]
    assert [s(t) for t in (0, 2, 8)] == [0, 1.0, 0.1]
    assert s(1) == pytest.approx(0.5) and s(5) == pytest.approx(0.55)
    assert s(9.5) == 0.1 and s(-1) == 0  # constant outside the knots
    assert PiecewiseLinear([0, 5, 24], [0, 0.4, 0])(2.5) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "knot, message",
    [
        ("__import__('os')", "may use only numbers, epochs"),
        ("epochs ** 2", "may use only numbers, epochs"),
        ("epoch/5", "may use only numbers, epochs"),
        ("epochs /", "is not arithmetic on epochs"),
        ([1], "must be a number or an expression"),
    ],
)
def test_knot_expressions_are_parsed_not_run(knot, message):
    with pytest.raises(RecipeError, match=message):
        knot_value(knot, 10)
    assert knot_value("(epochs - 2) * 0.5", 10) == 4


def test_optimizer_step_against_a_hand_computation():
    torch.manual_seed(0)
    w, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))
    # the engine sets each group's lr (x lr_scale) and weight decay (x wd_scale)
    opt = BagOfTricksSGD(
        [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.1 / 64}], momentum=0.9
    )
    w0, b0 = w.detach().clone(), b.detach().clone()
    v_w, v_b = torch.zeros(3), torch.zeros(2)
    for _step, lr in enumerate([0.5, 0.25]):
        gw, gb = torch.randn(3), torch.randn(2)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr, lr * 64
        opt.step()
        # The seed: g = grad + wd * w; g *= lr; v = mom * v + g; w -= g + mom * v
        g = (gw + 0.1 * w0) * lr
        v_w = 0.9 * v_w + g
        w0 = w0 - (g + 0.9 * v_w)
        g = (gb + 0.1 / 64 * b0) * lr * 64
        v_b = 0.9 * v_b + g
        b0 = b0 - (g + 0.9 * v_b)
        torch.testing.assert_close(w.detach(), w0)
        torch.testing.assert_close(b.detach(), b0)


def test_parameter_groups_follow_the_recorded_multipliers():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    m[1].weight.requires_grad_(False)
    scales = lambda groups: [
        (g.settings["lr_scale"], g.settings["wd_scale"], len(g.params))  # noqa: E731
        for g in groups
    ]
    assert scales(resolve(m, {"1.bias": {"lr_scale": 64.0, "wd_scale": 1 / 64}}, [])) == [
        (1.0, 1.0, 2),
        (64.0, 1 / 64, 1),
    ]
    # Set in the recipe (train.param_groups): globs on names, later items winning.
    groups = resolve(
        m,
        {"1.bias": {"lr_scale": 64.0, "wd_scale": 1 / 64}},
        [{"params": "0.*", "lr_scale": 2.0}, {"params": "*.bias", "wd_scale": 0.0}],
    )
    assert sorted(scales(groups)) == [(2.0, 0.0, 1), (2.0, 1.0, 1), (64.0, 0.0, 1)]
    unused = []
    resolve(m, {}, [{"params": "conv.*", "lr_scale": 2.0}], on_unused=unused.append)
    assert unused == [0]


def test_label_smoothing_against_its_formula():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 10), torch.randint(0, 10, (6,))
    logp = F.log_softmax(logits, 1)
    ce = -logp[torch.arange(6), labels]
    expected = (0.8 * ce + 0.2 * (-logp.mean(1))).sum()
    torch.testing.assert_close(label_smoothing_loss(logits, labels, 0.2), expected)
    torch.testing.assert_close(label_smoothing_loss(logits, labels, 0.2, "mean"), expected / 6)


def test_moving_average_arithmetic():
    model = nn.BatchNorm1d(2)
    avg = MovingAverage(model, momentum=0.9, every=2)
    rho = 0.9**2
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(2.0)
    avg.update()
    torch.testing.assert_close(avg.model.weight, torch.full((2,), rho * 1 + (1 - rho) * 3))
    torch.testing.assert_close(avg.model.running_mean, torch.full((2,), (1 - rho) * 2))  # BN stats too
    avg.update()
    first = rho * 1 + (1 - rho) * 3
    torch.testing.assert_close(avg.model.weight, torch.full((2,), rho * first + (1 - rho) * 3))


def test_tta_averages_the_logits_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(predict(model, x, ["flip"]), (model(x) + model(x.flip(3))) / 2)
    torch.testing.assert_close(predict(model, x, []), model(x))
    # A mirror-symmetric input gets identical views.
    sym = torch.cat([x[..., :4], x[..., :4].flip(3)], 3)
    torch.testing.assert_close(predict(model, sym, ["flip"]), model(sym))


def small_model():
    from netgraph import build_graph, compile_graph

    return compile_graph(
        build_graph(
            recipe_from_dict(
                {
                    "input": {"shape": [3, 16, 16]},
                    "network": {
                        "conv": {"op": "conv2d", "out": 8, "bias": False},
                        "bn": {"op": "batch_norm"},
                        "act": {"op": "relu"},
                        "pool": {"op": "global_avg_pool"},
                        "flat": {"op": "flatten"},
                        "fc": {"op": "linear", "out": 4},
                    },
                }
            )
        )
    )


def small_model_and_data(seed):
    torch.manual_seed(seed)
    data = synthetic(512, 256, shape=(3, 16, 16), classes=4, seed=0)
    return small_model(), to_device(data, "cpu", (128,) * 3, (64,) * 3, pad=2, dtype=torch.float32)


def run_small(seed, epochs=3, **config):
    model, device_data = small_model_and_data(seed)
    cfg = TrainConfig(
        epochs=epochs, batch_size=64, lr_knots=[0, 1, "epochs"], lr_values=[0, 0.4, 0], seed=seed, **config
    )
    return train(model, device_data, cfg, [augment.Crop(16), augment.Flip()], max_groups=50)


def test_training_learns_and_is_reproducible():
    a, b, c = run_small(0), run_small(0), run_small(1)
    assert a.test_acc > 0.6  # 4 classes: chance is 0.25
    assert a.log[-1].train_loss < a.log[0].train_loss
    assert [e.train_loss for e in a.log] == [e.train_loss for e in b.log]
    assert a.test_acc == b.test_acc
    assert [e.train_loss for e in a.log] != [e.train_loss for e in c.log]
    assert all(e.epoch_time > 0 for e in a.log) and a.train_time_s == pytest.approx(
        sum(e.epoch_time for e in a.log)
    )


def test_ema_tta_bfloat16_and_mean_loss_reach_the_run():
    """Each option is in effect, not only accepted: the model evaluated and returned is the
    moving average, the test figures are those of predictions averaged with the mirrored
    view, and bfloat16 autocast changes the training losses."""
    import dataclasses

    model, data = small_model_and_data(0)
    config = TrainConfig(
        epochs=2,
        batch_size=64,
        lr_knots=[0, 1, "epochs"],
        lr_values=[0, 0.4, 0],
        average={"name": "ema", "params": {"momentum": 0.9, "every": 2}},
        tta=["flip"],
        precision="bfloat16",
        loss="mean",
        label_smoothing=0.2,
    )
    result = train(model, data, config, [augment.Crop(16), augment.Flip()], max_groups=50)
    assert result.model is not model
    assert not torch.equal(result.model.state_dict()["conv.weight"], model.state_dict()["conv.weight"])
    assert 0.25 < result.test_acc <= 1 and not math.isnan(result.test_loss)  # 4 classes
    assert evaluate(result.model, data.test_images, data.test_labels, config) == (
        result.test_acc,
        result.test_loss,
    )
    no_views = evaluate(result.model, data.test_images, data.test_labels, dataclasses.replace(config, tta=[]))
    assert no_views[1] != result.test_loss
    float32 = run_small(
        0,
        epochs=2,
        average={"name": "ema", "params": {"momentum": 0.9, "every": 2}},
        tta=["flip"],
        loss="mean",
        label_smoothing=0.2,
    )  # the same run (seed, model, data) but for precision
    assert [e.train_loss for e in result.log] != [e.train_loss for e in float32.log]


def test_label_smoothing_reaches_the_loss():
    a, b = run_small(0, epochs=2, label_smoothing=0.2), run_small(0, epochs=2, label_smoothing=0.0)
    assert [e.train_loss for e in a.log] != [e.train_loss for e in b.log]


def test_the_loop_updates_the_moving_average_every_few_steps():
    """The model returned is the average of the weights after steps 3 and 6 of 8 (every=3),
    each update with rho = momentum ** every, starting from the initial weights."""
    model, data = small_model_and_data(0)

    def floats(m):
        return {k: v.clone() for k, v in m.state_dict().items() if v.is_floating_point()}

    expected, rho = floats(model), 0.8**3

    def average_by_hand(step, steps):
        if step % 3 == 0:
            for name, value in floats(model).items():
                expected[name] = rho * expected[name] + (1 - rho) * value

    config = TrainConfig(
        epochs=1,
        batch_size=64,
        lr_knots=[0, 1],
        lr_values=[0.4, 0.4],
        average={"name": "ema", "params": {"momentum": 0.8, "every": 3}},
    )
    result = train(model, data, config, on_step=average_by_hand)
    for name, value in floats(result.model).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_moving_average_counted_per_epoch_updates_after_steps_1_4_7_of_each_epoch():
    """counter: epoch restarts the count each epoch, as the original loop (its k % 5 == 0 on
    the step's place in the epoch): with every=3 and 8 steps an epoch, after steps 1, 4, 7
    of each epoch (9, 12, 15 of the run), where counted over the run it is 3, 6, 9, 12, 15."""
    model, data = small_model_and_data(0)

    def floats(m):
        return {k: v.clone() for k, v in m.state_dict().items() if v.is_floating_point()}

    expected, rho, updated = floats(model), 0.8**3, []

    def average_by_hand(step, steps):  # step: its place in the epoch, from 1
        if step in (1, 4, 7):
            updated.append(step)
            for name, value in floats(model).items():
                expected[name] = rho * expected[name] + (1 - rho) * value

    config = TrainConfig(
        epochs=2,
        batch_size=64,
        lr_knots=[0, 1],
        lr_values=[0.4, 0.4],
        average={"name": "ema", "params": {"momentum": 0.8, "every": 3, "counter": "epoch"}},
    )
    result = train(model, data, config, on_step=average_by_hand)
    assert updated == [1, 4, 7] * 2  # the data is 8 batches an epoch
    for name, value in floats(result.model).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_data_smaller_than_one_batch():
    torch.manual_seed(0)
    data = to_device(
        synthetic(10, 10, shape=(3, 16, 16), classes=4),
        "cpu",
        (128,) * 3,
        (64,) * 3,
        pad=0,
        dtype=torch.float32,
    )
    with pytest.raises(RecipeError, match=r"the training set \(10 images\) is smaller than one batch"):
        train(small_model(), data, TrainConfig(epochs=1, batch_size=64))


@pytest.mark.parametrize("mode", ["default", "max-autotune", "max-autotune-no-cudagraphs"])
def test_each_compile_mode_of_the_recipe_reaches_torch_compile(monkeypatch, mode):
    """train.compile names torch.compile's mode (None for default); the compile itself is
    measured on a GPU (tools/gpu_round.py), here torch.compile is replaced to see its call."""
    from netgraph.train.config import train_config
    from netgraph.train.engine import compile_model

    config = train_config(
        recipe_from_dict({"network": {"fc": {"op": "linear", "out": 2}}, "train": {"compile": mode}})
    )
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    model, _ = small_model_and_data(0)
    compile_model(model, config, torch.randn(4, 3, 16, 16), eval_shapes=[4])
    assert calls == [{"dynamic": False, "mode": None if mode == "default" else mode}]


def test_step_k_uses_the_learning_rate_at_k_over_the_steps_of_an_epoch():
    """As the seed, which reads its schedule after counting the step: step 1 of a warm-up from
    0 uses lr(1/8), not lr(0) = 0, so it changes the weights; the last step of the epoch uses
    lr(1) = 0.4 (the rate the epoch's log shows). 512 images, batches of 64: 8 steps."""
    model, data = small_model_and_data(0)
    initial = model.state_dict()["conv.weight"].clone()
    after = {}

    def record(step, steps):
        after.setdefault(step, model.state_dict()["conv.weight"].clone())

    config = TrainConfig(epochs=1, batch_size=64, lr_knots=[0, 1], lr_values=[0.0, 0.4])
    result = train(model, data, config, on_step=record)
    assert not torch.equal(after[1], initial)
    assert result.log[0].lr == 0.4


def test_a_recipe_without_the_new_keys_trains_as_the_closed_engine_did(tmp_path, monkeypatch):
    """The engine before the training side was opened (commit e3dd429, extracted from this
    clone's history with git archive) and today's give bit-identical weights and results for a
    recipe with the moving average, batch groups, cutout, ghost-free batch norm and flip TTA."""
    import subprocess
    import sys
    import textwrap

    from conftest import ROOT, SMALL

    sys.path.insert(0, str(ROOT))
    try:
        from tools.engine_cost import package_at

        old = package_at("e3dd429", tmp_path)
    except subprocess.CalledProcessError:
        pytest.skip("commit e3dd429 is not in this clone's history (a shallow clone)")
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "small.yaml"
    path.write_text(textwrap.dedent(SMALL).replace("epochs: 3", "epochs: 2"))
    import importlib

    import netgraph.runs.run

    results = {}
    try:
        for package in ("netgraph", old):
            load = importlib.import_module(package).load_recipe
            runner = "netgraph.runs.run" if package == "netgraph" else f"{package}.run"  # today's layout
            run, model, _ = importlib.import_module(runner).run_recipe(load(path), device="cpu")
            results[package] = (
                run.test_acc,
                run.test_loss,
                [e["train_loss"] for e in run.log],
                model.state_dict(),
            )
    finally:
        for name in [m for m in sys.modules if m == old or m.startswith(old + ".")]:
            del sys.modules[name]
    new, before = results["netgraph"], results[old]
    assert new[:3] == before[:3]
    assert all(torch.equal(new[3][k], before[3][k]) for k in before[3]) and new[3].keys() == before[3].keys()
    assert netgraph.runs.run  # today's package is untouched by the old one's import

"""The seed's ladder as recipes: each step is its parent plus its one trick."""

import pytest
import torch
import yaml
from conftest import RECIPES

from netgraph import PassContext, apply_transforms, build_graph, compile_graph, load_recipe, summarize
from netgraph.graph.build import inputs
from netgraph.graph.render import to_dot
from netgraph.train.config import data_config, train_config

STEPS = [
    "00_baseline",
    "01_gpu_data",
    "02a_pool_before_activation",
    "02b_pool_before_bn",
    "03_label_smoothing",
    "04_celu",
    "05_ghost_bn",
    "06_frozen_bn_scale",
    "07_whitening",
    "08_ema",
    "09_tta",
]
LADDER = RECIPES / "ladder"


def test_one_recipe_per_step_each_based_on_the_one_before():
    assert sorted(p.stem for p in LADDER.glob("*.yaml")) == STEPS
    for before, step in zip(STEPS, STEPS[1:]):
        assert yaml.safe_load((LADDER / f"{step}.yaml").read_text())["base"] == f"{before}.yaml"


@pytest.fixture(scope="module")
def steps():
    images = torch.randn(64, 3, 32, 32)
    out = {}
    for step in STEPS + ["convergence"]:
        path = RECIPES / "convergence.yaml" if step == "convergence" else LADDER / f"{step}.yaml"
        recipe = load_recipe(path)
        t = train_config(recipe, "cuda")
        g, reports = apply_transforms(
            build_graph(recipe),
            recipe,
            PassContext(train_images=lambda n: images[:n], batch_size=t.batch_size),
        )
        out[step] = (recipe, g, reports, t, data_config(recipe))
    return out


@pytest.mark.parametrize("step", STEPS + ["convergence"])
def test_every_step_compiles_and_renders(steps, step):
    recipe, g, reports, t, d = steps[step]
    assert all(r.matches > 0 for r in reports)
    module = compile_graph(g).train()
    assert module(torch.randn(32, 3, 32, 32)).shape == (32, 10)
    assert "n_head__scale" in to_dot(g).to_string()


def schedule(t):
    s = t.lr_schedule()
    return s.knots, s.values


def test_the_structural_facts_of_each_step(steps):
    def get(step):
        return steps[step][1]

    def train(step):
        return steps[step][3]

    def data(step):
        return steps[step][4]

    # 0 and 1: the data pipeline, capped at 200 choices from step 1 on.
    assert (train("00_baseline").epochs, data("00_baseline").max_groups) == (24, 100000)
    assert schedule(train("00_baseline")) == ([0, 5, 24], [0, 0.4, 0])
    assert [type(a).__name__ for a in data("00_baseline").augmentations] == ["Crop", "Flip", "Cutout"]
    assert data("01_gpu_data").max_groups == 200
    # 2a: max-pool before the activation; 2b: before batch norm, one more epoch.
    assert inputs(get("02a_pool_before_activation"), "layer1/conv_bn/act") == ["layer1/pool"]
    assert inputs(get("02a_pool_before_activation"), "layer1/pool") == ["layer1/conv_bn/bn"]
    assert inputs(get("02b_pool_before_bn"), "layer1/pool") == ["layer1/conv_bn/conv"]
    assert inputs(get("02b_pool_before_bn"), "layer1/conv_bn/bn") == ["layer1/pool"]
    assert train("02b_pool_before_bn").epochs == 25
    # 3: label smoothing, warm-up a fifth of the epochs.
    assert train("03_label_smoothing").label_smoothing == 0.2
    assert schedule(train("03_label_smoothing")) == ([0, 23 / 5, 23], [0, 0.4, 0])
    # 4: CELU(0.075) everywhere.
    acts = [n for n in get("04_celu") if n.endswith("/act")]
    assert len(acts) == 8 and all(
        get("04_celu").nodes[n]["op"] == "celu" and get("04_celu").nodes[n]["params"]["alpha"] == 0.075
        for n in acts
    )
    # 5: ghost batch norm, 16 splits of 32 images at batch 512; peak learning rate 0.6.
    norms = [n for n in get("05_ghost_bn") if n.endswith("/bn")]
    assert all(
        get("05_ghost_bn").nodes[n]["op"] == "ghost_batch_norm"
        and get("05_ghost_bn").nodes[n]["params"]["splits"] == 16
        for n in norms
    )
    assert (train("05_ghost_bn").epochs, max(train("05_ghost_bn").lr_values)) == (18, 0.6)
    # 6: frozen scales, alpha x4, output x0.0625, bias learning rate x64 and weight decay /64.
    g6 = get("06_frozen_bn_scale")
    assert all(g6.nodes[n]["params"]["weight_trainable"] is False for n in norms)
    assert g6.nodes["layer2/conv_bn/act"]["params"]["alpha"] == pytest.approx(0.3)
    assert g6.nodes["head/scale"]["params"]["by"] == 0.0625
    assert g6.nodes["layer2/conv_bn/bn"]["optim"] == {"bias": {"lr_scale": 64.0, "wd_scale": 1 / 64}}
    assert summarize(g6)["frozen_params"] == 64 + 128 * 3 + 256 + 512 * 3
    # 7: a fixed 3x3 whitening conv to 27 channels, then a learnable 1x1 conv; cutout 5.
    g7 = get("07_whitening")
    assert g7.nodes["prep/whiten"]["params"] == {
        "out": 27,
        "kernel": 3,
        "stride": 1,
        "padding": 1,
        "bias": False,
        "groups": 1,
        "trainable": False,
        "bias_trainable": None,
        "init": "default",
    }
    assert g7.nodes["prep/conv"]["params"]["kernel"] == 1 and g7.nodes["prep/conv"]["shape"] == (64, 32, 32)
    assert data("07_whitening").augmentations[2].size == 5
    assert (train("07_whitening").epochs, max(train("07_whitening").lr_values)) == (14, 1.0)
    # 8: moving average every 5 steps at 0.99, counted per epoch as the original loop; the
    # learning rate floored for 2 epochs.
    t8 = train("08_ema")
    assert (t8.average, t8.epochs) == (
        {"name": "ema", "params": {"momentum": 0.99, "every": 5, "counter": "epoch"}},
        13,
    )
    assert schedule(t8) == ([0, 13 / 5, 11], [0, 1.0, 0.1])
    # 9: flip TTA, no cutout, 10 epochs: the seed's final recipe.
    t9 = train("09_tta")
    assert (t9.tta, t9.epochs, schedule(t9)) == (["flip"], 10, ([0, 2, 8], [0, 1.0, 0.1]))
    assert [type(a).__name__ for a in data("09_tta").augmentations] == ["Crop", "Flip"]
    # The convergence experiment: cutout 12, schedule [0, E/5, E-2] -> [0, 0.4, 0.04].
    tc = train("convergence")
    assert data("convergence").augmentations[2].size == 12
    assert schedule(tc) == ([0, 16, 78], [0, 0.4, 0.04])


def test_bag_of_tricks_is_the_last_step():
    a, b = load_recipe(RECIPES / "bag_of_tricks.yaml"), load_recipe(LADDER / "09_tta.yaml")
    assert a.sections == b.sections

"""airbench's own ablation as recipes (recipes/airbench/ladder/): each step is its parent plus
its one trick, step 7 trains exactly recipes/airbench/airbench94.yaml and step 8 compiles it."""

import math

import pytest
import torch
import yaml
from conftest import RECIPES, ROOT, SAMPLE

from netgraph import PassContext, apply_transforms, build_graph, load_recipe, summarize
from netgraph.train.config import data_config, train_config

STEPS = [
    "00_baseline",
    "01_whitening",
    "02_dirac",
    "03_bn_bias_lr",
    "04_frozen_whiten_bias",
    "05_lookahead",
    "06_multicrop_tta",
    "07_alternating_flip",
    "08_compile",
]
LADDER = RECIPES / "airbench" / "ladder"
AIRBENCH94 = RECIPES / "airbench" / "airbench94.yaml"
TINY = [
    "network.group1.c=8",
    "network.group2.c=16",
    "network.group3.c=16",
    "train.precision=float32",
    "train.channels_last=false",
    "train.compile=none",
]


def describe_train(t):
    return dict(vars(t))


def describe_data(d):
    out = dict(vars(d))
    out["augmentations"] = [(type(a).__name__, vars(a)) for a in d.augmentations]
    return out


def describe_graph(g):
    """Every node: its op, params, shape, optimizer options and inputs (not its tensors)."""
    return {
        n: (a["op"], a.get("params"), a.get("shape"), a.get("optim"), sorted(g.predecessors(n)))
        for n, a in g.nodes(data=True)
    }


def changed(a: dict, b: dict) -> set:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@pytest.fixture(scope="module")
def steps():
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = {}
    for step in STEPS + ["airbench94"]:
        recipe = load_recipe(AIRBENCH94 if step == "airbench94" else LADDER / f"{step}.yaml")
        t = train_config(recipe, "cuda")
        g, reports = apply_transforms(
            build_graph(recipe),
            recipe,
            PassContext(train_images=lambda n: images[:n], batch_size=t.batch_size),
        )
        out[step] = dict(
            recipe=recipe,
            graph=g,
            reports=reports,
            train=describe_train(t),
            data=describe_data(data_config(recipe)),
            nodes=describe_graph(g),
        )
    return out


def test_one_recipe_per_step_each_based_on_the_one_before():
    assert sorted(p.stem for p in LADDER.glob("*.yaml")) == STEPS
    for before, step in zip(STEPS, STEPS[1:]):
        text = (LADDER / f"{step}.yaml").read_text()
        assert yaml.safe_load(text)["base"] == f"{before}.yaml"
        assert text.startswith(f"# Step {int(step[:2])}: ")  # the header says what changes
    assert (LADDER / "00_baseline.yaml").read_text().startswith("# Step 0 ")


# What each step changes from the one before: the train and data fields, the graph's nodes.
TRICKS = {
    "01_whitening": ({"epochs"}, set(), {"whiten", "norm", "act"}),
    "02_dirac": ({"epochs"}, set(), {f"group{i}/conv{j}" for i in (1, 2, 3) for j in (1, 2)}),
    "03_bn_bias_lr": ({"epochs", "param_groups"}, set(), set()),  # groups live in train:
    "04_frozen_whiten_bias": ({"param_groups"}, set(), set()),
    "05_lookahead": ({"epochs", "average"}, set(), set()),
    "06_multicrop_tta": ({"epochs", "tta"}, set(), set()),
    "07_alternating_flip": ({"epochs"}, {"augmentations"}, set()),
    "08_compile": ({"compile"}, set(), set()),
}


@pytest.mark.parametrize("step", STEPS[1:])
def test_each_step_changes_only_its_trick(steps, step):
    before, now = steps[STEPS[STEPS.index(step) - 1]], steps[step]
    train, data, nodes = TRICKS[step]
    assert changed(before["train"], now["train"]) == train
    assert changed(before["data"], now["data"]) == data
    assert changed(before["nodes"], now["nodes"]) == nodes


def test_the_trick_of_each_step_is_there(steps):
    def train(step):
        return steps[step]["train"]

    g0, g1 = steps["00_baseline"]["graph"], steps["01_whitening"]["graph"]
    # 0: standard init, a trainable first conv and a batch norm after it; random flip; flip TTA.
    assert g0.nodes["whiten"]["params"]["trainable"] is True and "tensors" not in g0.nodes["whiten"]
    assert g0.nodes["norm"]["op"] == "batch_norm" and list(g0.predecessors("act")) == ["norm"]
    assert all(p["init"] == "default" for _, p in g0.nodes(data="params") if p and "init" in p)
    assert [a[0] for a in steps["00_baseline"]["data"]["augmentations"]] == ["Translate", "Flip"]
    assert (train("00_baseline")["epochs"], train("00_baseline")["tta"]) == (45, ["flip"])
    assert (train("00_baseline")["param_groups"], train("00_baseline")["average"]) == ([], None)
    # 1: the first conv whitens (12 filters and their negations, frozen), its batch norm gone.
    assert "norm" not in g1 and list(g1.predecessors("act")) == ["whiten"]
    assert g1.nodes["whiten"]["params"]["trainable"] is False
    assert g1.nodes["whiten"]["params"]["bias_trainable"] is True
    w = g1.nodes["whiten"]["tensors"]["weight"]
    assert w.shape == (24, 3, 2, 2) and torch.equal(w[12:], -w[:12])
    # 2: Dirac init on the six 3x3 convs.
    g2 = steps["02_dirac"]["graph"]
    assert [n for n in g2 if g2.nodes[n]["params"].get("init") == "dirac"] == [
        f"group{i}/conv{j}" for i in (1, 2, 3) for j in (1, 2)
    ]
    # 3: batch-norm biases at lr x64, decay /64; 4: the whitening bias frozen after 3 epochs.
    assert train("03_bn_bias_lr")["param_groups"] == [
        {"kind": "batch_norm", "lr_scale": 64, "wd_scale": 0.015625}
    ]
    frozen = train("04_frozen_whiten_bias")["param_groups"][1]
    assert (frozen["params"], frozen["until"], frozen["lr_scale"]) == ("whiten.bias", {"epochs": 3}, 1.0)
    # 5: lookahead; 6: the six-view TTA; 7: alternating flip; 8: compiled.
    assert train("05_lookahead")["average"] == {
        "name": "lookahead",
        "params": {"every": 5, "decay": 0.95, "power": 3.0},
    }
    assert train("06_multicrop_tta")["tta"] == "airbench"
    assert [a[0] for a in steps["07_alternating_flip"]["data"]["augmentations"]] == [
        "Translate",
        "AlternatingFlip",
    ]
    assert train("08_compile")["compile"] == "max-autotune"  # airbench94_compiled.py's mode
    assert [train(s)["epochs"] for s in STEPS] == [45, 21, 18, 13.5, 13.5, 12.0, 10.8, 9.9, 9.9]


def test_step_7_trains_airbench94_and_step_8_compiles_it(steps):
    a, b = steps["airbench94"], steps["07_alternating_flip"]
    assert a["train"] == b["train"]
    assert a["data"] == b["data"]
    assert a["nodes"] == b["nodes"] and list(a["graph"]) == list(b["graph"])
    assert a["recipe"].transforms == b["recipe"].transforms
    for node in ("whiten",):  # the whitening filters, from the same images
        assert torch.equal(
            a["graph"].nodes[node]["tensors"]["weight"], b["graph"].nodes[node]["tensors"]["weight"]
        )
    assert changed(a["train"], steps["08_compile"]["train"]) == {"compile"}


@pytest.mark.parametrize("step", STEPS)
def test_every_step_summarises(steps, step):
    assert all(r.matches > 0 for r in steps[step]["reports"])
    s = summarize(steps[step]["graph"])
    assert s["params"] + s["frozen_params"] > 1_900_000


@pytest.fixture(scope="module")
def sample():
    from netgraph.runs.plan import load_data

    recipe = load_recipe(LADDER / "00_baseline.yaml")
    return load_data(data_config(recipe), str(SAMPLE))


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS[:-1])  # 08 with train.compile=none is 07
def test_every_step_trains_on_a_cpu(sample, step):
    """Three epochs of the sample's 2,000 images at the recipe's batch (1 step of 1,024 each) at
    widths 8/16/16 in float32: the warm-up knot floor(0.23 * 3) + 1 = 1, the epoch-by-epoch
    flips, lookahead's final write-back and the whitening bias's span all run."""
    from netgraph.runs.run import run_recipe

    recipe = load_recipe(LADDER / f"{step}.yaml", TINY + ["train.epochs=3"])
    result, _, _ = run_recipe(recipe, device="cpu", dataset=sample, eval_every_epoch=False)
    assert (result.train_images, result.steps) == (2000, 3)
    assert math.isfinite(result.test_loss) and 0 <= result.test_acc <= 1


@pytest.mark.parametrize("name", ["airbench94", "airbench94_muon"])
def test_the_records_train_at_full_width_for_a_few_steps(name):
    """The records' own networks and training, at full width, for 2 steps of 64 synthetic images
    (CPU, float32): every part of their training runs, the loss stays finite."""
    from netgraph.runs.run import run_recipe

    recipe = load_recipe(
        ROOT / "recipes" / "airbench" / f"{name}.yaml",
        [
            "train.precision=float32",
            "train.channels_last=false",
            "train.compile=none",
            "train.batch_size=64",
            "train.steps=2",
            "data.dataset=synthetic",
            "data.synthetic={train: 128, test: 64, classes: 10}",
        ],
    )
    result, model, _ = run_recipe(recipe, device="cpu")
    assert result.steps == 2 and result.params == 1_971_352
    assert math.isfinite(result.log[-1]["train_loss"]) and math.isfinite(result.test_loss)

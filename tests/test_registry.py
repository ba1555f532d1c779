"""One registry type for every pluggable kind; docs/training.md's own parts, loaded with --import."""

import dataclasses
import re
import sys
import textwrap

import pytest
import torch
from conftest import ROOT

from netgraph import RecipeError, load_recipe
from netgraph.cli import main
from netgraph.core.registry import REGISTRIES, Part, Registry
from netgraph.core.schema import REQUIRED, Param, named
from netgraph.graph.ops import OPS
from netgraph.graph.passes import PASSES
from netgraph.train.augment import AUGMENTATIONS, BatchGroupLoader
from netgraph.train.config import data_config, train_config
from netgraph.train.optimizers import OPTIMIZERS, OptimizerSpec
from netgraph.train.views import TTA_VIEWS, predict


@pytest.fixture
def registries():
    """Every registry as it was after the test, and no plugin module left imported."""
    from netgraph import data  # noqa: F401  (every registry exists before the snapshot)
    from netgraph.graph import passes  # noqa: F401
    from netgraph.train import config  # noqa: F401

    before = {kind: dict(registry) for kind, registry in REGISTRIES.items()}
    modules = set(sys.modules)
    yield
    for kind, registry in REGISTRIES.items():
        registry.clear()
        registry.update(before.get(kind, {}))
    for name in set(sys.modules) - modules:
        if name == "my_parts":
            del sys.modules[name]


def test_every_kind_is_one_registry_type():
    kinds = "ops passes augmentations views optimizers schedules averaging".split() + ["sources"]
    assert set(REGISTRIES) == set(kinds) and all(type(r) is Registry for r in REGISTRIES.values())
    # and one record type: a Part, extended by a kind only with its own fields
    assert all(isinstance(part, Part) for r in REGISTRIES.values() for part in r.values())
    assert {f.name for f in dataclasses.fields(OptimizerSpec)} - {
        f.name for f in dataclasses.fields(Part)
    } == {"linear"}
    assert REGISTRIES["ops"] is OPS and REGISTRIES["passes"] is PASSES
    assert REGISTRIES["augmentations"] is AUGMENTATIONS and REGISTRIES["views"] is TTA_VIEWS
    assert list(AUGMENTATIONS) == ["crop", "flip", "cutout", "translate", "alternating_flip"]
    assert list(TTA_VIEWS) == ["flip", "translate", "identity"]


@pytest.fixture
def toys():
    """A registry of toy parts with an own field, made for one test and removed after it."""

    @dataclasses.dataclass(frozen=True)
    class Toy(Part):
        colour: str = "red"

    toys = Registry("toy", "toys", "tests.register_toy", Toy)
    yield toys
    del REGISTRIES["toys"]


def test_one_generic_registration_makes_a_small_record(toys):
    @toys.decorator("ball", params={"size": int, "bounce": 0.5}, colour="blue")
    def ball(size, bounce):
        """A ball.

        It bounces."""
        return size * bounce

    assert ball(2, 0.5) == 1.0  # the decorator returns the function unchanged
    part = toys["ball"]
    assert (part.name, part.function, part.colour, part.summary) == ("ball", ball, "blue", "A ball.")
    assert part.doc == "A ball.\n\n        It bounces."  # the docstring, stripped
    assert part.params["size"].default is REQUIRED and part.params["bounce"].default == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):  # a record is frozen
        part.colour = "green"
    cube = toys.register("cube", None, doc="A cube.")  # no function, no docstring: doc given
    assert (cube.function, cube.colour, cube.params, cube.summary) == (None, "red", {}, "A cube.")
    with pytest.raises(ValueError, match="toy 'cube' is already registered; pass replace=True"):
        toys.register("cube", None)
    assert toys.register("cube", None, replace=True, colour="green").colour == "green"
    with pytest.raises(TypeError):  # a field the kind does not have
        toys.register("cone", None, weight=3)


def test_one_parser_reads_name_or_name_with_parameters():
    assert named("flip", "data.augment", "augmentation") == ("flip", {})
    assert named({"crop": None}, "data.augment", "augmentation") == ("crop", {})
    assert named({"sgd": {"nesterov": True}}, "train.optimizer", "optimizer") == ("sgd", {"nesterov": True})
    assert named({"cutout": 8}, "data.augment", "augmentation", value=True) == ("cutout", 8)
    with pytest.raises(
        RecipeError, match=r"transforms item 2: the parameters of pass 'x' are a mapping, got 3"
    ):
        named({"x": 3}, "transforms item 2", "pass")
    for entry in (3, ["flip"], {"a": {}, "b": {}}, {3: {}}):
        with pytest.raises(RecipeError, match=r"^train.optimizer must be an optimizer name or \{name: "):
            named(entry, "train.optimizer", "optimizer")


def test_parse_looks_up_checks_and_names_the_part(toys):
    toys.register("ball", lambda size: size, params={"size": Param(int, 1, positive=True)})
    toys.register("cube", lambda: 0)
    assert toys.parse("ball", "toys.x") == (toys["ball"], {"size": 1})
    assert toys.parse({"ball": {"size": 3}}, "toys.x")[1] == {"size": 3}
    for entry, message in (
        ("bal", r"unknown toy 'bal' in toys.x \(did you mean 'ball'\?\)"),
        ({"ball": {"size": 0}}, r"toy 'ball': parameter 'size' must be positive"),
        ({"ball": {"mass": 1}}, r"unknown parameter 'mass' for toy 'ball'"),
        (
            {"ball": 3},
            r"toys.x: the parameters of toy 'ball' are a mapping, got 3 \(e.g. \{ball: \{size: ...\}\}\)",
        ),
        ({"cube": 3}, r"toys.x: toy 'cube' takes no value, got 3 \(write it as cube\)"),
        ([1], r"toys.x must be a toy name or \{name: \{parameters\}\}, got \[1\] \(known toys: ball, cube\)"),
    ):
        with pytest.raises(RecipeError, match=message):
            toys.parse(entry, "toys.x")


def test_registering_twice_needs_replace(registries):
    import netgraph

    netgraph.register_view("same")(lambda x: x)
    with pytest.raises(ValueError, match="test-time view 'same' is already registered"):
        netgraph.register_view("same")(lambda x: x)
    netgraph.register_view("same", replace=True)(lambda x: -x)
    assert torch.equal(TTA_VIEWS["same"].function(torch.ones(1)), -torch.ones(1))


@pytest.mark.parametrize(
    "section, message",
    [
        (
            "data:\n  augment:\n    - crop\n    - flp\n",
            r"r.yaml:4: unknown augmentation 'flp' in data.augment \(did you mean 'flip'\?\)",
        ),
        (
            "data:\n  augment: [crop, {cutuot: 8}]\n",
            r"r.yaml:2: unknown augmentation 'cutuot' in data.augment \(did you mean 'cutout'\?\)",
        ),
        (
            "data:\n  augment: [{flip: 3}]\n",
            r"r.yaml:2: data.augment: augmentation 'flip' takes no value, got 3",
        ),
        (
            "data:\n  augment: [{crop: {size: 28, offset: 1}}]\n",
            r"r.yaml:2: unknown parameter 'offset' for augmentation 'crop'",
        ),
        (
            "train:\n  tta: [flop]\n",
            r"r.yaml:2: unknown test-time view 'flop' in train.tta \(did you mean 'flip'\?\)",
        ),
        (
            "train:\n  tta: [rotate]\n",
            r"known views: flip, translate, identity; register your own with netgraph.register_view",
        ),
    ],
)
def test_a_misspelt_part_is_named_on_its_recipe_line(tmp_path, section, message):
    path = tmp_path / "r.yaml"
    path.write_text(section + "network:\n  fc: {op: flatten}\n")
    recipe = load_recipe(path)
    with pytest.raises(RecipeError, match=message):
        train_config(recipe)
        data_config(recipe)


def test_list_prints_each_kind_with_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("ops", "passes", "augmentations", "views"):
        assert re.search(rf"^{kind} \(\d+; register with netgraph\.register_", out, re.M), kind
    assert re.search(r"^  cutout +Set a size x size square.*\[size\]$", out, re.M)
    assert re.search(r"^  conv2d .*\[out, kernel: 3,", out, re.M)
    assert main(["list", "augmentation"]) == 2
    assert "unknown kind 'augmentation' (did you mean 'augmentations'?)" in capsys.readouterr().err


def test_list_in_a_fresh_process_shows_every_kind():
    """Registries are made on import: `netgraph list` imports every module that holds one."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "netgraph", "list"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    kinds = re.findall(r"^(\w[\w ]*) \(\d+; register with", out, re.M)
    assert sorted(kinds) == sorted(REGISTRIES), out


def docs_parts() -> str:
    """my_parts.py as docs/training.md writes it ("Your own optimizer, augmentation or test-time view")."""
    text = (ROOT / "docs" / "training.md").read_text()
    return next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith("# my_parts.py"))


def test_the_docs_parts_load_with_import_and_train(tmp_path, registries, capsys):
    """docs/training.md's my_parts.py, as written there: listed with --import, named in a recipe, its
    augmentation adds the group's offset to each image (against the offsets computed here),
    its view is averaged into the predictions (against the three forwards done here)."""
    plugin = tmp_path / "my_parts.py"
    plugin.write_text(docs_parts())
    assert main(["list", "views", "--import", str(plugin)]) == 0
    assert "flip_vertical          The image upside down." in capsys.readouterr().out
    path = tmp_path / "r.yaml"
    path.write_text(
        textwrap.dedent("""
        data:
          dataset: synthetic
          synthetic: {train: 128, test: 64, classes: 4}
          pad: 0
          augment: [{brightness: {amount: 0.5, levels: 3}}]
        train: {epochs: 1, batch_size: 64, tta: [flip, flip_vertical],
                lr: {knots: [0, 1], values: [0.1, 0.1]},
                param_groups: [{kind: filter, optimizer: sign_sgd, lr: 0.001}]}
        network:
          conv: {op: conv2d, out: 4}
          pool: {op: global_avg_pool}
          flat: {op: flatten}
    """)
    )
    recipe = load_recipe(path)
    [brightness] = data_config(recipe).augmentations
    images = torch.zeros(128, 3, 8, 8)
    loader = BatchGroupLoader(images, torch.zeros(128, dtype=torch.long), 64, [brightness], seed=0)
    batches = torch.cat([x for x, _ in loader.epoch()])
    # each image is all one offset, from {-0.5, 0, 0.5}, and the groups are equal: 128 = 43+43+42
    per_image = batches.flatten(1)
    assert torch.equal(per_image.min(1).values, per_image.max(1).values)
    values, counts = per_image[:, 0].unique(return_counts=True)
    assert values.tolist() == [-0.5, 0.0, 0.5] and sorted(counts.tolist()) == [42, 43, 43]
    config = train_config(recipe)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(1), torch.nn.LazyLinear(4))
    x = torch.randn(5, 3, 8, 8)
    model(x)
    expected = (model(x) + model(x.flip(3)) + model(x.flip(2))) / 3
    torch.testing.assert_close(predict(model, x, config.tta), expected)
    # its optimizer: w -= lr sign(v), v = 0.9 v + grad, against the signs computed here
    assert config.param_groups[0]["optimizer"]["name"] == "sign_sgd"
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    sign_sgd = OPTIMIZERS["sign_sgd"].function(
        [{"params": [w], "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}]
    )
    for grad, moved in (([1.0, -1.0, 0.5], [-0.1, 0.1, -0.1]), ([-3.0, 0.5, -0.1], [0.1, 0.1, -0.1])):
        before = w.detach().clone()
        w.grad = torch.tensor(grad)
        sign_sgd.step()
        torch.testing.assert_close(w.detach() - before, torch.tensor(moved))
    del (
        AUGMENTATIONS["brightness"],
        TTA_VIEWS["flip_vertical"],
        OPTIMIZERS["sign_sgd"],
    )  # as in a fresh process
    assert (
        main(
            [
                "train",
                str(path),
                "--device",
                "cpu",
                "--quiet",
                "--import",
                str(plugin),
                "--log",
                str(tmp_path / "log.jsonl"),
            ]
        )
        == 0
    )

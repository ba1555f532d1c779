"""Recipe files: safe YAML, base: inheritance, --set overrides, line numbers."""

import pytest

from netgraph import RecipeError, load_recipe
from netgraph.recipe.load import parse_yaml

NET = """
network:
  conv: {op: conv2d, out: 8}
  act: {op: relu}
"""


def test_resnet9_recipe_loads(write):
    from conftest import RECIPES

    recipe = load_recipe(RECIPES / "resnet9.yaml")
    assert set(recipe.network) == {"prep", "layer1", "layer2", "layer3", "head"}
    assert recipe.blocks["conv_bn"]["conv"]["out"] == "$c"
    assert recipe.input_shape == [3, 32, 32]


def test_python_tags_are_refused(write):
    path = write(
        "evil.yaml",
        """
        network:
          conv: !!python/object/apply:os.system ["echo pwned"]
    """,
    )
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "tag refused" in str(e.value) and "evil.yaml:3" in str(e.value)


def test_duplicate_keys_are_refused(write):
    path = write(
        "dup.yaml",
        """
        network:
          conv: {op: conv2d, out: 8}
          conv: {op: relu}
    """,
    )
    with pytest.raises(RecipeError, match=r"dup.yaml:4: key 'conv' appears twice \(first on line 3\)"):
        load_recipe(path)


def test_invalid_yaml_names_the_line(write):
    path = write("broken.yaml", "network:\n  conv: {op: conv2d, out: 8\n  act: {op: relu}\n")
    with pytest.raises(RecipeError, match=r"broken.yaml:\d+: not valid YAML"):
        load_recipe(path)


def test_base_merges_child_wins_null_deletes_and_plus_appends(write):
    write(
        "parent.yaml",
        """
        network:
          conv: {op: conv2d, out: 8, bias: false}
          bn: {op: batch_norm}
          act: {op: relu}
        transforms: [a]
        train: {epochs: 24, lr: 0.4}
    """,
    )
    child = write(
        "sub/child.yaml",
        """
        base: ../parent.yaml
        network:
          conv: {out: 16}
          bn: null
          act: {op: celu, alpha: 0.075}
        transforms+: [b, {c: {x: 1}}]
        train: {epochs: 20}
    """,
    )
    recipe = load_recipe(child)
    assert recipe.network == {
        "conv": {"op": "conv2d", "out": 16, "bias": False},
        "act": {"op": "celu", "alpha": 0.075},
    }
    assert recipe.transforms == ["a", "b", {"c": {"x": 1}}]
    assert recipe.train == {"epochs": 20, "lr": 0.4}
    # Lines point into the file that set each key, appended items included.
    assert recipe.where(("network", "conv", "bias"))[1] == 3
    assert recipe.where(("network", "conv", "out")) == (str(child), 4)
    assert recipe.where(("transforms", 0))[0].endswith("parent.yaml")
    assert recipe.where(("transforms", 2)) == (str(child), 7)


def test_op_change_replaces_the_node_instead_of_merging(write):
    write("a.yaml", "network:\n  x: {op: conv2d, out: 8, kernel: 5}\n")
    b = write("b.yaml", "base: a.yaml\nnetwork:\n  x: {op: linear, out: 10}\n")
    assert load_recipe(b).network["x"] == {"op": "linear", "out": 10}


def test_base_cycle_and_missing_parent(write):
    write("a.yaml", "base: b.yaml\n" + NET)
    b = write("b.yaml", "base: a.yaml\n" + NET)
    with pytest.raises(RecipeError, match="loops back on itself: .*b.yaml -> .*a.yaml -> .*b.yaml"):
        load_recipe(b)
    orphan = write("orphan.yaml", "# a child\nbase: nowhere.yaml\n" + NET)
    with pytest.raises(RecipeError, match=r"orphan.yaml:2: base recipe 'nowhere.yaml' not found"):
        load_recipe(orphan)


def test_missing_file_and_non_mapping(write, tmp_path):
    with pytest.raises(RecipeError, match=r"recipe file not found$"):
        load_recipe(tmp_path / "nope.yaml")
    write("resnet9.yaml", NET)
    with pytest.raises(
        RecipeError,
        match=r"resnet.yaml: recipe file not found \(did you mean "
        r"'resnet9.yaml'\?\)",
    ):
        load_recipe(tmp_path / "resnet.yaml")
    with pytest.raises(RecipeError, match="a recipe is a mapping of sections"):
        load_recipe(write("list.yaml", "- 1\n- 2\n"))


def test_unknown_section_and_empty_network(write):
    with pytest.raises(RecipeError, match=r"t.yaml:5: unknown section 'trian' \(did you mean 'train'\?\)"):
        load_recipe(write("t.yaml", NET + "trian: {epochs: 3}\n"))
    with pytest.raises(RecipeError, match="the recipe has no network"):
        load_recipe(write("e.yaml", "network: {}\n"))


def test_overrides_parse_yaml_values(write):
    path = write("r.yaml", NET + "transforms: [a]\n")
    recipe = load_recipe(
        path,
        [
            "train.epochs=12",
            "network.conv.out=96",
            "train.lr=4e-1",
            "train.name=x",
            "network.conv.bias=false",
            "transforms+=[b]",
            "data.sizes=[1, 2]",
            "network.act=null",
        ],
    )
    assert recipe.train == {"epochs": 12, "lr": 0.4, "name": "x"}
    assert recipe.network == {"conv": {"op": "conv2d", "out": 96, "bias": False}}
    assert recipe.transforms == ["a", "b"]
    assert recipe.data == {"sizes": [1, 2]}
    assert load_recipe(path, ["transforms.0=z"]).transforms == ["z"]


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("train.epochs", "expected KEY=VALUE"),
        ("trian.epochs=3", "unknown section 'trian'"),
        ("network..out=3", "is not a key path"),
        ("transforms.5=z", "'5' is not an index"),
        ("network.conv.out.deep=3", "is 8, not a mapping"),
        ("train.x=[1, 2", "value is not valid YAML"),
    ],
)
def test_bad_overrides(write, assignment, message):
    path = write("r.yaml", NET + "transforms: [a]\n")
    with pytest.raises(RecipeError, match=message) as e:
        load_recipe(path, [assignment])
    assert str(e.value).startswith(f"--set {assignment}:")


TRANSFORMED = NET + "transforms: [{ghost_batch_norm: {splits: 4}}]\n"


@pytest.mark.parametrize(
    "assignment, message",
    [
        # a typo on the way down to a node or a pass parameter must not quietly add a node
        ("network.cnv.out=3", r"'network' has no 'cnv' \(did you mean 'conv'\?\)"),
        (
            "network.pool.size=2",
            r"'network' has no 'pool' \(it has: conv, act; to add one, set it "
            r"whole: --set network.pool=\{...\}\)",
        ),
        (
            "transforms.0.ghost_batchnorm.splits=2",
            r"'transforms.0' has no 'ghost_batchnorm' \(did you mean 'ghost_batch_norm'\?\)",
        ),
    ],
)
def test_a_typo_in_a_set_path_under_network_or_transforms_is_refused(write, assignment, message):
    with pytest.raises(RecipeError, match=message) as e:
        load_recipe(write("r.yaml", TRANSFORMED), [assignment])
    assert str(e.value).startswith(f"--set {assignment}:")


def test_set_creates_mappings_under_train_and_data(write):
    recipe = load_recipe(write("r.yaml", NET), ["data.synthetic.train=64", "train.ema.every=3"])
    assert recipe.data == {"synthetic": {"train": 64}} and recipe.train == {"ema": {"every": 3}}


def test_later_errors_about_a_set_value_name_the_set(write):
    """A value a --set gave whole is named by the --set alone; a --set inside or merged
    into what the file wrote is named after the file's line; other --sets are not named."""
    from netgraph.graph.build import build_graph
    from netgraph.train.config import train_config

    path = write("r.yaml", NET + "train:\n  epochs: 8\n  ema: {momentum: 0.5}\n  tta: [flip]\n")

    def error(build, *overrides):
        with pytest.raises(RecipeError) as e:
            build(load_recipe(path, list(overrides)))
        return str(e.value).replace(str(path), "r.yaml")

    assert error(train_config, "train.epoch=3").startswith(
        "--set train.epoch=3: unknown parameter 'epoch' for the train: section"
    )
    assert error(train_config, "train.seed=1", "train.ema.momentum=2").startswith(
        "r.yaml:7, --set train.ema.momentum=2: train.ema.momentum must be below 1"
    )
    assert error(train_config, "train.tta.0=flop").startswith(
        "r.yaml:8, --set train.tta.0=flop: unknown test-time view 'flop'"
    )
    assert error(build_graph, "network.conv.out=-3").startswith(
        "r.yaml:3, --set network.conv.out=-3: node 'conv': parameter 'out' must be positive"
    )
    assert error(build_graph, "network.conv={bias: 2}").startswith(  # merged into the file's node
        "r.yaml:3, --set network.conv={bias: 2}: node 'conv': parameter 'bias'"
    )
    assert error(build_graph, "network.conv={op: linear, out: 3}").startswith(  # replaced whole
        "--set network.conv={op: linear, out: 3}: node 'conv': op 'linear' needs a flat"
    )
    # a mapping a --set created, and a key deleted then set again: the file has no say
    assert error(train_config, "train.param_groups=[]", "train.ema=null", "train.ema.every=0").startswith(
        "--set train.ema=null, --set train.ema.every=0: averaging 'ema': parameter 'every' must be"
    )
    bare = write("bare.yaml", NET)
    with pytest.raises(RecipeError, match=r"^--set train.ema.bogus=2: unknown parameter 'bogus'"):
        train_config(load_recipe(bare, ["train.ema.bogus=2"]))
    with pytest.raises(RecipeError, match=r"/r.yaml:6: unknown parameter 'epoch'"):
        train_config(load_recipe(write("r.yaml", NET + "train:\n  epoch: 3\n"), ["train.seed=1"]))


def test_a_list_item_with_a_null_value_is_a_name_without_parameters(write):
    """`- remove_identity:` in transforms or `- flip:` in data.augment: null there deletes
    nothing, it says the item has no parameters."""
    from netgraph.train.config import data_config

    recipe = load_recipe(
        write(
            "r.yaml", NET + "transforms:\n  - remove_identity:\ndata: {augment: [{flip: null}, {crop: }]}\n"
        )
    )
    assert recipe.transforms == [{"remove_identity": None}]
    assert [type(a).__name__ for a in data_config(recipe).augmentations] == ["Flip", "Crop"]


def test_floats_without_a_dot_are_numbers():
    data, _ = parse_yaml("eps: 1e-5\nwd: 5E-4\nlr: -2e+1\nn: 10\nname: e5\n")
    assert data == {"eps": 1e-5, "wd": 5e-4, "lr": -20.0, "n": 10, "name": "e5"}


def test_parse_yaml_records_positions():
    data, positions = parse_yaml("a:\n  b: 1\n  c: [x, y]\n", "f.yaml")
    assert data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert positions[("a", "b")] == ("f.yaml", 2)
    assert positions[("a", "c", 1)] == ("f.yaml", 3)


def test_child_merges_into_list_items_by_index(write):
    write(
        "parent.yaml",
        NET + "transforms: [a, {b: {x: 1, y: 2}}, c]\ndata: {augment: [crop, flip, {cutout: 8}]}\n",
    )
    child = write(
        "child.yaml",
        """
        base: parent.yaml
        transforms:
          1: {b: {x: 5}}
          2: null
        data:
          augment: {-1: {cutout: 5}}
    """,
    )
    recipe = load_recipe(child)
    assert recipe.transforms == ["a", {"b": {"x": 5, "y": 2}}]
    assert recipe.data["augment"] == ["crop", "flip", {"cutout": 5}]
    assert recipe.where(("transforms", 1, "b", "x")) == (str(child), 4)
    bad = write("bad.yaml", "base: parent.yaml\ntransforms:\n  7: {b: {}}\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:3: item 7 does not exist: the parent's list has 3"):
        load_recipe(bad)

"""Every way a recipe or a data set can be wrong ends in one RecipeError that names the
file, the line (where YAML gives one), the node path and the fix; and nothing already on
disk is lost when something fails. docs/failure-modes.md lists each case and its test."""

import hashlib
import http.server
import os
import re
import textwrap
import threading
import warnings

import numpy as np
import pytest
from conftest import ROOT
from test_data import cifar10_binary, make_archive, make_part, raises_naming, write_layout, write_pickle

from netgraph import RecipeError, apply_transforms, build_graph, compile_graph, load_recipe, recipe_from_dict
from netgraph.data.cifar import download_cifar, read_cifar
from netgraph.graph.passes import PassContext
from netgraph.train.config import data_config, train_config

NET = """
network:
  conv: {op: conv2d, out: 8}
  act: {op: relu}
"""


def prepare(recipe):
    """Everything before training: the train:/data: sections, the graph, passes, the module."""
    config = train_config(recipe)
    data_config(recipe)
    graph, _ = apply_transforms(build_graph(recipe), recipe, PassContext(batch_size=config.batch_size))
    return compile_graph(graph)


def failure(path):
    """The RecipeError that loading and preparing the recipe file ends in."""
    with pytest.raises(RecipeError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(load_recipe(path))
    return info.value


def check(err, path, line, says, node=None, hint=None):
    """One line: 'FILE:LINE: node 'PATH': MESSAGE (HINT)'."""
    text = str(err)
    assert "\n" not in text, text
    assert text.startswith(f"{path}:{line}: " if line else f"{path}: "), text
    assert (f"node '{node}': " in text) if node else "node '" not in text, text
    assert says in text, text
    if hint is not None:
        assert err.hint and hint in err.hint, text


# --- recipes: one table, one test ----------------------------------------------------------

# name: (recipe text, line, node, what the message says, what the hint says)
RECIPES = {
    # wrong types
    "type: a word for a number": (
        """
        network:
          conv: {op: conv2d, out: sixty-four}
    """,
        3,
        "conv",
        "parameter 'out' must be an integer, got 'sixty-four'",
        "e.g. out: ",
    ),
    "type: a number in quotes": (
        """
        network:
          conv: {op: conv2d, out: "64"}
    """,
        3,
        "conv",
        "parameter 'out' must be an integer, got '64'",
        "without quotes",
    ),
    "type: a section that is not a mapping": (
        NET + "train: 10\n",
        5,
        None,
        "'train:' must be a mapping, got int",
        "indented",
    ),
    "type: a name that is not text": ("name: 2024-01-01\n" + NET, 1, None, "'name:' must be text", "quotes"),
    "type: an op name that is not text": (
        """
        network:
          conv: {op: [conv2d]}
    """,
        3,
        "conv",
        "op must be an op name, got ['conv2d']",
        None,
    ),
    "type: a block name that is not text": (
        """
        network:
          a: {block: [conv_bn]}
    """,
        3,
        "a",
        "block: must be a block name, got ['conv_bn']",
        None,
    ),
    "type: tta not a list": (NET + "train: {tta: flip}\n", 5, None, "train.tta must be a list", "[flip]"),
    "type: augment not a list": (
        NET + "data: {augment: crop}\n",
        5,
        None,
        "data.augment must be a list",
        "[crop, flip",
    ),
    "type: a test-time view that is a mapping": (
        NET + "train: {tta: [{flip: 1}]}\n",
        5,
        None,
        "train.tta: test-time view 'flip' takes no value, got 1",
        "write it as flip",
    ),
    "type: a schedule value that is text": (
        NET + "train:\n  lr: {knots: [0, 5], values: [0, high]}\n",
        6,
        None,
        "a schedule value must be a finite number, got 'high'",
        "e.g. knots:",
    ),
    "type: schedule knots not a list": (
        NET + "train:\n  lr: {knots: 5, values: [0]}\n",
        6,
        None,
        "a schedule's knots are a list, got 5",
        "e.g. knots:",
    ),
    # sizes: negative, zero, too large, not finite
    "size: negative conv width": (
        """
        network:
          conv: {op: conv2d, out: -8}
    """,
        3,
        "conv",
        "parameter 'out' must be positive, got -8",
        "above 0",
    ),
    "size: zero pool": (
        """
        network:
          pool: {op: max_pool, size: 0}
    """,
        3,
        "pool",
        "parameter 'size' must be positive, got 0",
        "above 0",
    ),
    "size: negative input shape": (
        "input: {shape: [3, -32, 32]}\n" + NET,
        1,
        None,
        "input shape must be a list of positive integers",
        "[3, 32, 32]",
    ),
    "size: zero batch": (
        NET + "train: {batch_size: 0}\n",
        5,
        None,
        "parameter 'batch_size' must be positive, got 0",
        "above 0",
    ),
    "size: negative padding of the data": (
        NET + "data: {pad: -1}\n",
        5,
        None,
        "parameter 'pad' must not be negative",
        "0 or more",
    ),
    "size: data padding wider than the image": (
        NET + "data: {pad: 32}\n",
        5,
        None,
        "data.pad 32 does not fit images of 32 x 32 pixels",
        "at most 31",
    ),
    "size: negative synthetic data set": (
        NET + "data:\n  dataset: synthetic\n  synthetic: {train: -5}\n",
        7,
        None,
        "parameter 'synthetic.train' must be positive, got -5",
        "above 0",
    ),
    "size: crop larger than the padded image": (
        NET + "data:\n  pad: 4\n  augment: [flip, {crop: 48}]\n",
        7,
        None,
        "crop size 48 does not fit in images of 40 x 40",
        "pad the images more",
    ),
    "size: pool padding more than half the window": (
        """
        network:
          pool: {op: max_pool, size: 2, padding: 3}
    """,
        3,
        "pool",
        "max_pool padding 3 is more than half its size 2",
        "padding 1 or less",
    ),
    "size: a kernel larger than the image": (
        """
        input: {shape: [3, 8, 8]}
        network:
          conv: {op: conv2d, out: 8, kernel: 9, padding: 0}
    """,
        4,
        "conv",
        "does not fit a 8-pixel input",
        "smaller kernel",
    ),
    "size: too large to build": (
        """
        network:
          fc: {op: flatten}
          out: {op: linear, out: 100000000000}
    """,
        4,
        "out",
        "parameter 'out' is too large",
        "below",
    ),
    "size: not finite": (
        """
        network:
          scale: {op: mul, by: .inf}
    """,
        3,
        "scale",
        "parameter 'by' must be a finite number, got inf",
        "e.g. by:",
    ),
    "size: a schedule knot dividing by zero": (
        NET + "train:\n  lr: {knots: [0, epochs/0], values: [0, 1]}\n",
        6,
        None,
        "has no finite value",
        "division by zero",
    ),
    "size: the default schedule outlasting a short run": (
        NET + "train: {epochs: 3}\n",
        5,
        None,
        "warms up for 5 epochs, longer than epochs: 3",
        "set train.lr",
    ),
    # unknown keys, section by section
    "unknown: section": (
        NET + "trian: {epochs: 3}\n",
        5,
        None,
        "unknown section 'trian'",
        "did you mean 'train'?",
    ),
    "unknown: node parameter": (
        """
        network:
          conv: {op: conv2d, out: 8, kernal: 3}
    """,
        3,
        "conv",
        "unknown parameter 'kernal' for op 'conv2d'",
        "did you mean 'kernel'?",
    ),
    "unknown: train key": (
        NET + "train:\n  epoch: 3\n",
        6,
        None,
        "unknown parameter 'epoch' for the train: section",
        "did you mean 'epochs'?",
    ),
    "unknown: data key": (
        NET + "data:\n  augmnet: [flip]\n",
        6,
        None,
        "unknown parameter 'augmnet' for the data: section",
        "did you mean 'augment'?",
    ),
    "unknown: input key": (
        "input: {shape: [3, 32, 32], size: 32}\n" + NET,
        1,
        None,
        "unknown key 'size' in input:",
        "takes only shape",
    ),
    "unknown: schedule key": (
        NET + "train:\n  lr: {knots: [0, 5], values: [0, 1], warmup: 2}\n",
        6,
        None,
        "train.lr needs exactly knots: [...] and values: [...]",
        "e.g. lr:",
    ),
    "unknown: moving-average key": (
        NET + "train:\n  ema: {momentum: 0.99, evry: 5}\n",
        6,
        None,
        "unknown parameter 'evry' for averaging 'ema'",
        "did you mean 'every'?",
    ),
    "unknown: param_groups key": (
        NET + "train:\n  param_groups:\n    - {params: '*.bias', lr_scal: 2}\n",
        7,
        None,
        "unknown parameter 'lr_scal' for a train.param_groups item",
        "did you mean 'lr_scale'",
    ),
    "unknown: synthetic key": (
        NET + "data:\n  synthetic: {train: 10, images: 5}\n",
        6,
        None,
        "unknown parameter 'images' for data.synthetic",
        "remove 'images'",
    ),
    "unknown: augmentation": (
        NET + "data:\n  augment: [crop, rotate]\n",
        6,
        None,
        "unknown augmentation 'rotate'",
        "crop, flip",
    ),
    "unknown: transforms parameter": (
        NET + "transforms:\n  - ghost_batch_norm: {split: 16}\n",
        6,
        None,
        "unknown parameter 'split' for pass 'ghost_batch_norm'",
        "did you mean 'splits'",
    ),
    "unknown: transforms entry": (
        NET + "transforms:\n  - {remove_identity: {}, swap_pool_activation: {}}\n",
        6,
        None,
        "transforms item 1 must be a pass name",
        "netgraph passes",
    ),
    "unknown: pass": (
        NET + "transforms: [swap_pool_activaton]\n",
        5,
        None,
        "unknown pass 'swap_pool_activaton'",
        "did you mean 'swap_pool_activation'?",
    ),
    "bad value: transforms parameter": (
        NET + "transforms:\n  - ghost_batch_norm: {splits: 0}\n",
        6,
        None,
        "pass 'ghost_batch_norm' (transforms item 1): parameter 'splits' must be positive",
        "above 0",
    ),
    # blocks
    "block: parameter left unset": (
        """
        blocks:
          conv_bn:
            conv: {op: conv2d, out: $c}
        network:
          a: {block: conv_bn}
    """,
        6,
        "a",
        "block 'conv_bn' needs parameter 'c'",
        "{block: conv_bn, c: ...}",
    ),
    "block: parameter it does not have": (
        """
        blocks:
          conv_bn: {conv: {op: conv2d, out: $c}}
        network:
          a: {block: conv_bn, c: 8, width: 3}
    """,
        5,
        "a",
        "block 'conv_bn' has no parameter 'width'",
        "its parameters: c",
    ),
    "block: nothing but defaults": (
        """
        blocks:
          conv_bn: {$defaults: {c: 8}}
        network:
          a: {block: conv_bn}
    """,
        3,
        None,
        "block 'conv_bn' must be a mapping of one or more nodes",
        "e.g. conv_bn:",
    ),
    # node names
    "name: twice in one block": (
        """
        blocks:
          conv_bn:
            conv: {op: conv2d, out: $c}
            conv: {op: batch_norm}
        network:
          a: {block: conv_bn, c: 8}
    """,
        5,
        None,
        "key 'conv' appears twice (first on line 4)",
        "keep only the last",
    ),
    "name: an attribute of every torch module": (
        """
        network:
          forward: {op: conv2d, out: 8}
    """,
        3,
        "forward",
        "'forward' cannot name a node: it is an attribute every torch module has",
        "rename it",
    ),
    "name: a Python keyword, inside a block": (
        """
        blocks:
          unit:
            class: {op: conv2d, out: $c}
        network:
          a: {block: unit, c: 8}
    """,
        6,
        "a/class",
        "'class' cannot name a node: it is a Python keyword [in block 'unit', line 4]",
        "rename it",
    ),
    "name: a line break, shown escaped": (
        """
        network:
          "a\\nb": {op: relu}
    """,
        3,
        "a\\nb",
        "'a\\nb' is not a valid node name",
        None,
    ),
    "name: reserved": (
        """
        network:
          input: {op: relu}
    """,
        3,
        "input",
        "'input' is reserved and cannot name a node",
        "in, op and block are node keys",
    ),
    # empty networks
    "empty: no network section": ("train: {epochs: 3}\n", 0, None, "the recipe has no network", None),
    "empty: an empty network": ("network: {}\n", 1, None, "the recipe has no network", None),
    "empty: an empty dict of nodes": (
        """
        network:
          conv: {op: conv2d, out: 8}
          body: {}
    """,
        4,
        "body",
        "empty dict: a group needs at least one node",
        None,
    ),
    # YAML the safe loader refuses or that never ends
    "yaml: a key that is a list": (
        "network:\n  ? [a, b]\n  : {op: relu}\n",
        2,
        None,
        "a key must be a name or a number",
        "'?'",
    ),
    "yaml: a bad merge key": (
        "network:\n  conv: {op: relu}\n  <<: 5\n",
        3,
        None,
        "not valid YAML: expected a mapping or list of mappings for merging",
        None,
    ),
    "yaml: an anchor inside itself": (
        NET + "data: &d {augment: [*d]}\n",
        5,
        None,
        "nested more than 50 levels deep",
        "contain itself",
    ),
    "yaml: aliases of aliases": (
        NET
        + "".join(
            f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10) if i else '1, 2, 3, 4, 5, 6, 7, 8, 9, 10'}]\n"
            for i in range(6)
        ),
        9,
        None,
        "holds more than 100,000 values",
        "as a block",
    ),
    "yaml: cut short at the end of the file": (
        NET + "data:\n  pad: 4\n  augment\n",
        7,
        None,
        "not valid YAML: could not find expected ':'",
        None,
    ),
    "yaml: a tab": ("network:\n\tconv: {op: relu}\n", 2, None, "not valid YAML", None),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_recipe_mistake(write, case):
    text, line, node, says, hint = RECIPES[case]
    path = write("r.yaml", text)
    check(failure(path), path, line or None, says, node, hint)


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch pwned']",
        "!!python/object/new:os.system ['touch pwned']",
        "!!python/object:os.system {}",
        "!!python/name:os.system ''",
        "!!python/module:os ''",
    ],
)
def test_python_tags_are_refused_and_nothing_runs(write, tmp_path, monkeypatch, tag):
    monkeypatch.chdir(tmp_path)  # where 'touch pwned' would leave its file
    path = write("evil.yaml", f"network:\n  conv: {{op: conv2d, out: 8}}\n  act: {tag}\n")
    check(failure(path), "evil.yaml", 3, "YAML tag refused", hint="nothing is executed")
    assert not (tmp_path / "pwned").exists()


def test_base_cycle_names_the_line_that_closes_it(write):
    write("a.yaml", "# parent\nbase: b.yaml\n" + NET)
    b = write("b.yaml", "base: a.yaml\n" + NET)
    err = failure(b)
    check(
        err,
        str(b).replace("b.yaml", "a.yaml"),
        2,
        "base: chain loops back on itself",
        None,
        "remove one of the base: lines",
    )
    assert err.message.count("b.yaml") == 2  # the chain: b -> a -> b


@pytest.mark.parametrize(
    "base, says",
    [
        ("nowhere.yaml", "base recipe 'nowhere.yaml' not found"),
        ("sub/", "base recipe 'sub/' not found"),
        ('"a\\0b.yaml"', "is not a usable path"),
        ("[a.yaml]", "base: must be a file path"),
    ],
)
def test_missing_or_unusable_parent(write, base, says):
    path = write("child.yaml", f"# a child\nbase: {base}\n" + NET)
    check(failure(path), path, 2, says)


@pytest.mark.parametrize("loop", ["itself", "each other"])
def test_a_base_chain_through_a_symlink_loop_is_one_line(write, tmp_path, loop):
    """fz_loop.yaml -> fz_loop.yaml (or a.yaml -> b.yaml -> a.yaml): pathlib's RuntimeError
    ('Symlink loop from ...') ended `summary` in a 33-line traceback."""
    if loop == "itself":
        os.symlink("fz_loop.yaml", tmp_path / "fz_loop.yaml")
    else:
        os.symlink("b.yaml", tmp_path / "fz_loop.yaml")
        os.symlink("fz_loop.yaml", tmp_path / "b.yaml")
    child = write("child.yaml", "# a child\nbase: fz_loop.yaml\n" + NET)
    check(failure(child), child, 2, "base: 'fz_loop.yaml' is not a usable path: a loop of symbolic links")
    # the looping file named on the command line
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "fz_loop.yaml")
    assert str(err.value) == f"{tmp_path / 'fz_loop.yaml'}: cannot read recipe file: a loop of symbolic links"


@pytest.mark.parametrize("name", ["x" * 5000, "a/" * 1500 + "x.yaml"], ids=["one name", "many folders"])
def test_a_base_name_of_thousands_of_characters_is_quoted_once_and_cut(write, name):
    """A base: of 5,000 characters was refused in a 'line' of 10,122 (the name twice in full)."""
    path = write("child.yaml", f"base: {name}\n" + NET)
    err = failure(path)
    message = str(err)
    assert len(message) < 600 and name[:200] not in message, message
    assert f"({len(name):,} characters)" in message, message
    assert err.file == str(path) and err.line == 1


def test_a_child_deleting_the_network(write):
    write("parent.yaml", NET)
    child = write("child.yaml", "base: parent.yaml\nnetwork: null\n")
    check(failure(child), child, 2, "the recipe has no network")


def test_recipe_dicts_that_contain_themselves_or_nest_too_deeply():
    looped = {"network": {"conv": {"op": "conv2d", "out": 8}}, "train": {}}
    looped["train"]["again"] = looped
    with pytest.raises(RecipeError, match=r"^mine.py: nested more than 50 levels deep \(does a value"):
        recipe_from_dict(looped, file="mine.py")


def test_paths_that_flatten_alike_stay_apart():
    """Node paths become parameter names with '.' and code names with '_': 'a/b_c' and
    'a_b/c' both give 'a_b_c' in the generated forward, and each keeps its own layer."""
    recipe = recipe_from_dict(
        {"network": {"a": {"b_c": {"op": "conv2d", "out": 4}}, "a_b": {"c": {"op": "conv2d", "out": 5}}}}
    )
    module = prepare(recipe)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    assert shapes["a.b_c.weight"] == (4, 3, 3, 3) and shapes["a_b.c.weight"] == (5, 4, 3, 3)


# --- data ---------------------------------------------------------------------------------


def test_pickle_labels_out_of_range(tmp_path):
    folder = write_layout(tmp_path, "cifar10", "python", [make_part(3, 10, 0)], make_part(2, 10, 1))
    path = folder / "data_batch_1"
    images, _ = make_part(3, 10, 0)
    write_pickle(path, {b"data": images.reshape(3, -1), b"labels": [1, -1, 12]})
    with raises_naming(path, match=r"label -1 is out of range 0..9 \(2 such labels\)"):
        read_cifar("cifar10", tmp_path)


@pytest.mark.parametrize(
    "content, says",
    [
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "expected uint8 N x 3072"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "expected uint8 N x 3072"),
        ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "holds no images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1, 2]]}, "labels"),
        ({1: 2, b"labels": [0]}, "has no key b'data'"),
        ([1, 2, 3], "holds a list, not the dict of a CIFAR pickle"),
    ],
)
def test_pickles_of_the_wrong_shape(tmp_path, content, says):
    folder = write_layout(tmp_path, "cifar10", "python", [make_part(3, 10, 0)], make_part(2, 10, 1))
    write_pickle(folder / "test_batch", content)
    with raises_naming(folder / "test_batch", match=says):
        read_cifar("cifar10", tmp_path)


@pytest.mark.parametrize(
    "kind, content, says",
    [
        ("binary", b"airplane\nautomobile\n", "lists 2 class names, expected 10"),
        ("binary", b"\xff\xfe\x00junk", "is not text"),
        ("python", {b"label_names": 5}, "has no list under the key b'label_names'"),
    ],
)
def test_class_names_file(tmp_path, kind, content, says):
    folder = write_layout(tmp_path, "cifar10", kind, [make_part(3, 10, 0)], make_part(2, 10, 1))
    path = folder / ("batches.meta.txt" if kind == "binary" else "batches.meta")
    if kind == "binary":
        path.write_bytes(content)
    else:
        write_pickle(path, content)
    with raises_naming(path, match=says):
        read_cifar("cifar10", tmp_path)


class Truncating(http.server.BaseHTTPRequestHandler):
    """Promises 100,000 bytes, sends 1,000, and hangs up: a connection lost mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_an_interrupted_download_leaves_nothing_behind(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-binary.tar.gz"
    try:
        with pytest.raises(RecipeError, match="download interrupted: got 1,000 of 100,000 bytes") as info:
            download_cifar("cifar10", tmp_path / "cache", url=url)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert info.value.file == url and "try again" in info.value.hint
    assert list((tmp_path / "cache").iterdir()) == []  # no half archive under any name


def test_a_damaged_archive_keeps_the_data_already_there(tmp_path):
    """An archive that passes its MD5 but will not extract: the error names it, the cache
    holds neither the archive nor a half-extracted folder, and a folder extracted earlier
    is left as it was."""
    cache = tmp_path / "cache"
    old, _, _ = cifar10_binary(cache, records=(2,))
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    archive = tmp_path / "cifar-10-binary.tar.gz"
    make_archive(archive, {"cifar-10-batches-bin/data_batch_1.bin": os.urandom(3073 * 4)})
    archive.write_bytes(archive.read_bytes()[:60])  # cut inside the compressed stream
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(RecipeError, match="cannot extract") as info:
        download_cifar("cifar10", cache, url=archive.as_uri(), md5=md5)
    assert info.value.file == str(cache / "cifar-10-binary.tar.gz") and "download it again" in info.value.hint
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-bin"]
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before


def test_a_data_set_smaller_than_one_batch(write):
    from netgraph.runs.run import run_recipe

    path = write(
        "tiny.yaml",
        textwrap.dedent("""
        network:
          conv: {op: conv2d, out: 4}
          pool: {op: global_avg_pool}
          flat: {op: flatten}
          fc: {op: linear, out: 10}
        data: {dataset: synthetic, synthetic: {train: 8, test: 4, classes: 10}}
        train: {batch_size: 16, epochs: 1, lr: {knots: [0, 1], values: [0.1, 0]}}
    """),
    )
    with pytest.raises(RecipeError) as info:
        run_recipe(load_recipe(path), device="cpu")
    assert "the training set (8 images) is smaller than one batch (16 images)" in info.value.message
    assert "smaller train.batch_size" in info.value.hint
    assert "tiny.yaml:" in str(info.value)  # the file and the line of train.batch_size


def test_the_failure_modes_page_names_real_tests():
    """docs/failure-modes.md points at tests that exist (rows marked (engine) are the
    training engine's)."""
    for row in (ROOT / "docs" / "failure-modes.md").read_text().splitlines():
        if not row.startswith("| ") or "(engine)" in row:
            continue
        for file, name in re.findall(r"`(test_\w+\.py)::(\w+)", row):
            assert f"def {name}(" in (ROOT / "tests" / file).read_text(), (file, name)
        for case in re.findall(r"`R::mistake\[([^\]]+)\]`", row):
            assert case.endswith("...") or case in RECIPES, case

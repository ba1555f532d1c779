"""Small inputs that used to crash, hang or blow up the loader: each ends in one RecipeError
line, quickly (docs/failure-modes.md, "limits")."""

import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import pytest
from conftest import RECIPES

from netgraph import RecipeError, build_graph, load_recipe, recipe_from_dict
from netgraph.recipe.load import MAX_FILE_BYTES


def refusal(path, overrides=(), seconds=10):
    """The one-line RecipeError of loading and building the recipe, within ``seconds``."""
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_graph(load_recipe(path, overrides))
    assert time.perf_counter() - start < seconds
    text = str(info.value)
    assert "\n" not in text, text
    return text


NET = "network:\n  conv: {op: conv2d, out: 8}\n"


def chain_of_blocks(n):
    """Block i uses block i-1: n levels of nesting in the expanded network."""
    lines = ["blocks:", "  b0: {act: {op: relu}}"]
    lines += [f"  b{i}: {{x: {{block: b{i - 1}}}}}" for i in range(1, n)]
    return "\n".join(lines + ["network:", f"  top: {{block: b{n - 1}}}", ""])


def doubling_blocks(n):
    """Block i uses block i-1 twice: 2**n nodes from n + 3 lines."""
    lines = ["blocks:", "  b0: {act: {op: relu}}"]
    lines += [f"  b{i}: {{x: {{block: b{i - 1}}}, y: {{block: b{i - 1}}}}}" for i in range(1, n)]
    return "\n".join(lines + ["network:", f"  top: {{block: b{n - 1}}}", ""])


LOADING = {
    "a NUL byte": (NET + "  act: {op: relu}\x00\n", "r.yaml", "not valid YAML"),
    "a control byte": ("network:\n  conv: {op: conv2d, out: 8}\x07\n", "r.yaml", "not valid YAML"),
    "a hexadecimal key": ("network:\n  0x10: {op: relu}\n", "r.yaml:2", "node '16'"),
    "a sexagesimal key": ("network:\n  1:30: {op: relu}\n", "r.yaml:2", "node '90'"),
    "an integer of 5,000 digits": (
        "network:\n  conv: {op: conv2d, out: " + "9" * 5000 + "}\n",
        "r.yaml:2",
        "digits",
    ),
    # an explicit key (?): a simple key of more than 1,024 characters is not YAML
    "a key of 5,000 digits": ("network:\n  ? " + "9" * 5000 + "\n  : {op: relu}\n", "r.yaml:2", "digits"),
    "a chain of 500 blocks": (chain_of_blocks(500), "r.yaml", "levels deep"),
    "blocks that double 40 times": (doubling_blocks(40), "r.yaml", "100,000"),
}


@pytest.mark.parametrize("case", list(LOADING))
def test_loading_never_crashes(write, case):
    text, where, says = LOADING[case]
    message = refusal(write("r.yaml", text))
    assert where in message and says in message, message


def test_a_node_name_ending_in_a_line_break_is_refused(write):
    # '$' in a regular expression matches before a final line break: "act\n" passed the name check
    path = write("r.yaml", 'network:\n  conv: {op: conv2d, out: 8}\n  "act\\n": {op: relu}\n')
    assert "not a valid node name" in refusal(path)


SETS = {
    "nested 1,000 deep": "train.x=" + "[" * 1000 + "]" * 1000,
    "aliases of aliases": "train.x="
    + "{a: &a [1,1,1,1,1,1,1,1,1,1], "
    + ", ".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefg", "bcdefgh")
    )
    + "}",
    "a NUL byte": "train.x=a\x00b",
    "an integer of 5,000 digits": "train.epochs=" + "9" * 5000,
}


@pytest.mark.parametrize("case", list(SETS))
def test_a_set_value_is_checked_like_a_file_value(write, case):
    message = refusal(write("r.yaml", NET), [SETS[case]])
    assert message.startswith("--set train."), message


def test_wiring_is_linear_in_the_number_of_nodes():
    """48,000 nodes in one dict, inside the 100,000-value limit: built in seconds (a search
    for each node's place in its dict made `summary` take 166 s)."""
    n = 48_000
    recipe = recipe_from_dict({"network": {f"a{i}": {"op": "relu"} for i in range(n)}})
    start = time.perf_counter()
    graph = build_graph(recipe)
    assert len(graph) == n + 1
    # 1.8 s on a loaded 2-core machine; the quadratic wiring of the main took about
    # 35 s here (24,000 nodes: 8.8 s against 0.76 s now)
    assert time.perf_counter() - start < 15


def test_a_hint_does_not_loop_to_the_batch_size(write):
    """The ghost-batch-norm hint lists divisors of the batch size up to 64, found quickly even
    for a batch of 2**31 - 1 (a prime: the hint is [1])."""
    from netgraph import apply_transforms
    from netgraph.graph.passes import PassContext

    recipe = load_recipe(
        write("r.yaml", NET + "  bn: {op: batch_norm}\ntransforms:\n  - ghost_batch_norm: {splits: 16}\n")
    )
    start = time.perf_counter()
    with pytest.raises(RecipeError, match=r"not divisible by splits=16.*\(\[1\]\)"):
        apply_transforms(build_graph(recipe), recipe, PassContext(batch_size=2**31 - 1))
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "make",
    [
        lambda: recipe_from_dict({"0+": None, "network": {"fc": {"op": "linear", "out": 2}}}, file="r.yaml"),
        lambda: load_recipe(RECIPES / "tiny.yaml", ["network={a+: 3}"]),
    ],
    ids=["a dict's append key", "a --set's append key"],
)
def test_an_append_key_without_a_list_names_where_it_was_written(make):
    """'KEY+:' needs a list; the refusal names the recipe or the --set (found by hypothesis:
    recipe_from_dict's refusal named no file)."""
    with pytest.raises(RecipeError, match="appends to a list and needs a list") as err:
        make()
    assert err.value.file in ("r.yaml", "--set network={a+: 3}")


# --- the Python API: what a notebook or a worker passes, not what YAML can spell ------------

HUGE = 10**5000  # YAML refuses more than 4,300 digits when reading; a dict holds any int
POOLED = {
    "conv": {"op": "conv2d", "out": 8},
    "pool": {"op": "global_avg_pool"},
    "flat": {"op": "flatten"},
    "fc": {"op": "linear", "out": 10},
}


def _train(key):
    from netgraph.train.config import train_config

    return lambda: train_config(recipe_from_dict({"network": POOLED, "train": {key: HUGE}}, file="r.py"))


def _data(key):
    from netgraph.train.config import data_config

    return lambda: data_config(recipe_from_dict({"network": POOLED, "data": {key: HUGE}}, file="r.py"))


def _conv(key):
    network = {**POOLED, "conv": {"op": "conv2d", "out": 8, key: HUGE}}
    return lambda: build_graph(recipe_from_dict({"network": network}, file="r.py"))


API_HUGE = {
    **{f"train.{k}": _train(k) for k in ("epochs", "batch_size", "lr", "seed", "steps", "weight_decay")},
    **{f"data.{k}": _data(k) for k in ("pad", "dataset", "synthetic")},
    **{f"conv.{k}": _conv(k) for k in ("out", "kernel", "stride", "padding", "groups")},
    "input.shape": lambda: build_graph(
        recipe_from_dict({"network": POOLED, "input": {"shape": [3, HUGE, 32]}}, file="r.py")
    ),
    "name": lambda: recipe_from_dict({"network": POOLED, "name": HUGE}, file="r.py"),
}


@pytest.mark.parametrize("case", list(API_HUGE))
def test_a_huge_integer_through_the_python_api_is_refused_in_a_short_line(case):
    """A 5,001-digit int from Python is refused as a recipe file's is (formatting it raised
    Python's ValueError for more than 4,300 digits inside the refusal itself)."""
    with pytest.raises(RecipeError) as err:
        API_HUGE[case]()
    message = str(err.value)
    assert "an integer of 5,001 digits" in message and len(message) < 200, message
    assert err.value.file == "r.py", message


def test_an_integer_python_can_print_is_quoted_by_its_size():
    """4,001 digits print (the limit is 4,300), but not in a line: the formatter says its size."""
    network = {**POOLED, "conv": {"op": "conv2d", "out": 10**4000}}
    with pytest.raises(RecipeError) as err:
        build_graph(recipe_from_dict({"network": network}, file="r.py"))
    assert str(err.value) == (
        "r.py: node 'conv': parameter 'out' is too large: a 4,001-digit integer (use a value below 2,147,483,647)"
    )


LONG = "x" * 5000
API_LONG = {
    "an op name": {"network": {"a": {"op": LONG}}},
    "a node name": {"network": {LONG: {"op": "conv2d", "out": -1}}},
    "a parameter name": {"network": {"a": {"op": "relu", LONG: 1}}},
    "a parameter value": {"network": {"a": {"op": "conv2d", "out": LONG}}},
    "a section": {"network": POOLED, LONG: 1},
    "an in: path": {"network": {"a": {"op": "relu", "in": LONG}}},
    "a block name": {"network": {"a": {"block": LONG}}},
    "a list of 3,000 numbers": {"network": POOLED, "input": {"shape": list(range(-1, 3000))}},
    "an optimizer": {"network": POOLED, "train": {"optimizer": LONG}},
}


@pytest.mark.parametrize("case", list(API_LONG))
def test_a_long_name_or_value_is_quoted_cut(case):
    """No refusal quotes a value of more than a line's worth in full (a 5,000-character name
    made errors of 5,000 to 10,000 characters)."""
    from netgraph.train.config import train_config

    with pytest.raises(RecipeError) as err:
        recipe = recipe_from_dict(API_LONG[case], file="r.py")
        train_config(recipe)
        build_graph(recipe)
    message = str(err.value)
    assert len(message) < 600 and "\n" not in message, message
    assert "..." in message, message


def test_a_long_set_is_named_by_its_start_and_end(write):
    message = refusal(write("r.yaml", NET), ["x" * 5000 + "=1"])
    assert len(message) < 600 and message.startswith("--set xxx") and "=1: unknown section" in message


# --- huge files: refused before they are read --------------------------------------------

# the limit on a recipe's bytes, bounded here so that a checkout with a larger one (16 MiB
# before issue 31) is tried on files of 64 KiB, not parsed for minutes
LIMIT = min(MAX_FILE_BYTES, 2**16)
DENSEST = {  # the costliest YAML per byte: one value for every two or three bytes
    "a list of numbers": lambda n: "network:\n  a: {op: relu}\ntrain:\n  x: [" + ",".join(["1"] * n) + "]\n",
    "a mapping of keys": lambda n: (
        "network:\n  a: {op: relu}\ntrain:\n  x: {" + ",".join(f"k{i}: 1" for i in range(n)) + "}\n"
    ),
    "a chain of nodes": lambda n: "network:\n" + "".join(f"  n{i}: {{op: relu}}\n" for i in range(n)),
    "an alias bomb": lambda n: (
        "network:\n  a: {op: relu}\ntrain:\n  a: &a [1,1,1,1,1,1,1,1,1,1]\n"
        + "".join(f"  b{i}: &b{i} [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" for i in range(n))
    ),
}


def _largest(make, limit):
    """make(n) for the largest n whose text fits in ``limit`` bytes."""
    low, high = 1, 1
    while len(make(high).encode()) <= limit:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if len(make(mid).encode()) <= limit else (low, mid)
    return make(low)


def test_a_huge_recipe_file_is_refused_before_it_is_read(tmp_path):
    """A 1.5 MB recipe (a chain of 60,000 nodes) was refused only after 8.7 s and 470 MB of
    parsing (over 20 s on a loaded machine): now before it is read."""
    path = tmp_path / "huge.yaml"
    path.write_text(DENSEST["a chain of nodes"](60_000) + "# " + "x" * 300_000 + "\n")
    assert path.stat().st_size > 1_500_000
    tracemalloc.start()
    start = time.process_time()
    with pytest.raises(RecipeError, match=r"the file holds 1,5\d\d,\d\d\d bytes: too large for a recipe"):
        load_recipe(path)
    seconds, peak = time.process_time() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1 and peak < 2**20, (seconds, peak)


def test_a_recipe_and_its_base_files_share_the_limit(write):
    half = "# " + "x" * (LIMIT // 2) + "\n"
    write("parent.yaml", NET + half)
    child = write("child.yaml", "base: parent.yaml\n" + half)
    with pytest.raises(
        RecipeError,
        match=r"parent.yaml: the file holds [\d,]+ bytes, and the recipes built on it [\d,]+: together too large",
    ) as err:
        load_recipe(child)
    assert "\n" not in str(err.value)


def test_a_set_value_from_python_is_held_to_the_same_limit(write):
    """A --set from Python has no command line to bound it: its value is held to the file limit."""
    with pytest.raises(
        RecipeError, match=r"^--set train.x=1,1,1.*characters\).*,1,1,1: a value of 80,001 characters"
    ):
        load_recipe(write("r.yaml", NET), ["train.x=" + "1," * 40_000 + "1"])


@pytest.mark.parametrize("case", list(DENSEST))
def test_the_costliest_recipe_under_the_limit_is_read_within_a_second(tmp_path, case):
    """Whatever a file holds, accepting or refusing it costs at most about 1 s and 100 MB beyond
    start-up: measured in a fresh process (netgraph.recipe.load imports no torch), the densest files
    that fit take 0.6 s of CPU and 15 MB on a loaded 2-core machine (1.5 s allowed for noise)."""
    path = tmp_path / "dense.yaml"
    path.write_text(_largest(DENSEST[case], LIMIT))
    probe = (
        "import json, resource, sys, time\n"
        "from netgraph.recipe.load import RecipeError, load_recipe\n"
        "rss, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()\n"
        "try:\n    load_recipe(sys.argv[1]); said = 'accepted'\n"
        "except RecipeError as err:\n    said = str(err)\n"
        "print(json.dumps([time.process_time() - start,\n"
        "    (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024, said]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, env=env)
    seconds, memory, said = json.loads(done.stdout)
    assert seconds < 1.5 and memory < 100 * 2**20, (seconds, memory, said)


@pytest.mark.parametrize(
    "blocks, says",
    [
        ("{2.5: {a: {op: relu}}}", "unknown block 'b' (blocks defined: 2.5)"),
        (
            "{b: {$defaults: {1: 2, q: 3}, a: {op: relu}}}",
            "block 'b' has no parameter 'z' (its parameters: 1, q)",
        ),
    ],
    ids=["a block named by a number", "a block default named by a number"],
)
def test_names_that_are_numbers_are_listed_in_hints(write, blocks, says):
    """Found by the Python API's property test: a hint joined names that were not text and
    raised TypeError (a YAML file can write them too)."""
    path = write("r.yaml", f"blocks: {blocks}\nnetwork:\n  x: {{block: b, z: 1}}\n")
    assert says in refusal(path)

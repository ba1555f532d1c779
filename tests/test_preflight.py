"""What `train` would fail on is refused before any work, with the recipe's line (issue 18's
first class: each of these raised a torch error or ran out of memory mid-run before)."""

import textwrap

import pytest

from netgraph import RecipeError, load_recipe
from netgraph.cli import main
from netgraph.runs.run import run_recipe

DATA = "data: {dataset: synthetic, synthetic: {train: 64, test: 32, classes: 10}}\n"
TRAIN = "train: {epochs: 1, batch_size: 32, lr: 0.1}\n"


def recipe_file(tmp_path, network, extra="", name="r.yaml"):
    path = tmp_path / name
    path.write_text("network:\n" + textwrap.indent(textwrap.dedent(network), "  ") + DATA + TRAIN + extra)
    return path


def refused(path, match, *sets):
    with pytest.raises(RecipeError, match=match) as err:
        run_recipe(load_recipe(path, list(sets)), device="cpu")
    return err.value


POOLED = """\
    conv: {op: conv2d, out: 4}
    pool: {op: global_avg_pool}
    flat: {op: flatten}
    fc: {op: linear, out: 10}
"""


def test_fewer_outputs_than_classes(tmp_path):
    path = recipe_file(tmp_path, POOLED.replace("out: 10", "out: 5"))
    err = refused(
        path,
        r"r.yaml:5: node 'fc': the network's output is 5, but the synthetic images "
        r"have 10 classes",
    )
    assert "out: 10" in err.hint


def test_training_batches_the_network_cannot_take(tmp_path):
    flat = "conv: {op: conv2d, out: 4}\nflat: {op: flatten}\nfc: {op: linear, out: 10}\n"
    path = recipe_file(tmp_path, flat)
    path.write_text(path.read_text().replace("classes: 10}}", "classes: 10}, augment: [{crop: 28}]}"))
    refused(
        path,
        r"r.yaml:\d+: data.augment makes training batches of 3 x 28 x 28, the test images are "
        r"3 x 32 x 32, and the network cannot take both: node 'fc' would have 31,370 parameters",
    )
    # a network that takes any size trains on the crops
    pooled = recipe_file(tmp_path, POOLED)
    pooled.write_text(pooled.read_text().replace("classes: 10}}", "classes: 10}, augment: [{crop: 28}]}"))
    run, _, _ = run_recipe(load_recipe(pooled), device="cpu")
    assert run.steps == 2


def test_label_smoothing_above_1(tmp_path):
    refused(
        recipe_file(tmp_path, POOLED),
        r"--set train.label_smoothing=1.5: train.label_smoothing is a "
        r"share .* from 0 to 1; got 1.5",
        "train.label_smoothing=1.5",
    )


def test_a_celu_alpha_beyond_float32(tmp_path, capsys):
    path = recipe_file(tmp_path, POOLED.replace("pool:", "act: {op: celu, alpha: 1.0e+39}\n    pool:"))
    assert main(["summary", str(path)]) == 2  # summary refuses it too: nothing trains on an inf
    assert (
        "r.yaml:3: node 'act': parameter 'alpha' is 1e+39, beyond float32's largest"
        in capsys.readouterr().err
    )


def test_a_whitening_kernel_larger_than_the_image(tmp_path):
    path = recipe_file(tmp_path, POOLED, "transforms:\n  - whiten_stem: {kernel: 40}\n")
    refused(
        path,
        r"r.yaml:\d+: node 'conv': pass 'whiten_stem' .*kernel 40 is larger than the 32 x 32 "
        r"input images",
    )


def test_sizes_that_cannot_be_allocated(tmp_path, capsys):
    # YAML 1.1 reads 190:20:30 as 685,230 (base 60): its output alone would not fit
    path = recipe_file(tmp_path, POOLED.replace("out: 4", "out: 190:20:30"))
    err = refused(
        path,
        r"r.yaml:2: node 'conv': it outputs 685230 x 32 x 32 values an image: a batch of "
        r"32 needs 83.6 GiB for that output alone",
    )
    assert "base-60 number 685,230" in err.hint
    # parameters beyond the machine's memory: 4 copies of 1e10 float32 values (weights, gradients,
    # optimizer state, average) before any activation
    huge = recipe_file(
        tmp_path,
        POOLED.replace(
            "fc: {op: linear, out: 10}", "fc: {op: linear, out: 100000}\n    fc2: {op: linear, out: 10}"
        ).replace("out: 4}", "out: 100000, kernel: 1}"),
        name="huge.yaml",
    )
    refused(huge, r"the network's 10,001,\d+,\d+ parameters need at least \d+.\d GiB to train")
    # train reports it before loading anything onto the device, in one line
    assert main(["train", str(path), "--device", "cpu", "--quiet", "--log", str(tmp_path / "l.jsonl")]) == 2
    out = capsys.readouterr()
    assert "it outputs 685230 x 32 x 32 values an image" in out.err and "Traceback" not in out.err
    assert not (tmp_path / "l.jsonl").exists()


# --- the same check where modules are made (issue 31): compile_graph and summary -------------

WIDE = {
    "conv": {"op": "conv2d", "out": 2**31 - 1},
    "pool": {"op": "global_avg_pool"},
    "flat": {"op": "flatten"},
    "fc": {"op": "linear", "out": 10},
}


def test_compile_graph_refuses_a_network_beyond_the_machine_before_allocating():
    """A conv of 2**31 - 1 channels: 224 GiB of weights. compile_graph asked torch for them and
    died in DefaultCPUAllocator (a size that fits only in swap took the machine down)."""
    import time

    from netgraph import build_graph, compile_graph, recipe_from_dict

    graph = build_graph(recipe_from_dict({"network": WIDE}, file="r.py"))
    start = time.perf_counter()
    with pytest.raises(RecipeError, match=r"need at least 304\.0 GiB to build, more than the") as err:
        compile_graph(graph)
    assert time.perf_counter() - start < 5  # counted on the meta device, nothing allocated
    assert err.value.node == "conv" and err.value.file == "r.py"
    assert "224.0 GiB for this node" in str(err.value)


def test_compile_graph_refuses_what_does_not_fit_in_the_machine_s_memory(monkeypatch):
    """The limit is the machine's memory: with 64 MiB of it, a network of 100 MiB is refused."""
    import os

    from netgraph import build_graph, compile_graph, recipe_from_dict

    sysconf = os.sysconf
    monkeypatch.setattr(
        os, "sysconf", lambda name: 16384 if name == "SC_PHYS_PAGES" else sysconf(name)
    )  # 16,384 pages of 4 KiB: 64 MiB
    network = {**POOLED_DICT, "fc": {"op": "linear", "out": 25 * 2**20 // 4}}  # 4 x 26M floats
    graph = build_graph(recipe_from_dict({"network": network}, file="r.py"))
    with pytest.raises(RecipeError, match="GiB to build, more than the 0.1 GiB of this machine's memory"):
        compile_graph(graph)


POOLED_DICT = {
    "conv": {"op": "conv2d", "out": 4},
    "pool": {"op": "global_avg_pool"},
    "flat": {"op": "flatten"},
}


def test_summary_says_what_the_network_needs_and_that_it_does_not_fit(tmp_path, capsys):
    """`summary` printed 81.6 billion parameters without a word: it now gives the memory and
    warns of what compile_graph and train would refuse."""
    import warnings

    path = recipe_file(tmp_path, POOLED.replace("out: 4", "out: 2147483647"))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "memory: 304.0 GiB of parameters and buffers; the largest output, 'conv' (2147483647x32x32)" in out
    said = [str(w.message) for w in said]
    assert len(said) == 2, said
    assert "r.yaml:2: node 'conv': the network's 81,604,378,596 parameters need at least 304.0 GiB" in said[0]
    assert said[0].endswith("compile_graph refuses it") and "for that output alone" in said[1]
    # a network that fits is summarised without a word of warning
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["summary", str(recipe_file(tmp_path, POOLED, name="small.yaml"))]) == 0
    assert said == []
    assert (
        "memory: 0.6 KiB of parameters and buffers; the largest output, 'conv' (4x32x32), 0.5 MiB for a "
        "batch of 32 in float32" in capsys.readouterr().out
    )

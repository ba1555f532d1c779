"""What a run costs, second by second (issue 33): the parts `netgraph train` reports add up to
the wall time measured outside the process; a run of one rank imports no distributed
machinery; the per-epoch table sees the plain image (the records' way) and the final
evaluation the recipe's test-time views, without changing a bit of training."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, small_recipe

from netgraph.recipe.load import load_recipe
from netgraph.runs.run import run_recipe
from netgraph.runs.timing import PARTS

SMALL = small_recipe(["data.augment", "train.label_smoothing", "train.ema"])
# printed at the end of the run: the netgraph modules it imported
MODULES = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith('netgraph'))))"


def _train(tmp_path, *extra, driver=None):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL)
    args = ["train", str(recipe), "--device", "cpu", "--quiet", "--log", str(tmp_path / "log.jsonl")]
    args += ["--json-out", str(tmp_path / "result.json"), *extra]
    command = [sys.executable, "-m", "netgraph", *args]
    if driver:
        command = [sys.executable, "-c", f"from netgraph.cli import main; main({args!r}); {driver}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return done, wall, json.loads((tmp_path / "result.json").read_text())


@pytest.mark.slow
def test_the_reported_parts_add_up_to_the_wall_time_measured_outside(tmp_path):
    done, wall, result = _train(tmp_path)
    parts = result["time_s"]
    assert list(parts) == [key for key, _ in PARTS] + ["other", "total"]
    named = sum(parts[key] for key, _ in PARTS)
    assert abs(parts["total"] - wall) < 1.0, (parts, wall)
    assert abs(named - wall) < 1.0, (parts, wall)  # what no part covers is under a second
    assert all(parts[key] >= 0 for key, _ in PARTS)
    assert parts["start_up"] > 0 and parts["training_steps"] > 0
    assert parts["epoch_evaluation"] > 0 and parts["final_evaluation"] > 0
    run = result  # one run: its own figures are the parts'
    assert parts["final_evaluation"] == run["eval_time_s"]
    assert parts["epoch_evaluation"] == run["epoch_eval_time_s"]
    line = [x for x in done.stdout.splitlines() if x.startswith("wall time ")][0]
    assert f"wall time {parts['total']:.2f} s: start-up {parts['start_up']:.2f} s" in line


@pytest.mark.slow
def test_a_run_of_one_rank_imports_no_distributed_module(tmp_path):
    done, _, _ = _train(tmp_path, driver=MODULES)
    modules = json.loads(done.stdout.splitlines()[-1])
    assert "netgraph.train.engine" in modules  # it trained
    assert not [m for m in modules if "distributed" in m], modules


def _run(tmp_path, *sets):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return run_recipe(load_recipe(str(path), list(sets)), device="cpu")


def test_the_table_sees_the_plain_image_and_the_final_evaluation_the_views(tmp_path):
    """Plain each epoch, flip at the end: the same weights bit for bit as with the views each
    epoch; the per-epoch evaluation is timed apart from the final one."""
    plain, plain_model, _ = _run(tmp_path)
    views, views_model, _ = _run(tmp_path, "train.eval_view=tta")
    for (name, a), (_, b) in zip(plain_model.state_dict().items(), views_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert plain.test_acc == views.test_acc and plain.test_loss == views.test_loss  # the same final
    assert views.log[-1]["test_acc"] == views.test_acc  # one evaluation after the last epoch
    assert plain.log[-1]["test_loss"] != plain.test_loss  # the plain image, then the views
    assert plain.epoch_eval_time_s > 0 and plain.eval_time_s > 0
    assert all(e["test_acc"] is not None for e in plain.log)


def test_eval_every_evaluates_every_n_epochs_and_the_last(tmp_path):
    every, _, _ = _run(tmp_path, "train.eval_every=2")
    assert [e["test_acc"] is not None for e in every.log] == [False, True, True]
    none, _, _ = _run(tmp_path, "train.eval_every=0")
    assert [e["test_acc"] is not None for e in none.log] == [False, False, False]
    assert none.epoch_eval_time_s == 0 and none.test_acc == every.test_acc


def test_the_table_caption_names_the_view_of_its_test_columns(tmp_path):
    from netgraph.cli.train import test_columns
    from netgraph.train.engine import TrainConfig

    assert test_columns(TrainConfig(tta=["flip"])).startswith("test columns: every epoch, the plain image")
    assert "train.tta's views (train.eval_view: tta)" in test_columns(
        TrainConfig(tta=["flip"], eval_view="tta")
    )
    assert "every 3 epochs and the last" in test_columns(TrainConfig(eval_every=3))


def test_anchor_ratio_refuses_a_script_a_patch_does_not_fit():
    import anchor_ratio  # tools/ is on the path (conftest)

    with pytest.raises(SystemExit, match="the patch 'data read from the CIFAR binary layout"):
        anchor_ratio.patch_source("print('not airbench')\n", "cpu", [32, 64, 64], 2000, 8)


@pytest.mark.slow
def test_anchor_ratio_times_a_pair_and_profiles_each_side(tmp_path):
    """Without airbench's script: tiny.yaml against tools/reference_train.py on the sample, one
    pair, then each side once under torch.profiler; both train the same kind of network, so
    both sides' heaviest operators include the convolution's backward."""
    out = tmp_path / "ratio.json"
    command = [sys.executable, str(ROOT / "tools" / "anchor_ratio.py"), "--tiny", "--pairs", "1"]
    done = subprocess.run(
        [*command, "--ops", "8", "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["anchor"].startswith("tools/reference_train.py") and len(record["runs"]) == 1
    assert record["ratio"] == record["runs"][0]["netgraph_s"] / record["runs"][0]["anchor_s"]
    for side in ("netgraph", "anchor"):
        ops = record["ops"][side]
        assert len(ops) == 8 and all(op["calls"] > 0 and op["self_cpu_s"] > 0 for op in ops)
        assert "aten::convolution_backward" in [op["op"] for op in ops], ops

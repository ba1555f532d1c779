"""A run is prepared once (runs.plan.prepare) and handed down: one `netgraph train` reads each
section of its recipe into a config once, whatever the number of seeds, and every consumer
(the seeds' runs, the checkpoint, the header) takes the Plan instead of reading the recipe."""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

import pytest
import torch

from netgraph import load_recipe
from netgraph.cli import main
from netgraph.runs.plan import Plan, prepare
from netgraph.runs.run import run_recipe

SMALL = """\
data:
  dataset: synthetic
  synthetic: {train: 256, test: 64, classes: 4}
train:
  epochs: 1
  batch_size: 64
  lr: {knots: [0, 1], values: [0.4, 0]}
network:
  conv: {op: conv2d, out: 8, bias: false}
  bn: {op: batch_norm}
  act: {op: relu}
  pool: {op: global_avg_pool}
  flat: {op: flatten}
  fc: {op: linear, out: 4}
"""

# Preparing a run reads each of these once; before the Plan one seed of `netgraph train` ran
# train_config 6 times, data_config 4, fit_to_data and preflight twice each.
ONCE = ("train_config", "data_config", "fit_to_data", "preflight", "prepare")


def calls(argv) -> dict:
    """How often each netgraph function ran while main(argv) ran: name -> calls."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        assert main(argv) == 0
    finally:
        profile.disable()
    counts: dict = {}
    for (file, _, name), (_, total, *_) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if "netgraph" in Path(file).parts:
            counts[name] = counts.get(name, 0) + total
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("runs", [1, 3])
def test_one_train_command_builds_each_config_once(tmp_path, monkeypatch, runs):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    counts = calls(["train", "small.yaml", "--device", "cpu", "--runs", str(runs), "--quiet"])
    assert {name: counts.get(name, 0) for name in ONCE} == {name: 1 for name in ONCE}
    assert counts["run_recipe"] == runs  # the seeds share the Plan


def test_the_counting_sees_a_second_build(tmp_path, monkeypatch):
    """The count above can fail: a command that prepares twice is counted twice."""
    import netgraph.cli.summary as summary

    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    original = summary.run
    alone = calls(["summary", "small.yaml"])  # summary reads train: for its batch's memory

    def twice(args):
        original(args)
        prepare(load_recipe("small.yaml"), device="cpu")

    monkeypatch.setattr(summary, "run", twice)
    counts = calls(["summary", "small.yaml"])
    assert counts["train_config"] == alone.get("train_config", 0) + 1 and counts["prepare"] == 1


@pytest.mark.slow
def test_a_plan_trains_every_seed_as_a_recipe_does(tmp_path):
    """run_recipe(plan, seed) equals run_recipe(recipe, seed): the Plan holds what each run
    would have prepared, and a seed's run leaves the Plan as it was for the next."""
    (tmp_path / "small.yaml").write_text(SMALL)
    recipe = load_recipe(tmp_path / "small.yaml")
    plan = prepare(recipe, device="cpu")
    assert isinstance(plan, Plan) and plan.config.batch_size == 64
    for seed in (1, 2):
        _, from_plan, _ = run_recipe(plan, seed=seed)
        _, from_recipe, _ = run_recipe(recipe, seed=seed, device="cpu")
        for (name, a), (_, b) in zip(from_plan.state_dict().items(), from_recipe.state_dict().items()):
            assert torch.equal(a, b), name
    assert plan.config.seed == 0  # each run had its own config

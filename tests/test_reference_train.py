"""tools/reference_train.py, the independent loop netgraph's training is compared with: a
smoke run, and the original's details it must keep (group draws, ghost statistics)."""

import json

import numpy as np
import pytest
import reference_train
import torch
from conftest import ROOT, SAMPLE


def test_group_choices_give_each_contiguous_group_of_a_shuffle_one_choice():
    g = torch.Generator().manual_seed(0)
    flips = reference_train.group_choices(10, 2, g)
    assert sorted(flips.tolist()) == [0] * 5 + [1] * 5  # two groups of five
    crops = reference_train.group_choices(1000, 625, g)  # capped at 200 groups of 5
    values, counts = crops.unique(return_counts=True)
    assert len(values) == 200 and set(counts.tolist()) == {5} and values.max() < 625


def test_ghost_statistics_are_collated_on_the_switch_to_evaluation_only():
    """The original's averaged model: collated once, then evaluated with split 0's."""
    bn = reference_train.GhostBatchNorm(2, splits=2)
    bn.running_mean.copy_(torch.tensor([0.0, 0.0, 2.0, 4.0]))  # split 0, split 1
    bn.eval()
    assert bn.running_mean.tolist() == [1.0, 2.0, 1.0, 2.0]
    bn.running_mean.copy_(torch.tensor([0.0, 0.0, 2.0, 4.0]))
    bn.eval()  # already evaluating: no switch, no collation
    x = torch.zeros(1, 2, 1, 1)
    assert bn(x).flatten().tolist() == pytest.approx([0.0, 0.0], abs=1e-6)  # split 0's mean (0, 0)


def test_a_small_run_trains_and_reports(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    batches = SAMPLE / "cifar-10-batches-bin"
    records = np.fromfile(batches / "data_batch_1.bin", np.uint8).reshape(-1, 3073)  # 500 records
    more = np.fromfile(batches / "data_batch_2.bin", np.uint8).reshape(-1, 3073)
    np.concatenate([records, more[:12]]).tofile(folder / "data_batch_1.bin")  # 512: 8 batches of 64
    more[12:268].tofile(folder / "test_batch.bin")
    log = tmp_path / "runs.jsonl"
    args = [
        "--data-dir",
        str(tmp_path),
        "--width",
        "8",
        "8",
        "16",
        "16",
        "--batch",
        "64",
        "--epochs",
        "3",
        "--log",
        str(log),
    ]
    assert reference_train.main(args + ["--seed", "1"]) == 0
    assert reference_train.main(args + ["--seed", "1"]) == 0
    first, again = [json.loads(line) for line in log.read_text().splitlines()]
    assert (
        first["train_images"] == 512 and first["test_images"] == 256 and len(first["test_acc_by_epoch"]) == 3
    )
    assert first["test_acc"] == again["test_acc"] and first["test_loss"] == again["test_loss"]  # seeded
    assert np.isfinite(first["test_loss"]) and 0 <= first["test_acc"] <= 1


def test_the_fidelity_studys_netgraph_arms_are_valid_and_differ_only_in_the_counter():
    """tools/fidelity_study.py's netgraph arms load with tiny.yaml and reach the engine with
    the counter they name (the study's table is only as good as its arms)."""
    import fidelity_study

    from netgraph import load_recipe
    from netgraph.train.config import train_config

    counters = {}
    for arm, (trainer, switches) in fidelity_study.ARMS.items():
        if trainer == "netgraph":
            sets = switches[1::2]
            config = train_config(load_recipe(ROOT / "recipes" / "tiny.yaml", sets), "cpu")
            counters[arm] = config.average["params"].get("counter", "run")
    assert counters == {"netgraph": "run", "netgraph, moving-average counter per epoch": "epoch"}

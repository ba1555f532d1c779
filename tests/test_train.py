"""`netgraph train` and `netgraph eval`: recipes, outputs and errors (tiny.yaml on real images:
tests/test_quick_start.py, README's first command in a bare clone)."""

import json
import textwrap

import pytest
from conftest import RECIPES, SMALL

from netgraph import RecipeError, load_recipe
from netgraph.cli import main
from netgraph.train.config import data_config, train_config


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(textwrap.dedent(SMALL))
    return path


def test_recipe_sections_become_configs():
    recipe = load_recipe(RECIPES / "bag_of_tricks.yaml")
    t = train_config(recipe, "cuda")
    assert (t.epochs, t.batch_size, t.label_smoothing, t.average, t.tta) == (
        10,
        512,
        0.2,
        {"name": "ema", "params": {"momentum": 0.99, "every": 5, "counter": "epoch"}},
        ["flip"],
    )
    assert t.precision == "float16" and train_config(recipe, "cpu").precision == "float32"
    assert t.lr_schedule().knots == [0, 2, 8] and t.lr_schedule().values == [0, 1.0, 0.1]
    d = data_config(recipe)
    assert [type(a).__name__ for a in d.augmentations] == ["Crop", "Flip"] and d.pad == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "train: {epochs: 3, batchsize: 64}",
            r"r.yaml:1: unknown parameter 'batchsize' .*did you mean 'batch_size'",
        ),
        ("train: {precision: half}", r"r.yaml:1: parameter 'precision' must be one of"),
        ("train: {tta: [rotate]}", r"r.yaml:1: unknown test-time view 'rotate' in train.tta"),
        ("train: {lr: {knots: [0, 5], values: [0]}}", r"a schedule needs as many values as knots"),
        ("train: {ema: {momentum: 1.5}}", r"train.ema.momentum must be below 1"),
        (
            "data: {augment: [crop, {cutout: -2}]}",
            r"r.yaml:1: augmentation 'cutout': parameter 'size' must be positive",
        ),
        ("data: {augment: [rotate]}", r"unknown augmentation 'rotate'"),
        (
            "data: {dataset: imagenet}",
            r"r.yaml:1: unknown data source 'imagenet' in data.dataset \(known sources: arrays, cifar10",
        ),
    ],
)
def test_bad_train_and_data_sections(tmp_path, extra, message):
    path = tmp_path / "r.yaml"
    path.write_text(extra + "\nnetwork:\n  fc: {op: flatten}\n")
    recipe = load_recipe(path)
    with pytest.raises(RecipeError, match=message):
        train_config(recipe)
        data_config(recipe)


def test_train_writes_table_log_result_and_model(small, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                str(small),
                "--device",
                "cpu",
                "--log",
                str(out / "log.jsonl"),
                "--json-out",
                str(out / "result.json"),
                "--save",
                str(out / "model.pt"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "epoch          lr  train loss train acc %   test loss  test acc %  epoch time  total time" in printed
    )
    result = json.loads((out / "result.json").read_text())
    assert {"test_acc", "train_time_s", "epochs", "device", "recipe", "seed"} <= set(result)
    assert result["epochs"] == 3 and result["seed"] == 0 and result["test_acc"] > 0.5
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2, 3]
    assert lines[-1]["test_acc"] == result["test_acc"]
    assert main(["eval", str(out / "model.pt"), "--device", "cpu"]) == 0
    assert f"test accuracy {result['test_acc']:.2%}" in capsys.readouterr().out


def test_runs_report_mean_and_spread(small, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert (
        main(
            [
                "train",
                str(small),
                "--device",
                "cpu",
                "--runs",
                "3",
                "--quiet",
                "--log",
                str(tmp_path / "log.jsonl"),
                "--json-out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    accs = [r["test_acc"] for r in result["runs"]]
    assert result["seeds"] == [0, 1, 2] and [r["seed"] for r in result["runs"]] == [0, 1, 2]
    assert result["test_acc"] == pytest.approx(sum(accs) / 3)
    assert result["test_acc_min"] == min(accs) and result["test_acc_max"] == max(accs)
    assert "3 runs (seeds 0..2): test accuracy mean" in capsys.readouterr().out
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 9


def test_cuda_requested_without_cuda(small, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", str(small), "--device", "cuda"]) == 2
    assert "device 'cuda' was asked for, but this torch sees no CUDA GPU" in capsys.readouterr().err


def test_eval_refuses_files_that_are_not_models(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert main(["eval", str(bad), "--device", "cpu"]) == 2
    assert "cannot read the model file" in capsys.readouterr().err


def test_airbench_data_and_views_resume_at_an_epoch_to_the_same_run(tmp_path):
    """translate + alternating_flip and tta: airbench train; resumed from the state saved
    after epoch 2, epoch 3 flips as an uninterrupted run's does (the loader is told the
    epoch number), so the weights and test figures are the same."""
    import torch

    from netgraph.runs.run import run_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        textwrap.dedent(SMALL)
        .replace(
            "augment: [crop, flip, {cutout: 4}]", "pad: 2\n  augment: [{translate: 2}, alternating_flip]"
        )
        .replace("tta: [flip]", "tta: airbench")
    )
    recipe = load_recipe(path)
    states = []
    full, full_model, _ = run_recipe(recipe, device="cpu", checkpoint=states.append)
    assert [states[i]["epoch"] for i in range(3)] == [2, 3, 4]
    resumed, resumed_model, _ = run_recipe(recipe, device="cpu", resume=states[0])
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert (resumed.test_acc, resumed.test_loss) == (full.test_acc, full.test_loss)

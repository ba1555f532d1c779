"""TensorBoard: a training's event files, read back with TensorBoard's own reader, hold every
scalar of the JSON-lines log with its value; the recipe as text and the HParams summaries are
there; an ablation's runs have theirs; --no-tensorboard writes none."""

import json
import sys
import textwrap

import numpy as np
import pytest
from conftest import SMALL

from netgraph.cli import main
from netgraph.runs import board
from netgraph.runs.log import read_records

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _events(folder):
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    return reader


@pytest.fixture
def small(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "small.yaml"
    path.write_text(textwrap.dedent(SMALL))
    return path


def test_event_files_hold_every_scalar_of_the_log(small, tmp_path):
    sets = ["--set", "train.label_smoothing=0.1", "--quiet", "--device", "cpu"]
    assert main(["train", str(small), "--runs", "2", *sets]) == 0
    (folder,) = (tmp_path / "runs" / "small").iterdir()
    lines = read_records(folder / "log.jsonl")
    assert len(lines) == 6  # 3 epochs x 2 seeds
    for seed in (0, 1):
        reader = _events(folder / "tensorboard" / f"seed{seed}")
        scalars = reader.Tags()["scalars"]
        compared = 0
        for line in (entry for entry in lines if entry["seed"] == seed):
            for key, tag in board.SCALARS.items():
                if line.get(key) is None:
                    continue
                (event,) = [e for e in reader.Scalars(tag) if e.step == line["epoch"]]
                assert event.value == np.float32(line[key]), (tag, line["epoch"])  # stored as float32
                compared += 1
            for i, value in enumerate(line["group_lr"]):  # one group here (the recipe sets none)
                (event,) = [e for e in reader.Scalars(f"lr/group{i}") if e.step == line["epoch"]]
                assert event.value == np.float32(value)
                compared += 1
        assert compared == 3 * (len(board.SCALARS) + 1)  # every epoch evaluated: every scalar is there
        assert set(board.SCALARS.values()) <= set(scalars)
        result = json.loads((folder / "result.json").read_text())["runs"][seed]
        (final,) = reader.Scalars("final/test_accuracy")
        assert final.value == np.float32(result["test_acc"])
        recipe = reader.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
        assert "label_smoothing: 0.1" in recipe
        plugins = reader.PluginTagToContent("hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugins)
        start = plugins["_hparams_/session_start_info"]
        assert b"train.label_smoothing" in start and b"seed" in start


def test_no_tensorboard_writes_none(small, tmp_path):
    off = ["--quiet", "--no-tensorboard", "--device", "cpu"]
    assert main(["train", str(small), "--set", "train.epochs=1", *off]) == 0
    (folder,) = (tmp_path / "runs" / "small").iterdir()
    assert (folder / "log.jsonl").exists() and not (folder / "tensorboard").exists()


def test_ablation_runs_write_their_curves_and_hparams(small, tmp_path):
    out = tmp_path / "ablation"
    assert main(["ablate", str(small), "--runs", "2", "--set", "train.epochs=2", "--device", "cpu",
                 "--out", str(out)]) == 0  # fmt: skip
    folders = sorted(p.name for p in (out / "tensorboard").iterdir())
    assert folders == ["small_train.epochs=2_seed0", "small_train.epochs=2_seed1"]
    records = read_records(out / "runs.jsonl")
    assert not any("epoch_lines" in r for r in records)  # the curves go to TensorBoard, not the record
    reader = _events(out / "tensorboard" / folders[1])
    assert [e.step for e in reader.Scalars("train/loss")] == [1, 2]  # each epoch's, as train's
    assert [e.step for e in reader.Scalars("lr")] == [1, 2]
    assert reader.Scalars("final/test_accuracy")[0].value == np.float32(records[1]["test_acc"])
    assert b"train.epochs" in reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]


def test_without_tensorboard_installed_train_writes_none(small, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec finds none
    assert not board.available()
    assert main(["train", str(small), "--set", "train.epochs=1", "--quiet", "--device", "cpu"]) == 0
    (folder,) = (tmp_path / "runs" / "small").iterdir()
    assert (folder / "log.jsonl").exists() and not (folder / "tensorboard").exists()


def test_event_files_that_cannot_be_written_are_a_warning_not_a_failure(small, tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    with pytest.warns(UserWarning, match="TensorBoard event files in .* not written: .*No space left"):
        assert main(["train", str(small), "--runs", "2", "--quiet", "--device", "cpu"]) == 0
    (folder,) = (tmp_path / "runs" / "small").iterdir()
    assert len(read_records(folder / "log.jsonl")) == 6  # the log, the record, is whole

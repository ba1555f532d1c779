"""Failing runs lose nothing: Ctrl-C/SIGTERM checkpoints and --resume to the identical result,
a NaN loss stops with the last good checkpoint kept, atomic writes, recipe checks, out of memory."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import ROOT, SMALL, small_network

from netgraph import RecipeError, load_recipe
from netgraph.cli import main
from netgraph.core.errors import WriteFailed
from netgraph.runs.checkpoints import CHECKPOINT_FORMAT, checkpoint_writer, load_checkpoint, save_atomically
from netgraph.runs.run import run_recipe
from netgraph.train.engine import NonFiniteLoss, TrainingInterrupted

# test_train.py's small recipe for 4 epochs of 8 steps; the moving average, batch-norm
# logging and batch groups all carry state across an interruption.
RECIPE = (
    SMALL.replace("epochs: 3", "epochs: 4")
    .replace("test: 256", "test: 128")
    .replace("every: 2}", "every: 3}\n  log_params: 5")
)
STEPS_PER_EPOCH = 8


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    return path


def signal_at(global_step, signum=signal.SIGINT):
    """An on_step callback that sends this process a signal after the given step."""
    count = {"step": 0}

    def on_step(step, steps):
        count["step"] += 1
        if count["step"] == global_step:
            signal.raise_signal(signum)

    return on_step


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    "stop_after, signum",
    [
        (13, signal.SIGINT),  # in the middle of epoch 2
        (16, signal.SIGTERM),  # on the last step of epoch 2: the epoch is finished and saved first
    ],
)
def test_interrupted_and_resumed_run_ends_with_the_same_weights(recipe_file, tmp_path, stop_after, signum):
    recipe = load_recipe(recipe_file)
    full, full_model, _ = run_recipe(recipe, device="cpu")
    path = tmp_path / "r.ckpt"
    with pytest.raises(TrainingInterrupted) as stop:
        run_recipe(
            recipe,
            device="cpu",
            on_step=signal_at(stop_after, signum),
            checkpoint=checkpoint_writer(path, recipe, 0, []),
        )
    assert stop.value.signal_name == signal.Signals(signum).name
    saved = load_checkpoint(path, recipe)
    state = saved["state"]
    mid_epoch = stop_after % STEPS_PER_EPOCH != 0
    assert (state["epoch"], state["skip"]) == ((2, 5) if mid_epoch else (3, 0))
    assert (stop.value.epoch, stop.value.skip) == (state["epoch"], state["skip"])
    assert str(stop.value).endswith(
        "stopped after step 5 of epoch 2" if mid_epoch else "stopped after epoch 2"
    )
    assert [e["epoch"] for e in state["log"]] == ([1] if mid_epoch else [1, 2])
    resumed, resumed_model, _ = run_recipe(recipe, device="cpu", resume=state)
    assert_same(weights(full_model), weights(resumed_model))  # the moving average, evaluated
    assert resumed.test_acc == full.test_acc and resumed.test_loss == full.test_loss
    for a, b in zip(full.log, resumed.log):
        assert (a["train_loss"], a["train_acc"], a["test_acc"], a["params"]) == (
            b["train_loss"],
            b["train_acc"],
            b["test_acc"],
            b["params"],
        )


def test_the_checkpoint_is_checked_against_the_recipe(recipe_file, tmp_path):
    recipe = load_recipe(recipe_file)
    path = tmp_path / "r.ckpt"
    with pytest.raises(TrainingInterrupted):
        run_recipe(
            recipe, device="cpu", on_step=signal_at(3), checkpoint=checkpoint_writer(path, recipe, 0, [])
        )
    other = load_recipe(recipe_file, ["train.epochs=5"])
    with pytest.raises(RecipeError, match=r"r.ckpt: the checkpoint is of another recipe .*--set"):
        load_checkpoint(path, other)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(RecipeError, match=r"r.ckpt: cannot read the checkpoint"):
        load_checkpoint(path, recipe)
    with pytest.raises(RecipeError, match=r"checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt", recipe)


def test_a_checkpoint_holds_tensors_and_plain_data_only(recipe_file, tmp_path):
    """It loads with weights_only=True: no pickled code can come with a checkpoint."""
    recipe = load_recipe(recipe_file)
    path = tmp_path / "r.ckpt"
    run_recipe(recipe, device="cpu", checkpoint=checkpoint_writer(path, recipe, 0, []))
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT and payload["state"]["epoch"] == 5


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    save_atomically({"format": "x", "value": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"half a file")  # an open file: the temporary, created with O_EXCL
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(WriteFailed, match="c.ckpt: cannot write the file: disk full"):  # one line
        save_atomically({"format": "x", "value": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["value"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt"]  # no temporary file left


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(recipe_file, tmp_path):
    # a sane first epoch, then a learning rate that overflows within epoch 2
    recipe = load_recipe(
        recipe_file, ["train.lr={knots: [0, 1, 1.01, epochs], values: [0.1, 0.1, 1e30, 0]}", "train.ema=null"]
    )
    path = tmp_path / "r.ckpt"
    with pytest.raises(NonFiniteLoss) as err:
        run_recipe(recipe, device="cpu", checkpoint=checkpoint_writer(path, recipe, 0, []))
    message = str(err.value)
    assert "the training loss became" in message and "at epoch 2, step " in message
    assert "learning rate" in message and "train afresh with a lower peak learning rate" in message
    assert "--resume takes only the recipe and --set options a checkpoint was written with" in message
    with pytest.raises(RecipeError, match="the checkpoint is of another recipe"):  # what the hint says
        load_checkpoint(path, load_recipe(recipe_file, ["train.lr=0.01", "train.ema=null"]))
    assert "the checkpoint of the last good epoch is kept" in message
    state = load_checkpoint(path, recipe)["state"]
    assert state["epoch"] == 2 and state["step"] == STEPS_PER_EPOCH  # the start of epoch 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_out_of_memory_says_so_and_suggests_a_smaller_batch(recipe_file, monkeypatch):
    import netgraph.runs.run as run

    def no_memory(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(run, "train", no_memory)
    with pytest.raises(RecipeError) as err:
        run_recipe(load_recipe(recipe_file), device="cpu")
    text = str(err.value)
    assert "out of GPU memory" in text and "batch 64" in text and "r.yaml" in text
    assert "--set train.batch_size=32" in text and "data.keep_uint8" in text


def test_cuda_asked_for_without_cuda_is_a_clear_error(recipe_file, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", str(recipe_file), "--device", "cuda"]) == 2
    assert "device 'cuda' was asked for, but this torch sees no CUDA GPU" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="no CUDA GPU found: training on the CPU"):
        from netgraph.runs.plan import resolve_device

        assert resolve_device(None).type == "cpu"


@pytest.mark.slow
def test_sigterm_to_netgraph_train_then_resume_gives_the_uninterrupted_result(recipe_file, tmp_path, capsys):
    """The command line end to end: a real SIGTERM from outside in the middle of an epoch."""
    slow = tmp_path / "slow.yaml"  # 6 epochs of 32 steps of a wider net: time to be interrupted
    slow.write_text(
        recipe_file.read_text()
        .replace("epochs: 4", "epochs: 6")
        .replace("train: 512", "train: 4096")
        .replace("out: 8", "out: 32")
    )
    # the interrupted run at this process's thread count, as bit-identical resume needs
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    common = [str(slow), "--device", "cpu", "--quiet"]
    assert (
        main(["train", *common, "--log", str(tmp_path / "full.jsonl"), "--save", str(tmp_path / "full.pt")])
        == 0
    )
    log = tmp_path / "cut.jsonl"
    command = [
        sys.executable,
        "-m",
        "netgraph",
        "train",
        *common,
        "--log",
        str(log),
        "--save",
        str(tmp_path / "cut.pt"),
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or not log.read_text().strip()):
        time.sleep(0.05)  # wait for the first epoch's line
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    stopped = re.search(r"SIGTERM: stopped (after [^:]*): saved", err)
    assert stopped and "--resume" in err, err
    checkpoint = tmp_path / "cut.ckpt"
    assert checkpoint.exists() and log.read_text().strip()
    capsys.readouterr()
    assert main(["train", *common, "--log", str(log), "--save", str(tmp_path / "cut.pt"), "--resume"]) == 0
    assert f"resuming seed 0 {stopped.group(1)}, from {checkpoint}" in capsys.readouterr().out
    assert not checkpoint.exists()  # the run finished: nothing left to resume
    full = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    cut = torch.load(tmp_path / "cut.pt", weights_only=True)["state_dict"]
    assert_same(full, cut)
    strip = lambda line: {k: v for k, v in json.loads(line).items() if "time" not in k}  # noqa: E731
    assert [strip(x) for x in log.read_text().splitlines()] == [
        strip(x) for x in (tmp_path / "full.jsonl").read_text().splitlines()
    ]


def test_resume_at_another_thread_count_warns(recipe_file, tmp_path, monkeypatch):
    """Bit-identical resume holds at a fixed thread count: the checkpoint records it and a
    resume on another count says so."""
    recipe = load_recipe(recipe_file, ["train.epochs=1"])
    path = tmp_path / "r.ckpt"
    run_recipe(recipe, device="cpu", checkpoint=checkpoint_writer(path, recipe, 0, []))
    assert torch.load(path, weights_only=True)["threads"] == torch.get_num_threads()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(path, recipe)  # the same count: no warning
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)
    with pytest.warns(
        UserWarning,
        match=f"written by a run on {threads} CPU threads, this one has "
        f"{threads + 1}.*not be bit-identical.*OMP_NUM_THREADS={threads}",
    ):
        load_checkpoint(path, recipe)


# Every part the training side opened (issue 16): per-image translation and alternating flip,
# fractional epochs (20 steps of 8 an epoch), a schedule in fractions of training with the
# records' shape, torch's SGD with Muon on the filter and its own rate, a group trained for
# its first 10 steps only, lookahead, and airbench's weighted test-time views.
EVERY_PART = """
    data:
      dataset: synthetic
      synthetic: {train: 512, test: 128, classes: 4}
      pad: 2
      augment: [{translate: 2}, alternating_flip, {cutout: 4}]
    train:
      epochs: 2.5
      batch_size: 64
      lr: {shape: warmup_linear, unit: fraction, warmup: 0.25, start: 0.1, peak: 0.4, floor: 0.05}
      optimizer: {sgd: {nesterov: true}}
      momentum: 0.85
      label_smoothing: 0.2
      average: {lookahead: {every: 3}}
      param_groups:
        - {kind: filter, optimizer: muon, lr: 0.05, momentum: 0.6, weight_decay: 0}
        - {params: bn.bias, lr_scale: 4, until: {steps: 10}}
      tta: airbench
"""


@pytest.mark.parametrize("stop_after", [5, 13])  # in epochs 1 and 2, before and after `until`
def test_resuming_mid_epoch_with_every_new_part_is_bit_identical(tmp_path, stop_after):
    path = tmp_path / "every.yaml"
    path.write_text(textwrap.dedent(EVERY_PART) + small_network(4))
    recipe = load_recipe(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sums over threads are added in another order at another count
    try:
        full, full_model, _ = run_recipe(recipe, device="cpu")
        assert (full.epochs, full.steps, len(full.log)) == (2.5, 20, 3)
        checkpoint = tmp_path / "every.ckpt"
        with pytest.raises(TrainingInterrupted):
            run_recipe(
                recipe,
                device="cpu",
                on_step=signal_at(stop_after),
                checkpoint=checkpoint_writer(checkpoint, recipe, 0, []),
            )
        state = load_checkpoint(checkpoint, recipe)["state"]
        assert (state["step"], state["skip"]) == (stop_after, stop_after % STEPS_PER_EPOCH)
        resumed, resumed_model, _ = run_recipe(recipe, device="cpu", resume=state)
    finally:
        torch.set_num_threads(threads)
    assert_same(weights(full_model), weights(resumed_model))
    assert resumed.test_acc == full.test_acc
    assert [e["train_loss"] for e in resumed.log] == [e["train_loss"] for e in full.log]

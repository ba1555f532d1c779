"""A new user's first ten minutes (issue 21): fast commands, errors at the user's own words,
a header and progress before and during work, run folders that never overwrite each other."""

import json
import subprocess
import sys

from conftest import ROOT, small_recipe

# In a fresh interpreter: run the CLI, then say whether torch got imported.
_PROBE = """
import sys
from netgraph.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


def _probe(*argv, cwd=ROOT):
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=cwd)
    return done.stdout.strip().splitlines()[-1], done.stderr


def test_help_version_and_a_recipe_typo_import_no_torch(tmp_path):
    assert _probe("--help")[0] == "NO-TORCH 0"
    assert _probe("train", "--help")[0] == "NO-TORCH 0"
    assert _probe("--version")[0] == "NO-TORCH 0"
    typo = tmp_path / "typo.yaml"
    typo.write_text("netwrok:\n  fc: {op: linear, out: 10}\n")
    line, err = _probe("train", str(typo))
    assert line == "NO-TORCH 2" and "unknown section 'netwrok'" in err


# --- errors at the user's own words ---------------------------------------------------------

import pytest  # noqa: E402
from conftest import RECIPES  # noqa: E402

from netgraph.core.errors import RecipeError  # noqa: E402
from netgraph.recipe.load import load_recipe  # noqa: E402
from netgraph.runs import board  # noqa: E402


def test_epochs_from_a_set_names_the_set_first_and_gives_a_ready_fix():
    from netgraph.train.config import train_config

    with pytest.raises(RecipeError) as e:
        train_config(load_recipe(RECIPES / "tiny.yaml", ["train.epochs=1"]))
    text = str(e.value)
    assert text.startswith("--set train.epochs=1, ") and "08_ema.yaml:11:" in text, text
    fix = text.split("e.g. --set ")[1].rstrip(")").strip("'")
    config = train_config(load_recipe(RECIPES / "tiny.yaml", ["train.epochs=1", fix]))
    assert config.epochs == 1 and config.lr_knots == [0, 0.2, 0.333]


def test_a_constant_learning_rate_and_the_shape_of_a_wrong_one():
    from netgraph.train.config import train_config

    config = train_config(load_recipe(RECIPES / "tiny.yaml", ["train.lr=0.1"]))
    assert (config.lr_knots, config.lr_values) == ([0], [0.1])
    with pytest.raises(
        RecipeError,
        match=r"^--set train.lr=fast: train.lr must be a number or "
        r"a schedule.*lr: 0.4, or lr: \{knots",
    ):
        train_config(load_recipe(RECIPES / "tiny.yaml", ["train.lr=fast"]))


def test_a_batch_size_from_a_set_that_a_pass_refuses_names_the_set_first(write):
    from netgraph.graph.build import build_graph
    from netgraph.graph.passes import PassContext, apply_transforms

    path = write(
        "r.yaml",
        """\
        network:
          conv: {op: conv2d, out: 4}
          bn: {op: batch_norm}
        transforms:
          - ghost_batch_norm: {split_size: 32}
        train: {batch_size: 128}
        """,
    )
    recipe = load_recipe(path, ["train.batch_size=100"])
    with pytest.raises(RecipeError) as e:
        apply_transforms(build_graph(recipe), recipe, PassContext(batch_size=100))
    assert str(e.value).startswith(f"--set train.batch_size=100, {recipe.file}:5: ")
    assert "--set train.batch_size=96 or 128" in str(e.value)
    recipe = load_recipe(path)  # no --set: the file's line alone
    with pytest.raises(RecipeError, match=r"^[^-].*r.yaml:5: "):
        apply_transforms(build_graph(recipe), recipe, PassContext(batch_size=100))


def test_a_data_dir_one_level_too_high_names_the_folder_below(tmp_path):
    from netgraph.data.cifar import find_layout

    (tmp_path / "data" / "cifar10-subset" / "cifar-10-batches-bin").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    with pytest.raises(
        RecipeError,
        match=r"cifar10-subset/ in it does \(pass --data-dir " + str(tmp_path / "data" / "cifar10-subset"),
    ):
        find_layout("cifar10", tmp_path / "data")
    with pytest.raises(RecipeError, match=r"\(it holds data/, other/\)"):  # two levels: the list
        find_layout("cifar10", tmp_path)


def test_no_option_of_train_is_taken_by_torchrun_but_log_which_has_log_file():
    from torch.distributed.run import get_args_parser

    from netgraph.cli import parser

    train = parser()._subparsers._group_actions[0].choices["train"]
    options = [o for a in train._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert "--log-file" in options
    torchrun = get_args_parser()
    for option in options:
        argv = ["--nproc-per-node", "1", "-m", "netgraph", "train", "r.yaml", option, "1"]
        if option == "--log":  # an abbreviation of torchrun's --log-dir: docs/several-gpus.md says --log-file
            with pytest.raises(SystemExit):
                torchrun.parse_args(argv)
            continue
        assert torchrun.parse_args(argv).training_script_args[-2:] == [option, "1"], option
    assert parser().parse_args(["train", "r.yaml", "--log-file", "x.jsonl"]).log == "x.jsonl"


# --- a header before work, progress off a terminal ------------------------------------------

PLAIN = ["data.augment", "train.label_smoothing", "train.tta"]
SMALL = small_recipe(PLAIN, epochs=2)


def _train(tmp_path, *extra):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL)
    return subprocess.run(
        [sys.executable, "-m", "netgraph", "train", str(recipe), "--device", "cpu", *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_piped_train_prints_a_header_and_progress_within_each_epoch(tmp_path):
    done = _train(tmp_path, "--progress-every", "0", "--set", "train.batch_size=64")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"recipe: {tmp_path / 'small.yaml'} --set train.batch_size=64"
    out = [line for line in out if not line.startswith("run folder: ")]
    assert out[1] == "data: synthetic, 512 training and 256 test images, 4 classes, generated"
    assert out[2].startswith("device: cpu (") and out[2].endswith(", float32")
    assert out[3] == "training: 2 epochs x 8 steps of 64 images"
    assert out[4].startswith("test: moving average of the weights (train.ema")
    # stderr is a pipe here, not a terminal: progress lines, each inside an epoch (never 8/8)
    progress = [line for line in done.stderr.splitlines() if "of the epoch" in line]
    assert "  step 4/8 of the epoch (50%)" in progress and len(progress) == 2 * 7, done.stderr
    # one percent scale: the table's test accuracy is the final line's
    last_row = [line for line in out if line.split()[:1] == ["2"]][0].split()
    final = [line for line in out if line.startswith("test accuracy ")][0]
    assert f"test accuracy {last_row[5]}%" in final and len(last_row) == 8  # with a test-loss column


@pytest.mark.slow
def test_without_ema_the_header_says_the_weights_are_tested_and_quiet_prints_a_line_a_run(tmp_path):
    done = _train(tmp_path, "--set", "train.ema=null")
    assert "test: the weights as trained" in done.stdout.splitlines()
    done = _train(tmp_path, "--quiet", "--runs", "2", "--set", "train.epochs=1", "--set", "train.lr=0.2")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run folder: runs/small/")
    assert [line.split(":")[0] for line in lines[1:3]] == ["run 1 of 2 (seed 0)", "run 2 of 2 (seed 1)"]
    assert all("test accuracy" in line for line in lines[1:3]) and not done.stderr.strip()


@pytest.mark.slow
def test_the_log_records_the_schedule_and_show_curves_draws_it_per_step(tmp_path):
    import json

    from netgraph.runs.show import _lr_per_step, show_curves

    done = _train(tmp_path, "--quiet", "--log", str(tmp_path / "log.jsonl"))
    assert done.returncode == 0, done.stderr
    epochs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert epochs[0]["lr_knots"] == [0, 1, 2] and epochs[0]["steps_per_epoch"] == 8
    xs, rates = _lr_per_step(epochs)
    assert len(xs) == 2 * 8 and rates[0] == 0 and rates[4] == pytest.approx(0.2)  # the warm-up
    assert _lr_per_step([{k: v for k, v in epochs[0].items() if k != "lr_knots"}]) is None
    picture = show_curves([tmp_path / "log.jsonl"], tmp_path / "curves.png")
    assert str(picture.path).endswith("curves.png")


# --- run folders: no run empties another's files --------------------------------------------


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_runs_of_one_recipe_never_touch_each_others_files(tmp_path):
    import os
    import signal
    import time

    slow = small_recipe(PLAIN, data={"synthetic": {"train": 2048, "test": 256, "classes": 4}}, epochs=3)
    (tmp_path / "small.yaml").write_text(slow)  # 32 steps an epoch: time to be interrupted
    for sets in (["train.epochs=1", "data.synthetic.train=512"], ["data.synthetic.train=512"]):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "netgraph",
                "train",
                "small.yaml",
                "--device",
                "cpu",
                "--quiet",
                *[a for s in sets for a in ("--set", s)],
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    finished = _snapshot(tmp_path / "runs")
    assert sum(name.endswith("result.json") for name in finished) == 2
    command = [sys.executable, "-m", "netgraph", "train", "small.yaml", "--device", "cpu", "--quiet"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.time() + 300
    while time.time() < deadline and not any(
        p.stat().st_size
        for p in (tmp_path / "runs").rglob("log.jsonl")
        if p.parent.name not in {n.split("/")[1] for n in finished}
    ):
        time.sleep(0.05)  # until the first epoch's line of the new run
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    cut = [p.parent for p in (tmp_path / "runs").rglob("train.ckpt")]
    assert len(cut) == 1 and f"--resume {cut[0].relative_to(tmp_path)}" in err
    interrupted = _snapshot(tmp_path / "runs")
    done = subprocess.run(
        command + ["--set", "data.synthetic.train=512"], capture_output=True, text=True, cwd=tmp_path
    )  # a fresh run, not --resume
    assert done.returncode == 0, done.stderr
    after = _snapshot(tmp_path / "runs")
    assert all(after[name] == data for name, data in interrupted.items()), "an earlier file changed"
    # its own run.json, recipe.yaml, log and result, and its event file where tensorboard is installed
    assert len(after) == len(interrupted) + 4 + board.available()
    # --resume alone finds the interrupted run of these options, and says which
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"run folder: {cut[0].relative_to(tmp_path)}" in done.stdout and "resuming seed 0" in done.stdout
    assert not (cut[0] / "train.ckpt").exists() and (cut[0] / "result.json").exists()
    assert all(_snapshot(tmp_path / "runs")[name] == data for name, data in finished.items())


def test_runs_0_and_an_existing_explicit_log_are_refused_before_anything_is_touched(tmp_path, capsys):
    from netgraph.cli import main

    (tmp_path / "small.yaml").write_text(SMALL)
    log = tmp_path / "old.jsonl"
    log.write_text("an earlier run's log\n")
    recipe = str(tmp_path / "small.yaml")
    assert main(["train", recipe, "--device", "cpu", "--runs", "0", "--log", str(log)]) == 2
    assert "--runs 0: train at least once" in capsys.readouterr().err
    assert main(["train", recipe, "--device", "cpu", "--log", str(log)]) == 2
    assert "old.jsonl: exists, from another run (pass --overwrite" in capsys.readouterr().err
    assert log.read_text() == "an earlier run's log\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "old.jsonl",
        "small.yaml",
    ]
    assert (
        main(
            [
                "train",
                recipe,
                "--device",
                "cpu",
                "--quiet",
                "--log",
                str(log),
                "--overwrite",
                "--set",
                "train.epochs=1",
                "--set",
                "train.lr=0.1",
            ]
        )
        == 0
    )
    assert log.read_text().count("\n") == 1 and '"epoch": 1' in log.read_text()


def test_save_without_a_file_goes_into_the_run_folder_and_a_failed_set_up_leaves_none(
    tmp_path, monkeypatch, capsys
):
    from netgraph.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    assert (
        main(
            [
                "train",
                "small.yaml",
                "--device",
                "cpu",
                "--quiet",
                "--set",
                "train.epochs=1",
                "--set",
                "train.lr=0.1",
                "--save",
            ]
        )
        == 0
    )
    [folder] = (tmp_path / "runs" / "small").iterdir()
    relative = folder.relative_to(tmp_path)
    assert (folder / "model.pt").is_file() and f"saved {relative / 'model.pt'}" in capsys.readouterr().out
    # the log says which model the test columns are of (show curves labels it)
    first = json.loads((folder / "log.jsonl").read_text().splitlines()[0])
    assert first["tested"].startswith("moving average of the weights (train.ema")
    # set-up fails (the data is not of input.shape): the run is prepared before a folder is
    # made, so none is left
    assert (
        main(["train", "small.yaml", "--device", "cpu", "--quiet", "--set", "input.shape=[3, 16, 16]"]) == 2
    )
    err = capsys.readouterr().err
    assert "input.shape is [3, 16, 16], but the synthetic images are 3 x 32 x 32" in err, err
    assert list((tmp_path / "runs" / "small").iterdir()) == [folder]
    # --save without a file needs a run folder
    assert main(["train", "small.yaml", "--device", "cpu", "--log", "x.jsonl", "--save"]) == 2
    assert "--save without a file saves into the run folder" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()

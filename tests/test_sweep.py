"""Sweeps and --runs auto: the --grid parser, a tiny synthetic sweep end to end (table and
picture), resuming, and sequential rounds that stop early on a clear difference and run to
--max-runs on equal arms (a fake runner: accuracies drawn from normal distributions)."""

import csv
import io
import random
import re
import textwrap
from pathlib import Path

import pytest

from netgraph.cli import main, parser
from netgraph.core.errors import RecipeError
from netgraph.runs import ablate as ablate_module
from netgraph.runs.ablate import Rounds, ablate
from netgraph.runs.log import read_records
from netgraph.runs.sweep import Grid, combinations, parse_grids, sweep

TINY = """
    data:
      dataset: synthetic
      synthetic: {train: 256, test: 64, classes: 4}
    train:
      epochs: 1
      batch_size: 64
      lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
      label_smoothing: 0.2
    network:
      conv: {op: conv2d, out: 4, bias: false}
      bn: {op: batch_norm}
      act: {op: relu}
      pool: {op: global_avg_pool}
      flat: {op: flatten}
      fc: {op: linear, out: 4}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY))
    return str(path)


@pytest.mark.parametrize(
    "text, values",
    [
        ("train.lr=0.2,0.4,0.8", [0.2, 0.4, 0.8]),
        ("train.label_smoothing=0, 0.2", [0, 0.2]),
        ("train.epochs=range(1,4)", [1, 2, 3]),
        ("train.epochs=range(3)", [0, 1, 2]),
        ("train.label_smoothing=range(0,0.5,0.2)", [0.0, 0.2, 0.4]),
        ("train.epochs=range(5,1,-2)", [5, 3]),
        ("data.augment=[crop, flip],[flip]", [["crop", "flip"], ["flip"]]),
        ("train.tta=null,[flip]", [None, ["flip"]]),
    ],
)
def test_grid_values(text, values):
    grid = Grid(text)
    assert grid.values == values
    assert grid.assignments()[0].startswith(grid.path + "=")


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.lr", "--grid train.lr: expected PATH=V1,V2"),
        ("train.lr=", "--grid train.lr=: no values to sweep"),
        ("train.lr=0.1,,0.2", "--grid train.lr=0.1,,0.2: an empty value"),
        ("train.lr=range(0,1,0)", "range()'s step is 0"),
        ("train.lr=range(a,b)", "range() takes 1 to 3 numbers"),
        ("train.lr=range(1,0)", "no values to sweep"),
        ("train.lr=0.1,0.1", "a value is given twice"),
        ("train..lr=1", "is not a key path"),
        ("train.lr=[1,2", "--grid train.lr=[1,2: value is not valid YAML"),
    ],
)
def test_grid_mistakes_name_the_grid(text, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        Grid(text)


def test_combinations_and_a_path_swept_twice():
    grids = parse_grids(["train.lr=0.1,0.2", "train.epochs=1,2,3"])
    combos = combinations(grids)
    assert len(combos) == 6 and combos[1] == ("train.lr=0.1", "train.epochs=2")
    with pytest.raises(RecipeError, match="'train.lr' is swept twice"):
        parse_grids(["train.lr=0.1", "train.lr=0.2"])


@pytest.mark.parametrize(
    "grid, message",
    [
        ("train.label_smoothin=0,0.2", "--grid train.label_smoothin=0,0.2: .*unknown parameter"),
        ("train.label_smoothing=0,abc", "--grid .*label_smoothing=abc: .*must be a number"),
        ("train.label_smoothing=0,2", "label_smoothing=2: .*from 0 to 1"),
    ],
)
def test_mistaken_grid_refused_in_one_line_before_training(tiny, tmp_path, capsys, grid, message):
    out = tmp_path / "s"
    assert main(["sweep", tiny, "--grid", grid, "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err)
    assert not out.exists()


def fake_run(means):
    """A stand-in for one training run: accuracy drawn around means(path, overrides)."""

    def one_run(path, overrides, seed, device, data_dir):
        # drawn from the file's name, not its folder: pytest numbers its temporary folders per
        # session, and a draw that followed them made each session's test another test
        rng = random.Random(f"{Path(path).name} {overrides} {seed}")
        return {
            "recipe": path,
            "seed": seed,
            "overrides": list(overrides),
            "test_acc": (means(path, overrides) + rng.gauss(0, 0.15)) / 100,
            "train_time_s": 1.0,
            "epochs": 1,
            "device": "cpu",
            "dataset": "synthetic",
            "train_images": 256,
        }

    return one_run


def test_runs_auto_ablate_stops_early_on_a_clear_difference(tiny, tmp_path, monkeypatch):
    other = tmp_path / "other.yaml"
    other.write_text(textwrap.dedent(TINY))
    monkeypatch.setattr(ablate_module, "_one_run", fake_run(lambda p, o: 94 + 1.0 * (p == str(other))))
    rows = ablate([tiny, str(other)], Rounds(max_runs=30), device="cpu", out_dir=tmp_path / "a")
    assert rows[1]["stopped"] == "difference" and rows[1]["runs"] < 30
    assert rows[1]["change"] == pytest.approx(1.0, abs=0.3) and rows[1]["p"] <= 0.05
    assert rows[0]["stopped"] == "reference" and rows[0]["runs"] == rows[1]["runs"]
    table = (tmp_path / "a" / "table.md").read_text()
    assert "| change vs first | p (sequential) | stopped |" in table and "| difference |" in table


def test_runs_auto_runs_to_max_runs_on_equal_arms(tiny, tmp_path, monkeypatch, capsys):
    other = tmp_path / "same.yaml"
    other.write_text(textwrap.dedent(TINY))
    monkeypatch.setattr(ablate_module, "_one_run", fake_run(lambda p, o: 94.0))
    out = tmp_path / "a"
    args = ["ablate", tiny, str(other), "--runs", "auto", "--max-runs", "12", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    assert "| max runs reached |" in capsys.readouterr().out
    assert len(read_records(out / "runs.jsonl")) == 24
    # with a precision the same arms may stop sooner, on 'no difference' or a narrow interval
    rows = ablate([tiny, str(other)], Rounds(30, precision=0.3), device="cpu", out_dir=tmp_path / "b")
    assert rows[1]["stopped"] in ("no difference within precision", "interval narrow enough")
    assert rows[1]["runs"] < 30


def test_runs_auto_mistakes(tiny, tmp_path, capsys):
    for extra, message in (
        ([], "--runs auto needs --max-runs"),
        (["--max-runs", "1"], "--max-runs must be at least 2"),
        (["--max-runs", "9", "--alpha", "2"], "--alpha must be between 0 and 1"),
    ):
        assert main(["ablate", tiny, "--runs", "auto", *extra, "--out", str(tmp_path / "a")]) == 2
        assert message in capsys.readouterr().err
    assert main(["ablate", tiny, "--runs", "3", "--max-runs", "4", "--out", str(tmp_path / "a")]) == 2
    assert "--max-runs and --precision go with --runs auto" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["sweep", tiny, "--grid", "train.lr=1", "--runs", "many"])


def test_sweep_auto_stops_when_the_best_is_told_from_the_runner_up(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(ablate_module, "_one_run", fake_run(lambda p, o: 94 + float(o[-1].split("=")[1])))
    grid = ["train.label_smoothing=0,0.4,0.8"]
    rows = sweep(tiny, grid, Rounds(max_runs=40), device="cpu", out_dir=tmp_path / "s")
    assert [r["best"] for r in rows] == [False, False, True]
    assert {r["stopped"] for r in rows} == {"difference"} and rows[2]["runs"] < 40
    assert rows[2]["change"] == pytest.approx(0.4, abs=0.15) and rows[2]["significant"]
    assert "| **best**, significant |" in (tmp_path / "s" / "table.md").read_text()
    assert "| p (sequential) | stopped |" in (tmp_path / "s" / "table.md").read_text()


def test_sweep_resume_trains_only_what_is_missing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(ablate_module, "_one_run", fake_run(lambda p, o: 90.0))
    trained = []
    on_run = lambda recipe, seed, record: trained.append((tuple(record["overrides"]), seed))  # noqa: E731
    out = tmp_path / "s"
    grid = ["train.label_smoothing=0,0.2", "train.epochs=1,2"]
    sweep(tiny, grid, 2, overrides=["train.batch_size=32"], device="cpu", out_dir=out, on_run=on_run)
    assert len(trained) == 8 and trained[0] == (
        ("train.batch_size=32", "train.label_smoothing=0", "train.epochs=1"),
        0,
    )
    lines = (out / "runs.jsonl").read_text().splitlines()
    (out / "runs.jsonl").write_text("\n".join(lines[:5]) + "\n")  # interrupted after 5 runs
    trained.clear()
    rows = sweep(tiny, grid, 3, overrides=["train.batch_size=32"], device="cpu", out_dir=out, on_run=on_run)
    assert len(trained) == 3 + 4  # the 3 lost runs, and a third seed for each of the 4
    assert all(r["runs"] == 3 for r in rows)


def test_tiny_sweep_end_to_end_writes_table_and_picture(tiny, tmp_path, capsys):
    out, plot = tmp_path / "sweep", tmp_path / "sweep.png"
    args = ["sweep", tiny, "--grid", "train.label_smoothing=0,0.4", "--runs", "2", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "| train.label_smoothing | runs | test acc % |" in printed and "**best**" in printed
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [r["train.label_smoothing"] for r in rows] == ["0", "0.4"]
    assert sum(int(r["best"]) for r in rows) == 1 and all(r["runs"] == "2" for r in rows)
    assert len(read_records(out / "runs.jsonl")) == 4
    pytest.importorskip("matplotlib")
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_sweep_heat_map_and_too_many_paths(tmp_path):
    pytest.importorskip("matplotlib")
    from netgraph.runs.show import show_sweep

    def row(lr, ls, mean, best=False):
        acc = {"n": 2, "mean": mean, "std": 0.1, "ci_low": mean - 1, "ci_high": mean + 1}
        return {
            "setting": {"train.lr": lr, "train.label_smoothing": ls},
            "acc": acc,
            "runs": 2,
            "best": best,
            "dataset": "synthetic",
            "train_images": 256,
            "device": "cpu",
        }

    rows = [row(0.2, 0, 90), row(0.2, 0.2, 91), row(0.4, 0, 92, True), row(0.4, 0.2, 89)]
    picture = show_sweep(rows, tmp_path / "heat.png")
    assert picture.path.read_bytes().startswith(b"\x89PNG") and picture.data["mean"] == [[90, 91], [92, 89]]
    for r in rows:
        r["setting"]["train.epochs"] = 1
    with pytest.raises(RecipeError, match="one or two swept paths, not 3"):
        show_sweep(rows, tmp_path / "three.png")


def test_sweep_command_runs_auto(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ablate_module, "_one_run", fake_run(lambda p, o: 94 + 2 * float(o[-1].split("=")[1])))
    args = ["sweep", tiny, "--grid", "train.label_smoothing=0,0.5", "--runs", "auto", "--max-runs", "10"]
    assert main([*args, "--precision", "0.5", "--device", "cpu", "--out", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert "| stopped |" in printed and "| **best**, significant |" in printed

"""Ablation: statistics against scipy, the table, CSV, JSON lines and resuming."""

import csv
import io
import textwrap

import pytest
from conftest import SMALL

from netgraph.cli import main
from netgraph.runs import stats
from netgraph.runs.ablate import ablate
from netgraph.runs.log import read_records

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("t, df", [(0.5, 3), (2.1, 7.4), (-1.3, 12), (4.0, 2.5), (0.0, 5), (1.96, 400)])
def test_t_distribution_against_scipy(t, df):
    assert stats.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), abs=1e-10)
    assert stats.t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-8)


def test_welch_and_summary_against_scipy():
    a = [94.02, 94.11, 93.95, 94.20, 94.07]
    b = [94.21, 94.30, 94.12, 94.18, 94.35, 94.27]
    ours = stats.welch_t_test(a, b)
    theirs = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert ours["t"] == pytest.approx(theirs.statistic) and ours["p"] == pytest.approx(theirs.pvalue)
    s = stats.summary(a)
    low, high = scipy_stats.t.interval(0.95, len(a) - 1, loc=s["mean"], scale=scipy_stats.sem(a))
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert stats.welch_t_test([1.0], b) is None


# test_train.py's small synthetic recipe at two widths, for 2 epochs.
RECIPE = SMALL.replace("out: 8, bias", "out: WIDTH, bias").replace("epochs: 3", "epochs: 2")


@pytest.fixture
def two_recipes(tmp_path):
    paths = []
    for name, width in (("narrow", 2), ("wide", 8)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(RECIPE).replace("WIDTH", str(width)))
        paths.append(str(path))
    return paths


def test_ablate_table_csv_jsonl_and_resume(two_recipes, tmp_path, capsys):
    out = tmp_path / "ablation"
    trained = []
    rows = ablate(
        two_recipes,
        3,
        device="cpu",
        out_dir=out,
        on_run=lambda recipe, seed, record: trained.append((recipe, seed)),
    )
    assert trained == [(r, s) for r in two_recipes for s in (0, 1, 2)]
    records = read_records(out / "runs.jsonl")
    assert len(records) == 6 and {"test_acc", "train_time_s", "device", "torch", "date"} <= set(records[0])
    # The table's statistics are those of the recorded runs.
    wide = [100 * r["test_acc"] for r in records if r["recipe"] == two_recipes[1]]
    narrow = [100 * r["test_acc"] for r in records if r["recipe"] == two_recipes[0]]
    assert rows[1]["acc"]["mean"] == pytest.approx(sum(wide) / 3)
    assert rows[1]["change"] == pytest.approx(sum(wide) / 3 - sum(narrow) / 3)
    assert rows[1]["p"] == pytest.approx(scipy_stats.ttest_ind(wide, narrow, equal_var=False).pvalue)
    assert rows[0]["p"] is None
    table = (out / "table.md").read_text()
    assert table.startswith("| step | epochs | runs | test acc % | std | 95% CI | train time s |")
    assert f"| wide | 2 | 3 | {rows[1]['acc']['mean']:.2f} |" in table
    assert "synthetic data, 512 training images; cpu" in table
    csv_rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [r["step"] for r in csv_rows] == ["narrow", "wide"]
    assert float(csv_rows[1]["p_welch"]) == pytest.approx(rows[1]["p"])
    # Interrupted after 4 runs (one line cut short): resuming trains only the missing ones.
    lines = (out / "runs.jsonl").read_text().splitlines()
    (out / "runs.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    trained.clear()
    with pytest.warns(
        UserWarning, match="runs.jsonl:5: skipping a line that is not a run.s record: not a JSON line"
    ):
        again = ablate(
            two_recipes,
            3,
            device="cpu",
            out_dir=out,
            on_run=lambda recipe, seed, record: trained.append((recipe, seed)),
        )
    assert trained == [(two_recipes[1], 1), (two_recipes[1], 2)]
    assert again[0]["acc"]["mean"] == pytest.approx(rows[0]["acc"]["mean"])
    assert len(read_records(out / "runs.jsonl")) == 6  # the cut line is gone, nothing glued to it
    # Different overrides are different runs.
    trained.clear()
    ablate(
        two_recipes[:1],
        1,
        device="cpu",
        out_dir=out,
        overrides=["train.epochs=1"],
        on_run=lambda recipe, seed, record: trained.append((recipe, seed)),
    )
    assert trained == [(two_recipes[0], 0)]


def test_ablate_command_and_plot(two_recipes, tmp_path, capsys):
    out = tmp_path / "a"
    assert (
        main(
            [
                "ablate",
                *two_recipes,
                "--runs",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--plot",
                str(tmp_path / "plot.png"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| narrow | 2 | 2 |" in printed and "wrote" in printed
    pytest.importorskip("matplotlib")
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")


def test_ablate_reports_recipe_mistakes_before_training(two_recipes, tmp_path, capsys):
    assert (
        main(
            [
                "ablate",
                two_recipes[0],
                str(tmp_path / "missing.yaml"),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "missing.yaml: recipe file not found" in capsys.readouterr().err
    assert not (tmp_path / "a" / "runs.jsonl").exists()


@pytest.mark.slow
def test_ablate_spreads_runs_over_worker_processes(two_recipes, tmp_path, capsys):
    """4 runs over 2 CPU worker processes: each collected once, the same results as in one process."""
    out = tmp_path / "parallel"
    assert (
        main(
            ["ablate", two_recipes[1], "--runs", "4", "--workers", "2", "--device", "cpu", "--out", str(out)]
        )
        == 0
    )
    records = read_records(out / "runs.jsonl")
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3]
    assert "| wide | 2 | 4 |" in capsys.readouterr().out
    sequential = ablate(two_recipes[1:], 2, device="cpu", out_dir=tmp_path / "one")
    by_seed = {r["seed"]: r["test_acc"] for r in records}
    # the same seeds give the same runs (up to a prediction or two: 1 thread a worker here, 2 there)
    assert [100 * by_seed[0], 100 * by_seed[1]] == pytest.approx(sequential[0]["values"], abs=1.0)

"""Sweep: one recipe trained over the cartesian product of values of its settings.

``--grid PATH=V1,V2,...`` is Hydra's multirun syntax: a comma list of values, each read as a
``--set`` value (YAML), or ``range(start, stop[, step])`` for numbers (stop excluded, as in
Python). Each combination is a recipe with extra overrides, trained by ablate's Runner: the
same folder (runs.jsonl, resumable), the same worker processes, and ``--runs auto``. The table
gives each combination's accuracy, marks the best, and tests it against the runner-up
(Welch's test for fixed runs, the sequential test for ``--runs auto``).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from netgraph.core.errors import RecipeError
from netgraph.recipe.load import load_recipe, load_yaml_value
from netgraph.runs import stats
from netgraph.runs.ablate import Rounds, Runner, acc_cells, fmt, footer, retried_line, run_stats, runs_setting
from netgraph.runs.plan import network

RANGE = re.compile(r"^range\((.*)\)$")


class Grid:
    """One ``--grid PATH=V1,V2,...``: the key path, each value's text and its YAML value."""

    def __init__(self, text: str):
        self.text = text
        where = f"--grid {text}"
        if "=" not in text:
            raise RecipeError("expected PATH=V1,V2,..., e.g. train.lr=0.2,0.4", file=where)
        self.path, values = (part.strip() for part in text.split("=", 1))
        if not self.path or any(not p for p in self.path.split(".")):
            raise RecipeError(f"'{self.path}' is not a key path like train.lr", file=where)
        match = RANGE.match(values)
        texts = _range(match.group(1), where) if match else _split(values, where)
        if not texts:
            raise RecipeError("no values to sweep", file=where, hint="give PATH=V1,V2,...")
        self.texts = texts
        self.values = [load_yaml_value(t, where) for t in texts]
        if len(set(map(repr, self.values))) < len(self.values):
            raise RecipeError("a value is given twice", file=where)

    def assignments(self) -> List[str]:
        return [f"{self.path}={t}" for t in self.texts]


def _split(values: str, where: str) -> List[str]:
    """The comma list's items, commas inside [] or {} (a YAML list or mapping) not splitting."""
    items, depth, current = [], 0, ""
    for ch in values:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    if any(not item for item in items) and items != [""]:
        raise RecipeError("an empty value in the list", file=where)
    return [item for item in items if item]


def _range(args: str, where: str) -> List[str]:
    """range(start, stop[, step]) for ints or floats, stop excluded; values as YAML text."""
    try:
        numbers = [load_yaml_value(a.strip(), where) for a in args.split(",")]
    except RecipeError:
        numbers = None
    if (
        not numbers
        or not 1 <= len(numbers) <= 3
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers)
    ):
        raise RecipeError("range() takes 1 to 3 numbers: range(start, stop[, step])", file=where)
    start, stop, step = ([0] + numbers if len(numbers) == 1 else numbers) + [1][len(numbers) == 3 :]
    if step == 0:
        raise RecipeError("range()'s step is 0", file=where)
    out: List[float] = []
    i = 0
    while len(out) <= 10_000:
        x = start + i * step
        if (step > 0 and x >= stop - abs(step) * 1e-9) or (step < 0 and x <= stop + abs(step) * 1e-9):
            return [repr(round(x, 10)) if isinstance(x, float) else str(x) for x in out]
        out.append(x)
        i += 1
    raise RecipeError("range() gives more than 10,000 values", file=where)


def parse_grids(texts: Sequence[str]) -> List[Grid]:
    grids = [Grid(t) for t in texts]
    if not grids:
        raise RecipeError("nothing to sweep", file="--grid", hint="give --grid PATH=V1,V2,...")
    paths = [g.path for g in grids]
    for g in grids:
        if paths.count(g.path) > 1:
            raise RecipeError(f"'{g.path}' is swept twice", file=f"--grid {g.text}")
    return grids


def combinations(grids: Sequence[Grid]) -> List[Tuple[str, ...]]:
    """Every combination of the grids' values, as --set assignments, the last grid fastest."""
    return list(itertools.product(*(g.assignments() for g in grids)))


def _checked(recipe: str, overrides: Sequence[str]) -> None:
    """The recipe with these overrides checked as `netgraph summary` checks it: its sections,
    its train: and data: settings, its graph and transforms; no data read."""
    network(load_recipe(recipe, overrides))


def check(recipe: str, grids: Sequence[Grid], overrides: Sequence[str]) -> None:
    """Check the recipe with each value of each grid as a --set would be, before anything
    trains; a mistake names the --grid that made it."""
    _checked(recipe, overrides)
    for g in grids:
        for assignment in g.assignments():
            try:
                _checked(recipe, [*overrides, assignment])
            except RecipeError as e:
                if e.file == f"--set {assignment}":
                    e.file = f"--grid {g.text}"
                    e.message = f"{assignment}: {e.message}"
                    e.args = (str(e),)
                raise
    if len(grids) > 1:  # each value alone was fine; together they may not be
        for combo in combinations(grids):
            try:
                _checked(recipe, [*overrides, *combo])
            except RecipeError as e:
                raise RecipeError(f"{' '.join(combo)} together: {e}", file="--grid") from None


def sweep(
    recipe: str,
    grids: Sequence[str],
    runs,
    *,
    overrides: Sequence[str] = (),
    first_seed: int = 0,
    device: Optional[str] = None,
    data_dir: Optional[str] = None,
    out_dir="runs/sweep",
    resume: bool = True,
    workers: int = 1,
    on_run: Optional[Callable[[str, int, Dict], None]] = None,
    ray: Optional[str] = None,
    tensorboard: bool = False,
) -> List[Dict]:
    """Train ``recipe`` over every combination of the ``grids`` (``--grid`` texts), ``runs``
    seeds each (or Rounds: until the best is told from the runner-up), skipping runs already
    in ``out_dir/runs.jsonl`` unless ``resume`` is off; write table.md and table.csv; return
    the rows, one per combination in grid order, the best one's ``best`` True. ``workers``,
    ``ray`` and ``tensorboard`` are ablate's."""
    runs = runs if isinstance(runs, Rounds) else runs_setting(runs)
    parsed = parse_grids(grids)
    check(recipe, parsed, overrides)
    combos = combinations(parsed)
    arms = [(str(recipe), (*overrides, *combo)) for combo in combos]
    with Runner(out_dir, first_seed, device, data_dir, resume, workers, on_run, ray, tensorboard) as runner:
        if isinstance(runs, Rounds):
            results, decisions = runner.in_rounds(arms, runs, _best_against_runner_up)
        else:
            results, decisions = runner.fixed(arms, runs), None
        rows = sweep_rows(parsed, combos, results, decisions)
        runner.write(markdown(rows), csv_text(rows))
    return rows


def _ranked(values: List[List[float]]) -> List[int]:
    return sorted(range(len(values)), key=lambda i: -sum(values[i]) / len(values[i]))


def _best_against_runner_up(values: List[List[float]], rounds: Rounds) -> Dict[int, object]:
    """Sweep: every combination runs on until the best (by mean) is told from the runner-up."""
    if len(values) == 1:
        alone = stats.sequential_mean(values[0], rounds.alpha, rounds.precision, rounds.max_runs)
        return {0: alone} if alone.decided else {}
    best, second = _ranked(values)[:2]
    decision = rounds.compare(values[second], values[best])
    return {i: decision for i in range(len(values))} if decision.decided else {}


def sweep_rows(grids, combos, results, decisions=None) -> List[Dict]:
    """One row per combination: its values, accuracy statistics and time; the best marked,
    with its test against the runner-up."""
    rows = []
    for combo, runs in zip(combos, results):
        values = {g.path: v for g, v in zip(grids, (load_yaml_value(a.split("=", 1)[1]) for a in combo))}
        rows.append({"setting": values, **run_stats(runs), "best": False, "change": None, "p": None})
        rows[-1]["stopped"] = None if decisions is None else decisions[0].reason
    ranked = _ranked([r["values"] for r in rows])
    best = rows[ranked[0]]
    best["best"] = True
    if len(ranked) > 1:
        second = rows[ranked[1]]
        if decisions is None:
            test = stats.welch_t_test(second["values"], best["values"])
            best["p"] = test["p"] if test else None
            best["change"] = best["acc"]["mean"] - second["acc"]["mean"]
        else:
            best["change"], best["p"] = decisions[0].difference, decisions[0].p
        # fixed runs: Welch's p below 0.05; --runs auto: the sequential test said 'difference'
        best["significant"] = (
            best["p"] is not None and best["p"] < 0.05
            if decisions is None
            else decisions[0].reason == "difference"
        )
    return rows


def _value_text(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def markdown(rows: List[Dict]) -> str:
    auto = any(r.get("stopped") for r in rows)
    paths = list(rows[0]["setting"])
    test = "p (sequential)" if auto else "p (Welch)"
    columns = [*paths, "runs", "test acc %", "std", "95% CI", "train time s", "best", "vs runner-up", test]
    columns += ["stopped"] if auto else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [_value_text(v) for v in r["setting"].values()] + acc_cells(r)
        mark = "**best**" + (", significant" if r.get("significant") else "") if r["best"] else ""
        cells += [mark, fmt(r["change"], "+.2f", ""), fmt(r["p"], ".3f", "")]
        cells += [r["stopped"]] if auto else []
        lines.append("| " + " | ".join(cells) + " |")
    runs = "runs as the runs column says" if auto else f"mean of {rows[0]['runs']} runs"
    how = "the sequential test (docs/sequential.md)" if auto else "Welch's t-test"
    lines.append(
        f"\n{footer(rows[0])}; accuracy in %, {runs}; the best row's difference from the "
        f"runner-up and its p by {how}; significant: p below {'alpha' if auto else '0.05'}.{retried_line(rows)}"
    )
    return "\n".join(lines)


def csv_text(rows: List[Dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    paths = list(rows[0]["setting"]) if rows else []
    head = ["runs", "acc_mean", "acc_std", "acc_ci_low", "acc_ci_high", "train_time_s_mean", "best"]
    writer.writerow([*paths, *head, "significant", "vs_runner_up", "p", "stopped"])
    for r in rows:
        a = r["acc"]
        writer.writerow(
            [_value_text(v) for v in r["setting"].values()]
            + [r["runs"], a["mean"], a["std"], a["ci_low"], a["ci_high"], r["train_time_s"]["mean"]]
            + [
                int(r["best"]),
                int(r.get("significant", False)),
                _blank(r["change"]),
                _blank(r["p"]),
                r.get("stopped") or "",
            ]
        )
    return buffer.getvalue()


def _blank(value) -> object:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value

"""Ablation: train each recipe N times and tabulate them, as the original code's table does.

Every finished run is appended at once to ``runs.jsonl`` in the output folder,
so an interrupted ablation resumes where it stopped: a (recipe, seed,
overrides) already there is not trained again. The table gives, per recipe,
its epochs, the mean test accuracy with its standard deviation and 95%
confidence interval, the mean training time, and the change from the recipe
before it with Welch's t-test p-value.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from netgraph.core.errors import RecipeError
from netgraph.recipe.load import load_recipe
from netgraph.runs import board, files, stats
from netgraph.runs.log import data_label, read_records
from netgraph.runs.plan import resolve_device
from netgraph.runs.trial import EPOCHS
from netgraph.runs.trial import one_run as _one_run

COLUMNS = (
    "step",
    "epochs",
    "runs",
    "test acc %",
    "std",
    "95% CI",
    "train time s",
    "change vs previous",
    "p (Welch)",
)


Arm = Tuple[str, Tuple[str, ...]]  # a recipe file and the overrides it is trained with


def _key(recipe: str, seed: int, overrides: Sequence[str]) -> tuple:
    return recipe, seed, tuple(overrides)


@dataclass
class Rounds:
    """``--runs auto``: seeds added ``per_round`` at a time to every arm still undecided, up
    to ``max_runs``, each comparison stopped by ``stats.sequential_compare`` at ``alpha``
    (and ``precision`` points, when given)."""

    max_runs: int
    alpha: float = 0.05
    precision: Optional[float] = None
    per_round: int = 2

    def __post_init__(self):
        if self.max_runs < 2:
            raise RecipeError(f"--max-runs must be at least 2, got {self.max_runs}")
        if not 0 < self.alpha < 1:
            raise RecipeError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if self.precision is not None and self.precision <= 0:
            raise RecipeError(f"--precision must be above 0 points, got {self.precision}")

    def compare(self, a: Sequence[float], b: Sequence[float]) -> stats.Decision:
        return stats.sequential_compare(a, b, self.alpha, self.precision, self.max_runs)


def runs_setting(runs, max_runs=None, alpha=0.05, precision=None):
    """A fixed number of runs (an int >= 1), or Rounds for ``runs == 'auto'``."""
    if runs == "auto":
        if max_runs is None:
            raise RecipeError("--runs auto needs --max-runs N, the most runs an arm may take")
        return Rounds(max_runs, alpha, precision)
    if max_runs is not None or precision is not None:
        raise RecipeError("--max-runs and --precision go with --runs auto")
    runs = int(runs)
    if runs < 1:
        raise RecipeError(f"--runs must be at least 1, got {runs}")
    return runs


def ablate(
    recipes: Sequence[str],
    runs,
    *,
    overrides: Sequence[str] = (),
    first_seed: int = 0,
    device: Optional[str] = None,
    data_dir: Optional[str] = None,
    out_dir="runs/ablation",
    resume: bool = True,
    workers: int = 1,
    on_run: Optional[Callable[[str, int, Dict], None]] = None,
    ray: Optional[str] = None,
    tensorboard: bool = False,
) -> List[Dict]:
    """Train every recipe ``runs`` times (seeds first_seed..), skipping runs already in
    ``out_dir/runs.jsonl`` unless ``resume`` is off; write the table; return its rows.

    ``runs`` may be a Rounds (``--runs auto``): seeds are then added in rounds until each
    recipe's comparison with the first one is decided, and each row says why it stopped.

    With ``workers`` > 1 the runs go to that many processes, each on its own GPU (cuda:0,
    cuda:1, ...) when training on CUDA, else sharing the CPU cores; 0 means one per GPU.
    Results land in the same runs.jsonl as they finish, and the table is the same.

    With ``ray`` (an address, or "" for a local cluster Ray starts) the runs are Ray tasks
    instead (runs/ray_launcher.py). With ``tensorboard`` each run also writes TensorBoard event
    files under ``out_dir/tensorboard/`` (runs/board.py)."""
    runs = runs if isinstance(runs, Rounds) else runs_setting(runs)
    for path in recipes:
        load_recipe(path, overrides)  # every mistake up front
    arms = [(str(path), tuple(overrides)) for path in recipes]
    with Runner(out_dir, first_seed, device, data_dir, resume, workers, on_run, ray, tensorboard) as runner:
        if isinstance(runs, Rounds):
            results, decisions = runner.in_rounds(arms, runs, _against_first)
        else:
            results, decisions = runner.fixed(arms, runs), None
        rows = table_rows(recipes, results, decisions)
        runner.write(markdown(rows), csv_text(rows))
    return rows


def _against_first(values: List[List[float]], rounds: Rounds) -> Dict[int, object]:
    """Ablation: every recipe compared with the first; the first stops with the last of them
    (a recipe alone: when its own mean is known to ``precision``, or at ``max_runs``)."""
    if len(values) == 1:
        alone = stats.sequential_mean(values[0], rounds.alpha, rounds.precision, rounds.max_runs)
        return {0: alone} if alone.decided else {}
    stopped: Dict[int, object] = {}  # a Decision, or "reference" for the first recipe
    for i in range(1, len(values)):
        decision = rounds.compare(values[0], values[i])
        if decision.decided:
            stopped[i] = decision
    if len(stopped) == len(values) - 1:
        stopped[0] = "reference"
    return stopped


class Runner:
    """The runs of one folder: trains the (arm, seed) pairs not yet in its runs.jsonl, one
    process or several, and records each the moment it finishes; locked while open."""

    def __init__(self, out_dir, first_seed, device, data_dir, resume, workers, on_run, ray=None, board=False):
        """``ray``: None (local workers), an empty text (a local Ray cluster) or a cluster's address."""
        self.out = Path(out_dir)
        self.first_seed, self.data_dir, self.resume, self.on_run = first_seed, data_dir, resume, on_run
        self.board = board
        self.device = resolve_device(device)
        self.launcher = None
        if ray is not None:  # no Ray installed: refused here, before anything is read or trained
            from netgraph.runs.ray_launcher import Launcher  # only here: without --ray, no Ray

            self.launcher = Launcher(device, data_dir, ray or None)
        if workers == 0:
            workers = max(1, torch.cuda.device_count()) if self.device.type == "cuda" else 1
        self.workers = workers

    def __enter__(self) -> Runner:
        with files.writing(self.out, "ablation folder"):  # a full or read-only disk
            self.out.mkdir(parents=True, exist_ok=True)
        # a second ablation here would train every run again
        self.held = files.lock(self.out, "the ablation folder")
        try:
            self.done = self._read()
        except BaseException:
            files.unlock(self.held)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.launcher:
                self.launcher.close()
        finally:
            files.unlock(self.held)

    def _read(self) -> Dict[tuple, Dict]:
        self.log = self.out / "runs.jsonl"
        if not self.resume and self.log.exists():
            self.log.unlink()
        records = read_records(self.log)
        text = "".join(json.dumps(r) + "\n" for r in records)
        if self.log.exists() and self.log.read_text(errors="replace") != text:
            # Rewrite without any line a crash cut short, so the next append starts a fresh line (only
            # then: on a nearly full disk the copy may not fit where the next line does).
            files.write_text_atomically(self.log, text, "ablation's runs.jsonl", "runs.jsonl is unchanged")
        return {_key(r["recipe"], r["seed"], r.get("overrides", [])): r for r in records}

    def seeds(self, n: int) -> range:
        return range(self.first_seed, self.first_seed + n)

    def train(self, wanted: Sequence[Tuple[Arm, int]]) -> None:
        """Train each (arm, seed) not recorded yet."""
        todo = [(path, o, seed) for (path, o), seed in wanted if _key(path, seed, o) not in self.done]
        if self.launcher and todo:
            self.launcher.train(todo, self._finished)
        elif self.workers == 1 or len(todo) <= 1:
            for path, o, seed in todo:
                self._finished(path, o, seed, _one_run(path, o, seed, str(self.device), self.data_dir))
        else:
            _in_processes(todo, self.device, self.data_dir, self.workers, self._finished)

    def _finished(self, path: str, overrides: tuple, seed: int, record: Dict) -> None:
        epochs = record.pop(EPOCHS, [])
        kept = (
            f"the {len(self.done)} runs recorded before are kept in it: free space and run the same "
            f"command, which trains only the runs not recorded"
        )
        files.append_line(self.log, json.dumps(record), "ablation's runs.jsonl", kept)
        self.done[_key(path, seed, overrides)] = record
        if self.board and board.available():
            name = board.folder_name(" ".join([Path(path).stem, *overrides, f"seed{seed}"]))
            board.record_run(
                self.out / "tensorboard" / name, load_recipe(path, list(overrides)).sections, record, epochs
            )
        if self.on_run:
            self.on_run(path, seed, record)

    def records(self, arm: Arm, n: int) -> List[Dict]:
        return [self.done[_key(arm[0], s, arm[1])] for s in self.seeds(n)]

    def fixed(self, arms: Sequence[Arm], runs: int) -> List[List[Dict]]:
        self.train([(arm, seed) for arm in arms for seed in self.seeds(runs)])
        return [self.records(arm, runs) for arm in arms]

    def in_rounds(self, arms: Sequence[Arm], rounds: Rounds, judge):
        """Seeds added a round at a time to every arm not yet stopped (so arms stay paired by
        seed), until ``judge(values, rounds)`` -> {arm index: Decision} has stopped them all."""
        n, stopped = [0] * len(arms), {}  # type: List[int], Dict[int, object]
        while len(stopped) < len(arms):
            active = [i for i in range(len(arms)) if i not in stopped]
            if all(n[i] >= rounds.max_runs for i in active):  # a judge that never stops them
                stopped.update({i: "max runs reached" for i in active})
                break
            for i in active:
                n[i] = min(n[i] + rounds.per_round, rounds.max_runs)
            self.train([(arms[i], seed) for i in active for seed in self.seeds(n[i])])
            values = [[100 * r["test_acc"] for r in self.records(arm, k)] for arm, k in zip(arms, n)]
            stopped = {**judge(values, rounds), **stopped}  # a stopped arm keeps its reason
        return [self.records(arm, k) for arm, k in zip(arms, n)], [stopped[i] for i in range(len(arms))]

    def write(self, table: str, csv: str) -> None:
        kept = (
            "every run is recorded in runs.jsonl: free space and run the same command to write "
            "the table (nothing trains again)"
        )
        files.write_text_atomically(self.out / "table.md", table + "\n", "table", kept)
        files.write_text_atomically(self.out / "table.csv", csv, "table", kept)


_WORKER_DEVICE = "cpu"  # in a worker process: the device _worker_setup took from the queue


def _worker_setup(devices, threads: int, parent: int) -> None:
    global _WORKER_DEVICE
    _stop_with(parent)
    _WORKER_DEVICE = devices.get()
    torch.set_num_threads(threads)


def _stop_with(parent: int) -> None:
    """Linux: SIGTERM this worker when its parent dies (a SIGTERM or SIGKILL to `netgraph
    ablate` left its workers training on); elsewhere workers end with their last run."""
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_run(path: str, overrides: tuple, seed: int, data_dir: Optional[str]) -> Dict:
    return _one_run(path, overrides, seed, _WORKER_DEVICE, data_dir)


def _in_processes(todo, device, data_dir, workers: int, finished) -> None:
    """The runs spread over ``workers`` processes (spawned: CUDA cannot be forked), one
    device each on CUDA; each finished run is recorded at once."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    devices = context.Queue()  # not a Manager's: its server process outlived a killed parent
    if device.type == "cuda":
        first = device.index or 0
        if first + workers > torch.cuda.device_count():
            raise RecipeError(
                f"--workers {workers} needs {workers} GPUs from cuda:{first}, but "
                f"{torch.cuda.device_count()} are visible",
                hint="use fewer workers",
            )
        for i in range(workers):
            devices.put(f"cuda:{first + i}")
        threads = torch.get_num_threads()
    else:
        for _ in range(workers):
            devices.put("cpu")
        threads = max(1, (os.cpu_count() or 1) // workers)  # the cores shared, not oversubscribed
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_setup, initargs=(devices, threads, os.getpid())
    ) as pool:
        futures = {
            pool.submit(_worker_run, path, overrides, seed, data_dir): (path, overrides, seed)
            for path, overrides, seed in todo
        }
        try:
            for future in as_completed(futures):
                finished(*futures[future], future.result())
        except BaseException:  # a run that failed, a full disk: the runs not started never start
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_stats(runs: Sequence[Dict]) -> Dict:
    """What a table row says of its runs: accuracy (%) and time statistics, and where they ran."""
    acc = [100 * r["test_acc"] for r in runs]
    return {
        "epochs": runs[0]["epochs"],
        "runs": len(runs),
        "acc": stats.summary(acc),
        "train_time_s": stats.summary([r["train_time_s"] for r in runs]),
        "device": runs[0].get("device"),
        "dataset": runs[0].get("dataset"),
        "train_images": runs[0].get("train_images"),
        "values": acc,
        "retried": sum(r.get("attempts", 1) > 1 for r in runs),  # Ray: started again after a node died
    }


def retried_line(rows: Sequence[Dict]) -> str:
    """The table's last line when Ray retried runs whose node died ("" when none were)."""
    retried = sum(r.get("retried", 0) for r in rows)
    return f"\n{retried} of the runs were retried on another node after theirs died (Ray)." if retried else ""


def stopped_text(decision) -> Optional[str]:
    """A --runs auto row's 'stopped' cell: why, and after how many runs (None: fixed runs)."""
    if decision is None:
        return None
    if isinstance(decision, str):
        return decision
    return decision.reason


def table_rows(
    recipes: Sequence[str], results: Sequence[Sequence[Dict]], decisions: Optional[Sequence] = None
) -> List[Dict]:
    """One row per recipe: accuracy statistics, time, and the test against the row before
    (Welch's), or with ``decisions`` (--runs auto) the sequential test against the first row."""
    rows, previous = [], None
    for i, (path, runs) in enumerate(zip(recipes, results)):
        row = {"step": Path(path).stem, "recipe": str(path), **run_stats(runs), "change": None, "p": None}
        decision = decisions[i] if decisions else None
        row["stopped"] = stopped_text(decision)
        if isinstance(decision, stats.Decision):
            row["change"], row["p"] = decision.difference, decision.p
        elif previous is not None and decisions is None:
            row["change"] = row["acc"]["mean"] - previous["acc"]["mean"]
            test = stats.welch_t_test(previous["values"], row["values"])
            row["p"] = test["p"] if test else None
        rows.append(row)
        previous = row
    return rows


def fmt(value, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def acc_cells(row: Dict) -> List[str]:
    """runs, mean, std and 95% interval of a row's accuracy, and its mean training time."""
    a = row["acc"]
    return [
        str(row["runs"]),
        fmt(a["mean"], ".2f"),
        fmt(a["std"], ".2f"),
        "-" if math.isnan(a["ci_low"]) else f"{a['ci_low']:.2f} to {a['ci_high']:.2f}",
        fmt(row["train_time_s"]["mean"], ".1f"),
    ]


def _cells(row: Dict) -> List[str]:
    cells = [
        row["step"],
        str(row["epochs"]),
        *acc_cells(row),
        fmt(row["change"], "+.2f"),
        fmt(row["p"], ".3f"),
    ]
    return cells + ([row["stopped"]] if row.get("stopped") else [])


def markdown(rows: List[Dict]) -> str:
    auto = any(r.get("stopped") for r in rows)
    columns = list(COLUMNS)
    if auto:
        columns[-2:] = ["change vs first", "p (sequential)", "stopped"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    if rows:
        runs = "runs as the runs column says" if auto else f"mean of {rows[0]['runs']} runs"
        test = (
            "p: the anytime-valid p of the sequential test against the first row (docs/sequential.md)"
            if auto
            else "p: Welch's t-test against the row above"
        )
        lines.append(f"\n{footer(rows[0])}; accuracy in %, {runs}; {test}.{retried_line(rows)}")
    return "\n".join(lines)


def footer(row: Dict) -> str:
    return f"{data_label(row['dataset'], row['train_images'] or 0)}; {row['device']}"


def csv_text(rows: List[Dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "step",
            "recipe",
            "epochs",
            "runs",
            "acc_mean",
            "acc_std",
            "acc_ci_low",
            "acc_ci_high",
            "train_time_s_mean",
            "train_time_s_std",
            "change",
            "p_welch",
            "stopped",
        ]
    )
    for r in rows:
        writer.writerow(
            [
                r["step"],
                r["recipe"],
                r["epochs"],
                r["runs"],
                r["acc"]["mean"],
                r["acc"]["std"],
                r["acc"]["ci_low"],
                r["acc"]["ci_high"],
                r["train_time_s"]["mean"],
                r["train_time_s"]["std"],
                "" if r["change"] is None else r["change"],
                "" if r["p"] is None else r["p"],
                r.get("stopped") or "",
            ]
        )
    return buffer.getvalue()

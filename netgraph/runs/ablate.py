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
import datetime
import io
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from netgraph import data as datasets
from netgraph.core.errors import RecipeError
from netgraph.recipe.load import load_recipe
from netgraph.runs import files, stats
from netgraph.runs.log import data_label, read_records
from netgraph.runs.plan import Plan, prepare, resolve_device
from netgraph.runs.run import run_recipe

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


def _key(recipe: str, seed: int, overrides: Sequence[str]) -> tuple:
    return recipe, seed, tuple(overrides)


def ablate(
    recipes: Sequence[str],
    runs: int,
    *,
    overrides: Sequence[str] = (),
    first_seed: int = 0,
    device: Optional[str] = None,
    data_dir: Optional[str] = None,
    out_dir="runs/ablation",
    resume: bool = True,
    workers: int = 1,
    on_run: Optional[Callable[[str, int, Dict], None]] = None,
) -> List[Dict]:
    """Train every recipe ``runs`` times (seeds first_seed..), skipping runs already in
    ``out_dir/runs.jsonl`` unless ``resume`` is off; write the table; return its rows.

    With ``workers`` > 1 the runs go to that many processes, each on its own GPU (cuda:0,
    cuda:1, ...) when training on CUDA, else sharing the CPU cores; 0 means one per GPU.
    Results land in the same runs.jsonl as they finish, and the table is the same."""
    if runs < 1:
        raise RecipeError(f"--runs must be at least 1, got {runs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held = files.lock(out, "the ablation folder")  # a second ablation here would train every run again
    try:
        return _ablate(recipes, runs, out, overrides, first_seed, device, data_dir, resume, workers, on_run)
    finally:
        files.unlock(held)


def _ablate(
    recipes, runs, out: Path, overrides, first_seed, device, data_dir, resume, workers, on_run
) -> List[Dict]:
    log = out / "runs.jsonl"
    if not resume and log.exists():
        log.unlink()
    records = read_records(log)
    if log.exists():
        # Rewrite without any line a crash cut short, so the next append starts a fresh line.
        tmp, handle = files.temporary_beside(log)
        with handle:
            handle.write("".join(json.dumps(r) + "\n" for r in records).encode())
        tmp.replace(log)
    done = {_key(r["recipe"], r["seed"], r.get("overrides", [])): r for r in records}
    loaded = [(path, load_recipe(path, overrides)) for path in recipes]  # every mistake up front
    device = resolve_device(device)
    todo = [
        (str(path), seed)
        for path, _ in loaded
        for seed in range(first_seed, first_seed + runs)
        if _key(str(path), seed, overrides) not in done
    ]

    def finished(path: str, seed: int, record: Dict) -> None:
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
        done[_key(path, seed, overrides)] = record
        if on_run:
            on_run(path, seed, record)

    if workers == 0:
        workers = max(1, torch.cuda.device_count()) if device.type == "cuda" else 1
    if workers == 1 or len(todo) <= 1:
        for path, seed in todo:
            finished(path, seed, _one_run(path, tuple(overrides), seed, str(device), data_dir))
    else:
        _in_processes(todo, tuple(overrides), device, data_dir, workers, finished)
    chosen = [
        [done[_key(str(p), s, overrides)] for s in range(first_seed, first_seed + runs)] for p in recipes
    ]
    rows = table_rows(recipes, chosen)
    (out / "table.md").write_text(markdown(rows) + "\n")
    (out / "table.csv").write_text(csv_text(rows))
    return rows


# per process: each data set is read once, each recipe prepared once
_DATASETS: Dict[tuple, datasets.Dataset] = {}
_PLANS: Dict[tuple, Plan] = {}


def _plan(path: str, overrides: tuple, device: str, data_dir: Optional[str]) -> Plan:
    """The recipe's Plan in this process, prepared on first use; recipes that read the same data
    set share its tensors."""
    key = (path, overrides, device, data_dir)
    if key not in _PLANS:
        recipe = load_recipe(path, list(overrides))
        _PLANS[key] = prepare(recipe, data_dir=data_dir, device=device, data_cache=_DATASETS)
    return _PLANS[key]


def _one_run(path: str, overrides: tuple, seed: int, device: str, data_dir: Optional[str]) -> Dict:
    """Train one recipe with one seed; the JSON-lines record of the result."""
    result, _, _ = run_recipe(_plan(path, overrides, device, data_dir), seed=seed, eval_every_epoch=False)
    return {
        "recipe": path,
        "seed": seed,
        "overrides": list(overrides),
        **{k: v for k, v in result.summary().items() if k not in ("recipe", "seed")},
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


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


def _in_processes(todo, overrides: tuple, device, data_dir, workers: int, finished) -> None:
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
            pool.submit(_worker_run, path, overrides, seed, data_dir): (path, seed) for path, seed in todo
        }
        for future in as_completed(futures):
            path, seed = futures[future]
            finished(path, seed, future.result())


def table_rows(recipes: Sequence[str], results: Sequence[Sequence[Dict]]) -> List[Dict]:
    """One row per recipe: accuracy statistics, time, and the test against the row before."""
    rows, previous = [], None
    for path, runs in zip(recipes, results):
        acc = [100 * r["test_acc"] for r in runs]
        row = {
            "step": Path(path).stem,
            "recipe": str(path),
            "epochs": runs[0]["epochs"],
            "runs": len(runs),
            "acc": stats.summary(acc),
            "train_time_s": stats.summary([r["train_time_s"] for r in runs]),
            "device": runs[0].get("device"),
            "dataset": runs[0].get("dataset"),
            "train_images": runs[0].get("train_images"),
            "change": None,
            "p": None,
        }
        if previous is not None:
            row["change"] = row["acc"]["mean"] - previous["acc"]["mean"]
            test = stats.welch_t_test(previous["values"], acc)
            row["p"] = test["p"] if test else None
        row["values"] = acc
        rows.append(row)
        previous = row
    return rows


def _cells(row: Dict) -> List[str]:
    a = row["acc"]
    missing = "-"
    fmt = lambda v, spec: (
        missing if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
    )
    return [
        row["step"],
        str(row["epochs"]),
        str(row["runs"]),
        fmt(a["mean"], ".2f"),
        fmt(a["std"], ".2f"),
        missing if math.isnan(a["ci_low"]) else f"{a['ci_low']:.2f} to {a['ci_high']:.2f}",
        fmt(row["train_time_s"]["mean"], ".1f"),
        fmt(row["change"], "+.2f"),
        fmt(row["p"], ".3f"),
    ]


def markdown(rows: List[Dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    if rows:
        lines.append(
            f"\n{data_label(rows[0]['dataset'], rows[0]['train_images'] or 0)}; "
            f"{rows[0]['device']}; accuracy in %, mean of {rows[0]['runs']} runs; "
            f"p: Welch's t-test against the row above."
        )
    return "\n".join(lines)


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
            ]
        )
    return buffer.getvalue()

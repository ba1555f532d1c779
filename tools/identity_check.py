"""Does a refactor train bit-identical weights? Each recipe trains a few CPU steps with the code
of a base commit and with the working tree's code (HEAD and what is not committed), and the final
state_dicts are compared tensor by tensor, bit for bit, with the runs' test_acc and test_loss.

    python tools/identity_check.py --base 12a37de --out bench/results/refactor_identity_cpu_DATE.json
    python tools/identity_check.py --base 12a37de --recipes 'recipes/ladder/*' --out ...

The base is a temporary git worktree (removed afterwards, on an error or Ctrl-C too). Each run is a
process of its own with one thread, its tree alone on PYTHONPATH and the editable install of
netgraph switched off (fails_before.checkout_env); the process checks that every netgraph module
it imported came from its tree. No real data is read: one small .npz of random uint8 images per
input shape (the recipe's input.shape, else 3 x 32 x 32), read by both trees' ``data.dataset:
arrays``, with as many training images as the largest batch of those recipes times the steps.
Both trees get the same --set overrides. A recipe that fails in both trees is reported as skipped
with both errors; one that fails in one tree only is a failure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import fnmatch
import json
import math
import os
import platform
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from fails_before import checkout_env, git

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHAPE = (3, 32, 32)  # CIFAR's, when a recipe's chain gives no input.shape
DEFAULT_BATCH = 512  # TrainConfig.batch_size, when a recipe's chain gives no train.batch_size
CLASSES = 10
DATA_SEED = 0
SIDES = ("base", "head")


# --- which recipes, which data, which overrides -------------------------------------------


def recipe_paths(globs: Sequence[str]) -> List[str]:
    """Every recipe under recipes/ (recursively), as paths relative to the repository root; with
    globs, those matching one of them (fnmatch on the relative path: 'recipes/ladder/*')."""
    found = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes").rglob("*.yaml"))
    if not globs:
        return found
    return [p for p in found if any(fnmatch.fnmatch(p, g) for g in globs)]


def chain_value(path: Path, keys: Sequence[str], default: Any) -> Any:
    """A setting as the recipe's base: chain gives it (the nearest file wins), read from the YAML
    alone: the parent process imports no netgraph."""
    seen = set()
    while path not in seen:
        seen.add(path)
        data = yaml.safe_load(path.read_text()) or {}
        value: Any = data
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            return value
        if not data.get("base"):
            return default
        path = (path.parent / data["base"]).resolve()
    return default


def write_arrays(path: Path, shape: Sequence[int], train: int, test: int) -> None:
    """Random NHWC uint8 images of ``shape`` (C, H, W) and labels of 10 classes, fixed seed."""
    rng = np.random.default_rng(DATA_SEED)
    c, h, w = shape
    np.savez(
        path,
        x_train=rng.integers(0, 256, (train, h, w, c), dtype=np.uint8),
        y_train=rng.integers(0, CLASSES, train, dtype=np.int64),
        x_test=rng.integers(0, 256, (test, h, w, c), dtype=np.uint8),
        y_test=rng.integers(0, CLASSES, test, dtype=np.int64),
    )


def plan_runs(
    recipes: Sequence[str], folder: Path, steps: int, epoch_steps: int, test: int
) -> Dict[str, List[str]]:
    """recipe -> its --set overrides. The training set of a recipe holds ``epoch_steps`` of its
    batches (its last partial batch dropped), so that ``steps`` steps are steps / epoch_steps epochs:
    a schedule in epochs such as knots [0, 5, epochs] needs 5 of them. Writes one .npz per input
    shape and training-set size into ``folder``."""
    files = {}
    overrides = {}
    for recipe in recipes:
        shape = tuple(chain_value(ROOT / recipe, ("input", "shape"), DEFAULT_SHAPE))
        train = epoch_steps * int(chain_value(ROOT / recipe, ("train", "batch_size"), DEFAULT_BATCH))
        if (shape, train) not in files:
            files[shape, train] = folder / f"random_{'x'.join(map(str, shape))}_{train}.npz"
            write_arrays(files[shape, train], shape, train, test)
        overrides[recipe] = [
            f"train.steps={steps}",
            "train.compile=none",
            "train.precision=float32",
            "data.dataset=arrays",
            f"data.dir={files[shape, train]}",
        ]
    return overrides


# --- one run, in a process of its own ------------------------------------------------------


def worker(tree: Path, recipe: str, overrides: List[str], meta: Path, state: Path) -> int:
    """Train ``recipe`` with the netgraph of ``tree``: the final state_dict to ``state`` (torch.save),
    test_acc, test_loss, where netgraph came from and any error to ``meta`` (JSON)."""
    record: Dict[str, Any] = {"error": None}
    try:
        import torch

        torch.set_num_threads(1)
        import netgraph

        record["netgraph_file"] = netgraph.__file__
        print(f"netgraph from {netgraph.__file__}", flush=True)
        run_recipe, record["api"] = _run_recipe_function()
        start = time.perf_counter()
        result, model, _ = run_recipe(netgraph.load_recipe(recipe, overrides), seed=0, device="cpu")
        record["train_s"] = round(time.perf_counter() - start, 3)
        record["test_acc"], record["test_loss"] = float(result.test_acc), float(result.test_loss)
        record["times_s"] = {
            k: getattr(result, k, None) for k in ("setup_time_s", "train_time_s", "eval_time_s")
        }
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, state)
    except BaseException as error:  # reported, whatever it is (KeyboardInterrupt too)
        traceback.print_exc()
        record["error"] = f"{type(error).__name__}: {error}".strip()[:2000]
    outside = sorted(
        f"{name}: {module.__file__}"
        for name, module in sys.modules.items()
        if name.split(".")[0] == "netgraph"
        and getattr(module, "__file__", None)
        and not Path(module.__file__).resolve().is_relative_to(tree.resolve())
    )
    if outside:
        record["error"] = f"netgraph modules imported from outside {tree}: {outside[:5]}"
    meta.write_text(json.dumps(record, indent=1))
    return 1 if record["error"] else 0


def _run_recipe_function():
    """run_recipe and its module: netgraph.runs.run (the new layout), else netgraph.run."""
    try:
        from netgraph.runs.run import run_recipe

        return run_recipe, "netgraph.runs.run"
    except ModuleNotFoundError as error:
        if error.name not in ("netgraph.runs", "netgraph.runs.run"):
            raise
    from netgraph.run import run_recipe

    return run_recipe, "netgraph.run"


class Runner:
    """Runs the worker processes (the thread pool bounds how many at once) and can stop them all."""

    def __init__(self, folder: Path, timeout: float):
        self.folder, self.timeout = folder, timeout
        self.procs: set = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self, side: str, tree: Path, env: Dict[str, str], recipe: str, overrides: List[str]) -> Dict:
        """One worker run: {seconds, error, netgraph_file, api, test_acc, test_loss, state (path)}."""
        stem = self.folder / f"{recipe.replace('/', '_')}.{side}"
        meta, state, log = (Path(f"{stem}.{ext}") for ext in ("json", "pt", "log"))
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree), recipe]
        command += [str(meta), str(state), *(a for o in overrides for a in ("--set", o))]
        if self.stopping.is_set():
            return {"error": "not run: stopping", "seconds": 0.0}
        start = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
            with self.lock:
                self.procs.add(proc)
                if self.stopping.is_set():  # stop() ran while it started
                    proc.kill()
            try:
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            finally:
                with self.lock:
                    self.procs.discard(proc)
        record = json.loads(meta.read_text()) if meta.exists() else {}
        record["seconds"] = round(time.perf_counter() - start, 2)
        if not meta.exists():
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            timed_out = proc.returncode in (-9, 137) and record["seconds"] >= self.timeout
            why = f"over {self.timeout:.0f} s" if timed_out else f"exit code {proc.returncode}"
            record["error"] = f"worker wrote no result ({why}): {' '.join(tail)[:500]}"
        record["state"] = str(state) if state.exists() else None
        return record

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            for proc in self.procs:
                proc.kill()


# --- comparison --------------------------------------------------------------------------


def same_bits(a, b) -> bool:
    """Two tensors of one dtype and shape hold the same bytes (NaN equals NaN, -0.0 is not 0.0)."""
    import torch

    def as_bytes(t):
        t = t.detach().cpu().contiguous().reshape(-1)
        return t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)

    return torch.equal(as_bytes(a), as_bytes(b))


def same_float(a: Optional[float], b: Optional[float]) -> bool:
    if a is None or b is None:
        return a is b
    return struct.pack("<d", a) == struct.pack("<d", b)


def compare(base: Dict[str, Any], head: Dict[str, Any]) -> Tuple[bool, Optional[str]]:
    """(identical, the first difference) of two runs, each {"state": state_dict, "test_acc",
    "test_loss"}: the same keys, and for each key the same dtype, shape and bits, in the base's key
    order; then test_acc and test_loss to the bit."""
    a, b = base["state"], head["state"]
    missing, extra = [k for k in a if k not in b], [k for k in b if k not in a]
    if missing or extra:
        return (
            False,
            f"keys: {len(missing)} only at the base {missing[:3]}, {len(extra)} only now {extra[:3]}",
        )
    for key in a:
        x, y = a[key], b[key]
        if x.dtype != y.dtype:
            return False, f"{key}: dtype {x.dtype} vs {y.dtype}"
        if tuple(x.shape) != tuple(y.shape):
            return False, f"{key}: shape {tuple(x.shape)} vs {tuple(y.shape)}"
        if not same_bits(x, y):
            return False, f"{key}: values differ ({_largest_gap(x, y)})"
    for name in ("test_acc", "test_loss"):
        if not same_float(base.get(name), head.get(name)):
            return False, f"{name}: {base.get(name)!r} vs {head.get(name)!r}"
    return True, None


def _largest_gap(x, y) -> str:
    differ = int((x != y).sum())
    if not (x.is_floating_point() and y.is_floating_point()):
        return f"{differ} of {x.numel()} elements"
    gap = (x.double() - y.double()).abs().nan_to_num(math.inf).max().item()
    return f"{differ} of {x.numel()} elements, largest gap {gap:.3g}"


def judge(recipe: str, overrides: List[str], runs: Dict[str, Dict]) -> Dict[str, Any]:
    """The record of one recipe from its two runs: status identical, different, failed (one tree
    failed) or skipped (both failed: the overrides do not suit the recipe)."""
    import torch

    row: Dict[str, Any] = {"recipe": recipe, "overrides": overrides}
    for side in SIDES:
        run = runs[side]
        row[f"{side}_s"] = run.get("seconds")
        for key in ("test_acc", "test_loss", "netgraph_file", "api", "times_s", "error"):
            row[f"{side}_{key}"] = run.get(key)
    errors = [side for side in SIDES if runs[side].get("error")]
    row["identical"], row["first_difference"] = False, None
    if len(errors) == 2:
        row["status"], row["same_error"] = "skipped", runs["base"]["error"] == runs["head"]["error"]
        row["skip_reason"] = "fails in both trees" + ("" if row["same_error"] else ", with different errors")
    elif errors:
        row["status"] = "failed"
        row["first_difference"] = f"fails only in the {errors[0]} tree"
    else:
        loaded = {s: {**runs[s], "state": torch.load(runs[s]["state"], weights_only=True)} for s in SIDES}
        row["identical"], row["first_difference"] = compare(loaded["base"], loaded["head"])
        row["tensors"] = len(loaded["base"]["state"])
        row["status"] = "identical" if row["identical"] else "different"
    for side in SIDES:
        if runs[side].get("state"):
            Path(runs[side]["state"]).unlink(missing_ok=True)
    return row


# --- the whole check -----------------------------------------------------------------------


def check(args, trees: Dict[str, Path], envs: Dict[str, Dict], folder: Path) -> List[Dict]:
    """Every recipe in both trees, ``args.jobs`` processes at a time; progress printed per recipe."""
    recipes = recipe_paths(args.recipes)
    if not recipes:
        raise SystemExit(f"no recipe under recipes/ matches {args.recipes}")
    overrides = plan_runs(recipes, folder, args.steps, args.epoch_steps, args.test_images)
    runner = Runner(folder, args.timeout)
    rows = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {
            (r, s): pool.submit(runner.run, s, trees[s], envs[s], r, overrides[r])
            for r in recipes
            for s in SIDES
        }
        for i, recipe in enumerate(recipes, 1):
            row = judge(recipe, overrides[recipe], {s: futures[recipe, s].result() for s in SIDES})
            rows.append(row)
            detail = row["first_difference"] or row.get("skip_reason") or ""
            print(
                f"[{i}/{len(recipes)}] {recipe}: {row['status']} (base {row['base_s']} s, "
                f"head {row['head_s']} s) {detail}".rstrip(),
                flush=True,
            )
            for side in SIDES:
                if row[f"{side}_error"]:
                    print(f"    {side} error: {row[f'{side}_error'].splitlines()[0][:300]}", flush=True)
    finally:
        runner.stop()
        pool.shutdown(wait=True, cancel_futures=True)
    return rows


def environment(args, argv: Optional[Sequence[str]]) -> Dict[str, Any]:
    import torch

    dirty = git("status", "--porcelain").splitlines()
    return {
        "tool": "tools/identity_check.py",
        "command": " ".join(["python", "tools/identity_check.py", *(sys.argv[1:] if argv is None else argv)]),
        "base": git("rev-parse", args.base).strip(),
        "head": git("rev-parse", "HEAD").strip(),
        "dirty": bool(dirty),
        "dirty_files": [line[3:] for line in dirty],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jobs": args.jobs,
        "threads_per_run": 1,
        "steps": args.steps,
        "epoch_steps": args.epoch_steps,
        "test_images": args.test_images,
    }


def summary(rows: List[Dict]) -> Dict[str, int]:
    counts = {"recipes": len(rows)}
    for status in ("identical", "different", "failed", "skipped"):
        counts[status] = sum(r["status"] == status for r in rows)
    return counts


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit before the refactor")
    parser.add_argument("--recipes", nargs="*", default=[], help="globs of recipe paths (default: all)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON record to write")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps of each run")
    parser.add_argument("--epoch-steps", type=int, default=1, help="steps an epoch (training-set size)")
    parser.add_argument("--test-images", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one run")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    record = environment(args, argv)
    print(f"base {record['base'][:12]}, head {record['head'][:12]}{' + uncommitted' * record['dirty']}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally below runs
    with tempfile.TemporaryDirectory(prefix="identity_check_") as tmp:
        folder = Path(tmp)
        trees = {"base": folder / "base", "head": ROOT}
        git("worktree", "add", "--detach", str(trees["base"]), record["base"])
        try:
            envs = {s: {**checkout_env(trees[s], folder), "OMP_NUM_THREADS": "1"} for s in SIDES}
            rows = check(args, trees, envs, folder)
        finally:
            git("worktree", "remove", "--force", str(trees["base"]))
    record["summary"], record["results"] = summary(rows), rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["summary"]))
    return 0 if record["summary"]["identical"] + record["summary"]["skipped"] == len(rows) else 1


def worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("tree", "recipe", "meta", "state"):
        parser.add_argument(name)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    return worker(Path(args.tree), args.recipe, args.overrides, Path(args.meta), Path(args.state))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit(main())

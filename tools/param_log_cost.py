"""What train.log_params costs: training time with and without batch-norm statistics.

    python tools/param_log_cost.py --data-dir ../shared/data/cifar10-subset --epochs 3 \
        --pairs 6 --log-params 5 [--threads 1] [--json-out FILE]

In one process, with the data set read once, trains recipes/tiny.yaml `--pairs` times
with logging off and on, alternating which goes first in each pair (off/on, on/off,
...) so a drift in the machine's load falls on both equally, the same seed in both.
Time is the sum of the epochs' training times (the engine's timer: set-up and
evaluation excluded). Prints and records the median over pairs of on/off, and
separately the cost of one record (ParamStats.record on the tiny model, timed over
many calls) times the records an epoch makes, as a share of an epoch's time: the
end-to-end ratio is noisy on a shared CPU, the second estimate is not.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netgraph import load_recipe  # noqa: E402
from netgraph.runs.plan import load_data  # noqa: E402
from netgraph.runs.run import run_recipe  # noqa: E402
from netgraph.train.config import data_config, train_config  # noqa: E402
from netgraph.train.engine import ParamStats  # noqa: E402
from tools.augment_cost import device_name  # noqa: E402


def train_seconds(recipe_path, dataset, epochs, log_params, seed):
    recipe = load_recipe(recipe_path, [f"train.epochs={epochs}", f"train.log_params={log_params}"])
    run, model, _ = run_recipe(recipe, seed=seed, device=torch.device("cpu"), dataset=dataset)
    return sum(e["epoch_time"] for e in run.log), run, model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny.yaml"))
    parser.add_argument("--data-dir", help="folder with CIFAR-10 (default: the recipe's, or download)")
    parser.add_argument(
        "--epochs", type=int, default=3, help="at least 3: tiny.yaml's schedule has a knot at epochs - 2"
    )
    parser.add_argument("--pairs", type=int, default=6, help="runs with and without logging")
    parser.add_argument("--log-params", type=int, default=5, help="record every N steps")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset = load_data(data_config(load_recipe(args.recipe)), args.data_dir)
    train_seconds(args.recipe, dataset, args.epochs, 0, args.seed)  # warm-up: allocator, kernels
    runs = []
    for pair in range(args.pairs):
        order = (0, args.log_params) if pair % 2 == 0 else (args.log_params, 0)
        times = {}
        for every in order:
            times[every], run, model = train_seconds(args.recipe, dataset, args.epochs, every, args.seed)
            print(f"pair {pair + 1}, log_params {every}: {times[every]:.3f} s", file=sys.stderr)
        runs.append(
            {"off_s": times[0], "on_s": times[args.log_params], "ratio": times[args.log_params] / times[0]}
        )
    ratios = [r["ratio"] for r in runs]
    median_ratio = statistics.median(ratios)

    # One record's cost, timed alone on the trained model (the last run's).
    stats = ParamStats(model, args.log_params)
    calls = 2000
    start = time.perf_counter()
    for step in range(calls):
        stats.record(step)
    record_s = (time.perf_counter() - start) / calls
    steps_per_epoch = run.train_images // train_config(load_recipe(args.recipe)).batch_size
    records_per_epoch = -(-steps_per_epoch // args.log_params)
    epoch_s = statistics.median(r["off_s"] for r in runs) / args.epochs
    estimate = records_per_epoch * record_s / epoch_s

    print(
        f"{run.recipe}, {args.epochs} epochs x {args.pairs} pairs on {device_name(torch.device('cpu'))}: "
        f"median time with/without log_params={args.log_params}: {median_ratio:.4f} "
        f"({100 * (median_ratio - 1):+.2f}%); one record {1e6 * record_s:.0f} us x "
        f"{records_per_epoch} per epoch = {100 * estimate:.3f}% of a {epoch_s:.2f} s epoch"
    )
    if args.json_out:
        result = {
            "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv),
            "device": device_name(torch.device("cpu")),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "recipe": run.recipe,
            "dataset": run.dataset,
            "train_images": run.train_images,
            "epochs": args.epochs,
            "log_params": args.log_params,
            "pairs": runs,
            "median_ratio": median_ratio,
            "overhead_percent": 100 * (median_ratio - 1),
            "batch_norm_layers": len(stats.layers),
            "record_us": 1e6 * record_s,
            "records_per_epoch": records_per_epoch,
            "epoch_s": epoch_s,
            "record_overhead_percent": 100 * estimate,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the opened training engine costs: time per step against the engine before it.

    python tools/engine_cost.py --data-dir ../shared/data/cifar10-subset --before e3dd429 \
        [--recipe recipes/tiny.yaml] [--epochs 3] [--pairs 6] [--threads 1] [--device cpu] [--json-out FILE]

The netgraph package at commit ``--before`` (the last one with the closed engine) is
extracted with ``git archive`` into a temporary folder as the package ``netgraph_before``
and imported beside this checkout's ``netgraph``, so both engines run in one process on
the same data. Each pair trains the recipe once with each engine, alternating which goes
first (old/new, new/old, ...) so a drift in the machine's load falls on both equally, the
same seed in both. Time per step is the sum of the epochs' training times (the engine's
timer: set-up and evaluation excluded) over the steps. Prints and records the median of
the new/old ratios, and whether the two engines' final weights are bit-identical.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import io
import json
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.augment_cost import device_name  # noqa: E402


def package_at(commit: str, into: Path) -> str:
    """netgraph as it was at ``commit``, extracted as the package ``netgraph_before`` in ``into``
    (put ``into`` on sys.path to import it)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "netgraph"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "netgraph").rename(into / "netgraph_before")
    return "netgraph_before"


def one_run(package: str, recipe_path: str, sets, dataset, device, seed: int):
    """(seconds per step, final weights) of one training run with ``package``'s engine."""
    netgraph = importlib.import_module(package)
    run_module = importlib.import_module(f"{package}.run")
    recipe = netgraph.load_recipe(recipe_path, sets)
    run, model, _ = run_module.run_recipe(recipe, seed=seed, device=torch.device(device), dataset=dataset)
    steps = len(run.log) * (len(dataset.train_labels) // recipe.train["batch_size"])  # whole epochs
    return sum(e["epoch_time"] for e in run.log) / steps, {k: v.cpu() for k, v in model.state_dict().items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny.yaml"))
    parser.add_argument("--before", default="e3dd429", help="the commit of the engine to compare with")
    parser.add_argument("--data-dir", help="folder with CIFAR-10 (default: the recipe's, or download)")
    parser.add_argument("--epochs", type=int, default=3, help="at least 3: tiny.yaml's knots need them")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import netgraph
    from netgraph.runs.plan import load_data
    from netgraph.train.config import data_config

    sets = [f"train.epochs={args.epochs}"]
    dataset = load_data(data_config(netgraph.load_recipe(args.recipe, sets)), args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        old = package_at(args.before, Path(tmp))
        sys.path.insert(0, tmp)
        one_run(old, args.recipe, sets, dataset, args.device, args.seed)  # warm-up: allocator, kernels
        pairs, same = [], True
        for i in range(args.pairs):
            order = ["netgraph", old] if i % 2 else [old, "netgraph"]
            times, weights = {}, {}
            for package in order:
                times[package], weights[package] = one_run(
                    package, args.recipe, sets, dataset, args.device, args.seed
                )
            same = same and all(torch.equal(weights[old][k], weights["netgraph"][k]) for k in weights[old])
            pairs.append(
                {
                    "first": "new" if order[0] == "netgraph" else "old",
                    "old_s_per_step": times[old],
                    "new_s_per_step": times["netgraph"],
                    "ratio": times["netgraph"] / times[old],
                }
            )
            print(
                f"pair {i + 1}: old {1000 * times[old]:.2f} ms/step, new {1000 * times['netgraph']:.2f} "
                f"ms/step, new/old {pairs[-1]['ratio']:.4f}",
                flush=True,
            )
    ratio = statistics.median(p["ratio"] for p in pairs)
    device = device_name(torch.device(args.device))
    print(
        f"{Path(args.recipe).name}, {args.epochs} epochs x {args.pairs} pairs on {device}: median "
        f"new/old time per step {ratio:.4f}; final weights bit-identical: {same}"
    )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(
            json.dumps(
                {
                    "command": "python "
                    + " ".join(shlex.quote(a) for a in [sys.argv[0]] + (argv or sys.argv[1:])),
                    "device": device,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "recipe": Path(args.recipe).name,
                    "before": args.before,
                    "epochs": args.epochs,
                    "pairs": pairs,
                    "median_ratio": ratio,
                    "weights_bit_identical": same,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

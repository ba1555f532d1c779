"""What launching runs through Ray costs against local workers, on this machine.

    python tools/ray_overhead.py [--runs 20] [--pairs 5] [--workers 2] [--json-out FILE]

Each pair runs the same ablation of ``--runs`` short runs (a small synthetic recipe, 2 epochs)
twice as the command a user types, in a fresh folder each: ``netgraph ablate --workers N`` (local
worker processes) and ``netgraph ablate --ray`` (a local Ray cluster that the command starts and
stops), alternating which goes first so a drift in the machine's load falls on both. Ray's
start-up alone (``ray.init`` of a local cluster and ``ray.shutdown``, in a fresh process) is
timed once per pair too. Prints and records the medians (of each side, and of each pair's
difference and ratio), the Ray/local ratio, the overhead per
run (the difference over the runs, with and without Ray's start-up), and the load average
before and after (this machine may be shared).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """
    data:
      dataset: synthetic
      synthetic: {train: 512, test: 256, classes: 4}
    train:
      epochs: 2
      batch_size: 64
      lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
    network:
      conv: {op: conv2d, out: 8, bias: false}
      bn: {op: batch_norm}
      act: {op: relu}
      pool: {op: global_avg_pool}
      flat: {op: flatten}
      fc: {op: linear, out: 4}
"""
RAY_START = (
    "import ray; ray.init(_node_ip_address='127.0.0.1', include_dashboard=False, log_to_driver=False); "
    "ray.shutdown()"
)


def timed(command) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def ablation(recipe: Path, out: Path, runs: int, launcher) -> float:
    """Seconds of one `netgraph ablate` of ``runs`` runs, start to end, into a fresh ``out``."""
    command = [sys.executable, "-m", "netgraph", "ablate", str(recipe), "--runs", str(runs)]
    return timed(command + ["--device", "cpu", "--no-tensorboard", "--fresh", "--out", str(out), *launcher])


def measure(args, folder: Path) -> list:
    recipe = folder / "short.yaml"
    recipe.write_text(textwrap.dedent(RECIPE))
    launchers = {"local": ["--workers", str(args.workers)], "ray": ["--ray"]}
    pairs = []
    for i in range(args.pairs):
        order = ["local", "ray"] if i % 2 == 0 else ["ray", "local"]
        pair = {"first": order[0]}
        for name in order:
            pair[f"{name}_s"] = ablation(recipe, folder / f"{name}{i}", args.runs, launchers[name])
        pair["ray_start_s"] = timed([sys.executable, "-c", RAY_START])
        print(
            f"pair {i + 1}: local {pair['local_s']:.1f} s, ray {pair['ray_s']:.1f} s "
            f"(Ray's start-up alone {pair['ray_start_s']:.1f} s)",
            flush=True,
        )
        pairs.append(pair)
    return pairs


def summary(pairs: list, runs: int) -> dict:
    """Medians of each side, and of each pair's difference and ratio (a pair's two sides ran
    back to back, so a change in the machine's load between pairs cancels out)."""

    def median(f) -> float:
        return statistics.median(f(p) for p in pairs)

    return {
        "median_local_s": median(lambda p: p["local_s"]),
        "median_ray_s": median(lambda p: p["ray_s"]),
        "median_ray_start_s": median(lambda p: p["ray_start_s"]),
        "median_ratio_ray_over_local": median(lambda p: p["ray_s"] / p["local_s"]),
        "overhead_per_run_s": median(lambda p: (p["ray_s"] - p["local_s"]) / runs),
        "overhead_per_run_without_start_s": median(
            lambda p: (p["ray_s"] - p["ray_start_s"] - p["local_s"]) / runs
        ),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="local workers (default: cores)"
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    import ray
    import torch

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = measure(args, Path(tmp))
    result = summary(pairs, args.runs)
    print(
        f"{args.runs} runs: local workers {result['median_local_s']:.1f} s, Ray {result['median_ray_s']:.1f} s "
        f"(x{result['median_ratio_ray_over_local']:.2f}); {result['overhead_per_run_s']:.2f} s a run more, "
        f"{result['overhead_per_run_without_start_s']:.2f} s without Ray's start-up "
        f"({result['median_ray_start_s']:.1f} s)"
    )
    if args.json_out:
        record = {
            "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + (argv or sys.argv[1:])),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "torch": torch.__version__,
            "ray": ray.__version__,
            "runs": args.runs,
            "workers": args.workers,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "note": "medians of alternating pairs; each side is the whole command (start-up included); "
            "the machine may have been shared with other work (see the load averages)",
            **result,
            "pairs": pairs,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where `netgraph train` spends its time, from a profile: the breakdown issue 33 asks for,
before and after, written by the tool that measured it.

    python tools/profile_train.py --checkout /tmp/base --label before-704d8b1 --out bench/results/X.json
    python tools/profile_train.py --label after --out bench/results/Y.json

Runs the reduced airbench94_muon run of issue 33 (widths 32/64/64, batch 2000, 8 epochs,
float32, no compile, the shared subset, 2 threads) once under cProfile with the netgraph of
``--checkout`` (default: this one), and once without the profiler, its wall time measured from
outside. The profile's figures are inflated by the profiler (every Python call pays), so they
say where the time goes, not how much a plain run takes; the plain run's wall time says that.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"
SETS = [
    "network.group1.c=32",
    "network.group2.c=64",
    "network.group3.c=64",
    "network.head.scale.by=0.015625",
    "train.precision=float32",
    "train.compile=none",
]
# (label, file suffix, function name): the profile's cumulative seconds of each
FUNCTIONS = [
    ("prepare (data read, graph, checks)", "runs/plan.py", "prepare"),
    ("summarize (FlopCounterMode)", "graph/summary.py", "summarize"),
    ("set-up (data to device, passes, module)", "runs/run.py", "_set_up"),
    ("training epochs", "train/engine.py", "epoch"),
    ("evaluate (every call)", "train/engine.py", "evaluate"),
    ("import netgraph.train.distributed", "netgraph/train/distributed.py", "<module>"),
    ("torch optimizers built (the first imports torch._dynamo)", "torch/optim/optimizer.py", "__init__"),
    ("import torch", "torch/__init__.py", "<module>"),
]


def breakdown(path: Path) -> Dict:
    stats = pstats.Stats(str(path))
    total = max(row[3] for row in stats.stats.values())  # type: ignore[attr-defined]
    figures: Dict = {"profile_total_s": total}
    for label, suffix, name in FUNCTIONS:
        rows = [
            (row[1], row[3])
            for (file, _, function), row in stats.stats.items()  # type: ignore[attr-defined]
            if file.endswith(suffix) and function == name
        ]
        figures[label] = {"calls": sum(r[0] for r in rows), "cumulative_s": sum(r[1] for r in rows)}
    return figures


def weights_digest(path: Path) -> str:
    """sha256 over the saved model's tensors, name and bytes, in order: equal digests are the
    same weights bit for bit."""
    import hashlib

    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    state = saved.get("state_dict", saved.get("model", saved)) if isinstance(saved, dict) else saved
    digest = hashlib.sha256()
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", type=Path, default=ROOT, help="the netgraph to profile (a tree of a commit)")
    p.add_argument("--label", required=True)
    p.add_argument("--data-dir", type=Path, default=SUBSET)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--profile",
        type=Path,
        help="break down this profile, made before (python -m cProfile -o FILE -m netgraph train ... with "
        "SETS), instead of running: the record says so and has no plain run",
    )
    p.add_argument(
        "--no-profile", action="store_true", help="the plain run alone (its wall time and weights)"
    )
    args = p.parse_args(argv)
    if args.profile:
        record = {"profile_file": str(args.profile), "note": "a profile made before, not by this tool's run"}
        return write(args, {**record, "profile": breakdown(args.profile)})
    env = {**os.environ, "PYTHONPATH": str(args.checkout), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    recipe = args.checkout / "recipes" / "airbench" / "airbench94_muon.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        train = ["-m", "netgraph", "train", str(recipe), "--data-dir", str(args.data_dir), "--device", "cpu"]
        train += ["--log", f"{tmp}/log.jsonl", "--json-out", f"{tmp}/result.json", "--overwrite"]
        train += [x for s in SETS for x in ("--set", s)]
        load_before = os.getloadavg()
        start = time.perf_counter()
        saving = ["--save", f"{tmp}/model.pt"]
        plain = subprocess.run(
            [sys.executable, *train, *saving], env=env, cwd=tmp, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        digest = weights_digest(Path(tmp, "model.pt"))
        result = json.loads(Path(tmp, "result.json").read_text())
        profiled = [sys.executable, "-m", "cProfile", "-o", f"{tmp}/run.prof", *train]
        if not args.no_profile:
            subprocess.run(profiled, env=env, cwd=tmp, check=True, capture_output=True)
        figures = None if args.no_profile else breakdown(Path(tmp, "run.prof"))
    record = {
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "plain_run_wall_s": wall,
        "plain_run_result_line": [x for x in plain.stdout.splitlines() if x.startswith("test accuracy")],
        "plain_run_time_s": result.get("time_s"),
        "plain_run_test_acc": result["test_acc"],
        "final_weights_sha256": digest,
        "profile": figures,
    }
    return write(args, record)


def write(args, figures: Dict) -> int:
    record = {
        "tool": "tools/profile_train.py",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "label": args.label,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "torch": __import__("torch").__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": SETS,
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

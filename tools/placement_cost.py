"""What data.placement: host costs against device: epoch times of one recipe trained both ways.

    python tools/placement_cost.py [RECIPE] [--device cpu] [--set KEY=VALUE ...] [--repeats 3] [--json-out FILE]

Trains RECIPE (default recipes/tiny.yaml on 1,024 synthetic images, 3 epochs) with
data.placement device and host, alternating, `--repeats` times each, through
netgraph.runs.run.run_recipe, and takes the engine's own epoch times (training only, as the
epoch table shows them) without each run's first epoch (warm-up). Reports the median
epoch time of each placement, their ratio host / device, and whether the two trained
the same weights (they should, bit for bit). On a GPU the target is a ratio of at most
1.10 for recipes/bag_of_tricks.yaml.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
from pathlib import Path

import torch

from netgraph import load_recipe
from netgraph.runs.plan import device_name, resolve_device
from netgraph.runs.run import run_recipe

DEFAULT_SETS = [
    "data.dataset=synthetic",
    "data.synthetic.train=1024",
    "data.synthetic.test=256",
    "train.epochs=3",
    "train.lr={knots: [0, 1, epochs], values: [0, 0.4, 0]}",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/tiny.yaml")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--set", action="append", default=None, help=f"overrides (default: {' '.join(DEFAULT_SETS)})"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    sets = DEFAULT_SETS if args.set is None else args.set
    device = resolve_device(args.device)
    epochs = {"device": [], "host": []}
    weights = {}
    for repeat in range(args.repeats):
        for placement in ("device", "host"):
            recipe = load_recipe(args.recipe, sets + [f"data.placement={placement}"])
            run, model, _ = run_recipe(recipe, device=device, eval_every_epoch=False)
            assert run.placement == placement
            epochs[placement] += [e["epoch_time"] for e in run.log[1:]]
            weights[placement] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            print(
                f"repeat {repeat + 1}, {placement}: epochs {[round(e['epoch_time'], 3) for e in run.log]} s",
                flush=True,
            )
    medians = {p: statistics.median(times) for p, times in epochs.items()}
    same = all(torch.equal(weights["device"][k], weights["host"][k]) for k in weights["device"])
    result = {
        "command": " ".join(
            ["python", "tools/placement_cost.py"]
            + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "recipe": args.recipe,
        "sets": sets,
        "repeats": args.repeats,
        "epoch_times_s": epochs,
        "median_epoch_s": medians,
        "ratio_host_over_device": medians["host"] / medians["device"],
        "same_weights": same,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "epoch_times_s"}, indent=2))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

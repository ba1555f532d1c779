"""What the JPEG copy of CIFAR-10 costs in accuracy: the same images, pixel-exact and JPEG.

    python tools/jpeg_effect.py --exact ../shared/data/cifar10-subset --jpeg DIR --runs 8 \
        --json-out bench/results/jpeg_effect.json

The CIFAR-10 subset (../shared/data/cifar10-subset) holds the first 1,017 images of each
official training batch, pixel-exact: batches 1-4 to train on, batch 5 as its test set. DIR
is the JPEG copy decoded to the official layout (data/cifar10-jpeg/to_batches.py). This tool
cuts the same 5 x 1,017 images out of the JPEG copy into a twin folder, trains the recipe
``--runs`` seeds on each folder, and reports both means, the difference and Welch's p.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch

from netgraph.data.cifar import find_layout, read_cifar
from netgraph.recipe.load import load_recipe
from netgraph.runs import stats
from netgraph.runs.plan import device_name
from netgraph.runs.run import run_recipe

RECORD = 1 + 3 * 32 * 32  # label byte + pixels, the official binary layout


def jpeg_twin(jpeg_dir: Path, out: Path, per_file: int) -> Path:
    """The subset's layout with the same images taken from the JPEG copy."""
    _, folder = find_layout("cifar10", jpeg_dir)
    dest = out / "cifar-10-batches-bin"
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(1, 6):
        name = f"data_batch_{k}.bin" if k < 5 else "test_batch.bin"
        data = (folder / f"data_batch_{k}.bin").read_bytes()[: per_file * RECORD]
        (dest / name).write_bytes(data)
    (dest / "batches.meta.txt").write_text((folder / "batches.meta.txt").read_text())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", default="../shared/data/cifar10-subset")
    parser.add_argument("--jpeg", required=True, help="the JPEG copy in the official layout")
    parser.add_argument("--recipe", default="recipes/ladder/00_baseline.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=["train.batch_size=128"],
        help="recipe overrides (default: batch 128, 31 steps an epoch on 4,068 images)",
    )
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--work", default="data/jpeg-twin", help="where the twin folder is written")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    exact = read_cifar("cifar10", args.exact)
    twin = read_cifar("cifar10", jpeg_twin(Path(args.jpeg), Path(args.work), len(exact.test_labels)))
    if not torch.equal(exact.train_labels, twin.train_labels):
        raise SystemExit("the JPEG copy's labels differ from the subset's: not the same images")
    difference = exact.train_images.float() - twin.train_images.float()
    psnr = 10 * torch.log10(255**2 / difference.pow(2).mean()).item()
    recipe = load_recipe(args.recipe, args.set)
    acc = {"exact": [], "jpeg": []}
    for seed in range(args.runs):
        for name, data in (("exact", exact), ("jpeg", twin)):
            result, _, _ = run_recipe(
                recipe, seed=seed, device=args.device, dataset=data, eval_every_epoch=False
            )
            acc[name].append(100 * result.test_acc)
            print(f"seed {seed} {name}: {acc[name][-1]:.2f}%", file=sys.stderr, flush=True)
    test = stats.welch_t_test(acc["exact"], acc["jpeg"])
    record = {
        "command": shlex.join(["python", "tools/jpeg_effect.py", *(argv or sys.argv[1:])]),
        "device": device_name(torch.device(args.device)),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "recipe": args.recipe,
        "overrides": args.set,
        "train_images": len(exact.train_labels),
        "test_images": len(exact.test_labels),
        "psnr_db_train": psnr,
        "exact": stats.summary(acc["exact"]),
        "jpeg": stats.summary(acc["jpeg"]),
        "exact_runs": acc["exact"],
        "jpeg_runs": acc["jpeg"],
        "difference_points": statistics.mean(acc["exact"]) - statistics.mean(acc["jpeg"]),
        "p_welch": test["p"] if test else None,
    }
    print(
        f"{args.runs} runs each, {len(exact.train_labels):,} training images: pixel-exact "
        f"{record['exact']['mean']:.2f} +- {record['exact']['std']:.2f}%, JPEG copy "
        f"{record['jpeg']['mean']:.2f} +- {record['jpeg']['std']:.2f}% (PSNR {psnr:.1f} dB): the "
        f"JPEG copy costs {record['difference_points']:.2f} points, p = {record['p_welch']:.3g}"
    )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

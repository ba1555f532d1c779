"""How long batch-group augmentation takes: epochs of augmented batches, nothing else.

    python tools/augment_cost.py --device cpu --n 50000 --epochs 24 --batch 512 [--json-out FILE]

Builds a synthetic data set of n images on the device, normalised and padded 32 -> 40
(as data.preprocess does before training), then iterates `epochs` epochs of the
seed's augmentation (crop 32 from 40, flip, cutout 8 x 8), `--repeats` times, and
prints the median. The seed reports under 0.4 s for 24 epochs of 50,000 on a V100.
On CUDA the device is synchronised before and after the timed loop, so the time
covers every kernel; one untimed epoch first warms the allocator and kernels up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from netgraph.data.dataset import CIFAR10_MEAN, CIFAR10_STD, preprocess
from netgraph.data.synthetic import synthetic
from netgraph.train.augment import BatchGroupLoader, Crop, Cutout, Flip

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor()
    try:  # platform.processor() is often empty on Linux; /proc/cpuinfo names the model
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name or 'cpu'} ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_epochs(loader: BatchGroupLoader, epochs: int) -> None:
    for _ in range(epochs):
        for _x, _y in loader:
            pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=50000, help="images (default 50,000)")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="of the padded data set (the seed trains on float16)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, help="write the result as one JSON object here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA GPU; use --device cpu")

    data = synthetic(args.n, 0, seed=args.seed)
    images = preprocess(
        data.train_images.to(device), CIFAR10_MEAN, CIFAR10_STD, pad=4, dtype=DTYPES[args.dtype]
    )
    labels = data.train_labels.to(device)
    augmentations = [Crop(32), Flip(), Cutout(8)]

    run_epochs(BatchGroupLoader(images, labels, args.batch, augmentations, seed=args.seed), 1)  # warm-up
    runs = []
    for repeat in range(args.repeats):
        loader = BatchGroupLoader(images, labels, args.batch, augmentations, seed=args.seed + repeat)
        synchronize(device)
        start = time.perf_counter()
        run_epochs(loader, args.epochs)
        synchronize(device)
        runs.append(time.perf_counter() - start)
        print(f"run {repeat + 1}: {runs[-1]:.3f} s", file=sys.stderr)
    median = statistics.median(runs)
    batches = len(loader)

    print(
        f"{args.epochs} epochs of {args.n:,} images ({batches} batches of {args.batch} each) on "
        f"{device_name(device)}, {args.dtype}: median {median:.3f} s total, "
        f"{median / args.epochs:.4f} s per epoch, {1000 * median / (args.epochs * batches):.2f} ms per batch"
    )

    if args.json_out:
        result = {
            "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv),
            "device": device_name(device),
            "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "n": args.n,
            "epochs": args.epochs,
            "batch": args.batch,
            "dtype": args.dtype,
            "batches_per_epoch": batches,
            "augmentations": ["crop 32 from 40", "flip", "cutout 8"],
            "runs_s": runs,
            "median_s": median,
            "per_epoch_s": median / args.epochs,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

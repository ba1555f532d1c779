"""How long a class-folder data set takes to read: decoded the first time, cached after.

    python tools/folder_cache.py --n 50000 --size 32 [--json-out FILE]

Writes n random size x size RGB PNGs in 10 class folders (DIR/train/CLASS and a tenth as
many in DIR/test/CLASS) under a temporary folder, then reads it with
netgraph.data.folder.read_folder three ways, each timed: the first read (listing,
fingerprint, decoding with Pillow, writing the cache), then `--repeats` cached reads
(listing, fingerprint of every file's size and time, reading the cache), of which the
median is reported; the cache is checked to give the same pixels.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from netgraph.data.folder import read_folder


def write_pngs(root: Path, n: int, size: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("test", max(10, n // 10))):
        for i in range(count):
            folder = root / split / f"class_{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(
                folder / f"{i:06d}.png"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000, help="training images (default 50,000)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "images", Path(tmp) / "cache"
        start = time.perf_counter()
        write_pngs(root, args.n, args.size)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        first = read_folder(root, cache_dir=cache)
        first_s = time.perf_counter() - start
        cached_s = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            again = read_folder(root, cache_dir=cache)
            cached_s.append(time.perf_counter() - start)
        assert (again.train_images == first.train_images).all() and (
            again.test_images == first.test_images
        ).all()
        cache_bytes = sum(f.stat().st_size for f in cache.rglob("*.arrays"))
    result = {
        "command": " ".join(
            ["python", "tools/folder_cache.py"] + [shlex.quote(a) for a in (argv or sys.argv[1:])]
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "train_images": len(first.train_labels),
        "test_images": len(first.test_labels),
        "image_shape": list(first.image_shape),
        "write_pngs_s": write_s,
        "first_read_s": first_s,
        "cached_reads_s": cached_s,
        "cached_median_s": statistics.median(cached_s),
        "cache_bytes": cache_bytes,
    }
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

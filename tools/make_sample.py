"""Cut samples/cifar10, the small pixel-exact CIFAR-10 sample the repository carries.

    python tools/make_sample.py --source DIR            # write samples/cifar10 from DIR
    python tools/make_sample.py --source DIR --check    # cut again into a temporary folder, compare

DIR is either the official binary layout (cifar-10-batches-bin as extracted from
cifar-10-binary.tar.gz, five 10,000-record training batches and the test batch) or the
shared subset (../shared/data/cifar10-subset: the first 1,017 records of training batches
1-4, and of batch 5 as its test_batch.bin); both give the same bytes. The sample keeps
the official binary layout, so netgraph's --data-dir reads it with no code of its own:

    samples/cifar10/cifar-10-batches-bin/data_batch_1.bin .. _4.bin   records 0-499 of batches 1-4
    samples/cifar10/cifar-10-batches-bin/test_batch.bin               records 0-499 of batch 5
    samples/cifar10/cifar-10-batches-bin/batches.meta.txt             the ten class names
    samples/cifar10/SHA256SUMS, samples/cifar10/README.md             written from the files

The held-out images are the start of training batch 5, not the official test set: the
shared subset (which holds no original test image) can then cut the same sample as the
official files. The sample needs only numpy to cut or check, not netgraph.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "cifar10"
FOLDER = "cifar-10-batches-bin"  # the official archive's folder name, which --data-dir looks for
RECORD = 1 + 3 * 32 * 32  # a label byte, then R, G, B planes of 32 x 32
PER_FILE = 500  # 4 x 500 training + 500 held-out images: 7,682,500 bytes, under the 8 MB allowed
SUBSET_RECORDS = 1017  # what each file of the shared subset holds
META = "batches.meta.txt"
# sample file: (official file it is cut from, the shared subset's file holding the same records)
CUTS = {
    "data_batch_1.bin": ("data_batch_1.bin", "data_batch_1.bin"),
    "data_batch_2.bin": ("data_batch_2.bin", "data_batch_2.bin"),
    "data_batch_3.bin": ("data_batch_3.bin", "data_batch_3.bin"),
    "data_batch_4.bin": ("data_batch_4.bin", "data_batch_4.bin"),
    "test_batch.bin": ("data_batch_5.bin", "test_batch.bin"),
}
CHECKSUMS = "SHA256SUMS"


def _layout_folder(source: Path) -> Path:
    source = Path(source).expanduser()
    return source / FOLDER if (source / FOLDER).is_dir() else source


def source_files(source: Path) -> Tuple[str, Dict[str, Path]]:
    """('official' or 'subset', {sample file: the source file it is cut from})."""
    folder = _layout_folder(source)
    if (folder / "data_batch_5.bin").is_file():
        kind, column = "official", 0
    elif (folder / "test_batch.bin").is_file() and (
        (folder / "test_batch.bin").stat().st_size == SUBSET_RECORDS * RECORD
    ):  # no batch 5 and 1,017-record files: the shared subset, whose test_batch is batch 5's start
        kind, column = "subset", 1
    else:
        raise SystemExit(
            f"make_sample: {folder} is neither the official binary layout (data_batch_1..5.bin) "
            f"nor the shared subset ({SUBSET_RECORDS}-record files)"
        )
    files = {name: folder / sources[column] for name, sources in CUTS.items()}
    for path in [*files.values(), folder / META]:
        if not path.is_file():
            raise SystemExit(f"make_sample: {path}: missing file")
    return kind, files


def _first_records(path: Path) -> bytes:
    size = path.stat().st_size
    if size % RECORD or size < PER_FILE * RECORD:
        raise SystemExit(f"make_sample: {path}: {size:,} bytes, not {PER_FILE}+ whole {RECORD}-byte records")
    with open(path, "rb") as f:
        return f.read(PER_FILE * RECORD)


def class_names(folder: Path) -> List[str]:
    names = [line.strip() for line in (folder / META).read_text().splitlines() if line.strip()]
    if len(names) != 10:
        raise SystemExit(f"make_sample: {folder / META}: {len(names)} class names, not 10")
    return names


def class_counts(sample: Path = SAMPLE) -> Dict[str, List[int]]:
    """{sample file: images of each class 0..9}, read from the sample's files."""
    counts = {}
    for name in CUTS:
        labels = np.fromfile(sample / FOLDER / name, dtype=np.uint8).reshape(-1, RECORD)[:, 0]
        counts[name] = np.bincount(labels, minlength=10).tolist()
    return counts


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums(sample: Path = SAMPLE) -> str:
    """SHA256SUMS' text: `cd samples/cifar10 && sha256sum -c SHA256SUMS` checks it."""
    return "".join(f"{sha256(sample / FOLDER / name)}  {FOLDER}/{name}\n" for name in [*CUTS, META])


def readme(names: List[str], counts: Dict[str, List[int]]) -> str:
    """The sample's README.md, written from its files so the two always agree."""
    rows = "\n".join(
        f"| {name} | records 0-{PER_FILE - 1} of the official {CUTS[name][0]} | "
        + " ".join(str(c) for c in counts[name])
        + " |"
        for name in CUTS
    )
    train = PER_FILE * (len(CUTS) - 1)
    return f"""# samples/cifar10: {train:,} + {PER_FILE} real CIFAR-10 images, pixel-exact

The data that README's quick start, the tests and the docs train on, so a clone needs
nothing beside it:
`netgraph train recipes/tiny.yaml --data-dir samples/cifar10 --device cpu --set train.batch_size=64`.
`{FOLDER}/` has the layout of the official `cifar-10-binary.tar.gz` (each record: 1
label byte, then 3,072 pixel bytes as R, G, B planes of 32 x 32), but each file holds only
the first {PER_FILE} records of an official file, unchanged and in their order:

| file | what it holds | images of classes 0..9 |
| --- | --- | --- |
{rows}
| {META} | the ten class names, one a line, label order 0..9 | |

So {train:,} images to train on and {PER_FILE} held-out real images to evaluate on. The
held-out images are the start of training batch 5, NOT the official test set, so that the
shared subset (which holds no original test image) cuts the same bytes as the official
files. Classes 0..9: {", ".join(names)}.

Cut by `python tools/make_sample.py --source DIR`, DIR being the official
`cifar-10-batches-bin` or the shared subset (`../shared/data/cifar10-subset`: the first
{SUBSET_RECORDS:,} records of batches 1-5); `--check` cuts again into a temporary folder and
compares every file. This README and `{CHECKSUMS}` are written by the same tool from the
files; `tests/test_sample.py` checks all three agree, and netgraph's reader checks
`{CHECKSUMS}` each time it reads the folder.

For more images: the full CIFAR-10 (leave out `--data-dir` to download it, or pass the
folder of the official archive) or, on the machines this is developed on,
`--data-dir ../shared/data/cifar10-subset` (4,068 + 1,017 images).

CIFAR-10: Alex Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009
(https://www.cs.toronto.edu/~kriz/cifar.html).
"""


def cut(source: Path, out: Path) -> Path:
    """Write the sample from `source` into `out` (its layout folder, SHA256SUMS, README.md)."""
    _, files = source_files(source)
    (out / FOLDER).mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        (out / FOLDER / name).write_bytes(_first_records(path))
    names = class_names(_layout_folder(source))
    (out / FOLDER / META).write_text("".join(n + "\n" for n in names))
    (out / CHECKSUMS).write_text(checksums(out))
    (out / "README.md").write_text(readme(names, class_counts(out)))
    return out


def differences(source: Path, sample: Path = SAMPLE) -> List[str]:
    """The sample's files that differ from a fresh cut of `source` (none when it checks)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = cut(source, Path(tmp))
        names = [f"{FOLDER}/{n}" for n in [*CUTS, META]] + [CHECKSUMS, "README.md"]
        return [
            n for n in names if not (sample / n).is_file() or not filecmp.cmp(fresh / n, sample / n, False)
        ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="the official layout or the shared subset")
    parser.add_argument(
        "--out", type=Path, default=SAMPLE, help="the sample's folder (default samples/cifar10)"
    )
    parser.add_argument("--check", action="store_true", help="compare a fresh cut with --out; write nothing")
    args = parser.parse_args(argv)
    kind = source_files(args.source)[0]
    if args.check:
        wrong = differences(args.source, args.out)
        print(
            f"{args.out}: " + (f"differs from a cut of {kind} {args.source}: {wrong}" if wrong else "checks")
        )
        return 1 if wrong else 0
    cut(args.source, args.out)
    print(f"wrote {args.out} from the {kind} files in {args.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

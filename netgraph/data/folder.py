"""A data set given as a folder of images: ``data.dataset: folder``.

Two layouts, told apart by whether the folder has ``train`` and ``test`` subfolders:

    DIR/train/CLASS/*.png   DIR/test/CLASS/*.png     (the split given)
    DIR/CLASS/*.png                                   (one tree, split here)

One tree is split per class (so both sets keep the classes' proportions): each class's
files, sorted by name, are shuffled by numpy's generator seeded with ``split_seed`` and
the first round(test_fraction x n) go to the test set; the same files and seed give the
same split on every machine. Class names are the CLASS folder names, sorted; the label
of a class is its place in that order. Files with an image suffix (IMAGE_SUFFIXES, any
case) are read; other files and hidden ones are skipped.

Every image is decoded once with Pillow into one uint8 array per set (N x C x H x W)
and the arrays are cached (``CACHE_SUBFOLDER`` in the cache folder, $NETGRAPH_CACHE or
~/.cache/netgraph, since a data folder may be read-only) under a name made of the
folder's path and the reading options; the cache holds a fingerprint of every file's
path, size and modification time and is decoded again when any of them changes.

Channels: ``channels=None`` gives 1 when every image is grayscale (Pillow modes 1, L,
LA, I, I;16) and 3 otherwise (grayscale ones are then repeated into R, G and B, as
Pillow's convert does); 1 or 3 converts each image (Pillow's ITU-R 601-2 luma for RGB to
L). Sizes: without ``size`` every image must have the first one's size; with
``size=(H, W)`` each image of another size is resized to it with RESIZE_FILTER, not
keeping the aspect ratio.

This stage knows nothing of recipes: it takes plain arguments and returns a ``Dataset``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from netgraph.core.errors import RecipeError
from netgraph.data.dataset import Dataset, default_cache_dir
from netgraph.data.sources import register_source

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
# Bicubic: smoother than bilinear when enlarging 8 x 8 digits; Pillow's resize filters
# are antialiased when shrinking, so no aliasing either way.
RESIZE_FILTER = "bicubic"
CACHE_SUBFOLDER = "folders"
CACHE_FORMAT = 2  # bump when what is cached changes


# --- the file list ------------------------------------------------------------------------


def _class_files(tree: Path) -> List[Tuple[str, List[str]]]:
    """[(class name, its image files sorted by name)] of a tree of class folders; paths as
    strings, since making 50,000 Path objects would take a third of a cached read."""
    classes = []
    for entry in sorted(os.scandir(tree), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            files = sorted(
                f.path
                for f in os.scandir(entry.path)
                if not f.name.startswith(".")
                and f.is_file()
                and os.path.splitext(f.name)[1].lower() in IMAGE_SUFFIXES
            )
            classes.append((entry.name, files))
    if not classes:
        raise RecipeError(
            "holds no class folders",
            file=tree,
            hint="images go in one folder per class: DIR/CLASS/*.png, or "
            "DIR/train/CLASS/*.png and DIR/test/CLASS/*.png",
        )
    empty = [name for name, files in classes if not files]
    if empty:
        raise RecipeError(
            f"class folder '{empty[0]}' holds no images ({', '.join(IMAGE_SUFFIXES)})",
            file=tree / empty[0],
            hint="remove the folder or add its images",
        )
    return classes


def _split(classes, test_fraction: float, seed: int):
    """One tree -> (train files, train labels, test files, test labels), per class."""
    if not 0 < test_fraction < 1:
        raise RecipeError(
            f"test_fraction must be between 0 and 1, got {test_fraction}",
            hint="e.g. 0.2: a fifth of each class is the test set",
        )
    rng = np.random.default_rng(seed)
    train: Tuple[List[str], List[int]] = ([], [])  # (files, labels)
    test: Tuple[List[str], List[int]] = ([], [])
    for label, (_, files) in enumerate(classes):
        order = rng.permutation(len(files))
        n_test = round(test_fraction * len(files))
        for rank, i in enumerate(order):
            part = test if rank < n_test else train
            part[0].append(files[i])
            part[1].append(label)
    return train[0], train[1], test[0], test[1]


def list_files(folder: Path, test_fraction: float = 0.2, split_seed: int = 0):
    """(class names, train files, train labels, test files, test labels) of a folder."""
    if not folder.is_dir():
        raise RecipeError(
            "no such folder" if not folder.exists() else "not a folder",
            file=folder,
            hint="pass a folder of class folders (DIR/CLASS/*.png) or with train/ and test/ class folders",
        )
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train, test = _class_files(folder / "train"), _class_files(folder / "test")
        names = [name for name, _ in train]
        unknown = [name for name, _ in test if name not in names]
        if unknown:
            raise RecipeError(
                f"test class '{unknown[0]}' has no train folder",
                file=folder / "test" / unknown[0],
                hint="train/ and test/ need the same class folders",
            )
        label = {name: i for i, name in enumerate(names)}
        flatten = lambda tree: (
            [f for _, files in tree for f in files],
            [label[name] for name, files in tree for _ in files],
        )
        return (names, *flatten(train), *flatten(test))
    classes = _class_files(folder)
    return ([name for name, _ in classes], *_split(classes, test_fraction, split_seed))


def fingerprint(files: Sequence[str], options: dict) -> str:
    """SHA-256 of every file's path, size and modification time, and the reading options."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    stat = os.stat
    digest.update(
        "".join(f"{path}\0{s.st_size}\0{s.st_mtime_ns}\n" for path in files for s in (stat(path),)).encode()
    )
    return digest.hexdigest()


# --- decoding ------------------------------------------------------------------------------


def _progress(done: int, total: int, folder: Path) -> None:
    # Only on a terminal: a log file or a test would fill with carriage returns.
    if sys.stderr.isatty() and (done % 500 == 0 or done == total):
        end = "\n" if done == total else ""
        sys.stderr.write(f"\rdecoding {folder}: {done:,} of {total:,} images ({100 * done // total}%){end}")
        sys.stderr.flush()


def _decode(path: str, channels: Optional[int], size: Optional[Tuple[int, int]]):
    """One image as an H x W x C uint8 array (C = 1 for a grayscale image when channels is None)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            gray = opened.mode in GRAY_MODES
            modes: Dict[Optional[int], str] = {1: "L", 3: "RGB"}
            image = opened.convert(modes.get(channels, "L" if gray else "RGB"))
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), getattr(Image.Resampling, RESIZE_FILTER.upper()))
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise RecipeError(
            f"cannot decode this image ({type(error).__name__}: {error})",
            file=path,
            hint="the file is corrupt or not an image; replace or delete it",
        ) from None
    return array[:, :, None] if array.ndim == 2 else array


def decode_all(
    files: Sequence[str], channels: Optional[int], size: Optional[Tuple[int, int]], folder: Path
) -> np.ndarray:
    """N x C x H x W uint8 of the files, in order; one size for all, or the first image of
    another size than most is refused by name."""
    arrays = []
    for done, path in enumerate(files, 1):
        arrays.append(_decode(path, channels, size))
        _progress(done, len(files), folder)
    sizes = Counter(a.shape[:2] for a in arrays)
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        odd = next(i for i, a in enumerate(arrays) if a.shape[:2] != common)
        raise RecipeError(
            f"this image is {arrays[odd].shape[0]} x {arrays[odd].shape[1]} (H x W), "
            f"but {sizes[common]:,} of the {len(files):,} images are {common[0]} x "
            f"{common[1]}",
            file=files[odd],
            hint="set data.size: [H, W] (or one number for square images) to "
            f"resize every image ({RESIZE_FILTER} filter)",
        )
    if not arrays:
        return np.zeros((0, channels or 1) + tuple(size or (1, 1)), dtype=np.uint8)
    count = max(a.shape[2] for a in arrays)
    # Mixed grayscale and colour with channels=None: grayscale repeats into R, G and B.
    stacked = np.stack([np.repeat(a, count, axis=2) if a.shape[2] != count else a for a in arrays])
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))


# --- the cache -------------------------------------------------------------------------


def cache_path(folder: Path, options: dict, cache_dir: Optional[Path]) -> Path:
    key = hashlib.sha256(
        json.dumps({"folder": str(folder.resolve()), **options}, sort_keys=True).encode()
    ).hexdigest()[:24]
    return (cache_dir or default_cache_dir()) / CACHE_SUBFOLDER / f"{folder.name}-{key}.arrays"


# The cache file: these arrays as .npy records one after another, the fingerprint first
# (so a stale cache is known after 100 bytes); no zip, whose CRC check costs 0.3 s a read.
CACHED = ("fingerprint", "classes", "train_images", "train_labels", "test_images", "test_labels")


def _read_cache(path: Path, print_: str) -> Optional[dict]:
    try:
        with open(path, "rb") as f:
            content = {"fingerprint": np.load(f, allow_pickle=False)}
            if str(content["fingerprint"]) != print_:
                return None
            for key in CACHED[1:]:
                content[key] = np.load(f, allow_pickle=False)
            return content
    except (OSError, ValueError, EOFError):
        return None  # absent or damaged: decode again


def _write_cache(path: Path, arrays: dict) -> None:
    """Written to a temporary file and renamed, so a crash never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for key in CACHED:
                np.save(out, arrays[key], allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@register_source("folder", path="a folder of class folders")
def _read(data_dir, size=None, channels=None, test_fraction=None, split_seed=None, **_) -> Dataset:
    """Your own images: a folder of class folders (PNG, JPEG, ...), decoded once and cached."""
    options = {"test_fraction": test_fraction, "split_seed": split_seed}  # data:'s, or read_folder's
    return read_folder(data_dir, size, channels, **{k: v for k, v in options.items() if v is not None})


def read_folder(
    folder,
    size=None,
    channels: Optional[int] = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    cache_dir=None,
) -> Dataset:
    """The data set in a folder of class folders (see the module's doc), from the cache
    when no file changed since it was decoded."""
    folder = Path(folder).expanduser()
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size) if size is not None else None
    if channels not in (None, 1, 3):
        raise RecipeError(f"channels must be 1 or 3, got {channels}")
    names, train_files, train_labels, test_files, test_labels = list_files(folder, test_fraction, split_seed)
    if not test_files:
        raise RecipeError(
            "the test set is empty", file=folder, hint="add images to test/, or raise test_fraction"
        )
    options = {
        "format": CACHE_FORMAT,
        "size": size,
        "channels": channels,
        "test_fraction": test_fraction,
        "split_seed": split_seed,
        "filter": RESIZE_FILTER,
    }
    print_ = fingerprint(train_files + test_files, options)
    path = cache_path(folder, options, Path(cache_dir).expanduser() if cache_dir else None)
    cached = _read_cache(path, print_)
    if cached is None:
        images = decode_all(train_files + test_files, channels, size, folder)
        cached = {
            "train_images": images[: len(train_files)].copy(),
            "test_images": images[len(train_files) :].copy(),
            "train_labels": np.array(train_labels, dtype=np.int64),
            "test_labels": np.array(test_labels, dtype=np.int64),
            "classes": np.array(names),
            "fingerprint": np.array(print_),
        }
        _write_cache(path, cached)
    return Dataset(
        torch.from_numpy(cached["train_images"]),
        torch.from_numpy(cached["train_labels"]),
        torch.from_numpy(cached["test_images"]),
        torch.from_numpy(cached["test_labels"]),
        classes=[str(n) for n in cached["classes"].tolist()],
        name=folder.name,
    )

"""CIFAR-10 and CIFAR-100: the official layouts, their readers (every file checked) and the download.

A data set is small enough to live whole on the GPU (CIFAR-10: 60,000 x 3 x 32 x
32 bytes = 184 MB as uint8), so it is read once into uint8 tensors, moved to
the device, normalised and padded there once (``preprocess``), and batched by
``netgraph.train.augment`` with no DataLoader and no per-image Python work.

This stage knows nothing of recipes: it takes plain arguments. Every mistake a
user can make with data (a missing or truncated file, a folder in neither
official layout, a failed download) is a ``RecipeError`` naming the file or
folder and saying what to do.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from netgraph.core.errors import RecipeError, did_you_mean
from netgraph.data.dataset import Dataset, default_cache_dir
from netgraph.data.sources import register_source

IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32  # 3,072 bytes per image: R, G, B planes of 32 x 32, row by row


# --- the official layouts ---------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """One official folder layout of one data set, and the archive it comes in."""

    dataset: str  # "cifar10" or "cifar100"
    kind: str  # "binary" or "python"
    folder: str  # the folder the archive extracts to
    train_prefix: str  # numbered train files (data_batch_1, _2, ...) or one file
    numbered: bool  # CIFAR-10 splits its training set into numbered batches
    test_file: str
    meta_file: str
    label_offset: int  # binary: which byte of a record is the label we keep
    label_bytes: int  # binary: label bytes before the pixels of each record
    label_key: bytes  # python: the labels' key in each pickle
    names_key: bytes  # python: the class names' key in the meta pickle
    archive: str
    md5: str
    num_classes: int

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + PIXELS

    def train_file(self, number: int) -> str:
        suffix = ".bin" if self.kind == "binary" else ""
        return f"{self.train_prefix}_{number}{suffix}" if self.numbered else self.train_prefix

    @property
    def url(self) -> str:
        return "https://www.cs.toronto.edu/~kriz/" + self.archive


# MD5s are the ones published on https://www.cs.toronto.edu/~kriz/cifar.html
# (torchvision checks the same values).
LAYOUTS = {
    ("cifar10", "binary"): Layout(
        dataset="cifar10",
        kind="binary",
        folder="cifar-10-batches-bin",
        train_prefix="data_batch",
        numbered=True,
        test_file="test_batch.bin",
        meta_file="batches.meta.txt",
        label_offset=0,
        label_bytes=1,
        label_key=b"",
        names_key=b"",
        archive="cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        num_classes=10,
    ),
    ("cifar10", "python"): Layout(
        dataset="cifar10",
        kind="python",
        folder="cifar-10-batches-py",
        train_prefix="data_batch",
        numbered=True,
        test_file="test_batch",
        meta_file="batches.meta",
        label_offset=0,
        label_bytes=0,
        label_key=b"labels",
        names_key=b"label_names",
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        num_classes=10,
    ),
    # CIFAR-100 binary records are: coarse label byte, fine label byte, pixels; we keep
    # the fine label (100 classes), as the python layout's b"fine_labels" does.
    ("cifar100", "binary"): Layout(
        dataset="cifar100",
        kind="binary",
        folder="cifar-100-binary",
        train_prefix="train.bin",
        numbered=False,
        test_file="test.bin",
        meta_file="fine_label_names.txt",
        label_offset=1,
        label_bytes=2,
        label_key=b"",
        names_key=b"",
        archive="cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        num_classes=100,
    ),
    ("cifar100", "python"): Layout(
        dataset="cifar100",
        kind="python",
        folder="cifar-100-python",
        train_prefix="train",
        numbered=False,
        test_file="test",
        meta_file="meta",
        label_offset=0,
        label_bytes=0,
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        num_classes=100,
    ),
}
DATASETS = ("cifar10", "cifar100")
KINDS = ("binary", "python")


def _check_name(name: str) -> str:
    if name not in DATASETS:
        close = did_you_mean(name, DATASETS)
        raise RecipeError(
            f"unknown data set '{name}'", hint=close or "the data sets are " + ", ".join(DATASETS)
        )
    return name


def _layouts(name: str) -> List[Layout]:
    return [LAYOUTS[(name, kind)] for kind in KINDS]


def _looks_like(folder: Path, layout: Layout) -> bool:
    """A folder is in a layout if it has the layout's name or any of its files."""
    if folder.name == layout.folder:
        return True
    return any((folder / f).exists() for f in (layout.train_file(1), layout.test_file, layout.meta_file))


def find_layout(name: str, data_dir) -> Tuple[Layout, Path]:
    """(layout, folder) for data set `name` in `data_dir`, the layout folder or its parent."""
    _check_name(name)
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise RecipeError(
            "no such folder" if not data_dir.exists() else "not a folder",
            file=data_dir,
            hint=f"pass the folder that holds {_layouts(name)[0].folder} or {_layouts(name)[1].folder}",
        )
    for layout in _layouts(name):
        if (data_dir / layout.folder).is_dir():
            return layout, data_dir / layout.folder
    for layout in _layouts(name):
        if _looks_like(data_dir, layout):
            return layout, data_dir
    # Say so when the folder holds the other data set: the likely mistake.
    for other in DATASETS:
        for layout in _layouts(other):
            if other != name and ((data_dir / layout.folder).is_dir() or _looks_like(data_dir, layout)):
                raise RecipeError(
                    f"this folder holds {other} ({layout.folder}), not {name}",
                    file=data_dir,
                    hint=f"ask for data set '{other}', or pass a folder with {name}",
                )
    folders = " or ".join(layout.folder for layout in _layouts(name))
    converter = data_dir / "to_batches.py"  # ../shared/data/cifar10-jpeg: JPEGs, not batches
    if converter.is_file():
        raise RecipeError(
            f"holds no {name} data set in a layout netgraph reads, but a converter",
            file=data_dir,
            hint=f"run python {converter} OUT (it needs pillow) and pass OUT as the data folder",
        )
    below = [
        sub
        for sub in _subfolders(data_dir)
        if any((sub / layout.folder).is_dir() or _looks_like(sub, layout) for layout in _layouts(name))
    ]
    if below:  # a folder one level too high: name the one that holds it
        raise RecipeError(
            f"holds no {name} data set itself, but {below[0].name}/ in it does",
            file=data_dir,
            hint=f"pass --data-dir {below[0]}",
        )
    seen = ", ".join(f"{sub.name}/" for sub in _subfolders(data_dir)[:10]) or "no folders"
    raise RecipeError(
        f"holds no {name} data set: no folder {folders}, nor their files (it holds {seen})",
        file=data_dir,
        hint=f"pass the folder that contains {folders}, as extracted from the official "
        f"archive, or leave out the data folder to download it",
    )


def _subfolders(folder: Path) -> List[Path]:
    """The folders in `folder`, by name, for an error that says what it saw."""
    try:
        return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    except OSError:
        return []


# --- readers ------------------------------------------------------------------------------


def _need_file(path: Path) -> Path:
    if not path.is_file():
        raise RecipeError(
            "missing file",
            file=path,
            hint="the folder is incomplete: extract the official archive again, "
            "or delete the folder to download it again",
        )
    return path


# CIFAR-10 and CIFAR-100 hold 60,000 images each in all; a pickle also holds its labels and
# file names beside the pixels: a data file over twice that size is not one, and is refused
# before it is read whole (a 12 GB file was read into memory to find that out).
MAX_IMAGES = 60_000
MAX_FILE_BYTES = 2 * MAX_IMAGES * (PIXELS + 2)


def _need_data_file(path: Path) -> Path:
    size = _need_file(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise RecipeError(
            f"holds {size:,} bytes, more than a CIFAR file of all {MAX_IMAGES:,} "
            f"images ({MAX_FILE_BYTES:,} bytes at most)",
            file=path,
            hint="this is not a CIFAR file; extract the official archive again",
        )
    return path


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise RecipeError(
            f"label {int(bad[0])} is out of range 0..{num_classes - 1} ({bad.size} such labels)",
            file=path,
            hint="the file is corrupt or belongs to another data set; extract the official archive again",
        )


def _read_binary(path: Path, layout: Layout) -> Tuple[np.ndarray, np.ndarray]:
    """Records of label byte(s) + 3,072 pixel bytes -> (N x 3 x 32 x 32 uint8, N int64)."""
    raw = np.fromfile(_need_data_file(path), dtype=np.uint8)
    records, extra = divmod(raw.size, layout.record_bytes)
    if extra or records == 0:
        raise RecipeError(
            f"holds {raw.size:,} bytes, not a whole number of {layout.record_bytes:,}-byte records "
            f"({records:,} records and {extra:,} bytes left over)"
            if extra
            else "holds no records",
            file=path,
            hint="the file is truncated or not a CIFAR binary file; extract the official archive again",
        )
    raw = raw.reshape(records, layout.record_bytes)
    labels = raw[:, layout.label_offset].astype(np.int64)
    _check_labels(labels, layout.num_classes, path)
    return raw[:, layout.label_bytes :].reshape(records, *IMAGE_SHAPE), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a pickle can run any code it names,
    and a data file has no business doing that."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
        ("__builtin__", "bytes"),
        ("builtins", "bytes"),
    }  # ... and empty bytes

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # Python 2 wrote the keys: they are bytes
        self.path = path

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise RecipeError(
                f"refusing to load {module}.{name}: a CIFAR pickle holds only arrays "
                "and lists, and loading this could run code",
                file=self.path,
                hint="use the official archive",
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 moved it
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(_need_data_file(path), "rb") as f:
            content = _ArrayUnpickler(f, path).load()
    except RecipeError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        MemoryError,
    ) as error:
        raise RecipeError(
            f"cannot read this pickle ({type(error).__name__}: {error})",
            file=path,
            hint="the file is truncated or corrupt; extract the official archive again",
        ) from error
    if not isinstance(content, dict):
        raise RecipeError(
            f"holds a {type(content).__name__}, not the dict of a CIFAR pickle",
            file=path,
            hint="extract the official archive again",
        )
    # Python 2 wrote the keys as bytes; a copy re-saved by Python 3 has str keys.
    return {key.encode() if isinstance(key, str) else key: value for key, value in content.items()}


def _read_pickle(path: Path, layout: Layout) -> Tuple[np.ndarray, np.ndarray]:
    """A CIFAR pickle {b'data': N x 3,072 uint8, labels: N ints} -> (images, labels)."""
    content = _load_pickle(path)
    for key in (b"data", layout.label_key):
        if key not in content:
            raise RecipeError(
                f"has no key {key!r} (keys: {sorted(content, key=repr)})",
                file=path,
                hint=f"this is not a {layout.dataset} {layout.kind} file; extract the official archive again",
            )
    data = content[b"data"]
    try:
        labels = np.asarray(content[layout.label_key])
    except ValueError:  # a ragged list
        labels = np.asarray(None)
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == PIXELS
    ):
        shape = getattr(data, "shape", None)
        raise RecipeError(
            f"b'data' is {type(data).__name__} {getattr(data, 'dtype', '')} of shape "
            f"{shape}, expected uint8 N x {PIXELS}",
            file=path,
            hint="extract the official archive again",
        )
    if data.shape[0] == 0:
        raise RecipeError(
            "holds no images",
            file=path,
            hint="the file is truncated or not a CIFAR file; extract the official archive again",
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise RecipeError(
            f"has {labels.shape} labels of type {labels.dtype} for {data.shape[0]} images",
            file=path,
            hint="extract the official archive again",
        )
    labels = labels.astype(np.int64)
    _check_labels(labels, layout.num_classes, path)
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _read_classes(folder: Path, layout: Layout) -> List[str]:
    path = _need_file(folder / layout.meta_file)
    if layout.kind == "binary":
        try:
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except UnicodeDecodeError as error:
            raise RecipeError(
                f"is not text ({error})",
                file=path,
                hint="it should list one class name a line; extract the official archive again",
            ) from error
    else:
        content = _load_pickle(path)
        listed = content.get(layout.names_key)
        if not isinstance(listed, list):
            raise RecipeError(
                f"has no list under the key {layout.names_key!r}",
                file=path,
                hint="extract the official archive again",
            )
        names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in listed]
    if len(names) != layout.num_classes:
        raise RecipeError(
            f"lists {len(names)} class names, expected {layout.num_classes}",
            file=path,
            hint="extract the official archive again",
        )
    return names


def _train_files(folder: Path, layout: Layout) -> List[Path]:
    """data_batch_1, _2, ... as far as they go (the shared subset has four), at least one;
    CIFAR-100 has one train file."""
    if not layout.numbered:
        return [_need_file(folder / layout.train_file(1))]
    files = [_need_file(folder / layout.train_file(1))]
    while (folder / layout.train_file(len(files) + 1)).is_file():
        files.append(folder / layout.train_file(len(files) + 1))
    # A gap (1, 2, 4) means a lost file, not a smaller data set; so does a data_batch_12 after 5.
    numbered = [
        p
        for p in folder.glob(layout.train_file(1).replace("_1", "_*", 1))
        if p.name not in {f.name for f in files}
    ]
    for stray in sorted(numbered):
        raise RecipeError(
            "missing file",
            file=folder / layout.train_file(len(files) + 1),
            hint=f"{stray.name} is there but this one is not, so {stray.name} would be "
            "left out; extract the official archive again",
        )
    return files


CHECKSUMS = "SHA256SUMS"  # `sha256sum FILES > SHA256SUMS` in the data folder or the one above


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_files(folder: Path, train_files: List[Path], test_file: Path, layout: Layout) -> None:
    """Refuse data that would be trained on silently wrong: a training file twice (a copy
    under another number), the test set equal to a training file, or a file whose SHA-256
    differs from the folder's SHA256SUMS."""
    for path in [*train_files, test_file]:
        _need_data_file(path)
    digests = {path: _sha256(path) for path in [*train_files, test_file]}
    seen: dict = {}
    for path in train_files:
        if digests[path] in seen:
            raise RecipeError(
                f"is the same file as {seen[digests[path]].name}: the training set would "
                "hold its images twice",
                file=path,
                hint="extract the official archive again",
            )
        seen[digests[path]] = path
    if digests[test_file] in seen:
        raise RecipeError(
            f"is the same file as the training file {seen[digests[test_file]].name}: the "
            "test accuracy would be measured on training images",
            file=test_file,
            hint="extract the official archive again",
        )
    listed = _read_checksums(folder)
    for path, digest in digests.items():
        if path.name in listed and listed[path.name][0] != digest:
            raise RecipeError(
                f"its SHA-256 is not the one {listed[path.name][1]} gives: the file is "
                "corrupt or was changed",
                file=path,
                hint="extract the official archive again, or fix SHA256SUMS",
            )


def _read_checksums(folder: Path) -> dict:
    """{file name: (sha256, the SHA256SUMS file)} from the first SHA256SUMS found."""
    for sums in (folder / CHECKSUMS, folder.parent / CHECKSUMS):
        if sums.is_file():
            try:
                lines = sums.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise RecipeError(f"cannot read it ({error})", file=sums) from None
            listed = {}
            for line in lines:
                digest, _, name = line.strip().partition(" ")
                if digest and name:
                    listed[Path(name.strip().lstrip("*")).name] = (digest.lower(), str(sums))
            return listed
    return {}


def read_cifar(name: str, data_dir) -> Dataset:
    """Read CIFAR-10 or CIFAR-100 from `data_dir`: a folder in one of the official layouts
    (cifar-10-batches-bin / -py, cifar-100-binary / -python) or the folder holding one.

    Files may hold any number of records. Training files are data_batch_1, _2, ... as far
    as they are numbered without a gap (the official set has five)."""
    layout, folder = find_layout(name, data_dir)
    read = _read_binary if layout.kind == "binary" else _read_pickle
    classes = _read_classes(folder, layout)
    train_files = _train_files(folder, layout)
    test_file = _need_file(folder / layout.test_file)
    _check_files(folder, train_files, test_file, layout)
    train = [read(path, layout) for path in train_files]
    test_images, test_labels = read(test_file, layout)
    train_labels = np.concatenate([labels for _, labels in train])
    if len(train_labels) > 1 and (train_labels == train_labels[0]).all():
        raise RecipeError(
            f"every one of the {len(train_labels):,} training labels is class {int(train_labels[0])}",
            file=folder,
            hint="the labels are corrupt: extract the official archive again",
        )
    return Dataset(
        train_images=torch.from_numpy(np.concatenate([images for images, _ in train])),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(np.array(test_images)),  # a writable, contiguous copy
        test_labels=torch.from_numpy(test_labels),
        classes=classes,
        name=name,
    )


# --- download -----------------------------------------------------------------------------


def _progress(done: int, total: int, label: str, end: str = "") -> None:
    # Only on a terminal: a log file or a test would fill with carriage returns.
    if sys.stderr.isatty():
        amount = f"{100 * done // total:3d}%" if total > 0 else f"{done / 1e6:.0f} MB"
        sys.stderr.write(f"\rdownloading {label}: {amount}{end}")
        sys.stderr.flush()


def _fetch(url: str, target: Path, md5: str) -> None:
    """Download url to a temporary file beside target, check its MD5, rename it to target."""
    digest = hashlib.md5()
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while True:
                chunk = response.read(1 << 20)  # 1 MiB at a time: 163 reads for CIFAR-10
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                _progress(done, total, target.name)
        _progress(done, total, target.name, end="\n")
        if total and done != total:  # a dropped connection ends the body early, with no error
            raise RecipeError(
                f"download interrupted: got {done:,} of {total:,} bytes (the partial file was deleted)",
                file=url,
                hint="check the network and try again",
            )
        if digest.hexdigest() != md5.lower():
            raise RecipeError(
                f"downloaded file has MD5 {digest.hexdigest()}, expected {md5} (the file was deleted)",
                file=url,
                hint="the download was corrupted or the URL serves another file; "
                "try again, or download and extract it by hand and pass its folder",
            )
        os.replace(partial, target)  # atomic: a half-downloaded archive never has the real name
    except RecipeError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # an HTTP error holds the open connection
        raise RecipeError(
            f"download failed ({getattr(error, 'reason', error)})",
            file=url,
            hint="check the network, or download and extract the archive by hand "
            "and pass its folder as the data folder",
        ) from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _safe_members(archive: tarfile.TarFile, path: Path) -> List[tarfile.TarInfo]:
    """Every member, after refusing absolute paths, '..' and anything but files and folders."""
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or Path(member.name).is_absolute() or ".." in parts:
            raise RecipeError(
                f"refusing to extract '{member.name}': it points outside the folder",
                file=path,
                hint="this is not the official archive; check the URL",
            )
        if not (member.isfile() or member.isdir()):
            raise RecipeError(
                f"refusing to extract '{member.name}': not a plain file or folder",
                file=path,
                hint="this is not the official archive; check the URL",
            )
    return members


def _extract(archive_path: Path, layout: Layout, cache_dir: Path) -> Path:
    """Extract into a temporary folder, then rename the layout folder into place, so a
    half-extracted folder never looks complete."""
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                members = _safe_members(archive, archive_path)
                if hasattr(tarfile, "data_filter"):  # Python 3.12, 3.11.4+: refuses links out, devices
                    archive.extractall(staging, members=members, filter="data")
                else:
                    archive.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise RecipeError(
                f"cannot extract ({error})",
                file=archive_path,
                hint="the archive is damaged; download it again",
            ) from error
        if not (staging / layout.folder).is_dir():
            raise RecipeError(
                f"the archive has no folder {layout.folder}",
                file=archive_path,
                hint=f"this is not {layout.archive}; check the URL",
            )
        target = cache_dir / layout.folder
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / layout.folder, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_cifar(
    name: str, cache_dir, url: Optional[str] = None, md5: Optional[str] = None, layout: str = "binary"
) -> Path:
    """Download the official archive of `name` into cache_dir, check its MD5, extract it, and
    return the extracted layout folder (say ~/.cache/netgraph/cifar-10-batches-bin).

    `url` may name a mirror (or a file:// URL); `md5` defaults to the official archive's."""
    _check_name(name)
    if layout not in KINDS:
        raise RecipeError(f"unknown layout '{layout}'", hint="the layouts are " + ", ".join(KINDS))
    spec = LAYOUTS[(name, layout)]
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive_path = cache_dir / spec.archive
    _fetch(url or spec.url, archive_path, md5 or spec.md5)
    try:
        return _extract(archive_path, spec, cache_dir)
    finally:
        archive_path.unlink(missing_ok=True)  # 163 MB that the extracted folder repeats


def load_cifar(
    name: str = "cifar10",
    data_dir=None,
    cache_dir=None,
    download: bool = True,
    layout: str = "binary",
    url: Optional[str] = None,
    md5: Optional[str] = None,
) -> Dataset:
    """CIFAR-10 or -100 from data_dir if given; otherwise from the cache folder
    (cache_dir, $NETGRAPH_CACHE or ~/.cache/netgraph), downloading it there when absent."""
    _check_name(name)
    if data_dir is not None:
        return read_cifar(name, data_dir)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    for candidate in _layouts(name):
        if (cache_dir / candidate.folder).is_dir():
            return read_cifar(name, cache_dir / candidate.folder)
    if not download:
        raise RecipeError(
            f"{name} is not in the cache folder and downloading is off",
            file=cache_dir,
            hint="pass --data-dir with a folder holding the official layout, or allow the download",
        )
    return read_cifar(name, download_cifar(name, cache_dir, url=url, md5=md5, layout=layout))


@register_source("cifar10", shape=IMAGE_SHAPE)
def _cifar10(data_dir=None, download: bool = True, **_) -> Dataset:
    """CIFAR-10 from --data-dir (official binary or python layout), else from the cache, downloaded once."""
    return load_cifar("cifar10", data_dir=data_dir, download=download)


@register_source("cifar100", shape=IMAGE_SHAPE)
def _cifar100(data_dir=None, download: bool = True, **_) -> Dataset:
    """CIFAR-100 (fine labels) from --data-dir, else from the cache, downloaded once."""
    return load_cifar("cifar100", data_dir=data_dir, download=download)

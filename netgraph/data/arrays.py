"""A data set given as numpy arrays: ``data.dataset: arrays``.

One ``.npz`` file, or a folder of four ``.npy`` files, with the arrays

    x_train  N x H x W x C uint8  (NHWC, as Keras and most numpy data sets store images;
                                   N x H x W for grayscale)
    y_train  N integer labels 0..K-1 (N x 1 is accepted too: Keras stores them so)
    x_test, y_test                the same for the test set
    classes  optional: K class names (strings)

NCHW arrays (N x 1 x H x W or N x 3 x H x W where the last axis is not 1 or 3) are
refused with the transpose that fixes them: an image's channels last is the one rule,
so no array is guessed wrongly. Files are read with ``allow_pickle=False``: data is
data, and a pickled object array could run code.

This stage knows nothing of recipes: it takes a path and returns a ``Dataset``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from netgraph.core.errors import RecipeError
from netgraph.data.dataset import Dataset
from netgraph.data.sources import register_source

KEYS = ("x_train", "y_train", "x_test", "y_test")
CHANNELS = (1, 3)  # grayscale or RGB


def _load(path: Path) -> Dict[str, np.ndarray]:
    """The arrays of a .npz file or of a folder of x_train.npy, y_train.npy, ..."""
    if not path.exists():
        raise RecipeError(
            "no such file or folder",
            file=path,
            hint="pass a .npz with x_train, y_train, x_test, y_test, or a folder "
            "holding x_train.npy, y_train.npy, x_test.npy, y_test.npy",
        )
    try:
        if path.is_dir():
            files = {key: path / f"{key}.npy" for key in KEYS + ("classes",)}
            missing = [f.name for key, f in files.items() if key != "classes" and not f.is_file()]
            if missing:
                raise RecipeError(
                    f"missing {', '.join(missing)}",
                    file=path,
                    hint="a folder of arrays holds x_train.npy, y_train.npy, "
                    "x_test.npy and y_test.npy (and optionally classes.npy)",
                )
            return {key: np.load(f, allow_pickle=False) for key, f in files.items() if f.is_file()}
        with np.load(path, allow_pickle=False) as content:
            return {key: content[key] for key in content.files}
    except RecipeError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise RecipeError(
            f"cannot read these arrays ({type(error).__name__}: {error})",
            file=path,
            hint="write them with np.savez(path, x_train=..., y_train=..., "
            "x_test=..., y_test=...) of numeric arrays (no objects)",
        ) from error


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """NHWC (or NHW) uint8 -> NCHW uint8, refusing everything else by name."""
    if x.dtype != np.uint8:
        hint = (
            "scale to 0..255 and convert: x = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)"
            if np.issubdtype(x.dtype, np.floating)
            else "convert to uint8 (0..255)"
        )
        raise RecipeError(f"{key} is {x.dtype}, not uint8", file=path, hint=hint)
    if x.ndim == 3:  # N x H x W: one grayscale channel
        x = x[:, :, :, None]
    if x.ndim != 4:
        raise RecipeError(
            f"{key} has shape {x.shape}, not N x H x W x C",
            file=path,
            hint="images are NHWC (or NHW for grayscale)",
        )
    if x.shape[3] not in CHANNELS:
        if x.shape[1] in CHANNELS:
            raise RecipeError(
                f"{key} has shape {x.shape}: channels first (NCHW), but netgraph reads NHWC",
                file=path,
                hint=f"save {key}.transpose(0, 2, 3, 1) instead",
            )
        raise RecipeError(
            f"{key} has {x.shape[3]} channels (shape {x.shape}), not 1 or 3",
            file=path,
            hint="images are NHWC with 1 (grayscale) or 3 (RGB) channels",
        )
    if x.shape[0] == 0 or min(x.shape[1:3]) == 0:
        raise RecipeError(f"{key} holds no images (shape {x.shape})", file=path)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _labels(y: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # Keras: N x 1
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise RecipeError(f"{key} has shape {y.shape}, expected {n} labels (one per image)", file=path)
    if not np.issubdtype(y.dtype, np.integer):
        raise RecipeError(
            f"{key} is {y.dtype}, not integers",
            file=path,
            hint="labels are class numbers 0..K-1; one-hot labels: y.argmax(1)",
        )
    if y.min() < 0:
        raise RecipeError(f"{key} holds the label {int(y.min())}; labels are 0..K-1", file=path)
    return y.astype(np.int64)


def _classes(content: Dict[str, np.ndarray], count: int, path: Path) -> List[str]:
    if "classes" not in content:
        return [str(i) for i in range(count)]
    names = content["classes"]
    if names.ndim != 1 or not (np.issubdtype(names.dtype, np.str_) or np.issubdtype(names.dtype, np.bytes_)):
        raise RecipeError(
            f"classes is {names.dtype} of shape {names.shape}, not a list of names",
            file=path,
            hint="classes=np.array(['cat', 'dog', ...])",
        )
    if len(names) < count:
        raise RecipeError(
            f"classes names {len(names)} classes, but the labels go up to {count - 1}",
            file=path,
            hint="give one name per class, in label order",
        )
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]


@register_source("arrays", path="a .npz file")
def _read(data_dir, **_) -> Dataset:
    """Your own arrays: a .npz of NHWC uint8 x_train, y_train, x_test, y_test."""
    return read_arrays(data_dir)


def read_arrays(path) -> Dataset:
    """The data set in a .npz file or a folder of .npy files (see the module's doc)."""
    path = Path(path).expanduser()
    content = _load(path)
    missing = [key for key in KEYS if key not in content]
    if missing:
        raise RecipeError(
            f"has no {', '.join(missing)} (it holds {', '.join(sorted(content)) or 'nothing'})",
            file=path,
            hint="the arrays are x_train, y_train, x_test, y_test",
        )
    x_train, x_test = (_images(content[k], k, path) for k in ("x_train", "x_test"))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise RecipeError(
            f"x_train images are {x_train.shape[1:]} (C x H x W), x_test images {x_test.shape[1:]}",
            file=path,
            hint="both sets need one image shape",
        )
    y_train = _labels(content["y_train"], "y_train", len(x_train), path)
    y_test = _labels(content["y_test"], "y_test", len(x_test), path)
    count = int(max(y_train.max(), y_test.max())) + 1
    classes = _classes(content, count, path)
    return Dataset(
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
        classes=classes,
        name=path.stem,
    )

"""A data set as whole tensors, and its preprocessing on the device.

A data set is small enough to live whole on the GPU (CIFAR-10: 60,000 x 3 x 32 x
32 bytes = 184 MB as uint8), so it is read once into uint8 tensors, moved to
the device, normalised and padded there once (``preprocess``), and batched by
``netgraph.train.augment`` with no DataLoader and no per-image Python work.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Sequence, Tuple, cast

import torch
import torch.nn.functional as F

# Per-channel statistics of the CIFAR-10 training set in 0-255 units (R, G, B);
# the original code normalises with these.
CIFAR10_MEAN = (125.31, 122.95, 113.87)
CIFAR10_STD = (62.99, 62.09, 66.70)

CACHE_ENV = "NETGRAPH_CACHE"
DEFAULT_CACHE = Path("~/.cache/netgraph")


@dataclass
class Dataset:
    """Train and test images (uint8, N x C x H x W) with int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: List[str]
    name: str

    def to(self, device) -> Dataset:
        """A copy with every tensor on `device` (the data set moves once, whole)."""
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return cast(Tuple[int, int, int], tuple(self.train_images.shape[1:]))  # N x C x H x W images


def default_cache_dir() -> Path:
    """$NETGRAPH_CACHE, or ~/.cache/netgraph."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


# --- preprocessing ------------------------------------------------------------------------


def channel_stats(images_uint8: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(mean, std) per channel in 0-255 units, for data sets other than CIFAR-10."""
    x = images_uint8.double()
    return (tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist()))


def preprocess(
    images_uint8: torch.Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    pad: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalise per channel ((x - mean) / std, both in 0-255 units) and reflect-pad by `pad`
    pixels on every side, once, on the tensor's own device; returns `dtype`.

    The arithmetic is float32 whatever `dtype` is; the result is cast before padding so the
    padded copy (50,000 x 3 x 40 x 40: 960 MB in float32, 480 MB in float16) is made once."""
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ValueError(
            f"preprocess takes N x C x H x W uint8 images, got {images_uint8.dtype} "
            f"of shape {tuple(images_uint8.shape)}"
        )
    channels, height, width = images_uint8.shape[1:]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values each, got {len(mean)} and {len(std)}")
    if not 0 <= pad < min(height, width):
        raise ValueError(f"reflect padding needs 0 <= pad < {min(height, width)}, got {pad}")
    x = normalizer(mean, std, images_uint8.device, dtype)(images_uint8)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return x


def normalizer(
    mean: Sequence[float], std: Sequence[float], device, dtype: torch.dtype = torch.float32
) -> Callable[[torch.Tensor], torch.Tensor]:
    """(x - mean) / std per channel for uint8 images on ``device``, computed in float32 and
    cast to ``dtype``. The constants go to the device once, so normalising each batch with
    it (data.keep_uint8) copies nothing from the host."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return lambda x: ((x.float() - m) / s).to(dtype)

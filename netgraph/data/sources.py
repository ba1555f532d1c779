"""The data sources by name: each registers itself in its own module (cifar, synthetic,
folder, arrays), so a new source is one file (or a plugin loaded with ``--import``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from netgraph.core.errors import RecipeError
from netgraph.core.registry import Part, Registry
from netgraph.data.dataset import Dataset


@dataclass(frozen=True)
class Source(Part):
    """A data source: ``function(data_dir, **options) -> Dataset`` (uint8 tensors on the CPU)
    reads it. ``shape`` is the image shape (C, H, W) when it is known before reading (CIFAR's
    3 x 32 x 32), so the data: section is checked before minutes of loading; ``path``:
    it reads the user's own files and needs --data-dir (``path`` says what they are);
    ``params``: the keys of its own data: mapping (data.synthetic's sizes)."""

    shape: Optional[Tuple[int, int, int]] = None
    path: Optional[str] = None


SOURCES = Registry("data source", "sources", "netgraph.register_source", Source)


def register_source(
    name: str,
    *,
    shape: Optional[Tuple[int, int, int]] = None,
    path: Optional[str] = None,
    params: Optional[Dict[str, Any]] = None,
    replace: bool = False,
):
    """Register a data source: decorate ``read(data_dir, **options) -> Dataset``. The options
    are data:'s (download, sizes, seed, size, channels, test_fraction, split_seed): a reader
    takes those it needs and ``**_`` for the rest."""
    return SOURCES.decorator(name, params=params, replace=replace, shape=shape, path=path)


def load(name: str, data_dir=None, **options) -> Dataset:
    """The data set ``name`` as uint8 tensors on the CPU, read by its registered source."""
    source = SOURCES.lookup(name)
    if source.path and data_dir is None:
        raise RecipeError(
            f"data set '{name}' reads your own files, but no path was given",
            hint=f"pass --data-dir PATH (or set data.dir), PATH being {source.path}",
        )
    return source.function(data_dir, **options)

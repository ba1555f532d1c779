"""Data sets as whole uint8 tensors: a registry of sources (``sources``), each in a module of
its own (CIFAR-10/100, synthetic, class folders, arrays), and what every data set shares
(``dataset``: the tensors, normalising and padding). Knows files and numpy; nothing of recipes."""

# The built-in sources register themselves on import.
from netgraph.data import arrays, cifar, folder, synthetic  # noqa: F401
from netgraph.data.dataset import Dataset
from netgraph.data.sources import SOURCES, load, register_source

__all__ = ["SOURCES", "Dataset", "load", "register_source"]

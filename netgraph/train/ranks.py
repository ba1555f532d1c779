"""Which rank this process is, with no torch.distributed machinery: what a single-process run
needs to know about ranks (``Ranks``, the per-rank batch, whether torchrun started it).

A run of one rank imports only this; ``netgraph.train.distributed`` (the process group, DDP,
the collectives) is imported when a run has more than one (tests/test_startup_cost.py checks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from netgraph.core.errors import RecipeError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group."""

    rank: int
    world: int
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints and results."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank_batch(batch_size: int, ranks: Optional[Ranks]) -> int:
    """The per-rank batch: the global batch split evenly over the ranks (all of it on one)."""
    if ranks is None:
        return batch_size
    if batch_size % ranks.world:
        raise RecipeError(
            f"train.batch_size {batch_size} is the global batch and must divide "
            f"evenly over {ranks.world} ranks",
            hint=f"use a multiple of {ranks.world}, e.g. "
            f"{batch_size // ranks.world * ranks.world or ranks.world}",
        )
    return batch_size // ranks.world

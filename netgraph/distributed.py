"""Data-parallel training on torch.distributed: which rank this process is, and the
few collectives the engine needs.

``torchrun --nproc-per-node 4 -m netgraph train recipe.yaml`` starts four processes
with RANK, LOCAL_RANK and WORLD_SIZE set; ``from_environment`` joins them into one
process group (NCCL on GPUs, gloo on CPUs). The recipe's ``train.batch_size`` is the
global batch: each of the W ranks trains on batch_size / W images a step, so the
learning rate and weight decay mean the same as on one GPU. Every rank draws the same
global batch from the same seed and takes every W-th image of it (rank r: images r,
r + W, ...), the split ghost batch norm uses, so batch norm per rank equals ghost batch
norm with W splits on one process. Gradients are all-reduced in buckets by
DistributedDataParallel; batch-norm running statistics are averaged over the ranks
at the end of each epoch (the mean ghost batch norm takes for evaluation).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from .errors import RecipeError


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


def from_environment(device: Optional[str] = None) -> tuple:
    """(Ranks, device) for a process torchrun started, joining the process group; the device
    is cuda:LOCAL_RANK when GPUs are there and none is named, else the one named."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                                world_size=world)
    return Ranks(rank, world, local), device


def check_batch(batch_size: int, ranks: Ranks) -> int:
    """The per-rank batch: the global batch split evenly over the ranks."""
    if batch_size % ranks.world:
        raise RecipeError(f"train.batch_size {batch_size} is the global batch and must divide "
                          f"evenly over {ranks.world} ranks",
                          hint=f"use a multiple of {ranks.world}, e.g. "
                               f"{batch_size // ranks.world * ranks.world or ranks.world}")
    return batch_size // ranks.world


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model with its gradients all-reduced (averaged) in buckets during backward.
    Buffers are not broadcast each step: batch norm keeps per-rank statistics."""
    import warnings
    from torch.nn.parallel import DistributedDataParallel
    with warnings.catch_warnings():
        # torch 2.13 deprecates broadcast_buffers, but its replacement still syncs buffers at
        # start, and per-rank statistics are what is wanted here
        warnings.simplefilter("ignore", FutureWarning)
        # gradient_as_bucket_view: gradients live in the all-reduce buckets, no copy in and
        # out; static_graph: the same parameters get gradients every step
        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                       broadcast_buffers=False, gradient_as_bucket_view=True,
                                       static_graph=True)


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


@torch.no_grad()
def average_batch_norm_statistics(model: nn.Module, world: int) -> None:
    """Replace every batch-norm running mean and variance by its mean over the ranks."""
    buffers = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in (m.running_mean, m.running_var) if b is not None]
    for b in buffers:
        dist.all_reduce(b, op=dist.ReduceOp.SUM)
        b.div_(world)

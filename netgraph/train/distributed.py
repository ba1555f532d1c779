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
at the end of each epoch (the mean ghost batch norm takes for evaluation). With the
recipe's ``train.sync_batch_norm: true`` batch norm uses the statistics of the whole
global batch instead (``SyncBatchNorm``), which equals plain batch norm on one process.
"""

from __future__ import annotations

import os
from typing import Optional, cast

import torch
import torch.distributed as dist
from torch import nn

from netgraph.train.ranks import Ranks, launched_by_torchrun, rank_batch  # noqa: F401 (their home before)


def from_environment(device: Optional[str] = None) -> tuple:
    """(Ranks, device) for a process torchrun started, joining the process group; the device
    is cuda:LOCAL_RANK when GPUs are there and none is named, else the one named."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        if chosen.index is None:
            chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Ranks(rank, world, local), chosen


def leave() -> None:
    """After a finished run: every rank waits for the others, then ends the process group, as
    torch asks of a program. Left to the interpreter's exit, a rank that finished first aborted
    ("terminate called without an active exception", SIGABRT) in 1 of 8 two-process CPU runs
    (1 of 12 with gc.freeze off); ending the group without the barrier, 2 of 10; with it, 0 of 40."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
        return DistributedDataParallel(
            model,
            device_ids=[device] if device.type == "cuda" else None,
            broadcast_buffers=False,
            gradient_as_bucket_view=True,
            static_graph=True,
        )


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch: in training, each rank's per-channel sum, sum of
    squares and count are summed over the ranks by one all-reduce that autograd
    differentiates (torch.distributed.nn.functional.all_reduce), so outputs and gradients
    are those of plain batch norm on the whole batch. torch.nn.SyncBatchNorm does this on
    GPUs only; this one runs on every backend, gloo on CPUs included, where CI tests it.
    Evaluation uses the running statistics, which are the same on every rank."""

    def _check_input_dim(self, x):
        if x.dim() not in (2, 4):
            raise ValueError(
                f"batch norm expects (batch, features) or (batch, channels, height, "
                f"width), got a {x.dim()}-d input"
            )

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c, dims = x.shape[1], [0] + list(range(2, x.dim()))
        # float32 sums: under float16 the squares of activations overflow past 65,504
        xf = x.float()
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_full((1,), x.numel() / c)])
        total = all_reduce(local, op=dist.ReduceOp.SUM)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running_statistics(mean.detach(), var.detach(), n)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale if self.bias is None else self.bias - mean * scale
        shape = (1, c) + (1,) * (x.dim() - 2)
        return (xf * scale.view(shape) + shift.view(shape)).to(x.dtype)

    @torch.no_grad()
    def _update_running_statistics(self, mean, var, n) -> None:
        # netgraph's batch norms always have a momentum (None, torch's cumulative average,
        # fails here as it did: 1 - None); the buffers exist with track_running_stats
        m = cast(float, self.momentum)
        running_mean, running_var = self.running_mean, self.running_var
        assert running_mean is not None and running_var is not None and self.num_batches_tracked is not None
        running_mean.mul_(1 - m).add_(mean, alpha=m)
        # the running variance unbiased, as torch's batch norm keeps it
        running_var.mul_(1 - m).add_(var * (n / (n - 1)), alpha=m)
        self.num_batches_tracked.add_(1)


def synchronise_batch_norm(model: nn.Module) -> int:
    """Replace every plain batch-norm module of ``model`` by a synchronised one holding the
    same parameters and buffers (names, checkpoints and optimizer state unchanged); returns
    how many. On CUDA that is torch.nn.SyncBatchNorm: its Welford variance keeps the
    precision that this module's float32 E[x^2] - E[x]^2 loses when the mean is large
    against the spread (1.4% relative error at mean/std = 100); elsewhere (gloo on CPUs,
    which torch's refuses) this module's SyncBatchNorm. Ghost batch norm is left alone: the
    recipe check refuses it with this option."""
    from netgraph.graph.ops import GhostBatchNorm

    replaced = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) or isinstance(module, GhostBatchNorm):
            continue
        kind = (
            nn.SyncBatchNorm
            if module.running_mean is not None and module.running_mean.is_cuda
            else SyncBatchNorm
        )
        synced = kind(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device="meta",
        )
        synced.weight, synced.bias = module.weight, module.bias
        synced.running_mean, synced.running_var = module.running_mean, module.running_var
        synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, synced)
        replaced += 1
    return replaced


@torch.no_grad()
def average_batch_norm_statistics(model: nn.Module, world: int) -> None:
    """Replace every batch-norm running mean and variance by its mean over the ranks."""
    buffers = [
        b
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for b in (m.running_mean, m.running_var)
        if b is not None
    ]
    for b in buffers:
        dist.all_reduce(b, op=dist.ReduceOp.SUM)
        b.div_(world)

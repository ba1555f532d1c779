"""ResNet-9 written by hand in plain PyTorch: the yardstick netgraph's compiled graphs are
checked (tests) and timed (tools/bench.py) against.

``ResNet9()`` is the DAWNBench network of ladder.md; its keyword arguments give the seed's
later variants, so the bag-of-tricks network (ladder step 9) is
``ResNet9(whiten=True, ghost_splits=16, activation=lambda: nn.CELU(0.3), pool_before_bn=True,
frozen_bn_scale=True, scale=0.0625)``. Modules carry the names netgraph gives the nodes of
recipes/resnet9.yaml, so a netgraph state dict loads into it as it is.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class GhostBatchNorm(nn.BatchNorm2d):
    """The seed's ghost batch norm: in training, each of ``splits`` interleaved sub-batches
    is normalised on its own (one batch_norm call over a reshaped batch); running statistics
    per split, averaged for evaluation."""

    def __init__(self, c: int, splits: int):
        super().__init__(c)
        self.splits = splits
        self.register_buffer("running_mean", torch.zeros(c * splits))
        self.register_buffer("running_var", torch.ones(c * splits))

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.splits
        if self.training:
            return F.batch_norm(
                x.reshape(n // s, c * s, h, w),
                self.running_mean,
                self.running_var,
                self.weight.repeat(s),
                self.bias.repeat(s),
                True,
                self.momentum,
                self.eps,
            ).reshape(n, c, h, w)
        return F.batch_norm(
            x,
            self.running_mean.view(s, c).mean(0),
            self.running_var.view(s, c).mean(0),
            self.weight,
            self.bias,
            False,
            0.0,
            self.eps,
        )


class ConvBN(nn.Module):
    """conv 3x3 (no bias), batch norm, activation; the pool of a layer goes in between."""

    def __init__(self, c_in: int, c_out: int, norm: Callable, activation: Callable, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.bn = norm(c_out)
        self.act = activation()


class Residual(nn.Module):
    def __init__(self, c: int, norm: Callable, activation: Callable):
        super().__init__()
        self.res1, self.res2 = ConvBN(c, c, norm, activation), ConvBN(c, c, norm, activation)

    def forward(self, x):
        r1, r2 = self.res1, self.res2
        y = r1.act(r1.bn(r1.conv(x)))
        return x + r2.act(r2.bn(r2.conv(y)))


class Layer(nn.Module):
    """conv-BN-act with a 2x2 max-pool (after the activation, or right after the conv with
    ``pool_before_bn``), then an optional residual block."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        norm: Callable,
        activation: Callable,
        residual: bool,
        pool_before_bn: bool,
    ):
        super().__init__()
        self.conv_bn = ConvBN(c_in, c_out, norm, activation)
        self.pool = nn.MaxPool2d(2)
        self.residual = Residual(c_out, norm, activation) if residual else None
        self.pool_before_bn = pool_before_bn

    def forward(self, x):
        c = self.conv_bn
        if self.pool_before_bn:
            x = c.act(c.bn(self.pool(c.conv(x))))
        else:
            x = self.pool(c.act(c.bn(c.conv(x))))
        return self.residual(x) if self.residual is not None else x


class Prep(nn.Module):
    """conv 3x3 3 -> c, BN, act; with ``whiten``: a fixed 3x3 conv 3 -> 27 (the whitening
    filters, set from outside, not trained), then a 1x1 conv 27 -> c, BN, act."""

    def __init__(self, c: int, norm: Callable, activation: Callable, whiten: bool):
        super().__init__()
        if whiten:
            self.whiten = nn.Conv2d(3, 27, 3, padding=1, bias=False)
            self.whiten.weight.requires_grad_(False)
        else:
            self.whiten = None
        self.conv = nn.Conv2d(
            27 if whiten else 3, c, 1 if whiten else 3, padding=0 if whiten else 1, bias=False
        )
        self.bn = norm(c)
        self.act = activation()

    def forward(self, x):
        if self.whiten is not None:
            x = self.whiten(x)
        return self.act(self.bn(self.conv(x)))


class Head(nn.Module):
    def __init__(self, c: int, num_classes: int, scale: float):
        super().__init__()
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.scale = scale

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1)) * self.scale


class ResNet9(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        scale: float = 0.125,
        widths=(64, 128, 256, 512),
        activation: Callable = nn.ReLU,
        ghost_splits: int = 0,
        pool_before_bn: bool = False,
        whiten: bool = False,
        frozen_bn_scale: bool = False,
    ):
        super().__init__()

        def norm(c):
            bn = GhostBatchNorm(c, ghost_splits) if ghost_splits else nn.BatchNorm2d(c)
            if frozen_bn_scale:
                bn.weight.requires_grad_(False)
            return bn

        c0, c1, c2, c3 = widths
        self.prep = Prep(c0, norm, activation, whiten)
        self.layer1 = Layer(c0, c1, norm, activation, True, pool_before_bn)
        self.layer2 = Layer(c1, c2, norm, activation, False, pool_before_bn)
        self.layer3 = Layer(c2, c3, norm, activation, True, pool_before_bn)
        self.head = Head(c3, num_classes, scale)

    def forward(self, x):
        return self.head(self.layer3(self.layer2(self.layer1(self.prep(x)))))


def count_macs(model: nn.Module, image_shape=(3, 32, 32)) -> int:
    """Multiply-accumulates for one image, counted with forward hooks by the rule
    netgraph documents: conv and linear exactly, batch norm and the final scale
    one per element."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, nn.BatchNorm2d):
            total += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *image_shape))
    for h in handles:
        h.remove()
    return total + out.numel()  # the output scale: one multiply per logit

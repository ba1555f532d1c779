"""The two airbench record networks written by hand in plain PyTorch, from their published
description (../shared/docs/anchors.md, "The two airbench records, component by component"):
the yardstick recipes/airbench/*.yaml are checked against (tests/test_airbench.py).

``airbench94()`` and ``airbench94_muon()`` build the networks; ``init_whitening`` sets the
whitening conv from training images as the records do. Modules carry the names netgraph
gives the recipes' nodes, so a netgraph state dict loads into them as it is. Nothing here
imports netgraph.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """Batch norm as the records set it: eps 1e-12, torch momentum 0.4, weight fixed at 1,
    bias trainable from 0."""

    def __init__(self, c: int):
        super().__init__(c, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class Conv(nn.Conv2d):
    """3x3 'same' conv without bias: PyTorch's default init, then Dirac on the first
    in_channels filters."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, padding=1, bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[:c_in])


class ConvGroup(nn.Module):
    """conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1, self.pool, self.norm1 = Conv(c_in, c_out), nn.MaxPool2d(2), BatchNorm(c_out)
        self.act1, self.conv2, self.norm2, self.act2 = (
            nn.GELU(),
            Conv(c_out, c_out),
            BatchNorm(c_out),
            nn.GELU(),
        )

    def forward(self, x):
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


class Head(nn.Module):
    def __init__(self, c: int, scale: float, unit_std: bool):
        super().__init__()
        self.pool, self.flat, self.fc = nn.MaxPool2d(3), nn.Flatten(), nn.Linear(c, 10, bias=False)
        self.scale = scale
        if unit_std:
            with torch.no_grad():
                self.fc.weight.mul_(1 / self.fc.weight.std())

    def forward(self, x):
        return self.fc(self.flat(self.pool(x))) * self.scale


class AirbenchNet(nn.Module):
    """Whitening conv 3 -> 24 (kernel 2, no padding, bias; weight frozen) -> GELU -> three
    groups of widths 64 / 256 / 256 -> max-pool 3 -> linear 256 -> 10 without bias -> x scale."""

    def __init__(self, scale: float, zero_whiten_bias: bool, unit_std_head: bool, widths=(64, 256, 256)):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        if zero_whiten_bias:
            with torch.no_grad():
                self.whiten.bias.zero_()
        self.act = nn.GELU()
        self.group1 = ConvGroup(24, widths[0])
        self.group2 = ConvGroup(widths[0], widths[1])
        self.group3 = ConvGroup(widths[1], widths[2])
        self.head = Head(widths[2], scale, unit_std_head)

    def forward(self, x):
        x = self.group3(self.group2(self.group1(self.act(self.whiten(x)))))
        return self.head(x)


def airbench94() -> AirbenchNet:
    """airbench94: whitening bias from 0, PyTorch's default head, output x 1/9."""
    return AirbenchNet(scale=1 / 9, zero_whiten_bias=True, unit_std_head=False)


def airbench94_muon() -> AirbenchNet:
    """airbench94_muon: default whitening bias, head weight rescaled to std 1, output / 256."""
    return AirbenchNet(scale=1 / 256, zero_whiten_bias=False, unit_std_head=True)


def init_whitening(
    net: AirbenchNet, images: torch.Tensor, eps: float = 5e-4, largest_first: bool = True
) -> None:
    """Eigenvectors of X^T X / n over every 2x2 patch of ``images`` (normalised), each
    divided by sqrt(eigenvalue + eps), then the same negated (airbench94: largest first;
    airbench94_muon: eigh's ascending order)."""
    c, (h, w) = images.shape[1], net.whiten.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * h * w)
    patches = patches.double()
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    if largest_first:
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    scaled = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, c, h, w)
    with torch.no_grad():
        net.whiten.weight.copy_(torch.cat([scaled, -scaled]).float())

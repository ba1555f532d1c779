"""Patch whitening in place: airbench's first layer (../shared/docs/anchors.md,
"The two airbench records").

The first conv keeps the kernel, stride, padding and bias the recipe wrote
(airbench: kernel 2, padding 0, a bias) and becomes a fixed patch-whitening
conv, with no 1x1 conv after it (that is ``whiten_stem``, the bag of tricks'
form). Filter i is eigenvector v_i of the un-centred covariance X^T X / n of
every k x k patch of the first ``images`` normalised training images, divided
by sqrt(lambda_i + eps); with ``negated`` the same filters follow with the
opposite sign (12 -> 24 channels for 3 x 2 x 2 patches), so a ReLU-like
activation after it keeps both halves of each direction. The conv's width is
set to that number of filters. Its weight is frozen; its bias (if the recipe
gives it one) stays trainable, starting at 0 (airbench94's Conv zeroes it) or
at PyTorch's default (airbench94_muon's nn.Conv2d).
Airbench: eps 5e-4, 5,000 images, largest eigenvalue first (airbench94) or
torch.linalg.eigh's order, smallest first (airbench94_muon's init_whiten).
"""

import torch

from netgraph.core.errors import RecipeError
from netgraph.core.schema import Param
from netgraph.graph.build import INPUT
from netgraph.graph.passes.base import register_pass
from netgraph.graph.passes.whiten_stem import first_input_conv, patch_covariance


def uncentred_covariance(images: torch.Tensor, kernel: int) -> torch.Tensor:
    """X^T X / n over every k x k patch (no padding), float64: airbench divides by n, where
    patch_covariance divides by n - 1."""
    n, _, h, w = images.shape
    count = n * (h - kernel + 1) * (w - kernel + 1)
    return patch_covariance(images, kernel) * ((count - 1) / count)


def airbench_filters(
    images: torch.Tensor, kernel: int, eps: float, negated: bool, largest_first: bool
) -> torch.Tensor:
    """The whitening filters (d or 2d, c, k, k), float32."""
    eigenvalues, eigenvectors = torch.linalg.eigh(uncentred_covariance(images, kernel))
    if largest_first:
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]
    if negated:
        filters = torch.cat([filters, -filters])
    return filters.reshape(len(filters), images.shape[1], kernel, kernel).float()


@register_pass(
    "whiten_conv",
    exact=False,
    params={
        "eps": Param(float, 5e-4, positive=True),
        "images": Param(int, 5000, positive=True),
        "negated": True,
        "largest_first": True,
        "bias_init": Param(str, "zero", choices=("zero", "default")),
    },
)
def whiten_conv(g, context, eps, images, negated, largest_first, bias_init) -> int:
    """Make the first conv a fixed patch-whitening conv in place (its bias stays trainable)."""
    first = first_input_conv(g, "whiten_conv")
    if first is None:
        return 0
    params = g.nodes[first]["params"]
    if params["groups"] != 1:
        raise RecipeError(
            f"whiten_conv needs a conv with groups 1, got groups={params['groups']}", node=first
        )
    channels, kernel = g.nodes[INPUT]["params"]["shape"][0], params["kernel"]
    width = channels * kernel * kernel * (2 if negated else 1)
    g.nodes[first]["params"] = {
        **params,
        "out": width,
        "trainable": False,
        "bias_trainable": True if params["bias"] else None,
        "init": "default",
    }
    g.nodes[first].pop("tensors", None)
    if context.train_images is None:
        g.nodes[first]["pending"] = (
            "the whitening filters are computed from training images and "
            "none were given; train the recipe (netgraph train) or pass "
            "PassContext(train_images=...)"
        )
        return 1
    data = context.train_images(images)
    if data.shape[1] != channels:
        raise RecipeError(
            f"the training images have {data.shape[1]} channels, the network input {channels}", node=first
        )
    tensors = {"weight": airbench_filters(data, kernel, eps, negated, largest_first)}
    if params["bias"] and bias_init == "zero":
        tensors["bias"] = torch.zeros(width)
    g.nodes[first]["tensors"] = tensors
    return 1

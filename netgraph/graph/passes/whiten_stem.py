"""Input patch whitening, the bag of tricks' step 7.

The first conv becomes a fixed k x k conv whose filters are the PCA whitening
of k x k patches of the (normalised) training images, followed by a learnable
1x1 conv to the old width. Filter i is eigenvector v_i of the patch covariance
divided by sqrt(lambda_i + eps), so on the data its output channels have
covariance diag(lambda / (lambda + eps)): the identity wherever lambda >> eps.
As in the original code, patches are not mean-centred (the images are normalised).
Seed: k = 3, eps = 0.01, 10,000 images, 27 output channels.
"""

from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F

from netgraph.core.errors import RecipeError
from netgraph.core.schema import Param
from netgraph.graph.build import INPUT, inputs
from netgraph.graph.passes.base import register_pass
from netgraph.graph.passes.edit import insert_node, set_inputs, unique_path


def patch_covariance(images: torch.Tensor, kernel: int, chunk: int = 500) -> torch.Tensor:
    """Covariance (no mean removed) of every k x k patch, accumulated in float64 in chunks
    of images: 10,000 CIFAR images hold 9 M patches of 27 values, 1 GB in float32 at once."""
    d = images.shape[1] * kernel * kernel
    total = torch.zeros(d, d, dtype=torch.float64, device=images.device)
    count = 0
    for part in images.split(chunk):
        # (n, d, patches per image), d ordered (c, y, x); unfold only copies values, so it runs
        # in the images' float32 (3x faster than in float64 on a CPU) and the cast is exact
        patches = F.unfold(part, kernel).transpose(1, 2).reshape(-1, d).double()
        total += patches.T @ patches
        count += patches.shape[0]
    return total / (count - 1)


def patch_eigen(images: torch.Tensor, kernel: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues, eigenvectors as columns) of the patch covariance, float64, largest
    eigenvalue first; `netgraph show whitening` draws these."""
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images, kernel))
    return eigenvalues.flip(0), eigenvectors.flip(1)


def whitening_filters(images: torch.Tensor, kernel: int, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(filters (d, c, k, k) float32, eigenvalues float32), largest eigenvalue first."""
    eigenvalues, eigenvectors = patch_eigen(images, kernel)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]
    c = images.shape[1]
    return filters.reshape(-1, c, kernel, kernel).float(), eigenvalues.float()


def first_input_conv(g, pass_name: str):
    """The first trainable conv of the graph (None without one), refused unless it reads the
    input images: the whitening passes replace it with filters of the images' patches."""
    convs = [n for n in g if g.nodes[n]["op"] == "conv2d" and g.nodes[n]["params"]["trainable"]]
    if not convs:
        return None
    first = min(convs, key=list(g).index)
    if inputs(g, first) != [INPUT]:
        raise RecipeError(
            f"{pass_name} whitens patches of the input images, but the first conv "
            "does not read the input directly",
            node=first,
            hint=f"apply {pass_name} to a network whose first conv takes the image",
        )
    return first


@register_pass(
    "whiten_stem",
    exact=False,
    params={
        "kernel": Param(int, 3, positive=True),
        "eps": Param(float, 0.01, positive=True),
        "images": Param(int, 10000, positive=True),
    },
)
def whiten_stem(g, context, kernel, eps, images) -> int:
    """Replace the first conv by a fixed PCA-whitening conv and a learnable 1x1 conv."""
    first = first_input_conv(g, "whiten_stem")
    if first is None:
        return 0
    old = g.nodes[first]["params"]
    channels, height, width = g.nodes[INPUT]["params"]["shape"]
    if kernel > min(height, width):  # no patch of that size in the image: nothing to whiten
        raise RecipeError(
            f"whiten_stem kernel {kernel} is larger than the {height} x {width} input "
            f"images: no {kernel} x {kernel} patch fits in them",
            node=first,
            hint=f"use a kernel of at most {min(height, width)} (the bag of tricks uses 3)",
        )
    whiten = unique_path(g, first.rsplit("/", 1)[0] + "/whiten" if "/" in first else "whiten")
    attrs: Dict[str, Any] = {}
    if context.train_images is None:
        attrs["pending"] = (
            "the whitening filters are computed from training images and none were "
            "given; train the recipe (netgraph train) or pass "
            "PassContext(train_images=...)"
        )
    else:
        data = context.train_images(images)
        if data.shape[1] != channels:
            raise RecipeError(
                f"the training images have {data.shape[1]} channels, the network input {channels}", node=first
            )
        filters, eigenvalues = whitening_filters(data, kernel, eps)
        attrs["tensors"] = {"weight": filters}
        attrs["eigenvalues"] = eigenvalues
    insert_node(
        g,
        whiten,
        "conv2d",
        {
            "out": channels * kernel * kernel,
            "kernel": kernel,
            "stride": old["stride"],
            "padding": kernel // 2,
            "bias": False,
            "groups": 1,
            "trainable": False,
        },
        [INPUT],
        before=first,
        **attrs,
    )
    g.nodes[first]["params"] = {**old, "kernel": 1, "stride": 1, "padding": 0, "groups": 1}
    g.nodes[first].pop("tensors", None)
    set_inputs(g, first, [whiten])
    return 1

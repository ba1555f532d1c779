"""Regenerate the figures the docs show, from the recipes they picture.

    python tools/make_docs_figures.py

docs/resnet9.svg is the network of recipes/resnet9.yaml; docs/passes/*.svg show
each built-in pass on recipes/examples/small.yaml, with --diff marks.
"""

import warnings
from pathlib import Path

import torch

from netgraph import PassContext, apply_pass, build_graph, load_recipe
from netgraph.graph.render import render

ROOT = Path(__file__).resolve().parents[1]

# Each pass with the parameters its picture uses (those of the seed's ladder).
PASS_EXAMPLES = {
    "swap_pool_activation": {},
    "pool_before_bn": {},
    "replace_op": {"from": "relu", "to": {"op": "celu", "alpha": 0.075}},
    "ghost_batch_norm": {"splits": 16},
    "freeze_bn_scale": {
        "celu_alpha_scale": 4,
        "output_multiplier": 0.0625,
        "bias_lr_scale": 64,
        "bias_wd_scale": 1 / 64,
    },
    "whiten_stem": {"kernel": 3, "eps": 0.01, "images": 64},
    "whiten_conv": {"images": 64},  # airbench's: eps 5e-4, +/- filters, bias kept trainable
    "dirac_init": {},
    "remove_identity": {},
}


def smooth_images(n):
    """Stand-in training images for the whitening picture (its structure does not depend on them)."""
    x = torch.nn.functional.avg_pool2d(
        torch.randn(n, 3, 36, 36, generator=torch.Generator().manual_seed(0)), 5, stride=1
    )
    return x / x.std()


def main():
    write(build_graph(load_recipe(ROOT / "recipes/resnet9.yaml")), "docs/resnet9.svg")
    small = build_graph(load_recipe(ROOT / "recipes/examples/small.yaml"))
    write(small, "docs/passes/before.svg", direction="LR", title="small.yaml, before any pass")
    context = PassContext(train_images=smooth_images, batch_size=512)
    for name, params in PASS_EXAMPLES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every example must give its pass something to do
            after, report = apply_pass(small, name, params, context)
        write(after, f"docs/passes/{name}.svg", direction="LR", title=f"after {name}", reports=[report])


def write(graph, out, **options):
    written, note = render(graph, str(ROOT / out), **options)
    print(note or f"wrote {written}")


if __name__ == "__main__":
    main()

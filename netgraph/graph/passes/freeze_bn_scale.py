"""Frozen batch-norm scales, the bag of tricks' step 6.

Fix every BN weight at `value` (1) and, as the original code does, compensate elsewhere:
CELU alpha x4 (0.075 -> 0.3), output multiplier 0.125 -> 0.0625, and the BN
biases get learning rate x64 and weight decay /64. The multipliers are recorded
on each norm node as ``optim`` for the training engine.
"""

from netgraph.core.errors import RecipeError
from netgraph.core.schema import Param
from netgraph.graph.passes.base import register_pass
from netgraph.graph.passes.edit import kind_is


@register_pass(
    "freeze_bn_scale",
    exact=False,
    params={
        "value": 1.0,
        "celu_alpha_scale": Param(float, 1.0, positive=True),
        "output_multiplier": Param(float, None, optional=True),
        "bias_lr_scale": Param(float, 1.0, nonnegative=True),
        "bias_wd_scale": Param(float, 1.0, nonnegative=True),
    },
)
def freeze_bn_scale(
    g, context, value, celu_alpha_scale, output_multiplier, bias_lr_scale, bias_wd_scale
) -> int:
    """Fix batch-norm weights at `value`; rescale CELU alpha, output multiplier, bias LR and WD."""
    norms = [n for n in g if kind_is("norm")(g, n) and "weight_trainable" in g.nodes[n]["params"]]
    for node in norms:
        g.nodes[node]["params"] = {**g.nodes[node]["params"], "weight_trainable": False, "weight_init": value}
        if (bias_lr_scale, bias_wd_scale) != (1.0, 1.0):
            g.nodes[node]["optim"] = {
                **g.nodes[node].get("optim", {}),
                "bias": {"lr_scale": bias_lr_scale, "wd_scale": bias_wd_scale},
            }
    if celu_alpha_scale != 1.0:
        for node in g:
            sources = list(g.predecessors(node))
            if g.nodes[node]["op"] == "celu" and sources and all(s in norms for s in sources):
                p = g.nodes[node]["params"]
                g.nodes[node]["params"] = {**p, "alpha": p["alpha"] * celu_alpha_scale}
    if output_multiplier is not None:
        output = g.graph["output"]
        if g.nodes[output]["op"] != "mul":
            raise RecipeError(
                f"output_multiplier needs a mul node at the output, but the output "
                f"is a {g.nodes[output]['op']} node",
                node=output,
                hint="add {op: mul, by: ...} as the last node, or drop output_multiplier",
            )
        g.nodes[output]["params"] = {**g.nodes[output]["params"], "by": output_multiplier}
    return len(norms)

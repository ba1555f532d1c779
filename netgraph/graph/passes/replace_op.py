"""Substitute one op for another, e.g. relu -> celu(alpha=0.075) (the bag of tricks' step 4)."""

from netgraph.core.errors import RecipeError, shown
from netgraph.core.schema import Param
from netgraph.graph import ops
from netgraph.graph.passes.base import register_pass
from netgraph.graph.passes.edit import selected


@register_pass("replace_op", exact=False, params={"from": Param(str), "to": Param((str, dict)), "where": "*"})
def replace_op(g, context, **params) -> int:
    """Replace every node of op `from` (within the paths matching `where`) by op `to`."""
    old, new, where = params["from"], params["to"], params["where"]
    ops.get_op(old)  # an unknown op name is a mistake, not "nothing to change"
    if isinstance(new, str):
        new = {"op": new}
    if "op" not in new:
        raise RecipeError(f"'to' must name an op, e.g. {{op: celu, alpha: 0.075}}, got {shown(new)}")
    new_params = {k: v for k, v in new.items() if k != "op"}
    ops.get_op(new["op"]).validate(new_params)
    matches = 0
    for node in selected(g, where):
        if g.nodes[node]["op"] == old:
            g.nodes[node]["op"] = new["op"]
            g.nodes[node]["params"] = dict(new_params)
            g.nodes[node].pop("tensors", None)
            matches += 1
    return matches

"""conv -> (norm, activation ...) -> max_pool becomes conv -> max_pool -> norm -> act.

Changes the function: batch norm then sees the pooled map. The bag of tricks' step 2b
(67 s -> 64 s; 94.0% at 24 epochs, so it trains one more epoch).
"""

from typing import List

from netgraph.graph.passes.base import register_pass
from netgraph.graph.passes.edit import kind_is, redirect_consumers, set_inputs, sole_consumer, sole_input


@register_pass("pool_before_bn", exact=False)
def pool_before_bn(g, context) -> int:
    """Move each max-pool up to right after its conv, before batch norm and activation."""
    matches = 0
    for pool in [n for n in g if g.nodes[n]["op"] == "max_pool"]:
        between: List[str] = []  # the norm/activation nodes from the conv down to the pool
        node = sole_input(g, pool)
        while (
            node is not None
            and kind_is("norm", "activation")(g, node)
            and sole_consumer(g, node) == (between[0] if between else pool)
        ):
            between.insert(0, node)
            node = sole_input(g, node)
        conv = node
        if (
            not between
            or conv is None
            or not kind_is("conv")(g, conv)
            or sole_consumer(g, conv) != between[0]
        ):
            continue
        set_inputs(g, pool, [conv])
        redirect_consumers(g, pool, between[-1])
        set_inputs(g, between[0], [pool])
        matches += 1
    return matches

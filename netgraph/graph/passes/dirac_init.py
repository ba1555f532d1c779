"""Dirac initialisation of conv filters (airbench's Conv.reset_parameters,
../shared/docs/anchors.md "The two airbench records").

Each trainable conv of the given kernel size (3) gets ``init: dirac``: PyTorch's
default init, then its first in_channels filters are the identity (filter i a 1
at the centre of input channel i), so at the start the conv passes its input
through on those channels, plus the random rest.
"""

from netgraph.core.schema import Param
from netgraph.graph.passes.base import register_pass


@register_pass("dirac_init", exact=False, params={"kernel": Param(int, 3, positive=True)})
def dirac_init(g, context, kernel) -> int:
    """Start the first in_channels filters of each kernel x kernel conv as the identity."""
    convs = [
        n
        for n in g
        if g.nodes[n]["op"] == "conv2d"
        and g.nodes[n]["params"]["trainable"]
        and g.nodes[n]["params"]["kernel"] == kernel
        and g.nodes[n]["params"]["groups"] == 1
        and g.nodes[n]["params"]["init"] != "dirac"
    ]
    for node in convs:
        g.nodes[node]["params"] = {**g.nodes[node]["params"], "init": "dirac"}
    return len(convs)

"""Drop identity nodes; their consumers read the identity's input (exact)."""

from netgraph.graph.passes.base import register_pass
from netgraph.graph.passes.edit import remove_node


@register_pass("remove_identity", exact=True)
def remove_identity(g, context) -> int:
    """Remove every identity node and rewire its consumers."""
    found = [n for n in g if g.nodes[n]["op"] == "identity"]
    for node in found:
        remove_node(g, node)
    return len(found)

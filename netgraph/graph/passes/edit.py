"""Small, safe graph edits and chain matching for passes.

Patterns match the graph's structure (ops and their kinds along edges), never
node names: a conv -> norm -> activation -> max_pool chain is found wherever
it sits in the recipe's dicts and blocks.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Dict, List, Optional, Sequence

import networkx as nx

from netgraph.graph import ops
from netgraph.graph.build import INPUT, add_input, inputs

Predicate = Callable[[nx.DiGraph, str], bool]


def op_is(*names: str) -> Predicate:
    return lambda g, n: g.nodes[n]["op"] in names


def kind_is(*kinds: str) -> Predicate:
    return lambda g, n: ops.get_op(g.nodes[n]["op"]).kind in kinds


def sole_consumer(g: nx.DiGraph, node: str) -> Optional[str]:
    """The one node fed by ``node`` if it feeds exactly one node, once, and is not the output."""
    consumers = list(g.successors(node))
    if len(consumers) != 1 or node == g.graph["output"]:
        return None
    if len(g.edges[node, consumers[0]]["slots"]) != 1:
        return None
    return consumers[0]


def sole_input(g: nx.DiGraph, node: str) -> Optional[str]:
    sources = inputs(g, node)
    return sources[0] if len(sources) == 1 else None


def chains(g: nx.DiGraph, pattern: Sequence[Predicate]) -> List[List[str]]:
    """Every run of nodes n0 -> n1 -> ... matching ``pattern`` where each node but the
    last feeds only the next and each node but the first takes only the previous."""
    found = []
    for start in list(g):
        if not pattern[0](g, start):
            continue
        chain = [start]
        for predicate in pattern[1:]:
            nxt = sole_consumer(g, chain[-1])
            if nxt is None or sole_input(g, nxt) != chain[-1] or not predicate(g, nxt):
                break
            chain.append(nxt)
        if len(chain) == len(pattern):
            found.append(chain)
    return found


def set_inputs(g: nx.DiGraph, node: str, sources: Sequence[str]) -> None:
    """Make ``sources`` the inputs of ``node``, in order."""
    for source in list(g.predecessors(node)):
        g.remove_edge(source, node)
    for slot, source in enumerate(sources):
        add_input(g, source, node, slot)


def redirect_consumers(g: nx.DiGraph, old: str, new: str, keep: Sequence[str] = ()) -> None:
    """Everything that read ``old`` (but the nodes in ``keep``) reads ``new`` instead;
    if ``old`` was the output, ``new`` becomes the output."""
    for consumer in list(g.successors(old)):
        if consumer in keep or consumer == new:
            continue
        set_inputs(g, consumer, [new if s == old else s for s in inputs(g, consumer)])
    if g.graph["output"] == old:
        g.graph["output"] = new


def insert_node(
    g: nx.DiGraph,
    node: str,
    op: str,
    params: Dict,
    sources: Sequence[str],
    before: Optional[str] = None,
    **attrs,
) -> None:
    """Add a node (placed before ``before`` in the node order, so drawings and the
    nested dict keep it next to its neighbours)."""
    if node in g:
        raise ValueError(f"node '{node}' already exists")
    items = list(g.nodes(data=True))
    edges = list(g.edges(data=True))
    g.clear_edges()
    g.remove_nodes_from([n for n, _ in items])
    for n, data in items:
        if n == before:
            g.add_node(node, op=op, params=params, **attrs)
        g.add_node(n, **data)
    if node not in g:
        g.add_node(node, op=op, params=params, **attrs)
    g.add_edges_from(edges)
    set_inputs(g, node, sources)


def remove_node(g: nx.DiGraph, node: str) -> None:
    """Remove a single-input node; its consumers read its input instead."""
    source = sole_input(g, node)
    if source is None:
        raise ValueError(f"node '{node}' does not have exactly one input")
    redirect_consumers(g, node, source)
    g.remove_node(node)


def unique_path(g: nx.DiGraph, wanted: str) -> str:
    if wanted not in g:
        return wanted
    i = 2
    while f"{wanted}{i}" in g:
        i += 1
    return f"{wanted}{i}"


def selected(g: nx.DiGraph, where: str) -> List[str]:
    """Node paths matching the glob ``where`` ('*' matches across '/'), input excluded."""
    return [n for n in g if n != INPUT and fnmatchcase(n, where)]

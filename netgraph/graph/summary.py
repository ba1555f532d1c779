"""Summary: a table of nodes with shapes, parameters and multiply-accumulates.

MACs are counted per image, forward: a conv costs out_channels x H_out x W_out x
(in_channels / groups) x k x k, a linear layer in x out; batch norm and ``mul``
count one multiply-add per output element; activations, pools and ``add``
count none. Totals cover the nodes that reach the output (the compiled ones).
"""

from __future__ import annotations

from typing import Any, Dict

import networkx as nx

from netgraph.graph import ops
from netgraph.graph.build import in_shapes, needed_nodes


def summarize(g: nx.DiGraph) -> Dict[str, Any]:
    """One dict: ``params`` (trainable), ``frozen_params``, ``macs`` and per-node ``nodes``."""
    needed = needed_nodes(g)
    nodes = []
    for node, data in g.nodes(data=True):
        spec = ops.get_op(data["op"])
        shapes = in_shapes(g, node)
        trainable, frozen = spec.count_params(shapes, data["params"])
        row = {
            "path": node,
            "op": data["op"],
            "shape": list(data["shape"]),
            "params": trainable,
            "frozen_params": frozen,
            "macs": spec.count_macs(shapes, data["shape"], data["params"]),
            "compiled": node in needed,
        }
        nodes.append(row)
    used = [n for n in nodes if n["compiled"]]
    return {
        "name": g.graph.get("name"),
        "file": g.graph.get("file"),
        "input": list(g.nodes["input"]["shape"]),
        "output": g.graph["output"],
        "params": sum(n["params"] for n in used),
        "frozen_params": sum(n["frozen_params"] for n in used),
        "macs": sum(n["macs"] for n in used),
        "nodes": nodes,
    }


def format_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def format_summary(s: Dict[str, Any]) -> str:
    """The summary as a fixed-width text table."""
    header = ("node", "op", "output", "params", "MACs")
    rows = [
        (
            n["path"] + ("" if n["compiled"] else "  (unused)"),
            n["op"],
            format_shape(n["shape"]),
            f"{n['params']:,}",
            f"{n['macs']:,}",
        )
        for n in s["nodes"]
    ]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    right = (False, False, False, True, True)

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    rule = "-" * len(line(header))
    total = f"total: {s['params']:,} trainable parameters"
    if s["frozen_params"]:
        total += f" (+{s['frozen_params']:,} frozen)"
    total += f", {s['macs']:,} MACs per image ({s['macs'] / 1e6:.1f} M)"
    return "\n".join(
        [
            f"{s['name']} ({s['file']})" if s.get("file") else str(s["name"]),
            line(header),
            rule,
            *map(line, rows),
            rule,
            total,
        ]
    )

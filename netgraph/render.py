"""Render a graph as a picture with Graphviz (through pydot).

Nested dicts become nested clusters; each op type has one colour in every
recipe (built-in ops a fixed palette, other ops a colour derived from their
name), shown in a legend; every node shows its name, key parameters and output
shape. Without Graphviz's ``dot`` program the ``.dot`` file is still written.
"""
from __future__ import annotations

import hashlib
import html
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import networkx as nx

from .graph import INPUT, inputs, needed_nodes
from .summary import format_shape

FORMATS = ("svg", "png", "pdf", "dot")

# One colour per op, the same in every recipe. Families share a hue: convolutions
# blue, normalisation yellow, activations green, pooling orange, joins purple.
OP_COLOURS = {
    "input": "#e0e0e0",
    "conv2d": "#9ecae1", "linear": "#6baed6",
    "batch_norm": "#fee08b", "ghost_batch_norm": "#d9c55f",
    "relu": "#a1d99b", "celu": "#74c476", "gelu": "#c7e9c0",
    "max_pool": "#fdae6b", "avg_pool": "#fdd0a2",
    "global_max_pool": "#f16913", "global_avg_pool": "#fd8d3c",
    "add": "#bcbddc", "concat": "#9e9ac8",
    "mul": "#fcbba1", "flatten": "#d9d9d9", "identity": "#f0f0f0",
}
# Colours for ops netgraph does not know in advance (yours), picked by a hash of the name.
EXTRA_COLOURS = ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#b3de69",
                 "#fccde5", "#bc80bd", "#ccebc5", "#ffed6f", "#e5c494", "#66c2a5"]
CLUSTER_FILLS = ["#f7f7f7", "#eeeeee", "#e4e4e4", "#dadada"]


def op_colour(op: str) -> str:
    if op in OP_COLOURS:
        return OP_COLOURS[op]
    digest = int(hashlib.sha1(op.encode()).hexdigest(), 16)
    return EXTRA_COLOURS[digest % len(EXTRA_COLOURS)]


def describe(op: str, p: Dict[str, Any]) -> str:
    """The key parameters of a node in a few words."""
    if op == "conv2d":
        text = f"conv {p['kernel']}x{p['kernel']}, {p['out']}"
        if p["stride"] != 1:
            text += f", stride {p['stride']}"
        if p["groups"] != 1:
            text += f", groups {p['groups']}"
        if not p["trainable"]:
            text += ", fixed"
        return text
    if op in ("batch_norm", "ghost_batch_norm"):
        text = "batch norm" if op == "batch_norm" else f"ghost BN /{p.get('splits')}"
        if not p.get("weight_trainable", True):
            text += f", scale fixed {p['weight_init']:g}"
        return text
    if op in ("max_pool", "avg_pool"):
        return f"{op.split('_')[0]} pool {p['size']}" + \
            (f", stride {p['stride']}" if p.get("stride") not in (None, p["size"]) else "")
    if op == "celu":
        return f"CELU \u03b1={p['alpha']:g}"
    if op == "linear":
        return f"linear {p['out']}" + ("" if p["bias"] else ", no bias")
    if op == "mul":
        return f"\u00d7 {p['by']:g}"
    if op == "concat":
        return "concat" + (f" dim {p['dim']}" if p["dim"] else "")
    words = {"relu": "ReLU", "gelu": "GELU", "add": "add", "flatten": "flatten",
             "identity": "identity", "global_max_pool": "global max pool",
             "global_avg_pool": "global avg pool"}
    if op in words:
        return words[op]
    extra = ", ".join(f"{k}={v}" for k, v in p.items())
    return op + (f" ({extra})" if extra else "")


def _node_id(node: str) -> str:
    return "n_" + node.replace("/", "__")


def _label(name: str, description: str, shape) -> str:
    return (f'<<b>{html.escape(name)}</b><br/><font point-size="10">{html.escape(description)}'
            f'</font><br/><font point-size="9" color="#555555">{format_shape(shape)}</font>>')


def collapse(g: nx.DiGraph, depth: int) -> nx.DiGraph:
    """A drawing graph in which every dict deeper than ``depth`` levels is one node.

    A collapsed node keeps the ops inside it (``ops``, for a striped colour), a
    description of its contents, and the shape of its last node that feeds the rest.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    owner = {n: "/".join(n.split("/")[:depth]) for n in g}
    out = nx.DiGraph(**g.graph)
    for node, data in g.nodes(data=True):
        key = owner[node]
        if key == node:
            out.add_node(node, **data, ops=[data["op"]])
            continue
        if key not in out:
            out.add_node(key, op="group", params={}, ops=[], parts=[], shape=data["shape"])
        group = out.nodes[key]
        group["ops"].append(data["op"])
        group["parts"].append(describe(data["op"], data["params"]))
        leaves = [s for s in g.successors(node) if owner[s] != key] or \
            ([node] if node == g.graph["output"] else [])
        if leaves:
            group["shape"] = data["shape"]
    for u, v in g.edges:
        if owner[u] != owner[v] and not out.has_edge(owner[u], owner[v]):
            out.add_edge(owner[u], owner[v], slots=g.edges[u, v]["slots"])
    out.graph["output"] = owner[g.graph["output"]]
    return out


ARROW = "\u2192"


def _group_description(parts: List[str]) -> str:
    if len(parts) > 4:
        return f"{parts[0]} {ARROW} \u2026 {ARROW} {parts[-1]} ({len(parts)} layers)"
    return f" {ARROW} ".join(parts)


def _group_label(name: str, parts: List[str], ops: List[str], shape) -> str:
    """A collapsed dict: its name, contents and shape over a bar with one cell per op inside."""
    n = len(ops)
    bar = "".join(f'<td bgcolor="{op_colour(o)}" height="7" width="{max(4, 120 // n)}"></td>'
                  for o in ops)
    text = (f'<b>{html.escape(name)}</b><br/><font point-size="10">'
            f'{html.escape(_group_description(parts))}</font><br/>'
            f'<font point-size="9" color="#555555">{format_shape(shape)}</font>')
    return (f'<<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
            f'<tr><td colspan="{n}">{text}</td></tr><tr>{bar}</tr></table>>')


# How --diff marks what the transforms did, strongest first.
CHANGE_COLOURS = {"added": "#1a9850", "changed": "#2166ac", "rewired": "#c51b7d", "removed": "#d73027"}


def change_marks(reports) -> Tuple[Dict[str, List[Tuple[str, int]]], Dict[str, Dict[str, Any]]]:
    """From pass reports: node -> [(kind, pass index)], and the data of removed nodes."""
    marks: Dict[str, List[Tuple[str, int]]] = {}
    removed: Dict[str, Dict[str, Any]] = {}
    for r in reports:
        for kind in ("added", "changed", "rewired", "removed"):
            for node in getattr(r, kind):
                marks.setdefault(node, []).append((kind, r.index))
        removed.update(r.removed_nodes)
    return marks, removed


def to_dot(g: nx.DiGraph, direction: str = "TB", title: Optional[str] = None,
           depth: Optional[int] = None, reports=None):
    """The graph as a ``pydot.Dot``: clusters for dicts, coloured nodes, a legend.

    With ``depth``, dicts nested deeper than that are drawn as one node. With
    ``reports`` (from ``passes.apply_transforms``), nodes the passes added,
    changed or rewired get a coloured outline and a note, and removed nodes are
    drawn dashed where they were.
    """
    if depth is not None:
        if reports:
            raise ValueError("depth and reports cannot be combined")
        return _to_dot(collapse(g, depth), direction, title)
    return _to_dot(g, direction, title, reports)


def _mark_note(marks: List[Tuple[str, int]]) -> str:
    by_kind: Dict[str, List[str]] = {}
    for kind, index in marks:
        by_kind.setdefault(kind, []).append(str(index))
    return "<br/>".join(f'<font point-size="9" color="{CHANGE_COLOURS[k]}">{k} by {", ".join(v)}</font>'
                        for k, v in by_kind.items())


def _to_dot(g: nx.DiGraph, direction: str, title: Optional[str], reports=None):
    import pydot

    marks, removed = change_marks(reports or [])

    dot = pydot.Dot(graph_type="digraph", rankdir=direction, compound="true", newrank="true",
                    fontname="Helvetica", nodesep="0.25", ranksep="0.3",
                    label=title if title is not None else g.graph.get("name") or "",
                    labelloc="t", fontsize="16")
    dot.set_node_defaults(shape="box", style="rounded,filled", fontname="Helvetica",
                          fontsize="11", penwidth="0.8", margin="0.12,0.04")
    dot.set_edge_defaults(arrowsize="0.6", penwidth="0.9", color="#444444")
    clusters: Dict[Tuple[str, ...], Any] = {(): dot}

    def holder(parts: Tuple[str, ...]):
        if parts not in clusters:
            parent = holder(parts[:-1])
            cluster = pydot.Cluster("c_" + "__".join(parts), label=parts[-1], style="rounded,filled",
                                    fillcolor=CLUSTER_FILLS[(len(parts) - 1) % len(CLUSTER_FILLS)],
                                    color="#999999", fontname="Helvetica", fontsize="12",
                                    labeljust="l")
            parent.add_subgraph(cluster)
            clusters[parts] = cluster
        return clusters[parts]

    needed = needed_nodes(g)
    used_ops: List[str] = []
    for node, data in g.nodes(data=True):
        op = data["op"]
        for o in data.get("ops", [op]):
            if o not in used_ops:
                used_ops.append(o)
        parts = tuple(node.split("/"))
        attrs = {"fillcolor": op_colour(op)}
        if op == INPUT:
            label = _label("input", "image", data["shape"])
            attrs.update(shape="ellipse", style="filled")
        elif op == "group":
            # A light box with a bar of op colours, so a collapsed block still shows its make-up.
            label = _group_label(parts[-1], data["parts"], data["ops"], data["shape"])
            attrs.update(fillcolor="#ffffff", margin="0.05,0.02")
        else:
            label = _label(parts[-1], describe(op, data["params"]), data["shape"])
        if node not in needed:
            attrs["style"] = attrs.get("style", "rounded,filled") + ",dashed"
        if node in marks:
            label = label[:-1] + "<br/>" + _mark_note(marks[node]) + ">"
            attrs.update(color=CHANGE_COLOURS[marks[node][0][0]], penwidth="2.5")
        holder(parts[:-1]).add_node(pydot.Node(_node_id(node), label=label, **attrs))
    for node, data in removed.items():
        if node in g:
            continue
        parts = tuple(node.split("/"))
        label = _label(parts[-1], describe(data["op"], data["params"]), data["shape"])
        label = label[:-1] + "<br/>" + _mark_note(marks[node]) + ">"
        holder(parts[:-1]).add_node(pydot.Node(
            _node_id(node), label=label, style="rounded,dashed", color=CHANGE_COLOURS["removed"],
            fontcolor="#777777", penwidth="1.5"))
        for source in data["inputs"]:
            if source in g or source in removed:
                dot.add_edge(pydot.Edge(_node_id(source), _node_id(node), style="dashed",
                                        color=CHANGE_COLOURS["removed"]))
    for node in g:
        sources = inputs(g, node)
        for slot, source in enumerate(sources):
            attrs = {"headlabel": str(slot)} if g.nodes[node]["op"] == "concat" else {}
            dot.add_edge(pydot.Edge(_node_id(source), _node_id(node), **attrs))
    output = g.graph["output"]
    dot.add_node(pydot.Node("output", label="output", shape="ellipse", style="filled",
                            fillcolor=OP_COLOURS["input"]))
    dot.add_edge(pydot.Edge(_node_id(output), "output"))
    _legend(dot, used_ops, reports)
    return dot


def _legend(dot, used_ops: List[str], reports=None) -> None:
    import pydot

    rows = "".join(f'<tr><td bgcolor="{op_colour(op)}" width="14" height="10"></td>'
                   f'<td align="left">{html.escape(op)}</td></tr>' for op in used_ops)
    if reports:
        rows += '<tr><td colspan="2" align="left"><b>transforms</b></td></tr>'
        rows += "".join(f'<tr><td align="right">{r.index}</td><td align="left">'
                        f'{html.escape(r.name)}: {r.matches} match{"es" if r.matches != 1 else ""}'
                        f'{" (exact)" if r.exact else ""}</td></tr>' for r in reports)
        rows += "".join(f'<tr><td bgcolor="{c}" width="14" height="4"></td>'
                        f'<td align="left"><font color="{c}">{k}</font></td></tr>'
                        for k, c in CHANGE_COLOURS.items())
    table = (f'<<table border="0" cellborder="0" cellspacing="2" cellpadding="2">'
             f'<tr><td colspan="2" align="left"><b>ops</b></td></tr>{rows}</table>>')
    legend = pydot.Cluster("legend", label="", style="rounded", color="#bbbbbb")
    legend.add_node(pydot.Node("legend", label=table, shape="plaintext", style=""))
    dot.add_subgraph(legend)


def render(g: nx.DiGraph, out: str, direction: str = "TB", title: Optional[str] = None,
           depth: Optional[int] = None, reports=None) -> Tuple[str, Optional[str]]:
    """Write the picture to ``out`` (svg, png, pdf or dot, by extension).

    Returns (path written, note). Without Graphviz's ``dot`` program the ``.dot``
    file is written instead and the note says how to turn it into a picture.
    """
    from .errors import RecipeError

    path = Path(out)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise RecipeError(f"cannot render to '{out}': unknown extension",
                          hint="use one of " + ", ".join("." + f for f in FORMATS))
    dot = to_dot(g, direction=direction, title=title, depth=depth, reports=reports)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(dot.to_string())
        return str(path), None
    if shutil.which("dot") is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(dot.to_string())
        return str(dot_path), (f"Graphviz's 'dot' program was not found, so {dot_path} was written "
                               f"instead of {path}. Install Graphviz (apt-get install graphviz, "
                               f"brew install graphviz or conda install graphviz), then run: "
                               f"dot -T{fmt} {dot_path} -o {path}")
    path.write_bytes(dot.create(format=fmt))
    return str(path), None

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
from typing import Any, Callable, Dict, List, Optional, Tuple

import networkx as nx

from netgraph.graph.build import INPUT, inputs, needed_nodes
from netgraph.graph.summary import format_shape

FORMATS = ("svg", "png", "pdf", "dot")

# One colour per op, the same in every recipe. Families share a hue (convolutions blue,
# normalisation yellow, activations green, pooling orange, joins purple), told apart by
# lightness: every two built-in ops are at least 18 apart in CIE76 colour distance (Euclidean
# in CIELAB, D65; 2.3 is a just-noticeable difference), tests/test_render.py checks it.
OP_COLOURS = {
    "input": "#d9d9d9",
    "flatten": "#969696",
    "identity": "#b5ece6",
    "conv2d": "#8ecae6",
    "linear": "#3f7fbf",
    "batch_norm": "#ffe066",
    "ghost_batch_norm": "#b8962e",
    "relu": "#a1d99b",
    "celu": "#2f9e4f",
    "gelu": "#d4f07a",
    "max_pool": "#fd9e4f",
    "avg_pool": "#ffd1a6",
    "global_max_pool": "#e6550d",
    "global_avg_pool": "#a0643a",
    "add": "#c7b3f0",
    "concat": "#8c6bb1",
    "mul": "#f78fb3",
}
MIN_COLOUR_DISTANCE = 18.0


def lab(colour: str) -> Tuple[float, float, float]:
    """CIELAB (D65) of a '#rrggbb' sRGB colour."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    xyz = (
        (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
    )
    fx, fy, fz = (v ** (1 / 3) if v > 0.008856 else 7.787 * v + 16 / 116 for v in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def colour_distance(a: str, b: str) -> float:
    """CIE76 colour difference: Euclidean distance in CIELAB."""
    return sum((x - y) ** 2 for x, y in zip(lab(a), lab(b))) ** 0.5


# Colours for ops netgraph does not know in advance (yours), picked by a hash of the name.
EXTRA_COLOURS = [
    "#8dd3c7",
    "#ffffb3",
    "#bebada",
    "#fb8072",
    "#80b1d3",
    "#b3de69",
    "#fccde5",
    "#bc80bd",
    "#ccebc5",
    "#ffed6f",
    "#e5c494",
    "#66c2a5",
]
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
        return f"{op.split('_')[0]} pool {p['size']}" + (
            f", stride {p['stride']}" if p.get("stride") not in (None, p["size"]) else ""
        )
    if op == "celu":
        return f"CELU \u03b1={p['alpha']:g}"
    if op == "linear":
        return f"linear {p['out']}" + ("" if p["bias"] else ", no bias")
    if op == "mul":
        return f"\u00d7 {p['by']:g}"
    if op == "concat":
        return "concat" + (f" dim {p['dim']}" if p["dim"] else "")
    words = {
        "relu": "ReLU",
        "gelu": "GELU",
        "add": "add",
        "flatten": "flatten",
        "identity": "identity",
        "global_max_pool": "global max pool",
        "global_avg_pool": "global avg pool",
    }
    if op in words:
        return words[op]
    extra = ", ".join(f"{k}={v}" for k, v in p.items())
    return op + (f" ({extra})" if extra else "")


def _node_id(node: str) -> str:
    return "n_" + node.replace("/", "__")


def _label(name: str, description: str, shape) -> str:
    return (
        f'<<b>{html.escape(name)}</b><br/><font point-size="10">{html.escape(description)}'
        f'</font><br/><font point-size="9" color="#555555">{format_shape(shape)}</font>>'
    )


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
        leaves = [s for s in g.successors(node) if owner[s] != key] or (
            [node] if node == g.graph["output"] else []
        )
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
    bar = "".join(f'<td bgcolor="{op_colour(o)}" height="7" width="{max(4, 120 // n)}"></td>' for o in ops)
    text = (
        f'<b>{html.escape(name)}</b><br/><font point-size="10">'
        f"{html.escape(_group_description(parts))}</font><br/>"
        f'<font point-size="9" color="#555555">{format_shape(shape)}</font>'
    )
    return (
        f'<<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
        f'<tr><td colspan="{n}">{text}</td></tr><tr>{bar}</tr></table>>'
    )


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


def to_dot(
    g: nx.DiGraph,
    direction: str = "TB",
    title: Optional[str] = None,
    depth: Optional[int] = None,
    reports=None,
):
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
    return "<br/>".join(
        f'<font point-size="9" color="{CHANGE_COLOURS[k]}">{k} by {", ".join(v)}</font>'
        for k, v in by_kind.items()
    )


def _to_dot(g: nx.DiGraph, direction: str, title: Optional[str], reports=None):
    marks, removed = change_marks(reports or [])
    dot = _new_dot(direction)
    holder = _cluster_holder(dot)
    used_ops = _add_nodes(g, holder, marks)
    _add_removed(dot, holder, g, removed, marks)
    _add_edges(dot, g)
    title = title if title is not None else g.graph.get("name") or ""
    # LR: the title and every op on one line, no taller than a line; TB: 4 ops a row under it
    dot.set("label", _legend(title, used_ops, reports, columns=0 if direction == "LR" else 4))
    return dot


def _new_dot(direction: str):
    """An empty drawing with the house style for nodes and edges."""
    import pydot

    # The title and the legend are the graph's label, above the drawing: a legend node beside
    # the first rank made that rank as tall (or, in LR, as wide) as itself, a blank band.
    dot = pydot.Dot(
        graph_type="digraph",
        rankdir=direction,
        compound="true",
        newrank="true",
        fontname="Helvetica",
        nodesep="0.25",
        ranksep="0.3",
        labelloc="t",
        labeljust="l",
        fontsize="11",
    )
    dot.set_node_defaults(
        shape="box",
        style="rounded,filled",
        fontname="Helvetica",
        fontsize="11",
        penwidth="0.8",
        margin="0.12,0.04",
    )
    dot.set_edge_defaults(arrowsize="0.6", penwidth="0.9", color="#444444")
    return dot


def _cluster_holder(dot) -> Callable[[Tuple[str, ...]], Any]:
    """A function from a dict's path to the cluster drawing it, made (with its parents) on
    first use; the root path () is the drawing itself."""
    import pydot

    clusters: Dict[Tuple[str, ...], Any] = {(): dot}

    def holder(parts: Tuple[str, ...]):
        if parts not in clusters:
            parent = holder(parts[:-1])
            cluster = pydot.Cluster(
                "c_" + "__".join(parts),
                label=parts[-1],
                style="rounded,filled",
                fillcolor=CLUSTER_FILLS[(len(parts) - 1) % len(CLUSTER_FILLS)],
                color="#999999",
                fontname="Helvetica",
                fontsize="12",
                labeljust="l",
            )
            parent.add_subgraph(cluster)
            clusters[parts] = cluster
        return clusters[parts]

    return holder


def _add_nodes(g: nx.DiGraph, holder, marks: Dict[str, List[Tuple[str, int]]]) -> List[str]:
    """Draws every node in its cluster; returns the ops used, in order of first use."""
    import pydot

    needed = needed_nodes(g)
    used_ops: List[str] = []
    for node, data in g.nodes(data=True):
        op = data["op"]
        for o in data.get("ops", [op]):
            if o not in used_ops:
                used_ops.append(o)
        parts = tuple(node.split("/"))
        attrs: Dict[str, Any] = {"fillcolor": op_colour(op)}
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
    return used_ops


def _add_removed(dot, holder, g: nx.DiGraph, removed, marks) -> None:
    """Draws the nodes the passes removed, dashed where they were, with dashed edges in."""
    import pydot

    for node, data in removed.items():
        if node in g:
            continue
        parts = tuple(node.split("/"))
        label = _label(parts[-1], describe(data["op"], data["params"]), data["shape"])
        label = label[:-1] + "<br/>" + _mark_note(marks[node]) + ">"
        holder(parts[:-1]).add_node(
            pydot.Node(
                _node_id(node),
                label=label,
                style="rounded,dashed",
                color=CHANGE_COLOURS["removed"],
                fontcolor="#777777",
                penwidth="1.5",
            )
        )
        for source in data["inputs"]:
            if source in g or source in removed:
                dot.add_edge(
                    pydot.Edge(
                        _node_id(source), _node_id(node), style="dashed", color=CHANGE_COLOURS["removed"]
                    )
                )


def _add_edges(dot, g: nx.DiGraph) -> None:
    """The graph's edges (concat's numbered by slot) and the output node."""
    import pydot

    for node in g:
        sources = inputs(g, node)
        for slot, source in enumerate(sources):
            attrs: Dict[str, Any] = {"headlabel": str(slot)} if g.nodes[node]["op"] == "concat" else {}
            dot.add_edge(pydot.Edge(_node_id(source), _node_id(node), **attrs))
    output = g.graph["output"]
    dot.add_node(
        pydot.Node("output", label="output", shape="ellipse", style="filled", fillcolor=OP_COLOURS["input"])
    )
    dot.add_edge(pydot.Edge(_node_id(output), "output"))


def _legend(title: str, used_ops: List[str], reports=None, columns: int = 4) -> str:
    """The title over a legend of ops in rows of ``columns`` (and, with reports, the transforms),
    as one HTML-like label; ``columns`` 0: the title, then every op, on one line."""
    cells = [
        f'<td bgcolor="{op_colour(op)}" width="14" height="10"></td><td align="left">{html.escape(op)}</td>'
        for op in used_ops
    ]
    if columns == 0 and not reports:
        heading = f'<td><font point-size="16">{html.escape(title)}</font></td><td> </td>' if title else ""
        return (
            f'<<table border="0" cellborder="0" cellspacing="2" cellpadding="2"><tr>{heading}'
            f"<td><b>ops</b></td>{''.join(cells)}</tr></table>>"
        )
    columns = columns or 9
    width = 2 * min(columns, len(cells) or 1)
    rows = "".join("<tr>" + "".join(cells[i : i + columns]) + "</tr>" for i in range(0, len(cells), columns))
    if reports:
        rows += f'<tr><td colspan="{width}" align="left"><b>transforms</b></td></tr>'
        rows += "".join(
            f'<tr><td align="right">{r.index}</td><td align="left">'
            f"{html.escape(r.name)}: {r.matches} match{'es' if r.matches != 1 else ''}"
            f"{' (exact)' if r.exact else ''}</td></tr>"
            for r in reports
        )
        rows += (
            "<tr>"
            + "".join(
                f'<td bgcolor="{c}" width="14" height="4"></td>'
                f'<td align="left"><font color="{c}">{k}</font></td>'
                for k, c in CHANGE_COLOURS.items()
            )
            + "</tr>"
        )
    heading = (
        (
            f'<tr><td colspan="{width}" align="center"><font point-size="16">'
            f"{html.escape(title)}</font></td></tr>"
        )
        if title
        else ""
    )
    return (
        f'<<table border="0" cellborder="0" cellspacing="2" cellpadding="2">{heading}'
        f'<tr><td colspan="{width}" align="left"><b>ops</b></td></tr>{rows}</table>>'
    )


def render(
    g: nx.DiGraph,
    out: str,
    direction: str = "TB",
    title: Optional[str] = None,
    depth: Optional[int] = None,
    reports=None,
    dpi: Optional[int] = None,
) -> Tuple[str, Optional[str]]:
    """Write the picture to ``out`` (svg, png, pdf or dot, by extension). ``title`` None is the
    network's name, "" none; ``dpi`` sets a PNG's resolution (Graphviz's default is 96).

    Returns (path written, note). Without Graphviz's ``dot`` program the ``.dot``
    file is written instead and the note says how to turn it into a picture.
    """
    from netgraph.core.errors import RecipeError

    path = Path(out)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise RecipeError(
            f"cannot render to '{out}': unknown extension",
            hint="use one of " + ", ".join("." + f for f in FORMATS),
        )
    if dpi is not None and (fmt != "png" or dpi <= 0):
        raise RecipeError(
            f"--dpi {dpi}: "
            + (
                "a resolution is a positive number"
                if dpi <= 0
                else f"only a .png has a resolution; .{fmt} is drawn in vectors"
            ),
            hint="e.g. -o graph.png --dpi 300",
        )
    dot = to_dot(g, direction=direction, title=title, depth=depth, reports=reports)
    if dpi is not None:
        dot.set("dpi", str(dpi))
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(dot.to_string())
        return str(path), None
    if shutil.which("dot") is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(dot.to_string())
        return str(dot_path), (
            f"Graphviz's 'dot' program was not found, so {dot_path} was written "
            f"instead of {path}. Install Graphviz (apt-get install graphviz, "
            f"brew install graphviz or conda install graphviz), then run: "
            f"dot -T{fmt} {dot_path} -o {path}"
        )
    path.write_bytes(dot.create(format=fmt))
    return str(path), None

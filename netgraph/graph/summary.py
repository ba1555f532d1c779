"""Summary: a table of nodes with shapes, parameters and multiply-accumulates.

MACs are counted per image, forward: a conv costs out_channels x H_out x W_out x
(in_channels / groups) x k x k, a linear layer in x out; batch norm and ``mul``
count one multiply-add per output element; activations, pools and ``add``
count none. Totals cover the nodes that reach the output (the compiled ones).

Memory is estimated from the same counts, before anything is allocated: the bytes of the
parameters and buffers (as compile_graph builds them), and the largest output of one batch
in float32. ``compile_graph``, ``summary`` and the train command's preflight all check it here.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional

import networkx as nx

from netgraph.core.errors import RecipeError
from netgraph.graph import ops
from netgraph.graph.build import in_shapes, needed_nodes, node_error

FLOAT32 = 4  # bytes a value: activations are estimated in float32, as the CPU trains


def summarize(g: nx.DiGraph, batch: Optional[int] = None, macs: bool = True) -> Dict[str, Any]:
    """One dict: ``params`` (trainable), ``frozen_params``, ``macs``, ``parameter_bytes``
    (parameters and buffers), ``largest_output`` (its node, shape, and bytes for ``batch``
    images, or one) and per-node ``nodes``. Without ``macs`` they are None: an op without a
    formula is counted by torch's FLOP counter (1.5 s of a CPU run's start-up), which training's
    checks do not need."""
    needed = needed_nodes(g)
    nodes = [_row(g, node, data, node in needed, macs) for node, data in g.nodes(data=True)]
    used = [n for n in nodes if n["compiled"]]
    widest = max(used, key=lambda n: math.prod(n["shape"]))
    return {
        "name": g.graph.get("name"),
        "file": g.graph.get("file"),
        "input": list(g.nodes["input"]["shape"]),
        "output": g.graph["output"],
        "params": sum(n["params"] for n in used),
        "frozen_params": sum(n["frozen_params"] for n in used),
        "macs": sum(n["macs"] for n in used) if macs else None,
        "parameter_bytes": sum(n["bytes"] for n in used),
        "largest_output": {
            "path": widest["path"],
            "shape": widest["shape"],
            "batch": batch or 1,
            "bytes": FLOAT32 * (batch or 1) * math.prod(widest["shape"]),
        },
        "nodes": nodes,
    }


def _row(g: nx.DiGraph, node: str, data: Dict[str, Any], compiled: bool, macs: bool = True) -> Dict[str, Any]:
    spec = ops.get_op(data["op"])
    shapes = in_shapes(g, node)
    trainable, frozen = spec.count_params(shapes, data["params"])
    return {
        "path": node,
        "op": data["op"],
        "shape": list(data["shape"]),
        "params": trainable,
        "frozen_params": frozen,
        "bytes": spec.count_bytes(shapes, data["params"]),
        "macs": spec.count_macs(shapes, data["shape"], data["params"]) if macs else None,
        "compiled": compiled,
    }


def parameter_bytes(g: nx.DiGraph) -> Dict[str, Any]:
    """What summarize counts of the compiled nodes' tensors, without the MACs: ``bytes`` of
    their parameters and buffers, ``params`` (trainable and frozen), and the node that holds
    the most bytes (``heaviest``, ``heaviest_bytes``)."""
    total = params = 0
    heaviest, heaviest_bytes = None, -1
    for node in needed_nodes(g):
        data = g.nodes[node]
        spec, shapes = ops.get_op(data["op"]), in_shapes(g, node)
        size = spec.count_bytes(shapes, data["params"])
        total += size
        params += sum(spec.count_params(shapes, data["params"]))
        if size > heaviest_bytes:
            heaviest, heaviest_bytes = node, size
    return {"bytes": total, "params": params, "heaviest": heaviest, "heaviest_bytes": heaviest_bytes}


def device_memory(device=None) -> Optional[int]:
    """The memory in bytes of ``device`` (a torch.device): a GPU's, or for the CPU (or None)
    the machine's physical memory; None where the system does not say."""
    if device is not None and device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# the hint of every memory refusal: the usual cause of an impossible width is a typo
WIDTH_HINT = (
    "check the widths (out:, c:): a YAML 1.1 value such as 190:20:30 is read as the base-60 number 685,230"
)


def parameter_memory_error(
    g: nx.DiGraph, have: Optional[int], where: str, copies: int = 1
) -> Optional[RecipeError]:
    """The refusal of a network whose parameters and buffers, ``copies`` times over (training
    keeps four: weights, gradients, optimizer state, average), need more than ``have`` bytes
    (the memory of ``where``), located at the node holding the most; None when they fit or
    the memory is not known."""
    weights = parameter_bytes(g)
    need = copies * weights["bytes"]
    if not have or need <= have:
        return None
    why = "to train (weights, gradients, optimizer state, average)" if copies > 1 else "to build"
    return node_error(
        g,
        weights["heaviest"],
        RecipeError(
            f"the network's {weights['params']:,} parameters need at least {need / 2**30:.1f} GiB "
            f"{why}, more than the {have / 2**30:.1f} GiB of {where} "
            f"({copies * weights['heaviest_bytes'] / 2**30:.1f} GiB for this node)",
            hint=WIDTH_HINT,
        ),
    )


def activation_memory_error(
    g: nx.DiGraph, s: Dict[str, Any], have: Optional[int], where: str
) -> Optional[RecipeError]:
    """The refusal of a network whose largest output, for the batch ``s`` (summarize's) was
    counted at, alone needs more than ``have`` bytes; None when it fits or is not known."""
    widest = s["largest_output"]
    if not have or widest["bytes"] <= have:
        return None
    return node_error(
        g,
        widest["path"],
        RecipeError(
            f"it outputs {' x '.join(map(str, widest['shape']))} values an image: a batch of "
            f"{widest['batch']} needs {widest['bytes'] / 2**30:.1f} GiB for that output alone, "
            f"more than the {have / 2**30:.1f} GiB of {where}",
            hint=WIDTH_HINT + "; or use a smaller train.batch_size",
        ),
    )


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
            memory_line(s),
        ]
    )


def memory_warnings(g: nx.DiGraph, s: Dict[str, Any]) -> List[str]:
    """What compile_graph (parameters) and training on this machine (the largest output)
    would refuse, for a summary to say beside its numbers."""
    have = device_memory()
    found = [
        (parameter_memory_error(g, have, "this machine's memory"), "compile_graph"),
        (activation_memory_error(g, s, have, "this machine's memory"), "train on this machine"),
    ]
    return [f"{err}: {who} refuses it" for err, who in found if err]


def memory_line(s: Dict[str, Any]) -> str:
    """The summary's memory: parameters and buffers, and the largest output of a batch."""
    widest = s["largest_output"]
    batch = widest["batch"]
    return (
        f"memory: {_gib(s['parameter_bytes'])} of parameters and buffers; the largest output, "
        f"'{widest['path']}' ({format_shape(widest['shape'])}), {_gib(widest['bytes'])} "
        f"for {'a batch of ' + format(batch, ',') if batch > 1 else 'one image'} in float32"
    )


def _gib(size: int) -> str:
    """Bytes in the unit that shows them with a figure before the point: 0.2 GiB, 25.1 MiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale / 10:
            return f"{size / scale:,.1f} {unit}"
    return f"{size / 2**10:,.1f} KiB"

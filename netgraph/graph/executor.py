"""The executor: a graph becomes a torch module with a generated ``forward``.

``compile_graph(g)`` writes a torch.fx graph with one call per node in
topological order and wraps it in an ``fx.GraphModule``: the ``forward`` is
plain Python (``print(module.code)`` shows it), each activation is released
right after its last use, and parameters are named after node paths
(``layer1.residual.res1.conv.weight``). The module is ordinary PyTorch, so
``torch.compile``, ``channels_last`` and ``.half()`` work on it.
"""

from __future__ import annotations

import re
from typing import Dict

import networkx as nx
import torch
from torch import fx, nn

from netgraph.core.errors import RecipeError
from netgraph.graph import ops
from netgraph.graph.build import INPUT, in_shapes, inputs, needed_nodes, node_error, topological_order
from netgraph.graph.summary import device_memory, parameter_memory_error


def compile_graph(
    g: nx.DiGraph, class_name: str | None = None, allow_pending: bool = False
) -> fx.GraphModule:
    """Compile a shape-checked graph (``build_graph`` or a pass's output) into a module.

    Only the nodes the output depends on are compiled. A node a pass left pending
    (whitening filters without training images) is an error unless
    ``allow_pending``, for when saved weights are about to be loaded into it. A network whose
    parameters and buffers do not fit in this machine's memory is refused before any is made.
    """
    # counted on the meta device first: a conv of 2**31 - 1 channels asked the allocator for
    # 2.4 TB (a size that only fits in swap takes the machine down instead)
    refusal = parameter_memory_error(g, device_memory(), "this machine's memory")
    if refusal:
        raise refusal
    output = g.graph["output"]
    needed = needed_nodes(g)
    root = nn.Module()
    graph = fx.Graph()
    values = {}
    for node in topological_order(g):
        if node not in needed:
            continue
        data = g.nodes[node]
        if data["op"] == INPUT:
            values[node] = graph.placeholder("x")
            continue
        if data.get("pending") and not allow_pending:
            raise node_error(g, node, RecipeError(f"cannot compile: {data['pending']}"))
        spec = ops.get_op(data["op"])
        args = [values[i] for i in inputs(g, node)]
        if spec.function is not None:  # a module; else a plain call
            target = node.replace("/", ".")
            module = spec.build(in_shapes(g, node), data["params"])
            assert module is not None  # spec.module is not None
            _load_tensors(module, data.get("tensors") or {})
            _set_submodule(root, target, module)
            values[node] = graph.call_module(target, tuple(args))
        else:
            assert spec.emit is not None  # an op has a module or an emit (ops._builtin, register_op)
            values[node] = spec.emit(graph, args, node.replace("/", "_"), **data["params"])
    graph.output(values[output])
    graph.lint()
    return fx.GraphModule(root, graph, class_name=_class_name(class_name or g.graph.get("name")))


def parameter_options(g: nx.DiGraph) -> dict:
    """Learning-rate and weight-decay multipliers passes recorded on nodes (``optim``),
    keyed by the compiled module's parameter names: {"layer1.bn.bias": {"lr_scale": 64, ...}}."""
    return {
        f"{node.replace('/', '.')}.{name}": options
        for node, data in g.nodes(data=True)
        for name, options in (data.get("optim") or {}).items()
    }


def _load_tensors(module: nn.Module, tensors) -> None:
    """Copy values a pass computed (whitening filters, say) into the new module."""
    own: Dict[str, torch.Tensor] = dict(module.named_parameters())
    own.update(module.named_buffers())
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value)


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    *parents, name = target.split(".")
    holder = root
    for part in parents:
        if not hasattr(holder, part):
            holder.add_module(part, nn.Module())
        holder = getattr(holder, part)
    holder.add_module(name, module)


def _class_name(name) -> str:
    words = re.split(r"[^0-9A-Za-z]+", str(name or "network"))
    text = "".join(w[:1].upper() + w[1:] for w in words if w)
    return text if text.isidentifier() else "Net" + text


def half_precision(module: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """Cast the module to ``dtype`` but keep batch norm's parameters and statistics in
    float32, as the original code does: small running variances underflow in float16."""
    module.to(dtype)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.float()
    return module

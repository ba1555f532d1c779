"""The graph: the one representation every stage shares.

``build_graph(recipe)`` expands blocks, resolves every input path and returns a
``networkx.DiGraph`` whose nodes are full paths (``layer1/residual/res1/conv``)
carrying ``op``, ``params`` (all parameters, defaults filled in) and ``shape``
(the output shape of one image). The graph input is the node ``input``. Each
edge carries ``slots``: the positions it fills in its target's input list, so
``add(a, b)`` keeps its order. Graph attributes: ``name``, ``file``, ``output``.

Passes may add three more node attributes: ``tensors`` (values for the
module's parameters or buffers, e.g. whitening filters, loaded at compile
time), ``pending`` (why the node cannot be compiled yet, e.g. the whitening
filters need training images) and ``optim`` (learning-rate and weight-decay
multipliers per parameter, ``{"bias": {"lr_scale": 64, "wd_scale": 1/64}}``,
read by the training engine).

Wiring rules (the recipe's, kept here):
- a node without ``in:`` takes the previous item of its dict (a group's output
  is its last node), or, if it comes first, its dict's input;
- ``in:`` paths are relative to the node's own dict (``res1/act``), go up with
  ``..`` (``../pool``) or start at the root (``/prep/act``); a path naming a
  dict means that dict's output; ``input`` means the input of the dict it is
  in, so ``/input`` is the graph input.
"""

from __future__ import annotations

import keyword
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import networkx as nx
from torch import fx, nn

from netgraph.core.errors import RecipeError, did_you_mean, shown
from netgraph.graph import ops
from netgraph.recipe.load import MAX_DEPTH, MAX_VALUES, KeyPath, Recipe

INPUT = "input"
RESERVED_NAMES = {INPUT, "in", "op", "block"}
# matched with fullmatch: '$' would also match before a final line break ("act\n")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"\$([A-Za-z_]\w*)")
_INTERPOLATED = re.compile(r"\$\{([A-Za-z_]\w*)\}")
BLOCK_DEFAULTS = "$defaults"
# Every node becomes an attribute of the compiled module (or of its dict's submodule) and a
# variable of the generated forward, so a name may not be a Python keyword, 'self', or an
# attribute every torch.fx module already has ('forward', 'training', 'to', 'graph', ...).
MODULE_ATTRIBUTES = frozenset(dir(fx.GraphModule(nn.Module(), fx.Graph())))

Path = Tuple[str, ...]


def path_str(path: Sequence[str]) -> str:
    return "/".join(path)


# --- expansion: the recipe's network, blocks replaced by their bodies ---------


@dataclass
class _Item:
    path: Path
    site: KeyPath  # where the user wrote it (the outermost block use for block contents)
    block: Optional[Tuple[str, KeyPath]] = None  # (block name, key path of its definition)


@dataclass
class _Leaf(_Item):
    op: str = ""
    params: Dict[str, Any] = field(default_factory=dict)
    refs: Optional[List[str]] = None


@dataclass
class _Group(_Item):
    items: List[_Item] = field(default_factory=list)
    ref: Optional[str] = None


class _Expander:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.groups: Dict[Path, _Group] = {}
        self.leaves: Dict[Path, _Leaf] = {}
        self.values = 0  # as recipe._check_size counts them, after blocks are expanded

    def error(self, message, item_site: KeyPath, node=None, hint=None, block=None):
        if block is not None:
            line = self.recipe.where(block[1])[1]
            message += f" [in block '{block[0]}'" + (f", line {line}]" if line else "]")
        return self.recipe.error(message, item_site, node=node, hint=hint)

    def expand(self) -> _Group:
        root = _Group(path=(), site=("network",))
        self.groups[()] = root
        self._fill(root, self.recipe.network, ("network",), None, ())
        return root

    def _fill(
        self,
        group: _Group,
        mapping: Dict[str, Any],
        site: KeyPath,
        block: Optional[Tuple[str, KeyPath]],
        stack: Tuple[str, ...],
        plain_group: bool = False,
    ) -> None:
        for name, value in mapping.items():
            if name == "in" and plain_group:
                continue  # the group's own input, kept in group.ref
            path = group.path + (str(name),)
            # Inside a block, errors point at the line that uses the block.
            item_site = site + (name,) if block is None else site
            item_block = None if block is None else (block[0], block[1] + (name,))
            node = path_str(path)
            self._count(value, path, item_site, item_block)
            self._check_name(name, item_site, node, item_block)
            self._check_item(value, item_site, node, item_block)
            if "op" in value:
                group.items.append(self._leaf(path, value, item_site, item_block))
            elif "block" in value:
                group.items.append(self._block(path, value, item_site, item_block, stack))
            else:
                self._add_group(group, path, value, item_site, item_block, stack)

    def _check_name(self, name, item_site: KeyPath, node: str, item_block) -> None:
        """A node's name becomes a Python identifier and a module attribute."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise self.error(
                f"'{name}' is not a valid node name: use letters, digits and _, starting with a letter",
                item_site,
                node,
                block=item_block,
            )
        if name in RESERVED_NAMES:
            raise self.error(
                f"'{name}' is reserved and cannot name a node",
                item_site,
                node,
                hint="input is the graph (or enclosing dict's) input; in, op and block are node keys",
                block=item_block,
            )
        if keyword.iskeyword(name) or name == "self" or name in MODULE_ATTRIBUTES:
            what = (
                "a Python keyword"
                if keyword.iskeyword(name)
                else "the generated forward's own argument"
                if name == "self"
                else "an attribute every torch module has"
            )
            raise self.error(
                f"'{name}' cannot name a node: it is {what}",
                item_site,
                node,
                hint=f"rename it, e.g. '{name.strip('_')}_node'",
                block=item_block,
            )

    def _check_item(self, value, item_site: KeyPath, node: str, item_block) -> None:
        """An item is a dict: a node (op:), a block use (block:) or a group of nodes."""
        if not isinstance(value, dict):
            raise self.error(
                f"expected a node ({{op: ...}}), a block use ({{block: ...}}) or a "
                f"dict of nodes, got {shown(value)}",
                item_site,
                node,
                block=item_block,
            )
        if "op" in value and "block" in value:
            raise self.error("a node has either op: or block:, not both", item_site, node, block=item_block)

    def _add_group(
        self,
        group: _Group,
        path: Path,
        value: Dict[str, Any],
        item_site: KeyPath,
        item_block: Optional[Tuple[str, KeyPath]],
        stack: Tuple[str, ...],
    ) -> None:
        """A plain dict of nodes: a child group, filled in place."""
        child = _Group(path=path, site=item_site, block=item_block, ref=value.get("in"))
        if not [k for k in value if k != "in"]:
            raise self.error(
                "empty dict: a group needs at least one node",
                item_site,
                node=path_str(path),
                block=item_block,
            )
        self.groups[path] = child
        group.items.append(child)
        self._fill(child, value, item_site, item_block, stack, plain_group=True)

    def _count(self, value, path, site, block) -> None:
        """Bound the expansion: blocks that use blocks twice double at each level (26 lines
        made millions of nodes), and each level of blocks nests one level deeper."""
        self.values += 1 + (len(value) if isinstance(value, dict) else 0)
        if self.values > MAX_VALUES:
            raise self.error(
                f"the network expands to more than {MAX_VALUES:,} values",
                site,
                path_str(path),
                block=block,
                hint="a block used n times inside a block used n times makes n*n "
                "copies; use fewer, or a smaller network",
            )
        if len(path) > MAX_DEPTH:
            raise self.error(
                f"the network nests more than {MAX_DEPTH} levels deep (each block "
                f"inside a block is one level)",
                site,
                path_str(path),
                block=block,
                hint="a network is a few levels deep; flatten the chain of blocks",
            )

    def _leaf(self, path, value, site, block) -> _Leaf:
        op = value["op"]
        if not isinstance(op, str):
            raise self.error(f"op must be an op name, got {shown(op)}", site, path_str(path), block=block)
        refs = value.get("in")
        if refs is not None:
            refs = [refs] if isinstance(refs, str) else refs
            if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
                raise self.error(
                    f"in: must be a node path or a list of paths, got {shown(value['in'])}",
                    site,
                    path_str(path),
                    block=block,
                )
        params = {k: v for k, v in value.items() if k not in ("op", "in")}
        leaf = _Leaf(path=path, site=site, block=block, op=op, params=params, refs=refs)
        self.leaves[path] = leaf
        return leaf

    def _block(self, path, value, site, block, stack) -> _Group:
        node = path_str(path)
        name = value["block"]
        blocks = self.recipe.blocks
        if not isinstance(name, str):
            raise self.error(f"block: must be a block name, got {shown(name)}", site, node, block=block)
        if name not in blocks:
            raise self.error(
                f"unknown block '{name}'",
                site,
                node,
                hint=did_you_mean(name, blocks)
                or (
                    "blocks defined: " + ", ".join(map(str, blocks)) if blocks else "define it under blocks:"
                ),
                block=block,
            )
        if name in stack:
            raise self.error(f"block '{name}' uses itself: {' -> '.join(stack + (name,))}", site, node)
        body = dict(blocks[name])
        defaults = body.pop(BLOCK_DEFAULTS, {}) or {}
        if not isinstance(defaults, dict):
            raise self.error(
                f"block '{name}': {BLOCK_DEFAULTS} must map parameter names to values",
                ("blocks", name, BLOCK_DEFAULTS),
                node,
            )
        args = {k: v for k, v in value.items() if k not in ("block", "in")}
        declared = _referenced(body) | set(defaults)
        for arg in args:
            if arg not in declared:
                raise self.error(
                    f"block '{name}' has no parameter '{arg}'",
                    site,
                    node,
                    hint=did_you_mean(arg, declared)
                    or f"its parameters: {', '.join(sorted(map(str, declared))) or 'none'}",
                    block=block,
                )
        values = {**defaults, **args}
        missing = sorted(_referenced(body) - set(values))
        if missing:
            raise self.error(
                f"block '{name}' needs parameter '{missing[0]}'",
                site,
                node,
                hint=f"set it where the block is used: {{block: {name}, {missing[0]}: ...}}",
                block=block,
            )
        group = _Group(path=path, site=site, block=block, ref=value.get("in"))
        self.groups[path] = group
        # Nodes of the block body report the outermost use site and the definition line.
        self._fill(group, _substitute(body, values), site, (name, ("blocks", name)), stack + (name,))
        return group


def _referenced(value: Any) -> set:
    """Names of the $parameters a block body refers to."""
    if isinstance(value, dict):
        return set().union(*(_referenced(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_referenced(v) for v in value)) if value else set()
    if isinstance(value, str):
        whole = _PARAM.fullmatch(value)
        return {whole.group(1)} if whole else set(_INTERPOLATED.findall(value))
    return set()


def _substitute(value: Any, values: Dict[str, Any]) -> Any:
    """'$c' becomes the parameter's value (any type); '${c}' inside text becomes its text."""
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, str):
        whole = _PARAM.fullmatch(value)
        if whole:
            return values[whole.group(1)]
        return _INTERPOLATED.sub(lambda m: str(values[m.group(1)]), value)
    return value


# --- wiring: every input path resolved to a node ------------------------------


class _Wiring:
    def __init__(self, ex: _Expander):
        self.ex = ex
        self.parents: Dict[Path, _Group] = {}
        self.index: Dict[Path, int] = {}  # an item's place in its dict: a search made wiring quadratic
        for group in ex.groups.values():
            for i, item in enumerate(group.items):
                self.parents[item.path] = group
                self.index[item.path] = i
        self._inputs: Dict[Path, Path] = {}
        self._resolving: set = set()

    def output_of(self, item: _Item) -> Path:
        while isinstance(item, _Group):
            item = item.items[-1]
        return item.path

    def previous(self, item: _Item) -> Path:
        """Output of the item before this one in its dict, or the dict's input."""
        parent = self.parents[item.path]
        index = self.index[item.path]
        if index > 0:
            return self.output_of(parent.items[index - 1])
        return self.input_of(parent)

    def input_of(self, group: _Group) -> Path:
        if group.path == ():
            return (INPUT,)
        if group.path in self._inputs:
            return self._inputs[group.path]
        if group.path in self._resolving:
            raise self.ex.error(
                "its in: refers back to its own input", group.site, path_str(group.path), block=group.block
            )
        self._resolving.add(group.path)
        if group.ref is not None:
            if not isinstance(group.ref, str):
                raise self.ex.error(
                    f"a dict's in: must be one node path, got {shown(group.ref)}",
                    group.site,
                    path_str(group.path),
                    block=group.block,
                )
            result = self.resolve(group.ref, group.path[:-1], group)
        else:
            result = self.previous(group)
        self._resolving.discard(group.path)
        self._inputs[group.path] = result
        return result

    def resolve(self, ref: str, scope: Path, who: _Item) -> Path:
        ex = self.ex
        node = path_str(who.path)
        parts = ref.split("/")
        current: List[str] = [] if ref.startswith("/") else list(scope)
        parts = [p for p in parts if p not in ("", ".")]
        if not parts:
            raise ex.error(f"in: '{ref}' names no node", who.site, node, block=who.block)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "..":
                if not current:
                    raise ex.error(
                        f"in: '{ref}' goes above the network's root", who.site, node, block=who.block
                    )
                current.pop()
                continue
            if part == INPUT and last:
                return self.input_of(ex.groups[tuple(current)])
            current.append(part)
            path = tuple(current)
            if path not in ex.groups and path not in ex.leaves:
                known = [path_str(p) for p in list(ex.leaves) + list(ex.groups) if p]
                raise ex.error(
                    f"in: '{ref}' names no node (no '{path_str(path)}' in the network)",
                    who.site,
                    node,
                    block=who.block,
                    hint=did_you_mean(path_str(path), known)
                    or "paths are relative to the node's own dict; use ../ to go up "
                    "or a leading / for the root",
                )
            if path in ex.leaves and not last:
                raise ex.error(
                    f"in: '{ref}': '{path_str(path)}' is a node, not a dict", who.site, node, block=who.block
                )
        path = tuple(current)
        if path == ():
            raise ex.error(f"in: '{ref}' names the whole network", who.site, node, block=who.block)
        return path if path in ex.leaves else self.output_of(ex.groups[path])

    def inputs_of(self, leaf: _Leaf) -> List[Path]:
        if leaf.refs is None:
            return [self.previous(leaf)]
        return [self.resolve(r, leaf.path[:-1], leaf) for r in leaf.refs]


# --- the graph ---------------------------------------------------------------


def build_graph(recipe: Recipe) -> nx.DiGraph:
    """The recipe's network as a validated graph with shapes (before any pass)."""
    ex = _Expander(recipe)
    root = ex.expand()
    wiring = _Wiring(ex)
    g = nx.DiGraph(name=recipe.name, file=recipe.file)
    g.add_node(INPUT, op=INPUT, params={"shape": list(recipe.input_shape)}, where=recipe.where(("input",)))
    for leaf in ex.leaves.values():
        g.add_node(
            path_str(leaf.path),
            op=leaf.op,
            params=leaf.params,
            where=recipe.where(leaf.site),
            block=_block_label(recipe, leaf.block),
        )
    for leaf in ex.leaves.values():
        for slot, source in enumerate(wiring.inputs_of(leaf)):
            add_input(g, path_str(source), path_str(leaf.path), slot)
    if recipe.output is not None:
        scope = _Group(path=(), site=("output",))
        g.graph["output"] = path_str(wiring.resolve(recipe.output.lstrip("/"), (), scope))
    else:
        g.graph["output"] = path_str(wiring.output_of(root))
    infer_shapes(g)
    return g


def _block_label(recipe: Recipe, block) -> Optional[str]:
    if block is None:
        return None
    line = recipe.where(block[1])[1]
    return f"'{block[0]}'" + (f", line {line}" if line else "")


def add_input(g: nx.DiGraph, source: str, target: str, slot: int) -> None:
    """Wire ``source`` into input position ``slot`` of ``target``."""
    if g.has_edge(source, target):
        g.edges[source, target]["slots"] = tuple(sorted(g.edges[source, target]["slots"] + (slot,)))
    else:
        g.add_edge(source, target, slots=(slot,))


def inputs(g: nx.DiGraph, node: str) -> List[str]:
    """The node's inputs, in order."""
    slots = [(s, src) for src in g.predecessors(node) for s in g.edges[src, node]["slots"]]
    return [src for _, src in sorted(slots)]


def node_error(g: nx.DiGraph, node: str, err: RecipeError) -> RecipeError:
    """Locate an error at a graph node: its recipe file, line and path."""
    data = g.nodes[node]
    file, line = data.get("where") or (g.graph.get("file"), None)
    if data.get("block") and "[in block" not in err.message:
        err.message += f" [in block {data['block']}]"
    return err.located(file=file, line=line, node=node)


def topological_order(g: nx.DiGraph) -> List[str]:
    """Nodes in an order that respects every edge, ties broken by recipe order."""
    rank = {n: i for i, n in enumerate(g.nodes)}
    try:
        return list(nx.lexicographical_topological_sort(g, key=rank.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = [u for u, _ in nx.find_cycle(g)]
        first = min(cycle, key=rank.__getitem__)
        raise node_error(
            g,
            first,
            RecipeError(
                "the inputs form a cycle: " + " -> ".join(cycle + [cycle[0]]),
                hint="an in: path points forward to a node that depends on this one",
            ),
        ) from None


def infer_shapes(g: nx.DiGraph) -> nx.DiGraph:
    """Check every node's op, parameters and inputs; set its full ``params`` and ``shape``.

    Passes call this after rewriting a graph. Raises RecipeError at the first bad node.
    """
    for node in topological_order(g):
        data = g.nodes[node]
        try:
            spec = ops.get_op(data["op"])
            data["params"] = spec.validate(data.get("params") or {})
            in_nodes = inputs(g, node)
            spec.check_inputs(len(in_nodes))
            in_shapes = [g.nodes[i]["shape"] for i in in_nodes]
            data["shape"] = tuple(spec.shape(in_shapes, **data["params"]))
        except RecipeError as err:
            raise node_error(g, node, err) from None
    output = g.graph.get("output")
    if output not in g:
        raise RecipeError(f"output '{output}' is not a node of the graph", file=g.graph.get("file"))
    needed = needed_nodes(g)
    unused = [n for n in g if n not in needed and n != INPUT]
    if unused:
        warnings.warn(
            f"{g.graph.get('file') or 'recipe'}: {len(unused)} node(s) do not reach the "
            f"output '{output}' and are left out of the module: {', '.join(unused[:5])}",
            stacklevel=2,
        )
    return g


def needed_nodes(g: nx.DiGraph) -> set:
    """The nodes the output depends on (the ones that get compiled), the output included."""
    return nx.ancestors(g, g.graph["output"]) | {g.graph["output"]}


def in_shapes(g: nx.DiGraph, node: str) -> List[Tuple[int, ...]]:
    return [g.nodes[i]["shape"] for i in inputs(g, node)]


# --- back to the nested dict -------------------------------------------------


def to_nested(g: nx.DiGraph) -> Dict[str, Any]:
    """The graph as recipe sections (``input``, ``network``, ``output``) with no blocks.

    ``in:`` is written only where implicit wiring would not give the same input,
    so ``build_graph(recipe_from_dict(to_nested(g)))`` rebuilds the same graph.
    """
    network: Dict[str, Any] = {}
    for node in g:
        if node == INPUT:
            continue
        parts = node.split("/")
        holder = network
        for part in parts[:-1]:
            holder = holder.setdefault(part, {})
            if "op" in holder:
                raise RecipeError(
                    f"'{node}' lies inside '{part}', which is a node, not a dict",
                    file=g.graph.get("file"),
                    node=node,
                )
        data = g.nodes[node]
        holder[parts[-1]] = {"op": data["op"], **data["params"]}
    previous = INPUT
    for node in _leaf_order(network, ()):
        sources = inputs(g, node)
        if sources != [previous]:
            scope = node.split("/")[:-1]
            refs = [_relative(src, scope) for src in sources]
            _lookup(network, node)["in"] = refs[0] if len(refs) == 1 else refs
        previous = node
    return {
        "input": {"shape": list(g.nodes[INPUT]["params"]["shape"])},
        "network": network,
        "output": "/" + g.graph["output"],
    }


def _leaf_order(network: Dict[str, Any], prefix: Path) -> List[str]:
    out = []
    for name, value in network.items():
        if name == "in":
            continue
        if "op" in value:
            out.append(path_str(prefix + (name,)))
        else:
            out.extend(_leaf_order(value, prefix + (name,)))
    return out


def _lookup(network, node):
    for part in node.split("/"):
        network = network[part]
    return network


def _relative(source: str, scope: List[str]) -> str:
    if source == INPUT:
        return "/" + INPUT
    parts = source.split("/")
    if parts[: len(scope)] == scope:
        return "/".join(parts[len(scope) :])
    return "/" + source

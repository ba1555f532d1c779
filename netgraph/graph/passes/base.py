"""The pass machinery: the registry, ``register_pass``, the context a pass gets, and
``apply_pass``/``apply_transforms``, which keep passes pure and report what each changed."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import networkx as nx

from netgraph.core.errors import RecipeError, shown
from netgraph.core.registry import Part, Registry
from netgraph.core.schema import check_params
from netgraph.graph.build import infer_shapes, inputs
from netgraph.recipe.load import Recipe, transform_entry


@dataclass(frozen=True)
class PassSpec(Part):
    """A registered pass: ``function(g, context, **params) -> number of matches``."""

    exact: bool = False  # the pass keeps the network's function unchanged

    @property
    def note(self) -> str:
        """What ``netgraph list passes`` says of the pass besides its doc."""
        return "exact" if self.exact else "changes the function"


PASSES = Registry("pass", "passes", "netgraph.register_pass", PassSpec)
PASSES.note = "every pass also takes strict: true, which turns 'found nothing to change' into an error"


def register_pass(name: str, *, params: Optional[Dict[str, Any]] = None, exact: bool, replace: bool = False):
    """Register a pass: decorate ``fn(g, context, **params) -> number of matches``.

    ``g`` is the pass's own copy of the graph: edit it in place (the helpers in
    ``netgraph.graph.passes.edit`` rewire safely). ``params`` is declared as for ops
    (a type for a required parameter, a default for an optional one).
    ``exact`` says whether the pass keeps the network's function unchanged.
    """
    return PASSES.decorator(name, params=params, replace=replace, exact=exact)


def get_pass(name: str) -> PassSpec:
    return PASSES.lookup(name)


@dataclass
class PassContext:
    """What a pass may need beyond the graph.

    ``train_images(n)`` returns the first ``n`` training images, normalised,
    as a float tensor (n, channels, height, width); ``batch_size`` is the
    training batch size.
    """

    train_images: Optional[Callable[[int], Any]] = None
    batch_size: Optional[int] = None


@dataclass
class PassReport:
    """What one pass did."""

    name: str
    index: int  # 1-based position in the transforms list
    exact: bool
    matches: int
    added: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)  # op, parameters or fixed tensors changed
    rewired: List[str] = field(default_factory=list)  # inputs changed
    removed_nodes: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # their data, for drawing

    def line(self) -> str:
        parts = [
            f"{len(v)} {k}"
            for k, v in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
                ("rewired", self.rewired),
            )
            if v
        ]
        kind = "exact" if self.exact else "changes the function"
        return (
            f"{self.index}. {self.name} ({kind}): {self.matches} match"
            f"{'es' if self.matches != 1 else ''}" + (f"; nodes {', '.join(parts)}" if parts else "")
        )


def _same_tensors(a, b) -> bool:
    import torch

    a, b = a or {}, b or {}
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _differences(before: nx.DiGraph, after: nx.DiGraph, report: PassReport) -> None:
    report.added = [n for n in after if n not in before]
    report.removed = [n for n in before if n not in after]
    report.removed_nodes = {n: {**before.nodes[n], "inputs": inputs(before, n)} for n in report.removed}
    for n in after:
        if n not in before:
            continue
        a, b = before.nodes[n], after.nodes[n]
        if (a["op"], a["params"], a.get("optim"), a.get("pending")) != (
            b["op"],
            b["params"],
            b.get("optim"),
            b.get("pending"),
        ) or not _same_tensors(a.get("tensors"), b.get("tensors")):
            report.changed.append(n)
        if inputs(before, n) != inputs(after, n):
            report.rewired.append(n)
    if before.graph["output"] != after.graph["output"]:
        report.rewired.append("output")


def apply_pass(
    g: nx.DiGraph,
    name: str,
    params: Optional[Dict[str, Any]] = None,
    context: Optional[PassContext] = None,
    *,
    index: int = 1,
    where: Tuple[Optional[str], Optional[int]] = (None, None),
) -> Tuple[nx.DiGraph, PassReport]:
    """Run one pass on a copy of ``g``: (new graph, report). ``g`` is left as it was."""
    file, line = where
    params = dict(params or {})
    strict = params.pop("strict", False)
    try:
        spec = get_pass(name)
        if not isinstance(strict, bool):
            raise RecipeError(f"parameter 'strict' must be true or false, got {shown(strict)}")
        params = check_params(f"pass '{name}'", spec.params, params)
    except RecipeError as err:
        if f"pass '{name}'" not in err.message:  # a bad value: say whose parameter it is
            err.message = f"pass '{name}' (transforms item {index}): {err.message}"
        raise err.located(file=file, line=line) from None
    new = copy.deepcopy(g)
    assert spec.function is not None  # a pass is its function (only an emitted op has none)
    try:
        matches = spec.function(new, context or PassContext(), **params)
        infer_shapes(new)
    except RecipeError as err:
        err.message = f"pass '{name}' (transforms item {index}): {err.message}"
        err.file, err.line = file or err.file, line or err.line
        raise err.located() from None
    report = PassReport(name, index, spec.exact, int(matches))
    _differences(g, new, report)
    if report.matches == 0:
        message = f"pass '{name}' (transforms item {index}) found nothing to change"
        if strict:
            raise RecipeError(
                message, file=file, line=line, hint="check the pass applies to this network, or remove it"
            )
        where_text = f"{file}:{line}: " if file else ""
        warnings.warn(where_text + message, stacklevel=2)
    return new, report


def apply_transforms(
    g: nx.DiGraph, recipe: Recipe, context: Optional[PassContext] = None, stop: Optional[int] = None
) -> Tuple[nx.DiGraph, List[PassReport]]:
    """Apply the recipe's transforms in order (only the first ``stop`` of them if given)."""
    entries = recipe.transforms
    if stop is not None:
        if not 0 <= stop <= len(entries):
            raise RecipeError(
                f"stage {stop} does not exist: the recipe lists {len(entries)} "
                f"transform{'s' if len(entries) != 1 else ''}",
                file=recipe.file,
                hint=f"use a stage from 0 (before any) to {len(entries)}",
            )
        entries = entries[:stop]
    reports = []
    for i, entry in enumerate(entries):
        name, params = transform_entry(entry, recipe, i)
        try:
            g, report = apply_pass(
                g, name, params, context, index=i + 1, where=recipe.where(("transforms", i))
            )
        except RecipeError as err:  # about train.batch_size, say: name the user's --set first
            raise (recipe.blame(err, err.setting) if err.setting else err) from None
        reports.append(report)
    return g, reports

"""netgraph: networks as recipes of named nodes, compiled into torch modules.

The stages, one module each: ``recipe`` (YAML -> Recipe), ``graph`` (Recipe ->
networkx graph), ``ops`` (what each node type means), ``passes`` (graph ->
graph rewrites), ``executor`` (graph -> torch module), ``summary`` and
``render`` (read a graph). ``cli`` wires them up.

Only the recipe side is imported with the package; the names that need torch are imported on
first use (PEP 562), so ``netgraph --help`` and a recipe's YAML errors take no 2 s of torch import.
"""

import importlib

from netgraph.core import __version__
from netgraph.core.errors import RecipeError
from netgraph.recipe.load import Recipe, load_recipe, recipe_from_dict

# name -> the module that defines it, imported when the name is first used
_LAZY = {
    "compile_graph": "graph.executor",
    "half_precision": "graph.executor",
    "build_graph": "graph.build",
    "to_nested": "graph.build",
    "REQUIRED": "graph.ops",
    "Param": "graph.ops",
    "register_op": "graph.ops",
    "PassContext": "graph.passes",
    "apply_pass": "graph.passes",
    "apply_transforms": "graph.passes",
    "register_pass": "graph.passes",
    "summarize": "graph.summary",
    "register_augmentation": "train.augment",
    "register_view": "train.views",
    "register_optimizer": "train.optimizers",
    "register_schedule": "train.schedule",
    "register_averaging": "train.averaging",
    "register_source": "data.sources",
    "Plan": "runs.plan",
    "prepare": "runs.plan",
    "run_recipe": "runs.run",
}

__all__ = [
    "RecipeError",
    "Recipe",
    "load_recipe",
    "recipe_from_dict",
    "build_graph",
    "to_nested",
    "compile_graph",
    "half_precision",
    "register_op",
    "Param",
    "REQUIRED",
    "summarize",
    "build",
    "PassContext",
    "apply_pass",
    "apply_transforms",
    "register_pass",
    "register_augmentation",
    "register_view",
    "register_optimizer",
    "register_schedule",
    "register_averaging",
    "register_source",
    "Plan",
    "prepare",
    "run_recipe",
    "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def build(path, overrides=(), context=None):
    """Recipe file -> (recipe, graph after its transforms, module): the whole pipeline."""
    from netgraph.graph.build import build_graph
    from netgraph.graph.executor import compile_graph
    from netgraph.graph.passes import apply_transforms

    recipe = load_recipe(path, overrides)
    graph, _ = apply_transforms(build_graph(recipe), recipe, context)
    return recipe, graph, compile_graph(graph)

"""netgraph: networks as recipes of named nodes, compiled into torch modules.

The stages, one module each: ``recipe`` (YAML -> Recipe), ``graph`` (Recipe ->
networkx graph), ``ops`` (what each node type means), ``passes`` (graph ->
graph rewrites), ``executor`` (graph -> torch module), ``summary`` and
``render`` (read a graph). ``cli`` wires them up.
"""
from .augment import register_augmentation
from .engine import register_view
from .errors import RecipeError
from .executor import compile_graph, half_precision
from .graph import build_graph, to_nested
from .ops import REQUIRED, Param, register_op
from .passes import PassContext, apply_pass, apply_transforms, register_pass
from .recipe import Recipe, load_recipe, recipe_from_dict
from .summary import summarize

__version__ = "0.1.0"

__all__ = ["RecipeError", "Recipe", "load_recipe", "recipe_from_dict", "build_graph",
           "to_nested", "compile_graph", "half_precision", "register_op", "Param", "REQUIRED",
           "summarize", "build", "PassContext", "apply_pass", "apply_transforms", "register_pass",
           "register_augmentation", "register_view", "__version__"]


def build(path, overrides=(), context=None):
    """Recipe file -> (recipe, graph after its transforms, module): the whole pipeline."""
    recipe = load_recipe(path, overrides)
    graph, _ = apply_transforms(build_graph(recipe), recipe, context)
    return recipe, graph, compile_graph(graph)

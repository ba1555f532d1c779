"""Recipes: YAML loading, ``base:`` inheritance, ``--set`` overrides and section checks.

Knows YAML and the error type; nothing of torch.
"""

from netgraph.recipe.load import Recipe, load_recipe, recipe_from_dict

__all__ = ["Recipe", "load_recipe", "recipe_from_dict"]

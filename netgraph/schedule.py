"""Piecewise-linear schedules in epochs, evaluated per step.

Knots may be numbers or small arithmetic on ``epochs`` (``epochs/5``,
``epochs - 2``), so a recipe's schedule follows ``--set train.epochs=N``.
The expressions are parsed, never executed: only numbers, ``epochs``, the
operators + - * / and parentheses are accepted.
"""
from __future__ import annotations

import ast
import operator
from bisect import bisect_right
from typing import List, Sequence, Union

from .errors import RecipeError

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv}


def knot_value(knot: Union[int, float, str], epochs: float) -> float:
    """A knot as a number: ``3``, ``2.5``, ``"epochs/5"``, ``"epochs - 2"``."""
    if isinstance(knot, (int, float)) and not isinstance(knot, bool):
        return float(knot)
    if not isinstance(knot, str):
        raise RecipeError(f"a schedule knot must be a number or an expression in epochs, got {knot!r}")
    try:
        tree = ast.parse(knot, mode="eval").body
    except SyntaxError:
        raise RecipeError(f"schedule knot '{knot}' is not arithmetic on epochs",
                          hint="e.g. epochs/5 or epochs - 2") from None

    def value(node) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "epochs":
            return float(epochs)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise RecipeError(f"schedule knot '{knot}' may use only numbers, epochs, + - * / and "
                          f"parentheses")
    return value(tree)


class PiecewiseLinear:
    """Linear between (knot, value) points, constant before the first and after the last."""

    def __init__(self, knots: Sequence[float], values: Sequence[float]):
        if len(knots) != len(values) or not knots:
            raise RecipeError(f"a schedule needs as many values as knots, got {len(knots)} knots "
                              f"and {len(values)} values")
        if any(b < a for a, b in zip(knots, knots[1:])):
            raise RecipeError(f"schedule knots must not decrease, got {list(knots)}")
        self.knots: List[float] = [float(k) for k in knots]
        self.values: List[float] = [float(v) for v in values]

    @classmethod
    def in_epochs(cls, knots, values, epochs: float) -> "PiecewiseLinear":
        return cls([knot_value(k, epochs) for k in knots], values)

    def __call__(self, t: float) -> float:
        k, v = self.knots, self.values
        if t <= k[0]:
            return v[0]
        if t >= k[-1]:
            return v[-1]
        i = bisect_right(k, t) - 1
        if k[i + 1] == k[i]:
            return v[i + 1]
        return v[i] + (t - k[i]) / (k[i + 1] - k[i]) * (v[i + 1] - v[i])

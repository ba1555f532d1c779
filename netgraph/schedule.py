"""Piecewise-linear schedules in epochs, evaluated per step.

Knots may be numbers or small arithmetic on ``epochs`` (``epochs/5``,
``epochs - 2``), so a recipe's schedule follows ``--set train.epochs=N``.
The expressions are parsed, never executed: only numbers, ``epochs``, the
operators + - * / and parentheses are accepted.
"""
from __future__ import annotations

import ast
import math
import operator
from bisect import bisect_right
from typing import List, Sequence, Union

from .errors import RecipeError

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv}


_EXAMPLE = "e.g. knots: [0, 5, epochs], values: [0, 0.4, 0]"


def _is_finite(x) -> bool:
    """A number (not a bool) that float() keeps finite: no inf, nan or 400-digit integer."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _need_list(points, what: str):
    if not isinstance(points, (list, tuple)):
        raise RecipeError(f"a schedule's {what} are a list, got {points!r}", hint=_EXAMPLE)
    return points


def knot_value(knot: Union[int, float, str], epochs: float) -> float:
    """A knot as a number: ``3``, ``2.5``, ``"epochs/5"``, ``"epochs - 2"``."""
    if isinstance(knot, (int, float)) and not isinstance(knot, bool):
        if not _is_finite(knot):
            raise RecipeError(f"a schedule knot must be a finite number, got {knot!r}", hint=_EXAMPLE)
        return float(knot)
    if not isinstance(knot, str):
        raise RecipeError(f"a schedule knot must be a number or an expression in epochs, got {knot!r}")
    try:  # RecursionError, MemoryError: nested past the parser's limits; ValueError: a NUL byte
        tree = ast.parse(knot, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
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
    try:
        result = value(tree)
    except (ZeroDivisionError, OverflowError, RecursionError):
        result = math.nan
    if not math.isfinite(result):
        raise RecipeError(f"schedule knot '{knot}' has no finite value at epochs = {epochs}",
                          hint="check for a division by zero")
    return result


def _decreases(points: Sequence[float]) -> bool:
    return any(b < a for a, b in zip(points, points[1:]))


def _fits(knots, epochs: int) -> bool:
    try:
        return not _decreases([knot_value(k, epochs) for k in knots])
    except RecipeError:  # no finite value at these epochs
        return False


class PiecewiseLinear:
    """Linear between (knot, value) points, constant before the first and after the last."""

    def __init__(self, knots: Sequence[float], values: Sequence[float]):
        for what, points in (("knot", knots), ("value", values)):
            for point in _need_list(points, what + "s"):
                if not _is_finite(point):
                    raise RecipeError(f"a schedule {what} must be a finite number, got {point!r}",
                                      hint=_EXAMPLE)
        if len(knots) != len(values) or not knots:
            raise RecipeError(f"a schedule needs as many values as knots, got {len(knots)} knots "
                              f"and {len(values)} values")
        if _decreases(knots):
            raise RecipeError(f"schedule knots must not decrease, got {list(knots)}")
        self.knots: List[float] = [float(k) for k in knots]
        self.values: List[float] = [float(v) for v in values]

    @classmethod
    def in_epochs(cls, knots, values, epochs: float) -> "PiecewiseLinear":
        points = [knot_value(k, epochs) for k in _need_list(knots, "knots")]
        if any(isinstance(k, str) for k in knots) and _decreases(points):
            # [0, epochs/5, epochs - 2] at epochs = 1 is [0, 0.2, -1]: say from which epochs on
            # (up to 1,000) the knots fit, if they fit from there on
            fit = [_fits(knots, n) for n in range(1, 1001)]
            start = next((n for n in range(1, 1001) if all(fit[n - 1:])), None)
            raise RecipeError(
                f"schedule knots [{', '.join(map(str, knots))}] decrease at epochs = {epochs:g}: "
                f"{[round(p, 4) for p in points]}",
                hint=f"this schedule needs epochs >= {start}; for fewer, write knots that fit"
                if start and epochs < start else "write knots that do not decrease")
        return cls(points, values)

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

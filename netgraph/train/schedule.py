"""Piecewise-linear schedules, evaluated per step, in one of three units.

A schedule's knots are in ``epochs`` (the default), ``steps`` or a ``fraction`` of
training (0 to 1). Step k (1-based) reads the schedule at k / steps_per_epoch
epochs, at k steps, or at k / total_steps, as the bag of tricks reads its schedule
after counting the step. Knots may be numbers or small arithmetic on ``epochs``,
``steps`` (the run's totals: ``epochs/5``, ``steps - 100``) and ``epoch_steps`` (steps
an epoch), with ``floor()`` and ``ceil()``, so a recipe's schedule follows ``--set
train.epochs=N``. The expressions are parsed, never executed: only numbers, those
names, the operators + - * /, the two functions and parentheses are accepted.

Shapes (``SCHEDULE_SHAPES``) write a schedule's knots and values from a few numbers:
``warmup_linear`` is the records' linear warm-up then linear decay to a floor.
"""

from __future__ import annotations

import ast
import math
import operator
from bisect import bisect_right
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from netgraph.core.errors import RecipeError, shown
from netgraph.core.registry import Registry
from netgraph.core.schema import Param

UNITS = ("epochs", "steps", "fraction")

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


_EXAMPLE = "e.g. knots: [0, 5, epochs], values: [0, 0.4, 0]"
_ROUNDING = {"floor": math.floor, "ceil": math.ceil}


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
        raise RecipeError(f"a schedule's {what} are a list, got {shown(points)}", hint=_EXAMPLE)
    return points


def checked_lists(knots, values) -> Tuple[list, List[float]]:
    """A schedule's knots and values as a recipe gives them: two lists, the values finite
    numbers; the knots may be expressions (``epochs - 2``), checked once the run's length is
    known (``PiecewiseLinear.in_epochs``)."""
    for v in _need_list(values, "values"):
        if not _is_finite(v):
            raise RecipeError(f"a schedule value must be a finite number, got {shown(v)}", hint=_EXAMPLE)
    return list(_need_list(knots, "knots")), [float(v) for v in values]


def knot_value(
    knot: Union[int, float, str],
    epochs: float,
    steps: Optional[float] = None,
    epoch_steps: Optional[float] = None,
) -> float:
    """A knot as a number: ``3``, ``2.5``, ``"epochs/5"``, ``"epochs - 2"``; ``steps`` (the
    run's total steps) and ``epoch_steps`` (steps an epoch) may be named once they are known,
    and ``floor(...)``, ``ceil(...)`` round (airbench94 warms up for floor(0.23 * steps))."""
    if isinstance(knot, (int, float)) and not isinstance(knot, bool):
        if not _is_finite(knot):
            raise RecipeError(f"a schedule knot must be a finite number, got {shown(knot)}", hint=_EXAMPLE)
        return float(knot)
    if not isinstance(knot, str):
        raise RecipeError(f"a schedule knot must be a number or an expression in epochs, got {shown(knot)}")
    try:  # RecursionError, MemoryError: nested past the parser's limits; ValueError: a NUL byte
        tree = ast.parse(knot, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise RecipeError(
            f"schedule knot '{knot}' is not arithmetic on epochs", hint="e.g. epochs/5 or epochs - 2"
        ) from None

    try:
        result = _evaluate(tree, knot, epochs, steps, epoch_steps)
    except (ZeroDivisionError, OverflowError, RecursionError):
        result = math.nan
    if not math.isfinite(result):
        raise RecipeError(
            f"schedule knot '{knot}' has no finite value at epochs = {epochs}",
            hint="check for a division by zero",
        )
    return result


def _evaluate(node, knot: str, epochs: float, steps: Optional[float], epoch_steps: Optional[float]) -> float:
    """The value of one node of a knot's parsed expression; anything but numbers, the known
    names, + - * /, unary minus and floor()/ceil() is refused."""
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id == "epochs":
        return float(epochs)
    if isinstance(node, ast.Name) and node.id == "steps" and steps is not None:
        return float(steps)
    if isinstance(node, ast.Name) and node.id == "epoch_steps" and epoch_steps is not None:
        return float(epoch_steps)
    # one frame per level of the expression, as before: a deep one fails at the same depth
    names = (knot, epochs, steps, epoch_steps)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _ROUNDING
        and len(node.args) == 1
        and not node.keywords
    ):
        return float(_ROUNDING[node.func.id](_evaluate(node.args[0], *names)))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left, *names), _evaluate(node.right, *names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, *names)
    raise RecipeError(
        f"schedule knot '{knot}' may use only numbers, epochs"
        + (", steps, epoch_steps" if steps is not None else "")
        + ", + - * /, floor(), ceil() and parentheses"
    )


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
                    raise RecipeError(
                        f"a schedule {what} must be a finite number, got {shown(point)}", hint=_EXAMPLE
                    )
        if len(knots) != len(values) or not knots:
            raise RecipeError(
                f"a schedule needs as many values as knots, got {len(knots)} knots and {len(values)} values"
            )
        if _decreases(knots):
            raise RecipeError(f"schedule knots must not decrease, got {list(knots)}")
        self.knots: List[float] = [float(k) for k in knots]
        self.values: List[float] = [float(v) for v in values]

    @classmethod
    def in_epochs(
        cls, knots, values, epochs: float, steps: Optional[float] = None, epoch_steps: Optional[float] = None
    ) -> PiecewiseLinear:
        points = [knot_value(k, epochs, steps, epoch_steps) for k in _need_list(knots, "knots")]
        if any(isinstance(k, str) for k in knots) and _decreases(points):
            # [0, epochs/5, epochs - 2] at epochs = 1 is [0, 0.2, -1]: say from which epochs on
            # (up to 1,000) the knots fit, if they fit from there on
            fit = [_fits(knots, n) for n in range(1, 1001)]
            start = next((n for n in range(1, 1001) if all(fit[n - 1 :])), None)
            raise RecipeError(
                f"schedule knots [{', '.join(map(str, knots))}] decrease at epochs = {epochs:g}: "
                f"{[round(p, 4) for p in points]}",
                hint=f"this schedule needs epochs >= {start}; for fewer, write knots that fit"
                if start and epochs < start
                else "write knots that do not decrease",
            )
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


@dataclass
class StepSchedule:
    """A piecewise-linear schedule in ``unit``, read per step: ``at(k)`` is its value for
    step k (1-based) of a run of ``total_steps`` steps of ``steps_per_epoch`` each."""

    curve: PiecewiseLinear
    unit: str
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def build(cls, knots, values, unit: str, steps_per_epoch: int, total_steps: int) -> StepSchedule:
        epochs = total_steps / steps_per_epoch
        return cls(
            PiecewiseLinear.in_epochs(knots, values, epochs, total_steps, steps_per_epoch),
            unit,
            steps_per_epoch,
            total_steps,
        )

    def position(self, step: float) -> float:
        """Where step ``step`` reads the schedule, in its unit."""
        if self.unit == "steps":
            return float(step)
        return step / (self.steps_per_epoch if self.unit == "epochs" else self.total_steps)

    def at(self, step: float) -> float:
        return self.curve(self.position(step))


# --- shapes -------------------------------------------------------------------------------


# A shape is a plain Part: ``function(end, **params) -> (knots, values)`` in the schedule's
# unit, the knot ``end`` standing for the end of training in that unit.
SCHEDULE_SHAPES = Registry("schedule shape", "schedules", "netgraph.register_schedule")
END = {"epochs": "epochs", "steps": "steps", "fraction": 1}  # the end of training, as a knot


def register_schedule(name: str, *, params: Optional[Dict[str, object]] = None, replace: bool = False):
    """Register a schedule shape; decorate ``build(end, **params) -> (knots, values)``, where
    ``end`` is the knot that stands for the end of training in the schedule's unit (``epochs``,
    ``steps`` or 1). A recipe writes ``lr: {shape: NAME, unit: ..., key: value, ...}``."""
    return SCHEDULE_SHAPES.decorator(name, params=params, replace=replace)


@register_schedule("piecewise_linear", params={"knots": object, "values": object})  # checked by config
def _piecewise_linear(end, knots: list, values: list):
    """Linear between (knot, value) points, constant outside them (the default shape)."""
    return knots, values


@register_schedule("constant", params={"value": float})
def _constant(end, value: float):
    """One value throughout."""
    return [0], [value]


@register_schedule(
    "warmup_linear",
    params={"warmup": Param(float, nonnegative=True), "peak": float, "start": 0.0, "floor": 0.0},
)
def _warmup_linear(end, warmup: float, peak: float, start: float = 0.0, floor: float = 0.0):
    """Linear from start to peak over warmup, then linear to floor at the end (the records')."""
    return [0, warmup, end], [start, peak, floor]

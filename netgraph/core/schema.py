"""The parameter schema every registered part shares: ``Param`` (type, default, bounds, doc),
``check_params`` (a recipe's values against it, with the line and a did-you-mean),
``as_param`` (the short forms ``int`` and ``3``) and ``named`` (the one reader of a part
as a recipe names it: NAME or {NAME: params}). Ops, passes, optimizers, schedule shapes,
averaging, augmentations, test-time views and data sources all declare their parameters
with it."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from netgraph.core.errors import RecipeError, did_you_mean, shown


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()
"""Default of a parameter that a recipe must set."""

# The largest finite float32: the networks and their parameters are float32 (or float16).
FLOAT32_MAX = 3.4028234663852886e38
MAX_INT = 2**31 - 1
"""The largest integer a parameter takes: larger ones fail deep inside torch instead."""


@dataclass
class Param:
    """One op parameter: its type, default (or REQUIRED) and allowed values."""

    type: Union[type, Tuple[type, ...]]  # a type, or a tuple of them as isinstance takes
    default: Any = REQUIRED
    positive: bool = False
    nonnegative: bool = False
    choices: Optional[Sequence[Any]] = None
    optional: bool = False  # None is a legal value (the default is then often None)

    def check(self, name: str, value: Any) -> Any:
        if value is None and (self.optional or self.default is None):
            return None
        ok = _is_type(value, self.type)
        if not ok:
            hint = "write it without quotes" if _looks_numeric(value) else f"e.g. {name}: {_example(self)}"
            raise RecipeError(
                f"parameter '{name}' must be {_type_name(self.type)}, "
                f"got {shown(value)} ({_type_name(type(value))})",
                hint=hint,
            )
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
                raise RecipeError(
                    f"parameter '{name}' is too large: {shown(v)}", hint=f"use a value below {MAX_INT:,}"
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise RecipeError(
                    f"parameter '{name}' must be a finite number, got {v}",
                    hint=f"e.g. {name}: {_example(self)}",
                )
            if isinstance(v, float) and abs(v) > FLOAT32_MAX:  # finite here, inf in the model
                raise RecipeError(
                    f"parameter '{name}' is {v:g}, beyond float32's largest finite "
                    f"value ({FLOAT32_MAX:.4g}): it would be infinite in the network",
                    hint=f"e.g. {name}: {_example(self)}",
                )
        if self.type is float:
            value = float(value)
        for v in values:
            if self.positive and v <= 0:
                raise RecipeError(
                    f"parameter '{name}' must be positive, got {shown(value)}", hint="use a value above 0"
                )
            if self.nonnegative and v < 0:
                raise RecipeError(
                    f"parameter '{name}' must not be negative, got {shown(value)}", hint="use 0 or more"
                )
        if self.choices is not None and value not in self.choices:
            raise RecipeError(
                f"parameter '{name}' must be one of {', '.join(map(repr, self.choices))}, got {shown(value)}"
            )
        return value


def _looks_numeric(value) -> bool:
    """'64' or '5e-4' in quotes: a number written as a string."""
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def _example(p: Param) -> str:
    """A value of the parameter's type to show in a hint: its default, or a stand-in."""
    if p.default is not REQUIRED and p.default is not None and not isinstance(p.default, (dict, list)):
        return str(p.default).lower() if isinstance(p.default, bool) else str(p.default)
    typ = p.type[0] if isinstance(p.type, tuple) else p.type
    return {int: "1", float: "0.5", bool: "true", str: "name", list: "[1, 2]", dict: "{key: value}"}.get(
        typ, "..."
    )


def check_params(
    owner: str, specs: Dict[str, Param], raw: Dict[str, Any], prefix: str = ""
) -> Dict[str, Any]:
    """``raw`` checked against ``specs``, defaults filled in; ``owner`` names the op or pass,
    and messages name each parameter with ``prefix`` before it (``synthetic.train``).
    A RecipeError raised here carries ``key``, the parameter it is about."""
    unknown = [k for k in raw if k not in specs]
    if unknown:
        known = ", ".join(specs) or "none"
        err = RecipeError(
            f"unknown parameter '{unknown[0]}' for {owner} (its parameters: {known})",
            hint=did_you_mean(unknown[0], specs) or f"remove '{unknown[0]}'",
        )
        err.key = unknown[0]
        raise err
    out = {}
    for name, p in specs.items():
        try:
            if name in raw:
                out[name] = p.check(prefix + name, raw[name])
            elif p.default is REQUIRED:
                raise RecipeError(
                    f"{owner} needs parameter '{name}' ({_type_name(p.type)})",
                    hint=f"add {name}: {_example(p)}",
                )
            else:
                out[name] = copy.deepcopy(p.default)
        except RecipeError as err:
            err.key = name
            raise
    return out


def _is_type(value, typ) -> bool:
    if isinstance(typ, tuple):
        return any(_is_type(value, t) for t in typ)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is list:
        return isinstance(value, list) and all(_is_type(v, int) for v in value)
    return isinstance(value, typ)


def _type_name(typ) -> str:
    if isinstance(typ, tuple):
        return " or ".join(_type_name(t) for t in typ)
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        list: "a list of integers",
        dict: "a mapping",
    }.get(typ, getattr(typ, "__name__", str(typ)))


def as_param(spec) -> Param:
    """``int`` -> a required int; ``3`` -> an int defaulting to 3; a Param stays."""
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, type):
        return Param(spec)
    return Param(type(spec), spec)


def named(
    entry: Any, what: str, kind: str, *, value: bool = False, hint: Optional[str] = None
) -> Tuple[str, Any]:
    """A part as a recipe names it -- ``NAME`` or ``{NAME: {key: value}}`` -- as (NAME, its
    parameters as written, ``{}`` for none: a bare NAME, ``{NAME: }``). ``value=True``
    passes on a single value too (``{cutout: 8}``, for the part to read). A RecipeError names
    ``what`` (``transforms item 2``, ``train.optimizer``) and ``kind`` (pass, optimizer)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1 and isinstance(next(iter(entry)), str):
        ((name, params),) = entry.items()
        if params is None or isinstance(params, dict):
            return name, dict(params or {})
        if value:
            return name, params
        raise RecipeError(
            f"{what}: the parameters of {kind} '{name}' are a mapping, got {shown(params)}",
            hint=hint or f"e.g. {{{name}: {{key: value}}}}",
        )
    article = "an" if kind[:1] in "aeiou" else "a"
    raise RecipeError(
        f"{what} must be {article} {kind} name or {{name: {{parameters}}}}, got {shown(entry)}",
        hint=hint
        or f"e.g. {kind.replace(' ', '_')}_name, or {{{kind.replace(' ', '_')}_name: {{key: value}}}}",
    )

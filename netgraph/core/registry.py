"""The one registry type: named, pluggable parts of one kind.

Ops, passes, augmentations and test-time views each live in a ``Registry``;
registering (by a decorator in Python, loaded on the command line with
``--import FILE``), looking a name up with a did-you-mean error, and listing
what is registered (``netgraph list [KIND]``) are written here once.

A registry is a dict from name to entry, so ``name in OPS``, ``OPS[name]`` and
``del OPS[name]`` (a test cleaning up) read as for any dict. An entry may
carry ``params`` (name -> ops.Param) and ``doc``; ``netgraph list`` shows them.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

from netgraph.core.errors import RecipeError, did_you_mean
from netgraph.core.schema import REQUIRED

REGISTRIES: Dict[str, Registry] = {}
"""Every registry by its kind's name in the plural ("ops", "passes", ...), in creation order."""


class Registry(dict):
    """Entries of one kind by name. ``kind`` names one in messages ("op", "test-time view"),
    ``plural`` the kind in ``netgraph list`` ("ops"), ``register`` the Python function
    that adds one (for the hint of an unknown name)."""

    note: str  # optional, set by a kind (PASSES) for netgraph list: declared only, getattr reads it

    def __init__(self, kind: str, plural: str, register: str):
        super().__init__()
        self.kind, self.plural, self.register = kind, plural, register
        if plural in REGISTRIES:
            raise ValueError(f"a registry of {plural} exists already")
        REGISTRIES[plural] = self

    def add(self, name: str, entry: Any, replace: bool = False) -> Any:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.kind} name {name!r} must be a Python identifier")
        if name in self and not replace:
            raise ValueError(f"{self.kind} '{name}' is already registered; pass replace=True to override it")
        self[name] = entry
        return entry

    def lookup(self, name: Any, where: str = "") -> Any:
        """The entry called ``name``, or a RecipeError: 'unknown op 'conv3'' with a did-you-mean,
        else the known names; ``where`` follows the name ('in train.tta')."""
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: a list or mapping where a name should be
            shown = f"'{name}'" if isinstance(name, str) else repr(name)
            raise RecipeError(
                f"unknown {self.kind} {shown}" + (f" {where}" if where else ""),
                hint=did_you_mean(name, self)
                or f"known {self.plural}: {', '.join(self)}; register your own with "
                f"{self.register} and, on the command line, load it with "
                f"--import FILE",
            ) from None


def summary(entry: Any) -> str:
    """The first line of an entry's doc."""
    doc = (getattr(entry, "doc", "") or "").strip()
    return doc.splitlines()[0] if doc else ""


def parameters(entry: Any) -> Iterator[Tuple[str, Any]]:
    """(name, default) of an entry's parameters; ops.REQUIRED for a required one."""
    for name, param in (getattr(entry, "params", None) or {}).items():
        yield name, param.default


def registry(plural: str) -> Registry:
    """The registry of a kind named as ``netgraph list`` names it, or a RecipeError."""
    try:
        return REGISTRIES[plural]
    except KeyError:
        raise RecipeError(
            f"unknown kind '{plural}'",
            hint=did_you_mean(plural, REGISTRIES) or "kinds: " + ", ".join(REGISTRIES),
        ) from None


def listing(plural: str = "") -> str:
    """What ``netgraph list [KIND]`` prints: each kind's entries with their first doc line
    and parameters (``name: default``, a bare name for a required one)."""
    import yaml

    kinds = [registry(plural)] if plural else list(REGISTRIES.values())
    lines = []
    for kind in kinds:
        lines.append(f"{kind.plural} ({len(kind)}; register with {kind.register}):")
        if getattr(kind, "note", ""):
            lines.append(f"  ({kind.note})")
        for name, entry in kind.items():
            params = ", ".join(
                key
                if default is REQUIRED
                else f"{key}: {yaml.safe_dump(default, default_flow_style=True).splitlines()[0]}"
                for key, default in parameters(entry)
            )
            note = f" ({entry.note})" if getattr(entry, "note", "") else ""
            lines.append(f"  {name:22} {summary(entry)}{note}" + (f" [{params}]" if params else ""))
    return "\n".join(lines)

"""The one registry type and the one part record: named, pluggable parts of one kind.

Ops, passes, optimizers, schedule shapes, averaging, augmentations, test-time views and
data sources each live in a ``Registry`` of ``Part`` records. A part is a small frozen
record -- its name, the function registered under it, its parameters (``schema.Param``)
and its doc -- that a kind extends with its own fields only (an op's shape rule, an
optimizer's ``linear`` flag), as timm describes an optimizer by one small info record:
a kind is a record plus a builder, not a class hierarchy of its own. Registering
(``Registry.register``, or ``Registry.decorator`` behind each public ``register_x``;
on the command line a file loaded with ``--import FILE``), reading one as a recipe writes
it (``Registry.parse``: NAME or {NAME: params}), looking a name up with a did-you-mean
error and listing what is registered (``netgraph list [KIND]``) are written here once.

A registry is a dict from name to record, so ``name in OPS``, ``OPS[name]`` and
``del OPS[name]`` (a test cleaning up) read as for any dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Type

from netgraph.core.errors import RecipeError, did_you_mean
from netgraph.core.schema import REQUIRED, Param, as_param, check_params, named


@dataclass(frozen=True)
class Part:
    """One registered part: its ``name``, the ``function`` registered under it (what builds
    the part -- a module, an optimizer, an augmentation -- or the part itself: a pass, a view,
    a reader), its ``params`` (name -> Param) and its ``doc`` (the function's docstring).
    A kind's own fields go in a subclass, each with a default."""

    name: str
    function: Optional[Callable[..., Any]]
    params: Dict[str, Param] = field(default_factory=dict)
    doc: str = ""

    @property
    def summary(self) -> str:
        """The first line of the doc (``netgraph list``)."""
        doc = self.doc.strip()
        return doc.splitlines()[0] if doc else ""

    def given(self, value: Any, owner: str) -> Dict[str, Any]:
        """The parameters that ``{NAME: value}`` sets when ``value`` is not a mapping: none
        (a RecipeError); a kind whose parts take one value ({cutout: 8}) says which."""
        if self.params:
            first = next(iter(self.params))
            raise RecipeError(
                f"the parameters of {owner} are a mapping, got {value!r}",
                hint=f"e.g. {{{self.name}: {{{first}: ...}}}}",
            )
        raise RecipeError(f"{owner} takes no value, got {value!r}", hint=f"write it as {self.name}")


REGISTRIES: Dict[str, Registry] = {}
"""Every registry by its kind's name in the plural ("ops", "passes", ...), in creation order."""


class Registry(dict):
    """Parts of one kind by name. ``kind`` names one in messages ("op", "test-time view"),
    ``plural`` the kind in ``netgraph list`` ("ops"), ``registered_by`` the Python function
    that adds one (for the hint of an unknown name), ``record`` the kind's Part type."""

    def __init__(self, kind: str, plural: str, registered_by: str, record: Type[Part] = Part):
        super().__init__()
        self.kind, self.plural, self.registered_by, self.record = kind, plural, registered_by, record
        self.note = ""  # a line `netgraph list` prints under the kind's heading
        if plural in REGISTRIES:
            raise ValueError(f"a registry of {plural} exists already")
        REGISTRIES[plural] = self

    def register(
        self,
        name: str,
        function: Optional[Callable[..., Any]],
        *,
        params: Optional[Dict[str, Any]] = None,
        doc: Optional[str] = None,
        replace: bool = False,
        **own: Any,
    ) -> Part:
        """Register one part: ``record(name, function, params, doc, **own)``. ``params`` maps
        each parameter to a type (required), a default value (optional, typed by it) or a
        Param; ``doc`` is the function's docstring unless given; ``own`` are the kind's own
        fields. A name taken already needs ``replace=True``."""
        part = self.record(
            name,
            function,
            {key: as_param(spec) for key, spec in (params or {}).items()},
            ((getattr(function, "__doc__", None) or "") if doc is None else doc).strip(),
            **own,
        )
        return self.add(name, part, replace=replace)

    def decorator(self, name: str, **options: Any) -> Callable[[Callable], Callable]:
        """``register`` as a decorator: ``@REG.decorator(name, params=...)`` registers the
        function it decorates and returns it unchanged (every public ``register_x``)."""

        def decorate(function: Callable) -> Callable:
            self.register(name, function, **options)
            return function

        return decorate

    def add(self, name: str, part: Any, replace: bool = False) -> Any:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.kind} name {name!r} must be a Python identifier")
        if name in self and not replace:
            raise ValueError(f"{self.kind} '{name}' is already registered; pass replace=True to override it")
        self[name] = part
        return part

    def lookup(self, name: Any, where: str = "") -> Any:
        """The part called ``name``, or a RecipeError: 'unknown op 'conv3'' with a did-you-mean,
        else the known names; ``where`` follows the name ('in train.tta')."""
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: a list or mapping where a name should be
            shown = f"'{name}'" if isinstance(name, str) else repr(name)
            raise RecipeError(
                f"unknown {self.kind} {shown}" + (f" {where}" if where else ""),
                hint=did_you_mean(name, self)
                or f"known {self.plural}: {', '.join(self)}; register your own with "
                f"{self.registered_by} and, on the command line, load it with "
                f"--import FILE",
            ) from None

    def parse(self, entry: Any, what: str) -> Tuple[Any, Dict[str, Any]]:
        """A part as a recipe writes it at ``what`` (train.optimizer) -- NAME, {NAME: {key:
        value}} or, where the kind allows, {NAME: value} -- as (part, its checked parameters,
        defaults filled in); a RecipeError names the part in every message."""
        name, raw = named(entry, what, self.kind, value=True, hint=f"known {self.plural}: {', '.join(self)}")
        part = self.lookup(name, f"in {what}")
        owner = f"{self.kind} '{name}'"
        try:
            raw = raw if isinstance(raw, dict) else part.given(raw, owner)
        except RecipeError as err:
            err.message = f"{what}: {err.message}"  # as named() says it for a kind without values
            raise
        try:
            return part, check_params(owner, part.params, raw)
        except RecipeError as err:
            if owner not in err.message:  # a bad value: say whose parameter it is
                err.message = f"{owner}: {err.message}"
            raise


def parameters(part: Part) -> Iterator[Tuple[str, Any]]:
    """(name, default) of a part's parameters; REQUIRED for a required one."""
    for name, param in part.params.items():
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
        lines.append(f"{kind.plural} ({len(kind)}; register with {kind.registered_by}):")
        if kind.note:
            lines.append(f"  ({kind.note})")
        for name, part in kind.items():
            params = ", ".join(
                key
                if default is REQUIRED
                else f"{key}: {yaml.safe_dump(default, default_flow_style=True).splitlines()[0]}"
                for key, default in parameters(part)
            )
            note = f" ({part.note})" if getattr(part, "note", "") else ""
            lines.append(f"  {name:22} {part.summary}{note}" + (f" [{params}]" if params else ""))
    return "\n".join(lines)

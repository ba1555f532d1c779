"""Recipes: YAML files read safely, merged along their `base:` chain, overridden
from the command line, and checked section by section.

A recipe is data only: it is read with PyYAML's safe loader, so no tag can
build a Python object or run code. The result is a :class:`Recipe` holding
plain dicts and lists, plus the file and line each key came from, so every
later stage can point the user at the line to fix.
"""

from __future__ import annotations

import copy
import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import yaml

from netgraph.core.errors import RecipeError, did_you_mean, digit_count, shown, shown_path
from netgraph.core.schema import named

KeyPath = Tuple[Union[str, int], ...]
Location = Tuple[Optional[str], Optional[int]]

SECTIONS = {
    "base": "path of the parent recipe, relative to this file",
    "name": "a short name (used as the compiled module's class name)",
    "description": "free text",
    "input": "the graph input: {shape: [channels, height, width]}",
    "output": "path of the output node (default: the last node)",
    "network": "the nested dict of named nodes",
    "blocks": "named, parameterised sub-networks used in network with {block: NAME, ...}",
    "transforms": "the list of rewrite passes applied to the graph, in order",
    "data": "the data set (read by the training engine)",
    "train": "training settings (read by the training engine)",
}
DEFAULT_INPUT_SHAPE = [3, 32, 32]
# Guards against YAML that expands without bound: resnet9.yaml nests 5 levels deep and holds
# 77 values, but an anchor used inside itself nests forever, and aliases of aliases
# (*a repeating *b repeating *c ...) multiply into millions of values.
MAX_DEPTH = 50
MAX_VALUES = 100_000
# Python refuses to turn text of more than 4,300 digits into an int (sys.int_info's default
# str_digits_check_threshold): refused with the line rather than a ValueError.
MAX_DIGITS = 4300
# A recipe, its base: files together, is at most this many bytes, refused before any is parsed.
# The largest here, airbench94_muon.yaml with its base, is 8.8 KB (resnet9.yaml 1.3 KB), and
# YAML is read in Python at about 20 us a value: a 1.5 MB file of 60,000 nodes took 8.7 s and
# 470 MB to refuse, the densest 32 KiB (a list of 16,000 numbers) takes 0.6 s of CPU on a
# loaded 2-core machine, inside the 1 s a refusal or acceptance may cost beyond start-up.
MAX_FILE_BYTES = 32 * 2**10


@dataclass
class Recipe:
    """A loaded recipe: merged sections plus where each key came from."""

    file: Optional[str]
    sections: Dict[str, Any]
    positions: Dict[KeyPath, Location] = field(default_factory=dict)
    # (key path, "--set ...", whether it replaced the value whole) for each --set, in order
    overrides: List[Tuple[KeyPath, str, bool]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sections.get("name") or (Path(self.file).stem if self.file else "network")

    @property
    def network(self) -> Dict[str, Any]:
        return self.sections["network"]

    @property
    def blocks(self) -> Dict[str, Any]:
        return self.sections.get("blocks") or {}

    @property
    def transforms(self) -> List[Any]:
        return self.sections.get("transforms") or []

    @property
    def data(self) -> Dict[str, Any]:
        return self.sections.get("data") or {}

    @property
    def train(self) -> Dict[str, Any]:
        return self.sections.get("train") or {}

    @property
    def input_shape(self) -> List[int]:
        return (self.sections.get("input") or {}).get("shape", DEFAULT_INPUT_SHAPE)

    @property
    def output(self) -> Optional[str]:
        return self.sections.get("output")

    def where(self, keypath: Sequence[Union[str, int]]) -> Location:
        """File and line of the deepest known key along ``keypath``, and each ``--set`` that
        set something at, above or below it: ("r.yaml:3, --set network.fc.out=-3", None).
        A value a --set replaced whole is named by the --set alone."""
        keypath = tuple(keypath)
        sets = [
            (k, where, whole)
            for k, where, whole in self.overrides
            if k[: len(keypath)] == keypath or keypath[: len(k)] == k
        ]
        if not sets:
            return _where(self.positions, keypath, self.file)
        named = ", ".join(dict.fromkeys(where for _, where, _ in sets))
        if any(whole and keypath[: len(k)] == k for k, _, whole in sets):
            return named, None
        file, line = _where(self.positions, keypath, self.file)
        if file is None:
            return named, None
        return f"{file}:{line}, {named}" if line else f"{file}, {named}", None

    def blame(self, err: RecipeError, keypath: Sequence[Union[str, int]]) -> RecipeError:
        """Put the --set that gave ``keypath`` (or a mapping above it) first in ``err``'s place,
        before the inherited line where the mistake showed: the user's own words first."""
        keypath = tuple(keypath)
        sets = [where for k, where, _ in self.overrides if keypath[: len(k)] == k]
        if sets and sets[-1] not in (err.file or ""):
            err.file = sets[-1] + (f", {err.file}" if err.file else "")
            err.args = (str(err),)
        return err

    def error(
        self,
        message: str,
        keypath: Sequence[Union[str, int]] = (),
        *,
        node: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> RecipeError:
        file, line = self.where(keypath)
        return RecipeError(message, file=file, line=line, node=node, hint=hint)


# --- reading one file --------------------------------------------------------


class SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus floats without a dot (``1e-5``, ``5e-4``): YAML 1.1
    reads those as strings, and recipes are full of them."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml_value(text: str, where: str = "<value>") -> Any:
    """One YAML value (a --set value, say), read and size-checked like a recipe file is;
    errors name ``where`` (a --set has one line: none is given)."""
    if len(text) > MAX_FILE_BYTES:  # a --set from Python: no command line limits it
        raise RecipeError(
            f"a value of {len(text):,} characters: too large for a recipe, which is at most "
            f"{MAX_FILE_BYTES:,} bytes (refused before it is read)",
            file=where,
        )
    try:
        return parse_yaml(text, where)[0]
    except RecipeError as e:
        e.line = None
        if e.message.startswith("not valid YAML"):
            e.message = "value is " + e.message
        raise e.located() from None


def _where(
    positions: Dict[KeyPath, Location], keypath: Sequence[Union[str, int]], file: Optional[str]
) -> Location:
    keypath = tuple(keypath)
    for n in range(len(keypath), 0, -1):
        if keypath[:n] in positions:
            return positions[keypath[:n]]
    return file, None


def _positions(
    loader, node, path: KeyPath, file: str, out: Dict[KeyPath, Location], visited: Optional[set] = None
) -> None:
    """Record the line of every key and list item; refuse duplicate keys and keys that
    are not plain scalars."""
    visited = set() if visited is None else visited
    if id(node) in visited:
        return  # an alias (*name) of a node walked already; an anchor inside itself never ends
    if len(path) > MAX_DEPTH:
        raise RecipeError(
            f"nested more than {MAX_DEPTH} levels deep",
            file=file,
            line=node.start_mark.line + 1,
            hint="a recipe is a few levels deep; does an anchor (&name) contain its own alias (*name)?",
        )
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: Dict[Any, int] = {}  # key -> its line
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise RecipeError(
                    "a key must be a name or a number, not a list or mapping",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    hint="a '?' before a key or a key in [] or {} makes one",
                )
            _check_digits(key_node, file)
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:int":  # as the data has it: 0x10 is 16, 1:30 is 90
                key = loader.construct_yaml_int(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise RecipeError(
                    f"key '{key}' appears twice (first on line {seen[key]})",
                    file=file,
                    line=line,
                    hint="YAML would silently keep only the last one",
                )
            seen[key] = line
            out[path + (key,)] = (file, line)
            _positions(loader, value_node, path + (key,), file, out, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = (file, item.start_mark.line + 1)
            _positions(loader, item, path + (i,), file, out, visited)
    else:
        _check_digits(node, file)


def _check_digits(node, file: str) -> None:
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_DIGITS:
        raise RecipeError(
            f"an integer of {len(node.value):,} digits",
            file=file,
            line=node.start_mark.line + 1,
            hint=f"numbers in a recipe have at most {MAX_DIGITS:,} digits",
        )


def _check_size(
    data: Any, file: Optional[str] = None, positions: Optional[Dict[KeyPath, Location]] = None
) -> None:
    """Refuse data nested deeper than MAX_DEPTH (a structure that contains itself never
    ends) or holding more than MAX_VALUES values once aliases are expanded."""
    stack: List[Tuple[Any, KeyPath]] = [(data, ())]
    count = 0
    while stack:
        value, path = stack.pop()
        count += 1
        if count > MAX_VALUES or len(path) > MAX_DEPTH:
            where, line = _where(positions or {}, path, file)
            if count > MAX_VALUES:
                raise RecipeError(
                    f"the recipe holds more than {MAX_VALUES:,} values",
                    file=where,
                    line=line,
                    hint="aliases (*name) of aliases multiply; write the repeated part as a block instead",
                )
            raise RecipeError(
                f"nested more than {MAX_DEPTH} levels deep",
                file=where,
                line=line,
                hint="does a value contain itself?",
            )
        if isinstance(value, dict):
            for key in value:
                _check_int(key, path, file, positions, "a key")  # no YAML file can spell it
            stack.extend((v, path + (k,)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))
        else:
            _check_int(value, path, file, positions)


def _check_int(value: Any, path: KeyPath, file: Optional[str], positions, what: str = "an integer") -> None:
    """An int from Python of more digits than a recipe file may hold (MAX_DIGITS) is refused
    as the file's is: Python cannot even print it in a message, or name a node after it."""
    if isinstance(value, int) and value.bit_length() > 14_000 and digit_count(value) > MAX_DIGITS:
        where, line = _where(positions or {}, path, file)
        at = ".".join(map(str, path))  # the keys above it are checked first
        raise RecipeError(
            f"{what} of {digit_count(value):,} digits" + (f" (in {shown(at)})" if at else ""),
            file=where,
            line=line,
            hint=f"numbers in a recipe have at most {MAX_DIGITS:,} digits",
        )


def _line(mark, text: str) -> Optional[int]:
    """The 1-based line of a YAML error; one found at the end of the text (an unfinished
    mapping, say) is put on the last line rather than the empty one after it."""
    if mark is None:
        return None
    return max(1, min(mark.line + 1, len(text.splitlines())))


def parse_yaml(text: str, file: str = "<recipe>") -> Tuple[Any, Dict[KeyPath, Location]]:
    """Parse one YAML document with the safe loader; return data and key positions."""
    positions: Dict[KeyPath, Location] = {}
    loader = None
    try:
        loader = SafeLoader(text)  # inside the try: it refuses a NUL or control byte at once
        node = loader.get_single_node()
        if node is None:
            return {}, positions
        _positions(loader, node, (), file, positions)
        data = loader.construct_document(node)
        _check_size(data, file, positions)
    except yaml.constructor.ConstructorError as e:
        line = _line(e.problem_mark or e.context_mark, text)
        if "could not determine a constructor" not in str(e.problem):
            # Not a tag: a malformed merge key (<<), say.
            raise RecipeError(f"not valid YAML: {e.problem}", file=file, line=line) from None
        raise RecipeError(
            f"YAML tag refused: {e.problem}",
            file=file,
            line=line,
            hint="recipes are data: only plain YAML (mappings, lists, "
            "numbers, strings) is read, nothing is executed",
        ) from None
    except RecursionError:
        raise RecipeError("not valid YAML: nested too deeply to read", file=file) from None
    except yaml.MarkedYAMLError as e:
        raise RecipeError(
            f"not valid YAML: {e.problem or e.context}",
            file=file,
            line=_line(e.problem_mark or e.context_mark, text),
        ) from None
    except yaml.YAMLError as e:
        raise RecipeError(f"not valid YAML: {e}", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, positions


# --- merging along base: -----------------------------------------------------


def _same_kind(a: dict, b: dict) -> bool:
    """Two node mappings of different ops (or blocks) replace each other instead of merging."""
    for key in ("op", "block"):
        if key in b and b.get(key) != a.get(key):
            return False
    return True


def deep_merge(
    base: Any,
    over: Any,
    file: Optional[str] = None,
    positions: Optional[Dict[KeyPath, Location]] = None,
    path: KeyPath = (),
) -> Any:
    """``over`` merged onto ``base``: mappings merge key by key, the child wins,
    ``null`` deletes a key, lists replace, ``key+: [...]`` appends to the
    parent's list and ``key: {2: ...}`` merges into the parent list's item 2.
    A node whose ``op`` (or ``block``) changes is replaced whole.
    """
    if not isinstance(over, dict):
        return _strip_nulls(copy.deepcopy(over))
    if isinstance(base, list) and over and all(isinstance(k, int) for k in over):
        return _merge_items(base, over, file, positions, path)
    if not isinstance(base, dict) or not _same_kind(base, over):
        base = {}
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(key, str) and key.endswith("+") and len(key) > 1:
            key = key[:-1]
            where = (positions or {}).get(path + (key + "+",), (file, None))
            if not isinstance(value, list):
                raise RecipeError(
                    f"'{key}+:' appends to a list and needs a list, got {shown(value)}",
                    file=where[0],
                    line=where[1],
                )
            previous = out.get(key)
            if previous is not None and not isinstance(previous, list):
                raise RecipeError(
                    f"'{key}+:' appends to a list, but the parent's '{key}' is {type(previous).__name__}",
                    file=where[0],
                    line=where[1],
                )
            out[key] = (previous or []) + _strip_nulls(copy.deepcopy(value))
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = deep_merge(out.get(key), value, file, positions, path + (key,))
    return out


def _merge_items(base: list, over: dict, file, positions, path) -> list:
    """``{3: {...}}`` over a list merges into item 3 (counting from 0); ``null`` removes it."""
    out = copy.deepcopy(base)
    for index in over:
        if not -len(base) <= index < len(base):
            where = (positions or {}).get(path + (index,), (file, None))
            raise RecipeError(
                f"item {index} does not exist: the parent's list has {len(base)} items "
                f"(0 to {len(base) - 1})",
                file=where[0],
                line=where[1],
            )
    for index, value in over.items():
        if value is not None:
            out[index] = deep_merge(out[index], value, file, positions, path + (index,))
    removed = {i % len(base) for i, v in over.items() if v is None}
    return [item for i, item in enumerate(out) if i not in removed]


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        # A list item {name: null} (YAML's `- remove_identity:`) is a name without parameters,
        # not a deletion: transforms and data.augment read it as such.
        return [
            v if isinstance(v, dict) and len(v) == 1 and None in v.values() else _strip_nulls(v)
            for v in value
        ]
    return value


def _rebase_positions(child: Dict[KeyPath, Location], base_data: Any) -> Dict[KeyPath, Location]:
    """Child positions as paths into the merged data: 'key+' loses its '+', and
    appended list items are shifted past the parent's items."""
    out = {}
    for raw, loc in child.items():
        path: List[Union[str, int]] = []
        node, i = base_data, 0
        while i < len(raw):
            part = raw[i]
            append = isinstance(part, str) and part.endswith("+") and len(part) > 1
            if append and isinstance(part, str):  # isinstance again: mypy does not narrow through the flag
                part = part[:-1]
            path.append(part)
            node = node.get(part) if isinstance(node, dict) else None
            following = raw[i + 1] if i + 1 < len(raw) else None
            if append and isinstance(following, int):
                path.append(following + (len(node) if isinstance(node, list) else 0))
                node, i = None, i + 1
            i += 1
        out[tuple(path)] = loc
    return out


def display_path(path: Union[str, Path]) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_recipe_text(path: Path, file: str, budget: int = MAX_FILE_BYTES) -> str:
    """The text of a recipe file of at most ``budget`` bytes (what its base: chain has left of
    MAX_FILE_BYTES), refused unread when larger; every way reading it fails is a RecipeError."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size  # 0 for a pipe: read, and counted, below
            data = f.read(budget + 1) if size <= budget else b""
    except FileNotFoundError:
        near = (
            did_you_mean(path.name, [p.name for p in path.parent.glob("*.yaml")])
            if path.parent.is_dir()
            else None
        )
        raise RecipeError("recipe file not found", file=file, hint=near) from None
    except OSError as e:  # a folder, no permission, a link loop
        raise RecipeError(f"cannot read recipe file: {unusable(e)}", file=file) from None
    if size > budget or len(data) > budget:
        raise _too_large(max(size, len(data)), budget, file)
    try:
        return data.decode("utf-8")
    except ValueError as e:
        raise RecipeError(f"cannot read recipe file: {e}", file=file) from None


def _too_large(size: int, budget: int, file: str) -> RecipeError:
    used = MAX_FILE_BYTES - budget  # by the recipes that name this file as their base:
    held = f"{'more than ' if size == budget + 1 else ''}{size:,} bytes"
    return RecipeError(
        (
            f"the file holds {held}, and the recipes built on it {used:,}: together "
            if used
            else f"the file holds {held}: "
        )
        + f"too large for a recipe, which is at most {MAX_FILE_BYTES:,} bytes with its base: files "
        "(refused before it is read)",
        file=file,
        hint="a recipe is a few KB: write a part that repeats once, as a block",
    )


def unusable(error: Exception) -> str:
    """Why a path cannot be read, in words, without the path (the error names it already: a
    name of 5,000 characters was printed twice)."""
    if isinstance(error, RuntimeError) or getattr(error, "errno", None) == errno.ELOOP:
        # pathlib's resolve() raises RuntimeError("Symlink loop from ...") before Python 3.13
        return "a loop of symbolic links"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error)


def _load_chain(
    path: Path, stack: Tuple[Path, ...], budget: int = MAX_FILE_BYTES
) -> Tuple[Dict[str, Any], Dict[KeyPath, Location]]:
    file = display_path(path)
    text = read_recipe_text(path, file, budget)
    data, positions = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise RecipeError(
            f"a recipe is a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}",
            file=file,
            line=1,
        )
    base_ref = data.pop("base", None)
    if base_ref is None:
        return deep_merge({}, data, file, positions), _rebase_positions(positions, {})
    line = positions.get(("base",), (file, None))[1]
    if not isinstance(base_ref, str) or not base_ref.strip():
        raise RecipeError(
            f"base: must be a file path, got {shown(base_ref)}",
            file=file,
            line=line,
            hint="e.g. base: resnet9.yaml, relative to this file",
        )
    try:
        parent = (path.parent / base_ref).resolve()
        found = parent.is_file()
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a name too long, a symlink loop
        raise RecipeError(
            f"base: {shown(base_ref)} is not a usable path: {unusable(e)}", file=file, line=line
        ) from None
    if parent in stack + (path,):
        chain = " -> ".join(display_path(p) for p in stack + (path, parent))
        raise RecipeError(
            f"base: chain loops back on itself: {chain}",
            file=file,
            line=line,
            hint="remove one of the base: lines",
        )
    if not found:
        raise RecipeError(
            f"base recipe {shown(base_ref)} not found (looked for {shown_path(str(parent))})",
            file=file,
            line=line,
            hint="base: is relative to the file that names it",
        )
    base_data, base_positions = _load_chain(parent, stack + (path,), budget - len(text.encode()))
    base_data.pop("name", None)  # a name names one recipe; a child is named by its own file
    merged = deep_merge(base_data, data, file, positions)
    return merged, {**base_positions, **_rebase_positions(positions, base_data)}


# --- overrides ---------------------------------------------------------------


def apply_override(sections: Dict[str, Any], assignment: str) -> List[Tuple[KeyPath, bool]]:
    """Apply one ``--set key.path=value`` (``key.path+=[...]`` appends to a list).

    Returns the key paths it changed, each with whether it replaced the value whole (a
    mapping it created on the way, a list item, a deleted key) or merged into it, so
    that errors about them can name the ``--set`` (Recipe.where)."""
    where = f"--set {assignment}"
    if "=" not in assignment:
        raise RecipeError("expected KEY=VALUE, e.g. train.epochs=12", file=where)
    key, text = assignment.split("=", 1)
    append = key.endswith("+")
    key = key.rstrip("+").strip()
    value = load_yaml_value(text, where) if text.strip() else None
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise RecipeError(f"'{key}' is not a key path like train.epochs", file=where)
    if parts[0] not in SECTIONS:
        raise RecipeError(
            f"unknown section '{parts[0]}'",
            file=where,
            hint=did_you_mean(parts[0], SECTIONS) or "sections: " + ", ".join(SECTIONS),
        )
    node: Any = sections
    keypath: KeyPath = ()
    changes: List[Tuple[KeyPath, bool]] = []
    for i, part in enumerate(parts[:-1]):
        node, step, created = _step(node, part, parts[: i + 1], where)
        keypath += (step,)
        if created:
            changes.append((keypath, True))
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, parts, where)
        if append or value is None:
            raise RecipeError("cannot append to or delete a list item by index", file=where)
        node[index] = value
        return changes + [(keypath + (index,), True)]
    if not isinstance(node, dict):
        raise RecipeError(f"'{'.'.join(parts[:-1])}' is {shown(node)}, not a mapping", file=where)
    keypath += (last,)
    if append:
        previous = node.get(last) or []
        if not isinstance(previous, list) or not isinstance(value, list):
            raise RecipeError("KEY+=[...] appends a list to a list", file=where)
        node[last] = previous + value
        return changes + [(keypath + (i,), True) for i in range(len(previous), len(node[last]))]
    if value is None:
        node.pop(last, None)
    elif isinstance(value, dict) and isinstance(node.get(last), dict):
        merged = _same_kind(node[last], value)  # a node given another op is replaced whole
        node[last] = deep_merge(node[last], value, where)
        return changes + [(keypath, not merged)]
    else:
        node[last] = value
    return changes + [(keypath, True)]


def _index(node: list, part: str, parts, where) -> int:
    try:
        index = int(part)
        node[index]
    except (ValueError, IndexError):
        raise RecipeError(
            f"'{'.'.join(parts)}': '{part}' is not an index into a list of {len(node)}", file=where
        ) from None
    return index


# Under these sections a missing key on the way down is a typo (a node, a block, a pass
# name): --set network.layer1.convbn.c=96 must not quietly add a node 'convbn'. In train:
# and data: it creates the mapping (data.synthetic.train=512 on a recipe without one).
NAMED_BY_THE_USER = ("network", "blocks", "transforms")


def _step(node, part, parts, where):
    """One step down a --set key path: (the child, its key, whether it was created)."""
    if isinstance(node, list):
        index = _index(node, part, parts, where)
        return node[index], index, False
    if not isinstance(node, dict):
        raise RecipeError(f"'{'.'.join(parts[:-1])}' is {shown(node)}, not a mapping", file=where)
    if part not in node and parts[0] in NAMED_BY_THE_USER and len(parts) > 1:
        add = f"to add one, set it whole: --set {'.'.join(parts)}={{...}}"
        raise RecipeError(
            f"'{'.'.join(parts[:-1])}' has no '{part}'",
            file=where,
            hint=did_you_mean(part, node) or (f"it has: {', '.join(map(str, node))}; {add}" if node else add),
        )
    if node.get(part) is None:
        node[part] = {}
        return node[part], part, True
    return node[part], part, False


# --- checking the sections ---------------------------------------------------


def check_sections(recipe: Recipe) -> None:
    """Shape of each top-level section; the network itself is checked by graph.build_graph."""
    s = recipe.sections
    for key in s:
        if key not in SECTIONS:
            raise recipe.error(
                f"unknown section '{key}'",
                (key,),
                hint=did_you_mean(key, SECTIONS) or "sections: " + ", ".join(SECTIONS),
            )
    network = s.get("network")
    if not isinstance(network, dict) or not network:
        raise recipe.error(
            "the recipe has no network: add a 'network:' section with at least one node", ("network",)
        )
    for key in ("blocks", "data", "train", "input"):
        if key in s and not isinstance(s[key], dict):
            raise recipe.error(
                f"'{key}:' must be a mapping, got {type(s[key]).__name__}",
                (key,),
                hint=f"write its keys indented under '{key}:'",
            )
    for key in ("name", "description"):
        if key in s and not isinstance(s[key], str):
            raise recipe.error(f"'{key}:' must be text, got {shown(s[key])}", (key,), hint="put it in quotes")
    for name, body in (s.get("blocks") or {}).items():
        if not isinstance(body, dict) or not [k for k in body if k != "$defaults"]:
            raise recipe.error(
                f"block '{name}' must be a mapping of one or more nodes",
                ("blocks", name),
                hint="e.g. conv_bn: {conv: {op: conv2d, out: $c}, act: {op: relu}}",
            )
    if "input" in s:
        _check_input(recipe, s["input"])
    if "output" in s and not isinstance(s["output"], str):
        raise recipe.error(
            f"output: must be a node path, got {shown(s['output'])}", ("output",), hint="e.g. output: head/fc"
        )
    transforms = s.get("transforms")
    if transforms is not None:
        _check_transforms(recipe, transforms)


def _check_input(recipe: Recipe, section: Dict[str, Any]) -> None:
    """`input:` takes only `shape:`, a list of positive integers."""
    unknown = [k for k in section if k != "shape"]
    if unknown:
        raise recipe.error(
            f"unknown key '{unknown[0]}' in input:",
            ("input", unknown[0]),
            hint="input: takes only shape: [channels, height, width]",
        )
    shape = section.get("shape")
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise recipe.error(
            f"input shape must be a list of positive integers, got {shown(shape)}",
            ("input", "shape"),
            hint="e.g. shape: [3, 32, 32] (channels, height, width)",
        )


def _check_transforms(recipe: Recipe, transforms: Any) -> None:
    """`transforms:` is a list of pass names or {pass_name: {parameters}}."""
    if not isinstance(transforms, list):
        raise recipe.error(
            "transforms: must be a list of passes",
            ("transforms",),
            hint="e.g. transforms: [swap_pool_activation, {ghost_batch_norm: {splits: 16}}]",
        )
    for i, entry in enumerate(transforms):
        transform_entry(entry, recipe, i)


def transform_entry(entry: Any, recipe: Recipe, index: int) -> Tuple[str, Dict[str, Any]]:
    """One `transforms:` item as (pass name, parameters): `name` or `{name: {params}}`."""
    try:
        return named(
            entry,
            f"transforms item {index + 1}",
            "pass",
            hint="netgraph passes lists the passes and their parameters",
        )
    except RecipeError as err:
        raise err.located(*recipe.where(("transforms", index))) from None


# --- entry points ------------------------------------------------------------


def load_recipe(path: Union[str, os.PathLike], overrides: Iterable[str] = ()) -> Recipe:
    """Read a recipe file, follow its base: chain, apply ``--set`` overrides and check it."""
    path = Path(path)
    try:
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a symlink loop
        raise RecipeError(f"cannot read recipe file: {unusable(e)}", file=str(path)) from None
    sections, positions = _load_chain(resolved, ())
    return _finish(Recipe(display_path(path), sections, positions), overrides)


def recipe_from_dict(
    sections: Dict[str, Any], file: Optional[str] = None, overrides: Iterable[str] = ()
) -> Recipe:
    """A recipe from a Python dict (notebooks, tests); the same checks as a file."""
    if not isinstance(sections, dict):
        raise RecipeError(f"a recipe is a mapping of sections, got {type(sections).__name__}", file=file)
    if "base" in sections:
        raise RecipeError("base: works only in recipe files; load the file with load_recipe", file=file)
    _check_size(sections, file)
    return _finish(Recipe(file, deep_merge({}, sections, file)), overrides)


def _finish(recipe: Recipe, overrides: Iterable[str]) -> Recipe:
    for assignment in overrides:
        for keypath, whole in apply_override(recipe.sections, assignment):
            recipe.overrides.append((keypath, f"--set {assignment}", whole))
    check_sections(recipe)
    return recipe

"""The one error type for user mistakes.

Every mistake a user can make in a recipe (or on the command line) becomes a
``RecipeError`` that names where it happened (file, line, node path) and what
to do about it. The CLI prints it as one line and exits non-zero; any other
exception escaping netgraph is a bug in netgraph.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Union

# A value or name a message quotes is cut to about a line's worth: a base: name of 5,000
# characters made a "one-line" error of 10,122 characters (issue 31), a list of 3,000 numbers
# one of 17,000.
SHOWN_CHARS = 80
# Containers are shown this many levels deep: a recipe nests 5 levels, a hostile one 1,000.
SHOWN_DEPTH = 3


class RecipeError(ValueError):
    """A mistake in a recipe, with its location and a hint for the fix."""

    exit_code = 2  # the command line's status for it

    # set only by schema.check_params (the parameter the mistake is about); declared, not
    # defaulted, so an error without it still has no such attribute
    key: str

    def __init__(
        self,
        message: str,
        *,
        file: Union[str, os.PathLike, None] = None,
        line: Optional[int] = None,
        node: Optional[str] = None,
        hint: Optional[str] = None,
        setting: Optional[tuple] = None,
    ):
        self.message = message
        # the recipe key the mistake is about when it was found elsewhere (a pass refusing
        # train.batch_size): Recipe.blame names the --set that gave it first
        self.setting = setting
        self.file = None if file is None else str(file)
        self.line = line
        self.node = node
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = shown_path(self.file) + (f":{self.line}" if self.line else "") + ": "
        node = f"node '{self.node}': " if self.node else ""
        hint = f" ({self.hint})" if self.hint else ""
        # One line, always: a name or value quoted from a recipe may hold a line break.
        line = f"{where}{node}{self.message}{hint}".replace("\r", "\\r").replace("\n", "\\n")
        return _QUOTED.sub(lambda m: _cut(m.group(1)), line)

    def located(self, file=None, line=None, node=None) -> RecipeError:
        """Fill in whatever location this error does not know yet."""
        self.file = self.file or (None if file is None else str(file))
        self.line = self.line or line
        self.node = self.node or node
        self.args = (str(self),)
        return self


class WriteFailed(RecipeError):
    """A file netgraph writes (a checkpoint, a model, a log, a run folder, an ablation's
    records) could not be written: a full or read-only disk, not a mistake in the recipe.
    ``file`` is the file, the message the system's reason, ``hint`` what is kept and what to
    do. The command line exits with status 1 for it."""

    exit_code = 1


# A name quoted in a message ('{name}', the convention of every refusal) longer than a
# line's worth: cut where the line is made, so no refusal prints a hostile name whole. A quote
# opens after a space or bracket and closes before one (an apostrophe, "network's", does neither).
_QUOTED = re.compile(r"(?<![^\s(\[{,=:])'([^']{%d,})'(?=$|[\s)\]},.:;?!])" % (SHOWN_CHARS + 1))


def _cut(name: str) -> str:
    return f"'{name[:SHOWN_CHARS]}'... ({len(name):,} characters)"


def shown_path(text: str) -> str:
    """A path (or a --set) as a message names it: whole up to three lines' worth, else its
    start and its end, where the file's name is."""
    if len(text) <= 3 * SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}...({len(text):,} characters)...{text[-SHOWN_CHARS:]}"


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` as a message quotes it: its repr, cut to about ``limit`` characters. An
    integer of more digits is 'a 5,001-digit integer' (Python refuses to print one of more
    than 4,300 digits at all), a long string is cut with its length given, a long list or
    mapping ends in '...'. The one formatter of values in refusals."""
    return _shown(value, limit, 0)


def _shown(value: Any, limit: int, depth: int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        digits = digit_count(value)
        return repr(value) if digits <= limit else f"a {digits:,}-digit integer"
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, (list, tuple, dict)):
        return _shown_items(value, limit, depth)
    try:
        text = repr(value)
    except Exception:  # a Python caller's object whose repr fails: its type says enough
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _shown_items(value, limit: int, depth: int) -> str:
    """A list, tuple or mapping as repr writes it, while it fits in ``limit`` characters."""
    ends = "{}" if isinstance(value, dict) else "()" if isinstance(value, tuple) else "[]"
    if depth >= SHOWN_DEPTH and value:
        return ends[0] + "..." + ends[1]
    parts: List[str] = []
    used = 2
    items = value.items() if isinstance(value, dict) else value
    for item in items:
        if isinstance(value, dict):
            text = f"{_shown(item[0], limit, depth + 1)}: {_shown(item[1], limit, depth + 1)}"
        else:
            text = _shown(item, limit, depth + 1)
        if parts and used + len(text) > limit:
            parts.append("...")
            break
        parts.append(text)
        used += len(text) + 2
    comma = "," if isinstance(value, tuple) and len(value) == 1 else ""
    return ends[0] + ", ".join(parts) + comma + ends[1]


def digit_count(value: int) -> int:
    """The decimal digits of an integer, without printing it (no limit on its size)."""
    value = abs(value)
    if value.bit_length() < 1000:
        return len(str(value))
    digits = int(math.log10(value)) + 1  # a float: off by one next to a power of ten
    if value < 10 ** (digits - 1):
        return digits - 1
    return digits + (value >= 10**digits)


def did_you_mean(word: str, choices: Iterable[str]) -> Optional[str]:
    """'did you mean ...?' for the closest names, or None when nothing is close."""
    by_lower: Dict[str, str] = {}
    for c in choices:
        by_lower.setdefault(str(c).lower(), str(c))
    close = [
        by_lower[c] for c in difflib.get_close_matches(str(word).lower(), list(by_lower), n=3, cutoff=0.6)
    ]
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"

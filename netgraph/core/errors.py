"""The one error type for user mistakes.

Every mistake a user can make in a recipe (or on the command line) becomes a
``RecipeError`` that names where it happened (file, line, node path) and what
to do about it. The CLI prints it as one line and exits non-zero; any other
exception escaping netgraph is a bug in netgraph.
"""

from __future__ import annotations

import difflib
import os
from typing import Dict, Iterable, Optional, Union


class RecipeError(ValueError):
    """A mistake in a recipe, with its location and a hint for the fix."""

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
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        node = f"node '{self.node}': " if self.node else ""
        hint = f" ({self.hint})" if self.hint else ""
        # One line, always: a name or value quoted from a recipe may hold a line break.
        return f"{where}{node}{self.message}{hint}".replace("\r", "\\r").replace("\n", "\\n")

    def located(self, file=None, line=None, node=None) -> RecipeError:
        """Fill in whatever location this error does not know yet."""
        self.file = self.file or (None if file is None else str(file))
        self.line = self.line or line
        self.node = self.node or node
        self.args = (str(self),)
        return self


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

"""No function in netgraph/ is over 60 lines, from its def line (its decorators left out) to
its last line: argparse declarations included, a small function per command instead."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "netgraph"
LIMIT = 60


def long_functions(source: str, limit: int = LIMIT) -> List[Tuple[str, int, int]]:
    """(name, first line, lines) of each function or method, nested ones included, over ``limit``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.name, node.lineno, lines))
    return found


def _function(lines: int, indent: str = "") -> str:
    """A function of exactly ``lines`` lines: the def and lines - 1 statements."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
    return f"{indent}def f():\n{body}"


@pytest.mark.parametrize(
    "source, flagged",
    [
        (_function(60), []),
        (_function(61), [("f", 1, 61)]),
        (f"class C:\n{_function(61, '    ')}", [("f", 2, 61)]),  # a method
        (f"async {_function(61)}", [("f", 1, 61)]),
        (f"def outer():\n{_function(61, '    ')}", [("outer", 1, 62), ("f", 2, 61)]),  # nested
    ],
)
def test_the_checker_flags_functions_over_the_limit(source, flagged):
    assert long_functions(source) == flagged


def test_no_function_in_netgraph_is_over_60_lines():
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({lines} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, line, lines in long_functions(path.read_text())
    ]
    assert not too_long, f"split these into well-named helpers of at most {LIMIT} lines:\n" + "\n".join(
        too_long
    )

"""The layout shows the architecture: every import in netgraph/ (those inside functions
included) goes down the stages, never up, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "netgraph"

# The stages from the bottom up (docs/architecture.md draws them). A module may import its own
# stage and the stages below; graph and data sit side by side and import neither of each other.
STAGES = {"core": 0, "recipe": 1, "graph": 2, "data": 2, "train": 3, "runs": 4, "cli": 5}
TOP = 6  # netgraph/__init__.py and __main__.py: the public API over every stage


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: Set[str]) -> Iterator[Tuple[str, int]]:
    """(module, line) for each netgraph module ``path`` imports, at any depth of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            # "from pkg import mod" imports pkg.mod; "from mod import name" imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # netgraph.x.y.name -> netgraph.x.y
                target = target.rpartition(".")[0]
            if target.startswith("netgraph") and target != name:
                yield target, node.lineno


def stage(name: str) -> Tuple[int, str]:
    parts = name.split(".")
    if len(parts) < 2 or parts[1] not in STAGES:
        return TOP, "netgraph"
    return STAGES[parts[1]], parts[1]


def import_graph() -> nx.DiGraph:
    known = modules()
    g = nx.DiGraph()
    for name, path in known.items():
        g.add_node(name)
        for target, line in imported(name, path, set(known)):
            g.add_edge(name, target, line=line)
    return g


def test_every_module_belongs_to_a_stage():
    loose = [n for n in modules() if stage(n)[0] == TOP and n not in ("netgraph", "netgraph.__main__")]
    assert not loose, f"modules outside the stage packages {sorted(STAGES)}: {loose}"


def test_imports_only_go_down_the_stages():
    g = import_graph()
    upward = []
    for a, b, data in g.edges(data=True):
        (rank_a, home_a), (rank_b, home_b) = stage(a), stage(b)
        if rank_b > rank_a or (rank_b == rank_a and home_a != home_b and b != "netgraph"):
            upward.append(f"{modules()[a].relative_to(PACKAGE.parent)}:{data['line']} imports {b}")
    assert not upward, "imports that go up or across the stages:\n" + "\n".join(upward)


def test_there_is_no_import_cycle():
    g = import_graph()
    g.remove_nodes_from(["netgraph", "netgraph.__main__"])  # the API reaches every stage, lazily
    cycles = sorted(nx.simple_cycles(g), key=len)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c + c[:1]) for c in cycles[:10])


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from netgraph.runs import run\n", {"netgraph.runs.run"}),
        ("def f():\n    from netgraph.cli import main\n", {"netgraph.cli"}),
        ("from netgraph.graph.ops import Param\n", {"netgraph.graph.ops"}),
    ],
)
def test_the_reader_sees_imports_at_any_depth(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    known = set(modules())
    assert {t for t, _ in imported("netgraph.core.m", path, known)} == expected

"""README.md stays true: its commands and code run as written."""
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from netgraph import build_graph, recipe_from_dict

README = (ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = blocks("bash")[1].strip()
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples_run(index, monkeypatch):
    from netgraph.ops import OPS
    before = set(OPS)
    monkeypatch.chdir(ROOT)
    try:
        exec(compile(blocks("python")[index], f"README.md python block {index + 1}", "exec"), {})
    finally:
        for name in set(OPS) - before:
            del OPS[name]


@pytest.mark.parametrize("index", [i for i, b in enumerate(blocks("yaml")) if "base:" not in b])
def test_yaml_examples_build(index):
    build_graph(recipe_from_dict(yaml.safe_load(blocks("yaml")[index])))


def test_netgraph_commands_run(tmp_path):
    """Every `netgraph ...` line of the README, run in a copy of the recipes."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    lines = [line for b in blocks("bash") for part in b.splitlines()
             for line in part.split(" && ") if line.strip().startswith("netgraph ")]
    assert len(lines) >= 4
    for line in lines:
        result = subprocess.run([sys.executable, "-m", "netgraph", *shlex.split(line)[1:]],
                                cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, (line, result.stderr)

"""README.md stays true: its commands and code run as written."""
import re
import shlex
import shutil

import pytest
import yaml

from conftest import ROOT
from netgraph import build_graph, recipe_from_dict

README = (ROOT / "README.md").read_text()
DOCS = {"README.md": README, "docs/passes.md": (ROOT / "docs" / "passes.md").read_text()}


def blocks(language, text=README):
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def all_blocks(language):
    return [(name, b) for name, text in DOCS.items() for b in blocks(language, text)]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = blocks("bash")[1].strip()
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


@pytest.mark.parametrize("doc, code", all_blocks("python"))
def test_python_examples_run(doc, code, monkeypatch):
    from netgraph.ops import OPS
    from netgraph.passes import PASSES
    before = set(OPS), set(PASSES)
    monkeypatch.chdir(ROOT)
    try:
        exec(compile(code, f"{doc} python block", "exec"), {})
    finally:
        for name in set(OPS) - before[0]:
            del OPS[name]
        for name in set(PASSES) - before[1]:
            del PASSES[name]


@pytest.mark.parametrize("doc, text", [b for b in all_blocks("yaml") if "network:" in b[1]])
def test_yaml_examples_build(doc, text):
    build_graph(recipe_from_dict(yaml.safe_load(text)))


@pytest.mark.parametrize("doc, text", [b for b in all_blocks("yaml") if "base: resnet9.yaml" in b[1]])
def test_yaml_examples_on_resnet9_load(doc, text, tmp_path):
    from netgraph.cli import main
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    (tmp_path / "recipes" / "example.yaml").write_text(text)
    assert main(["summary", str(tmp_path / "recipes" / "example.yaml")]) == 0


# README lines of these tools are run too (seconds, no GPU), before the lines that use their output.
RUN_TOOLS = ("python tools/write_digits.py",)


def test_netgraph_commands_run(tmp_path, monkeypatch, capsys):
    """Every `netgraph ...` line of the docs, run in a copy of the recipes with the shared
    data beside it. Training lines run 3 epochs (tests/test_train.py runs tiny.yaml whole);
    lines marked '# on a GPU' and ablations (minutes to hours; tests/test_ablate.py runs
    small ones) are parsed and every recipe they name is loaded with their overrides."""
    import glob
    from netgraph import load_recipe
    from netgraph.cli import main, parser
    shared = ROOT.parent / "shared"
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "recipes", repo / "recipes")
    if shared.exists():
        (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("NETGRAPH_CACHE", str(tmp_path / "cache"))  # data.dataset: folder caches there
    commands = [line for _, b in all_blocks("bash") for part in b.replace("\\\n", " ").splitlines()
                for line in part.split(" && ") if line.strip().startswith(("netgraph ", *RUN_TOOLS))]
    assert len(commands) >= 12
    for line in commands:
        if line.strip().startswith(RUN_TOOLS):  # writes data the netgraph lines after it read
            import runpy
            import sys
            argv = shlex.split(line.partition("#")[0])[1:]
            with monkeypatch.context() as m, pytest.raises(SystemExit) as done:
                m.setattr(sys, "argv", argv)  # only while the tool runs
                runpy.run_path(str(ROOT / argv[0]), run_name="__main__")
            assert done.value.code == 0, line
            continue
        command, _, comment = line.partition("#")
        args = [expanded for a in shlex.split(command)[1:] for expanded in (sorted(glob.glob(a)) or [a])]
        if "on a GPU" in comment or args[0] == "ablate" or "--resume" in args:
            parsed = parser().parse_args(args)
            for recipe in getattr(parsed, "recipes", None) or [parsed.recipe]:
                load_recipe(recipe, parsed.set)
            continue
        if "../shared" in command and not shared.exists():
            continue
        if args[0] == "train":
            args += ["--set", "train.epochs=3", "--quiet"]
        assert main(args) == 0, (line, capsys.readouterr().err)


@pytest.mark.parametrize("section", ["train", "data"])
def test_every_recipe_option_is_in_the_readme_table(section):
    """README's `train:` and `data:` tables name every key the recipe check accepts."""
    from netgraph.config import DATA_PARAMS, TRAIN_PARAMS
    start = README.index(f"### The `{section}:` section")
    table = README[start:README.index("\n\n", README.index("\n|", start) + 1)]
    documented = {key.strip("` ") for row in re.findall(r"^\| ([^|]+) \|", table, re.M)
                  for key in row.split(",")}
    assert set({"train": TRAIN_PARAMS, "data": DATA_PARAMS}[section]) <= documented

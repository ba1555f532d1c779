"""The docs stay true: README.md and every docs/*.md, their commands and code run as written,
their options are ones the parsers take, their tables name every recipe key, their links resolve."""

import json
import re
import shlex
import shutil

import pytest
import yaml
from conftest import ROOT, SAMPLE

from netgraph import build_graph, recipe_from_dict

README = (ROOT / "README.md").read_text()
# every doc by its path in the repository: README first, then docs/*.md (the order the
# command lines run in: a line that reads a file runs after the line that writes it)
DOCS = {
    path.relative_to(ROOT).as_posix(): path.read_text()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
}


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
    from netgraph import data  # noqa: F401  (every registry made before the snapshot:
    from netgraph.core.registry import REGISTRIES  # one first made inside the example would be emptied)
    from netgraph.graph import passes  # noqa: F401
    from netgraph.train import config  # noqa: F401

    before = {kind: dict(registry) for kind, registry in REGISTRIES.items()}
    monkeypatch.chdir(ROOT)
    try:
        exec(compile(code, f"{doc} python block", "exec"), {})
    finally:
        for kind, registry in REGISTRIES.items():  # ops, passes, augmentations... as they were
            registry.clear()
            registry.update(before.get(kind, {}))


@pytest.mark.parametrize("doc, text", [b for b in all_blocks("yaml") if "network:" in b[1]])
def test_yaml_examples_build(doc, text):
    build_graph(recipe_from_dict(yaml.safe_load(text)))


@pytest.mark.parametrize("doc, text", [b for b in all_blocks("yaml") if "base: resnet9.yaml" in b[1]])
def test_yaml_examples_on_resnet9_load(doc, text, tmp_path):
    from netgraph.cli import main

    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    (tmp_path / "recipes" / "example.yaml").write_text(text)
    assert main(["summary", str(tmp_path / "recipes" / "example.yaml")]) == 0


# Doc lines of these tools are run too (seconds, no GPU), before the lines that use their output.
RUN_TOOLS = ("python tools/write_digits.py",)


def test_a_command_in_the_docs_needs_nothing_beside_the_repository_unless_it_says_so():
    """../shared exists only where netgraph is developed: a command that reads it is a GPU run or
    a larger measurement, and its comment says which; every other command runs on a bare clone."""
    needs = [
        (doc, line)
        for doc, b in all_blocks("bash")
        for line in b.replace("\\\n", " ").splitlines()
        if "../shared" in line.partition("#")[0]
    ]
    assert needs, "the rule sees no command naming ../shared: the reader is broken"
    unmarked = [
        (d, line) for d, line in needs if not re.search(r"on a GPU|on the shared", line.partition("#")[2])
    ]
    assert not unmarked, unmarked


@pytest.mark.slow
def test_netgraph_commands_run(tmp_path, monkeypatch, capsys):
    """Every `netgraph ...` line of the docs, run in a copy of the recipes with the sample
    (samples/cifar10) and, where it exists, the shared data beside it; without ../shared (a
    bare clone) the lines naming the shared subset run on the sample instead. Training lines
    run 10 steps (tests/test_quick_start.py trains the quick start in full); lines marked
    '# on a GPU', ablations and sweeps (minutes to hours; tests/test_ablate.py and
    tests/test_sweep.py run small ones) are
    parsed and every recipe they name is loaded with their overrides."""
    import glob

    from netgraph import load_recipe
    from netgraph.cli import main, parser

    shared = ROOT.parent / "shared"
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "recipes", repo / "recipes")
    (repo / "samples").symlink_to(SAMPLE.parent)
    if shared.exists():
        (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("NETGRAPH_CACHE", str(tmp_path / "cache"))  # data.dataset: folder caches there
    commands = [
        line
        for _, b in all_blocks("bash")
        for part in b.replace("\\\n", " ").splitlines()
        for line in part.split(" && ")
        if line.strip().startswith(("netgraph ", *RUN_TOOLS))
    ]
    assert len(commands) >= 12
    # a line given twice (the plain training line, again before "Ctrl-C it") runs once: each
    # training run here is a minute or more on two loaded cores
    once = {}
    for line in commands:
        once.setdefault(tuple(line.partition("#")[0].split()), line)
    for line in once.values():
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
        if not shared.exists():  # the sample stands in for the shared subset
            command = command.replace("../shared/data/cifar10-subset", str(SAMPLE))
        args = [expanded for a in shlex.split(command)[1:] for expanded in (sorted(glob.glob(a)) or [a])]
        if "on a GPU" in comment or args[0] in ("ablate", "sweep") or "--resume" in args:
            parsed = parser().parse_args(args)
            for recipe in getattr(parsed, "recipes", None) or [parsed.recipe]:
                load_recipe(recipe, parsed.set)
            continue
        if args[0] == "train":  # 10 steps at a constant rate (the schedules need 3 epochs)
            args += ["--set", "train.steps=10", "--set", "train.lr=0.1", "--quiet"]
        assert main(args) == 0, (line, capsys.readouterr().err)


@pytest.mark.parametrize("section, doc", [("train", "docs/training.md"), ("data", "docs/data.md")])
def test_every_recipe_option_is_in_the_docs_table(section, doc):
    """The `train:` table (docs/training.md) and the `data:` table (docs/data.md) name every key
    the recipe check accepts."""
    from netgraph.train.config import DATA_PARAMS, TRAIN_PARAMS

    text = DOCS[doc]
    start = text.index(f"## The `{section}:` section")
    table = text[start : text.index("\n\n", text.index("\n|", start) + 1)]
    documented = {
        key.strip("` ") for row in re.findall(r"^\| ([^|]+) \|", table, re.M) for key in row.split(",")
    }
    assert set({"train": TRAIN_PARAMS, "data": DATA_PARAMS}[section]) <= documented


# --- what the docs say each command takes, checked against the real parsers (issue 21) ------

PLACEHOLDERS = {
    "RECIPE": "r.yaml",
    "FILE": "f.jsonl",
    "OUT": "o.svg",
    "N": "1",
    "DIR": "d",
    "SECONDS": "1",
    "TEXT": "t",
    "MODULE": "m.py",
    "NAME": "n",
    "E": "1",
    "COMMAND": "train",
}


def _parse(words):
    """Parse a `netgraph ...` command with the real parser, running nothing: SystemExit on a
    word its command does not take (an option a doc names that the command refuses)."""
    from netgraph.cli import parser

    words = [PLACEHOLDERS.get(w, w) for w in words if w not in ("...", "[--json]")]
    if words[:1] == ["show"] and words[1:2] in (["params"], ["curves"]) and "-o" not in words:
        words += ["-o", "x.png"]  # the sentence names the picture's input, not its output
    if words[:1] == ["render"] and "-o" not in words:
        words += ["-o", "x.svg"]
    if words[:1] == ["eval"] and len(words) == 1:
        words += ["m.pt"]
    if words[:1] in (["summary"], ["render"], ["train"]) and (len(words) == 1 or words[1].startswith("-")):
        words.insert(1, "r.yaml")
    if words[:1] == ["ablate"] and (len(words) == 1 or words[1].startswith("-")):
        words.insert(1, "r.yaml")
    return parser().parse_args(words)


def _doc_commands():
    """(doc, words) of every `netgraph ...` in the docs' command blocks (torchrun's included)
    and inline code."""
    lines = [
        (doc, line)
        for doc, b in all_blocks("bash")
        for part in b.replace("\\\n", " ").splitlines()
        for line in part.split(" && ")
    ]
    found = []
    for doc, line in lines:
        command = line.partition("#")[0].strip()
        if command.startswith("netgraph "):
            found.append((doc, shlex.split(command)[1:]))
        elif command.startswith("torchrun ") and "-m netgraph" in command:
            words = shlex.split(command.split("-m netgraph", 1)[1])
            found.append((doc, words[1:] if words[:1] == ["--"] else words))
    for doc, text in DOCS.items():
        for span in re.findall(r"`netgraph ([^`]+)`", text):
            if "-" in span:  # a span naming options claims the command takes them
                found.append((doc, shlex.split(span)))
    return found


def test_every_netgraph_command_in_the_docs_parses_with_its_options():
    commands = _doc_commands()
    assert len(commands) >= 25
    assert {doc for doc, _ in commands} >= {"README.md", "docs/training.md", "docs/commands.md"}
    for doc, words in commands:
        try:
            _parse(words)
        except SystemExit as e:  # 0: --help or --version, which every command takes
            if e.code != 0:
                pytest.fail(f"{doc}'s `netgraph {' '.join(words)}` is refused by its parser")


def _options(*command):
    from netgraph.cli import parser

    p = parser()
    for name in command:
        p = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return {o for a in p._actions for o in a.option_strings}


def test_commands_doc_names_exactly_the_commands_that_take_set():
    text = DOCS["docs/commands.md"]
    start = text.index("`--set KEY.PATH=VALUE` (repeatable")
    said_take = text[:start].rsplit("\n\n", 1)[1]
    said_refuse = text[start : text.index("take none", start)].split(";", 1)[1]
    for command in (
        "summary",
        "render",
        "train",
        "ablate",
        "sweep",
        "show augment",
        "show whitening",
        "passes",
        "eval",
        "show params",
        "show curves",
    ):
        takes = "--set" in _options(*command.split())
        assert (f"`{command}`" in said_take, f"`{command}`" in said_refuse) == (takes, not takes), command


def test_every_option_in_the_training_section_is_one_train_takes():
    """docs/training.md's part on the command, before the `train:` section: every option it
    names is one `train` takes, and it names at least these."""
    text = DOCS["docs/training.md"]
    section = text[: text.index("## The `train:` section")]
    named = set(re.findall(r"`(--[a-z][a-z-]*)", section))
    assert {
        "--runs",
        "--log",
        "--log-file",
        "--json-out",
        "--save",
        "--device",
        "--checkpoint",
        "--resume",
        "--progress-every",
        "--quiet",
    } <= named
    assert named <= _options("train"), named - _options("train")


def test_the_quick_start_has_a_cpu_only_install_line_and_says_what_test_acc_is():
    start = README.index("## Quick start")
    quick = README[start : README.index("\n## ", start + 1)]
    first = blocks("bash", quick)[0]
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in first
    assert all(line.startswith("#") for line in first.splitlines() if "whl/cpu" in line)  # a comment
    assert "moving average of the weights" in quick and "`test acc %`" in quick


# --- README is a door, the docs one web of links ---------------------------------------------


def test_readme_stays_under_250_lines():
    """README says what netgraph is, the quick start, a tour and links; the manual is docs/."""
    lines = len(README.splitlines())
    assert lines < 250, f"README.md has {lines} lines: move a section into docs/"


def _anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text):
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # a '# comment' in code is no heading
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", prose, re.M)}


def _links(text):
    """The target of every markdown link and image in ``text``, outside code."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "", prose))


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(doc):
    broken = []
    for target in _links(DOCS[doc]):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / doc).parent / path if path else ROOT / doc
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(ROOT) if ROOT in file.parents else file})")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(f"{target} (no heading '{anchor}' in {file.name})")
    assert not broken, f"{doc}: broken links: " + "; ".join(broken)


def test_the_link_checker_sees_links_and_headings():
    assert _links("a [b](c.md#d) `[x](y.md)` ![p](q.png)\n```\n[r](s.md)\n```\n") == ["c.md#d", "q.png"]
    assert _anchors("# What takes `--set`\n## airbench's ablation ladder\n") == {
        "what-takes---set",
        "airbenchs-ablation-ladder",
    }


def test_readme_links_every_doc():
    linked = {target.partition("#")[0] for target in _links(README)}
    missing = [doc for doc in DOCS if doc.startswith("docs/") and doc not in linked]
    assert not missing, f"README.md links none of {missing}"


def test_the_sweep_shown_in_the_docs_is_the_one_recorded():
    """docs/sweeps.md quotes the table the measured sweep wrote, row for row."""
    recorded = (ROOT / "bench/results/sweep_label_smoothing_cpu_sample/table.md").read_text()
    rows = [line for line in recorded.splitlines() if line.startswith("|")]
    assert len(rows) == 5 and all(row in DOCS["docs/sweeps.md"] for row in rows)


def test_the_anchor_ratio_in_the_docs_is_the_one_recorded():
    """docs/performance.md states the whole-process ratio against airbench's own script as
    tools/anchor_ratio.py recorded it, and the CPU-time ratio beside it."""
    record = json.loads((ROOT / "bench/results/anchor_ratio_cpu_idle_stop_grads_2026-12-07.json").read_text())
    text = DOCS["docs/performance.md"]
    assert f"**ratio {record['ratio']:.2f}**" in text and f"{record['cpu_ratio']:.2f} in CPU time" in text
    assert f"{record['median_netgraph_s']:.1f} s for netgraph" in text
    assert f"{record['median_anchor_s']:.1f} s for airbench's own script" in " ".join(text.split())
    pairs = ", ".join(f"{r['netgraph_s'] / r['anchor_s']:.2f}" for r in record["runs"])
    assert f"the pairs: {pairs})" in " ".join(text.split())


def test_the_operator_calls_in_the_docs_are_the_ones_recorded():
    record = json.loads((ROOT / "bench/results/anchor_ratio_ops_cpu_2026-12-07.json").read_text())
    calls = {side: {o["op"]: o["calls"] for o in ops} for side, ops in record["ops"].items()}
    backward = {side: c["aten::convolution_backward"] for side, c in calls.items()}
    assert backward["netgraph"] == backward["anchor"]
    text = " ".join(DOCS["docs/performance.md"].split())
    assert (
        f"{backward['anchor']} on both sides (`bench/results/anchor_ratio_ops_cpu_2026-12-07.json`)" in text
    )


def test_the_quick_start_time_in_the_readme_is_the_one_recorded():
    record = json.loads((ROOT / "bench/results/quick_start_cpu_idle_2026-12-07.json").read_text())
    assert f"in {record['time_s']['total']:.0f} s from start to exit" in " ".join(README.split())
    assert "samples/cifar10" in record["command"] and "train.batch_size=64" in record["command"]

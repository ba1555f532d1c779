"""The command line: summary and render, overrides, one-line errors without tracebacks."""

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import RECIPES, ROOT
from test_graph import BAD

from netgraph.cli import main

RESNET9 = str(RECIPES / "resnet9.yaml")


def run(*args):
    return subprocess.run([sys.executable, "-m", "netgraph", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_summary_json_matches_the_hand_written_model():
    from reference_resnet9 import ResNet9, count_macs

    result = run("summary", RESNET9, "--json")
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    reference = ResNet9()
    assert s["params"] == sum(p.numel() for p in reference.parameters()) == 6_573_120
    assert s["macs"] == count_macs(reference)
    assert s["macs"] == sum(n["macs"] for n in s["nodes"])
    assert {"path", "op", "shape", "params", "macs"} <= set(s["nodes"][0])
    conv = next(n for n in s["nodes"] if n["path"] == "layer1/residual/res1/conv")
    assert conv == {
        **conv,
        "op": "conv2d",
        "shape": [128, 16, 16],
        "params": 128 * 128 * 9,
        "macs": 128 * 16 * 16 * 128 * 9,
    }


def test_summary_table_and_overrides(capsys):
    assert main(["summary", RESNET9, "--set", "network.head.fc.out=100"]) == 0
    out = capsys.readouterr().out
    assert "layer1/residual/add" in out and "total: 6,619,200 trainable parameters" in out


def test_render_svg(tmp_path):
    result = run("render", RESNET9, "-o", str(tmp_path / "graph.svg"), "--set", "network.prep.c=32")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "graph.svg").read_text().count("conv 3x3, 32") == 1


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("command", ["summary", "render"])
def test_errors_are_one_line_without_traceback(tmp_path, capsys, case, command):
    text, expected = BAD[case]
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    args = [command, str(path)] + (["-o", str(tmp_path / "g.svg")] if command == "render" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("netgraph: error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_error_exit_code_in_a_real_process(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("network:\n  conv: {op: conv2d, out: 8}\n  fc: {op: linear, out: 10}\n")
    result = run("summary", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "bad.yaml:3: node 'fc': op 'linear' needs a flat (features,) input, got shape "
        "(8, 32, 32) (put a flatten node before it)"
    )
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_bad_override_on_the_command_line(capsys):
    assert main(["summary", RESNET9, "--set", "network.prep.c"]) == 2
    assert "--set network.prep.c: expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["summary", "render", "train"])
def test_a_typo_in_train_is_reported_by_every_command_before_any_work(tmp_path, capsys, command):
    """summary and render check the train: and data: sections too; train checks them before
    it loads data (here a folder that does not exist, which would fail otherwise)."""
    extra = {
        "summary": [],
        "render": ["-o", str(tmp_path / "never.svg")],
        "train": ["--data-dir", str(tmp_path / "no-such-folder"), "--device", "cpu"],
    }[command]
    assert main([command, RESNET9, *extra, "--set", "train.epoch=3"]) == 2
    assert capsys.readouterr().err.startswith(
        "netgraph: error: --set train.epoch=3: unknown parameter 'epoch' for the train: section"
    )
    assert not (tmp_path / "never.svg").exists()


@pytest.mark.slow
def test_user_op_from_a_plugin_file(tmp_path):
    plugin = tmp_path / "my_ops.py"
    plugin.write_text(
        textwrap.dedent("""
        import torch
        import netgraph

        class Swish(torch.nn.Module):
            def __init__(self, beta):
                super().__init__()
                self.beta = beta

            def forward(self, x):
                return x * torch.sigmoid(self.beta * x)

        @netgraph.register_op("swish", params={"beta": 1.0})
        def swish(in_shapes, beta):
            return Swish(beta)
    """)
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("network:\n  conv: {op: conv2d, out: 8}\n  act: {op: swish, beta: 2}\n")
    result = run("summary", str(recipe), "--import", str(plugin))
    assert result.returncode == 0, result.stderr
    assert "swish" in result.stdout
    missing = run("summary", str(recipe))
    assert missing.returncode == 2 and "node 'act': unknown op 'swish'" in missing.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('oops')\n")
    result = run("summary", str(recipe), "--import", str(broken))
    assert result.returncode == 2
    assert "importing plugin" in result.stderr and "RuntimeError: oops" in result.stderr


PASSES_RECIPE = str(RECIPES / "resnet9_passes.yaml")


def test_summary_reports_the_graph_after_all_transforms(capsys):
    assert main(["summary", PASSES_RECIPE]) == 0
    out = capsys.readouterr().out
    assert "6. whiten_stem (changes the function): 1 match; nodes 1 added, 1 changed, 1 rewired" in out
    assert "total: 6,570,880 trainable parameters (+2,969 frozen)" in out
    assert main(["summary", PASSES_RECIPE, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["params"] == 6_570_880 and s["frozen_params"] == 2_969
    assert [t["name"] for t in s["transforms"]][-1] == "whiten_stem"
    assert s["transforms"][0]["exact"] is True


def test_render_stage_and_diff(tmp_path, capsys):
    dots = {}
    for name, extra in {
        "stage0": ["--stage", "0"],
        "stage1": ["--stage", "1", "--diff"],
        "all": ["--diff"],
    }.items():
        path = tmp_path / f"{name}.dot"
        assert main(["render", PASSES_RECIPE, "-o", str(path), *extra]) == 0
        dots[name] = path.read_text()
    assert "n_prep__whiten" not in dots["stage0"] and "changed by" not in dots["stage0"]
    assert "rewired by 1" in dots["stage1"] and "added by" not in dots["stage1"]
    assert '1</td><td align="left">swap_pool_activation: 3 matches (exact)' in dots["stage1"]
    assert "n_prep__whiten" in dots["all"] and "added by 6" in dots["all"]
    assert "changed by 4, 5" in dots["all"]  # ghost BN, then frozen scale
    assert main(["render", PASSES_RECIPE, "-o", str(tmp_path / "x.svg"), "--stage", "9"]) == 2
    assert "stage 9 does not exist: the recipe lists 6 transforms" in capsys.readouterr().err


def test_render_diff_draws_removed_nodes(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "network:\n  a: {op: conv2d, out: 4}\n  i: {op: identity}\n  b: {op: relu}\n"
        "transforms: [remove_identity]\n"
    )
    path = tmp_path / "d.dot"
    assert main(["render", str(recipe), "-o", str(path), "--diff"]) == 0
    dot = path.read_text()
    assert "n_i [" in dot and "removed by 1" in dot and "style=dashed" in dot


def test_passes_lists_every_pass(capsys):
    """`netgraph passes` is `netgraph list passes`: each pass, exact or not, its parameters."""
    from netgraph.graph.passes import PASSES

    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert main(["list", "passes"]) == 0 and capsys.readouterr().out == out
    for name in PASSES:
        assert f"\n  {name} " in out
    assert "(changes the function) [splits: null, split_size: null, where: '*']" in out
    assert "  swap_pool_activation   Move each max-pool before the activation" in out
    assert "strict: true" in out

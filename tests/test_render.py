"""Pictures: clusters for dicts, a colour per op with a legend, the dot fallback."""
import re
import shutil
import subprocess
import sys

import pytest

from conftest import RECIPES
from netgraph import build_graph, load_recipe, recipe_from_dict
from netgraph.render import op_colour, render, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


@pytest.fixture(scope="module")
def resnet9():
    return build_graph(load_recipe(RECIPES / "resnet9.yaml"))


@needs_dot
def test_svg_has_every_node_cluster_and_the_legend(resnet9, tmp_path, capsys):
    from netgraph.cli import main
    path = tmp_path / "graph.svg"
    assert main(["render", str(RECIPES / "resnet9.yaml"), "-o", str(path)]) == 0
    assert capsys.readouterr().out == f"wrote {path}\n"
    svg = path.read_text()
    titles = set(re.findall(r"<title>(.*?)</title>", svg))
    for node in resnet9:
        assert "n_" + node.replace("/", "__") in titles, node
    assert "output" in titles
    groups = {"/".join(n.split("/")[:i]) for n in resnet9 for i in range(1, n.count("/") + 1)}
    assert "layer1/residual/res1" in groups
    for group in groups:
        assert "cluster_c_" + group.replace("/", "__") in titles, group
    assert "cluster_legend" in titles
    legend = svg[svg.index("<title>cluster_legend</title>"):]
    for op in ("conv2d", "batch_norm", "relu", "max_pool", "add", "flatten", "linear", "mul"):
        assert f">{op}</text>" in legend, op
    # Node labels carry name, key parameters and output shape.
    assert "conv 3x3, 128" in svg and "128x16x16" in svg and "\u00d7 0.125" in svg


def fill_colours(g):
    """node id -> fill colour, read from the dot source."""
    return dict(re.findall(r'^(n_\S+) \[.*?fillcolor="(#[0-9a-f]+)"', to_dot(g).to_string(), re.M))


def test_same_op_same_colour_in_every_recipe(resnet9):
    other = build_graph(recipe_from_dict({"network": {"mix": {"op": "relu"},
                                                      "c": {"op": "conv2d", "out": 3}}}))
    assert fill_colours(resnet9)["n_prep__conv"] == fill_colours(other)["n_c"] == op_colour("conv2d")
    assert fill_colours(resnet9)["n_prep__act"] == fill_colours(other)["n_mix"] == op_colour("relu")
    assert op_colour("relu") != op_colour("conv2d")
    # Ops netgraph does not know get a colour from their name, the same in a new process.
    here = op_colour("some_user_op")
    there = subprocess.run([sys.executable, "-c", "from netgraph.render import op_colour;"
                            "print(op_colour('some_user_op'))"], capture_output=True, text=True)
    assert there.stdout.strip() == here


def test_without_graphviz_the_dot_file_is_written(resnet9, tmp_path, monkeypatch):
    import netgraph.render
    monkeypatch.setattr(netgraph.render.shutil, "which", lambda name: None)
    path, note = render(resnet9, str(tmp_path / "graph.svg"))
    assert path == str(tmp_path / "graph.dot")
    assert open(path).read().startswith("digraph")
    assert f"dot -Tsvg {path} -o {tmp_path / 'graph.svg'}" in note


@needs_dot
@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("dot", b"digraph")])
def test_formats_by_extension(resnet9, tmp_path, ext, magic):
    path, _ = render(resnet9, str(tmp_path / f"g.{ext}"))
    assert open(path, "rb").read().startswith(magic)


def test_unknown_extension(resnet9, tmp_path):
    from netgraph import RecipeError
    with pytest.raises(RecipeError, match=r"unknown extension \(use one of .svg, .png, .pdf, .dot\)"):
        render(resnet9, str(tmp_path / "g.jpeg"))


def test_depth_collapses_nested_dicts(resnet9):
    from netgraph.render import collapse
    small = collapse(resnet9, 2)
    assert "layer1/residual" in small and "layer1/residual/res1/conv" not in small
    assert small.nodes["layer1/residual"]["shape"] == (128, 16, 16)
    assert small.nodes["layer1/residual"]["ops"] == ["conv2d", "batch_norm", "relu"] * 2 + ["add"]
    assert set(small.predecessors("layer1/residual")) == {"layer1/pool"}
    assert set(small.successors("layer1/residual")) == {"layer2/conv_bn"}
    assert small.graph["output"] == "head/scale"
    top = collapse(resnet9, 1)
    assert list(top) == ["input", "prep", "layer1", "layer2", "layer3", "head"]
    assert top.graph["output"] == "head" and top.nodes["head"]["shape"] == (10,)
    dot = to_dot(resnet9, depth=1).to_string()
    assert "n_layer1 " in dot and "n_layer1__pool" not in dot

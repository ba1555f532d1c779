"""Pictures: clusters for dicts, a colour per op with a legend, the dot fallback."""

import re
import shutil
import subprocess
import sys

import pytest
from conftest import RECIPES

from netgraph import build_graph, load_recipe, recipe_from_dict
from netgraph.graph.render import op_colour, render, to_dot

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
    legend = svg[: svg.index("<title>cluster_c_")]  # the legend is the graph's label, drawn first
    for op in ("conv2d", "batch_norm", "relu", "max_pool", "add", "flatten", "linear", "mul"):
        assert f">{op}</text>" in legend, op
    # Node labels carry name, key parameters and output shape.
    assert "conv 3x3, 128" in svg and "128x16x16" in svg and "\u00d7 0.125" in svg


def fill_colours(g):
    """node id -> fill colour, read from the dot source."""
    return dict(re.findall(r'^(n_\S+) \[.*?fillcolor="(#[0-9a-f]+)"', to_dot(g).to_string(), re.M))


def test_same_op_same_colour_in_every_recipe(resnet9):
    other = build_graph(
        recipe_from_dict({"network": {"mix": {"op": "relu"}, "c": {"op": "conv2d", "out": 3}}})
    )
    assert fill_colours(resnet9)["n_prep__conv"] == fill_colours(other)["n_c"] == op_colour("conv2d")
    assert fill_colours(resnet9)["n_prep__act"] == fill_colours(other)["n_mix"] == op_colour("relu")
    assert op_colour("relu") != op_colour("conv2d")
    # Ops netgraph does not know get a colour from their name, the same in a new process.
    here = op_colour("some_user_op")
    there = subprocess.run(
        [
            sys.executable,
            "-c",
            "from netgraph.graph.render import op_colour;print(op_colour('some_user_op'))",
        ],
        capture_output=True,
        text=True,
    )
    assert there.stdout.strip() == here


def test_without_graphviz_the_dot_file_is_written(resnet9, tmp_path, monkeypatch):
    import netgraph.graph.render

    monkeypatch.setattr(netgraph.graph.render.shutil, "which", lambda name: None)
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
    from netgraph.graph.render import collapse

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


def test_every_two_built_in_ops_have_colours_far_apart():
    """CIE76 distance (Euclidean in CIELAB, D65) of at least 18 between any two built-in ops
    (2.3 is a just-noticeable difference; conv2d and linear, input and flatten were ~5 apart)."""
    import itertools

    from netgraph.graph.ops import OPS
    from netgraph.graph.render import MIN_COLOUR_DISTANCE, OP_COLOURS, colour_distance, lab

    assert set(OPS) <= set(OP_COLOURS)
    assert [round(v) for v in lab("#ffffff")] == [100, 0, 0] and round(lab("#ff0000")[0]) == 53
    closest = min(itertools.combinations(OP_COLOURS, 2), key=lambda p: colour_distance(*map(op_colour, p)))
    assert colour_distance(*map(op_colour, closest)) >= MIN_COLOUR_DISTANCE == 18.0, closest


@needs_dot
def test_png_dpi_title_and_an_lr_legend_on_one_line(tmp_path):
    from netgraph.cli import main

    struct = __import__("struct")

    def size(path):
        return struct.unpack(">II", path.read_bytes()[16:24])  # a PNG's IHDR width, height

    recipe = str(RECIPES / "resnet9.yaml")
    assert main(["render", recipe, "-o", str(tmp_path / "a.png"), "--depth", "1"]) == 0
    assert main(["render", recipe, "-o", str(tmp_path / "b.png"), "--depth", "1", "--dpi", "192"]) == 0
    (w1, h1), (w2, h2) = size(tmp_path / "a.png"), size(tmp_path / "b.png")
    assert abs(w2 / w1 - 2) < 0.05 and abs(h2 / h1 - 2) < 0.05  # 96 dpi by default
    assert main(["render", recipe, "-o", str(tmp_path / "c.svg"), "--dpi", "300"]) == 2
    assert main(["render", recipe, "-o", str(tmp_path / "t.svg"), "--title", "Figure 2: ResNet-9"]) == 0
    assert ">Figure 2: ResNet&#45;9</text>" in (tmp_path / "t.svg").read_text()
    assert main(["render", recipe, "-o", str(tmp_path / "n.svg"), "--no-title"]) == 0
    assert ">resnet9</text>" not in (tmp_path / "n.svg").read_text()
    assert main(["render", recipe, "-o", str(tmp_path / "lr.svg"), "--direction", "LR"]) == 0
    svg = (tmp_path / "lr.svg").read_text()
    assert ">resnet9</text>" in svg
    # LR: the title and every op on one line, so the legend adds a line, not a band
    legend = svg[: svg.index("<title>cluster_c_")]
    ys = [float(y) for y in re.findall(r'<text[^>]* y="([-0-9.]+)"', legend)]
    assert len(ys) >= 10 and max(ys) - min(ys) < 5, ys  # baselines of 11 and 16 point text

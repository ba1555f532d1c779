"""An op registered from Python works everywhere a built-in op does."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netgraph
from netgraph import RecipeError, build_graph, compile_graph, recipe_from_dict, summarize
from netgraph.graph.ops import OPS


class ChannelMix(nn.Module):
    """A 1x1 convolution written by hand, with a learnable gain."""

    def __init__(self, c_in, out, gain):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, c_in, 1, 1) / c_in**0.5)
        self.gain = nn.Parameter(torch.full((), float(gain)))

    def forward(self, x):
        return F.conv2d(x, self.weight) * self.gain


@pytest.fixture
def channel_mix():
    @netgraph.register_op(
        "channel_mix",
        params={"out": int, "gain": 1.0},
        shape=lambda in_shapes, out, gain: (out,) + tuple(in_shapes[0][1:]),
    )
    def build(in_shapes, out, gain):
        return ChannelMix(in_shapes[0][0], out, gain)

    yield build
    del OPS["channel_mix"]


RECIPE = {
    "input": {"shape": [3, 8, 8]},
    "network": {
        "mix": {"op": "channel_mix", "out": 6, "gain": 2},
        "act": {"op": "relu"},
        "pool": {"op": "global_avg_pool"},
        "flat": {"op": "flatten"},
        "fc": {"op": "linear", "out": 2},
    },
}


def test_user_op_end_to_end(channel_mix, tmp_path):
    g = build_graph(recipe_from_dict(RECIPE))
    assert g.nodes["mix"]["shape"] == (6, 8, 8)
    assert g.nodes["mix"]["params"] == {"out": 6, "gain": 2.0}
    s = summarize(g)
    mix = next(n for n in s["nodes"] if n["path"] == "mix")
    assert mix["params"] == 6 * 3 + 1
    assert mix["macs"] == 6 * 3 * 8 * 8  # counted by torch's FLOP counter
    module = compile_graph(g)
    x = torch.randn(5, 3, 8, 8, requires_grad=True)
    out = module(x)
    expected = F.conv2d(x, module.mix.weight) * 2
    torch.testing.assert_close(module.fc(F.relu(expected).mean((2, 3))), out)
    out.sum().backward()
    assert module.mix.gain.grad is not None
    from netgraph.graph.render import op_colour, render

    path, _ = render(g, str(tmp_path / "g.dot"))
    assert op_colour("channel_mix") in open(path).read()


def test_user_op_parameters_are_validated(channel_mix):
    bad = {"network": {"mix": {"op": "channel_mix", "gain": 2}}}
    with pytest.raises(RecipeError, match="node 'mix': op 'channel_mix' needs parameter 'out'"):
        build_graph(recipe_from_dict(bad))


def test_registering_a_name_twice_needs_replace(channel_mix):
    with pytest.raises(ValueError, match="already registered"):
        netgraph.register_op("channel_mix")(lambda in_shapes: nn.Identity())
    with pytest.raises(ValueError, match="already registered"):
        netgraph.register_op("conv2d")(lambda in_shapes: nn.Identity())


class Halve(nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 2)


@pytest.fixture
def halving_ops():
    netgraph.register_op("halve")(lambda in_shapes: Halve())
    netgraph.register_op("halve_declared_wrong", shape=lambda in_shapes: tuple(in_shapes[0]))(
        lambda in_shapes: Halve()
    )
    yield
    del OPS["halve"], OPS["halve_declared_wrong"]


def test_a_user_op_that_changes_the_shape_without_declaring_it(halving_ops):
    """Inferred on the meta device: summary counted 386 parameters for a true 98 and the
    forward then failed in torch."""
    recipe = {
        "input": {"shape": [3, 8, 8]},
        "network": {"halved": {"op": "halve"}, "flat": {"op": "flatten"}, "fc": {"op": "linear", "out": 2}},
    }
    g = build_graph(recipe_from_dict(recipe))
    assert g.nodes["halved"]["shape"] == (3, 4, 4)
    assert summarize(g)["params"] == 3 * 4 * 4 * 2 + 2
    assert compile_graph(g)(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    recipe["network"]["halved"]["op"] = "halve_declared_wrong"
    with pytest.raises(
        RecipeError,
        match=r"node 'halved': op 'halve_declared_wrong' declares the output "
        r"shape \(3, 8, 8\), but its module gives \(3, 4, 4\)",
    ):
        build_graph(recipe_from_dict(recipe))

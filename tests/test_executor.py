"""The compiled module against ResNet-9 written by hand, and the torch features it must support."""

import pytest
import torch
from conftest import RECIPES
from reference_resnet9 import ResNet9, count_macs
from torch import nn

from netgraph import build_graph, compile_graph, half_precision, load_recipe, summarize


@pytest.fixture(scope="module")
def resnet9_graph():
    return build_graph(load_recipe(RECIPES / "resnet9.yaml"))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in order; both models list them in the same order."""
    s, d = src.state_dict(), dst.state_dict()
    assert [v.shape for v in s.values()] == [v.shape for v in d.values()]
    dst.load_state_dict(dict(zip(d.keys(), s.values())))


def test_totals_match_the_hand_written_model(resnet9_graph):
    s = summarize(resnet9_graph)
    reference = ResNet9()
    assert s["params"] == sum(p.numel() for p in reference.parameters()) == 6_573_120
    assert s["macs"] == count_macs(reference)
    module = compile_graph(resnet9_graph)
    assert sum(p.numel() for p in module.parameters()) == s["params"]


@pytest.mark.parametrize("train", [False, True])
def test_outputs_agree_with_the_hand_written_model(resnet9_graph, train):
    torch.manual_seed(0)
    module, reference = compile_graph(resnet9_graph), ResNet9()
    copy_weights(reference, module)
    module.train(train), reference.train(train)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(module(x), reference(x), rtol=1e-5, atol=1e-5)
    # Training mode updates the running statistics the same way too.
    torch.testing.assert_close(
        module.layer3.residual.res2.bn.running_var, reference.layer3.residual.res2.bn.running_var
    )


def test_parameter_names_follow_node_paths(resnet9_graph):
    names = [n for n, _ in compile_graph(resnet9_graph).named_parameters()]
    assert names[:3] == ["prep.conv.weight", "prep.bn.weight", "prep.bn.bias"]
    assert "layer1.residual.res1.conv.weight" in names
    assert names[-1] == "head.fc.weight"


def test_generated_forward_releases_activations(resnet9_graph):
    module = compile_graph(resnet9_graph)
    code = module.code
    assert type(module).__name__ == "Resnet9"
    assert "layer1_residual_add = layer1_pool + layer1_residual_res2_act" in code
    # Each value is dropped (set to None) right after its last use, except the output.
    assert code.count(" = None") >= 30
    assert "prep_conv = None" in code


def test_torch_compile_traces_the_whole_graph(resnet9_graph):
    module = compile_graph(resnet9_graph).eval()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(compiled(x), module(x))


def test_channels_last(resnet9_graph):
    module = compile_graph(resnet9_graph).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = module(x)
    module = module.to(memory_format=torch.channels_last)
    assert module.prep.conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        module(x.to(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_batch_norm_in_float32(resnet9_graph, dtype):
    module = compile_graph(resnet9_graph).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = module(x)
    half_precision(module, dtype)
    assert module.prep.conv.weight.dtype == dtype
    assert module.prep.bn.weight.dtype == module.prep.bn.running_var.dtype == torch.float32
    out = module(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


def test_unused_nodes_are_not_compiled():
    from netgraph import recipe_from_dict

    with pytest.warns(UserWarning, match="left out of the module: side"):
        g = build_graph(
            recipe_from_dict(
                {
                    "network": {
                        "a": {"op": "conv2d", "out": 4},
                        "side": {"op": "conv2d", "out": 4, "in": "/input"},
                        "b": {"op": "relu", "in": "a"},
                    }
                }
            )
        )
    module = compile_graph(g)
    assert not hasattr(module, "side")
    assert summarize(g)["params"] == sum(p.numel() for p in module.parameters())

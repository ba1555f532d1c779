"""The airbench records' networks (recipes/airbench/): sizes, logits against the hand-written
reference (tools/reference_airbench.py), the whitening filters, Dirac and head init."""

import numpy as np
import pytest
import torch
from conftest import RECIPES
from reference_airbench import airbench94, airbench94_muon, init_whitening

from netgraph import PassContext, apply_transforms, build_graph, compile_graph, load_recipe
from netgraph.graph.summary import summarize
from netgraph.runs.plan import context_without_data

RECORDS = {"airbench94": airbench94, "airbench94_muon": airbench94_muon}


def smooth_images(n, seed=0):
    """Stand-in normalised training images with distinct patch eigenvalues."""
    x = torch.randn(n, 3, 36, 36, generator=torch.Generator().manual_seed(seed))
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1) + 0.1 * x[:, :, 2:-2, 2:-2]
    return (x - x.mean()) / x.std()


def compiled(name, images=None, seed=0):
    recipe = load_recipe(RECIPES / "airbench" / f"{name}.yaml")
    data = smooth_images(64) if images is None else images
    torch.manual_seed(seed)
    g, reports = apply_transforms(
        build_graph(recipe), recipe, PassContext(train_images=lambda n: data[:n], batch_size=1024)
    )
    return g, compile_graph(g), reports


@pytest.mark.parametrize("name", RECORDS)
def test_summary_counts_the_published_sizes(name):
    """anchors.md: 1,971,352 trainable and 1,440 frozen parameters (288 whitening weights,
    1,152 batch-norm scales); conv + linear 118,147,360 MACs per 32x32 image. The summary's
    total adds one multiply-add per batch-norm output (58,496) and per scaled logit (10)."""
    recipe = load_recipe(RECIPES / "airbench" / f"{name}.yaml")
    g, _ = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe))
    s = summarize(g)
    assert s["params"] == 1_971_352 and s["frozen_params"] == 1_440
    conv_linear = sum(n["macs"] for n in s["nodes"] if n["op"] in ("conv2d", "linear"))
    assert conv_linear == 118_147_360
    bn = sum(n["macs"] for n in s["nodes"] if n["op"] == "batch_norm")
    assert bn == 58_496 and s["macs"] == conv_linear + bn + 10


def randomise_state(module, seed=1):
    """Non-trivial BN biases and running statistics and whitening bias, the same for both."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))


@pytest.mark.parametrize("name", RECORDS)
def test_compiled_recipe_and_reference_give_the_same_logits(name):
    _, module, _ = compiled(name)
    reference = RECORDS[name]()
    randomise_state(module)
    reference.load_state_dict(module.state_dict())  # strict: the same names and shapes
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for train in (False, True):  # eval first: a training forward moves the running statistics
        module.train(train), reference.train(train)
        with torch.no_grad():
            a, b = module(x), reference(x)
        assert a.shape == (8, 10) and (a - b).abs().max() < 1e-5
    for key, value in module.state_dict().items():  # the same running statistics after it
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", RECORDS)
def test_trainable_parameters_match_the_reference(name):
    _, module, _ = compiled(name)
    reference = RECORDS[name]()
    assert {k: p.requires_grad for k, p in module.named_parameters()} == {
        k: p.requires_grad for k, p in reference.named_parameters()
    }
    assert not module.whiten.weight.requires_grad and module.whiten.bias.requires_grad


def float64_whitening(images, eps, largest_first):
    """Independent of netgraph: every 2x2 patch by explicit slicing, X^T X / n in numpy."""
    x = images.double().numpy()
    n, c, h, w = x.shape
    patches = np.stack(
        [x[:, :, i : i + 2, j : j + 2].reshape(n, -1) for i in range(h - 1) for j in range(w - 1)], axis=1
    ).reshape(-1, c * 4)
    values, vectors = np.linalg.eigh(patches.T @ patches / len(patches))
    order = np.argsort(-values if largest_first else values)
    filters = vectors[:, order].T / np.sqrt(values[order] + eps)[:, None]
    return torch.from_numpy(np.concatenate([filters, -filters]).reshape(-1, c, 2, 2))


@pytest.mark.parametrize("name,largest_first", [("airbench94", True), ("airbench94_muon", False)])
def test_whitening_filters_against_float64(name, largest_first):
    data = smooth_images(64)
    g, module, _ = compiled(name, data)
    expected = float64_whitening(data[:5000], 5e-4, largest_first)
    got = module.whiten.weight.detach().double()
    assert got.shape == (24, 3, 2, 2)
    # an eigenvector's sign is arbitrary: compare each filter up to its sign, then the halves
    signs = torch.sign((got * expected).flatten(1).sum(1))
    torch.testing.assert_close(got, expected * signs[:, None, None, None], rtol=1e-4, atol=1e-4)
    assert torch.equal(got[12:], -got[:12])
    zero_bias = name == "airbench94"
    assert torch.equal(module.whiten.bias.detach(), torch.zeros(24)) == zero_bias
    # the reference's own computation gives the same filters (each up to its sign)
    reference = RECORDS[name]()
    init_whitening(reference, data, largest_first=largest_first)
    ours = reference.whiten.weight.detach().double()
    signs = torch.sign((ours * expected).flatten(1).sum(1))
    torch.testing.assert_close(ours, expected * signs[:, None, None, None], rtol=1e-4, atol=1e-4)


def test_dirac_init_starts_each_3x3_conv_as_the_identity():
    g, module, reports = compiled("airbench94")
    assert [r.matches for r in reports] == [1, 6]
    convs = {k: m for k, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert len(convs) == 7
    for path, conv in convs.items():
        w = conv.weight.detach()
        if path == "whiten":
            continue
        c_in = w.shape[1]
        identity = torch.zeros(c_in, c_in, 3, 3)
        identity[torch.arange(c_in), torch.arange(c_in), 1, 1] = 1
        assert torch.equal(w[:c_in], identity), path
        rest = w[c_in:]  # PyTorch's default init: uniform within 1 / sqrt(fan_in)
        if len(rest):
            bound = 1 / (c_in * 9) ** 0.5
            assert rest.abs().max() <= bound and rest.std() > bound / 3, path


def test_muon_head_has_unit_std_and_airbench94s_does_not():
    _, muon, _ = compiled("airbench94_muon")
    _, plain, _ = compiled("airbench94")
    assert abs(muon.head.fc.weight.std().item() - 1) < 1e-6
    assert plain.head.fc.weight.std().item() < 0.1  # default: uniform within 1/16


@pytest.mark.parametrize("name", RECORDS)
def test_whitening_is_saved_with_the_weights(name):
    """The filters are a frozen parameter, so a state dict carries them: rebuilt without
    data (as load_model does) and loaded, the network gives the same logits."""
    _, module, _ = compiled(name)
    recipe = load_recipe(RECIPES / "airbench" / f"{name}.yaml")
    g, _ = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe))
    rebuilt = compile_graph(g, allow_pending=True)
    rebuilt.load_state_dict(module.state_dict())
    x = torch.randn(4, 3, 32, 32)
    module.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(module(x), rebuilt(x))

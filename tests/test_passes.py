"""Graph rewrite passes: exactness, structure, whitening, illegal uses, the machinery."""

import random
import warnings

import pytest
import torch
from conftest import RECIPES

from netgraph import (
    PassContext,
    RecipeError,
    apply_pass,
    apply_transforms,
    build_graph,
    compile_graph,
    load_recipe,
    recipe_from_dict,
    register_pass,
    summarize,
)
from netgraph.graph.build import INPUT, inputs
from netgraph.graph.ops import GhostBatchNorm
from netgraph.graph.passes import PASSES
from netgraph.graph.passes.whiten_stem import whitening_filters


@pytest.fixture(scope="module")
def resnet9():
    return build_graph(load_recipe(RECIPES / "resnet9.yaml"))


def images(n, seed=0, size=32):
    """Smooth random images: neighbouring pixels and channels correlate, as in photos."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size + 4, size + 4, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1)
    return (x + 0.3 * x.mean(1, keepdim=True)) / x.std()


def assert_same_function(before, after, batch=8, shape=(3, 32, 32)):
    """Same outputs in eval and train mode, weights copied by name (passes keep names)."""
    torch.manual_seed(0)
    a, b = compile_graph(before), compile_graph(after)
    b.load_state_dict(a.state_dict())
    x = torch.randn(batch, *shape)
    for train in (False, True):
        a.train(train), b.train(train)
        torch.testing.assert_close(b(x), a(x), rtol=1e-5, atol=1e-5)


def random_network(seed):
    """A small random network: stages of conv-BN-act with optional max-pools,
    identity nodes and residual adds."""
    rng = random.Random(seed)
    net, width = {}, 3
    for i in range(rng.randint(2, 4)):
        width = rng.choice([4, 6, 8])
        stage = {
            "conv": {"op": "conv2d", "out": width, "kernel": rng.choice([1, 3]), "bias": rng.random() < 0.5},
            "bn": {"op": "batch_norm"},
            "act": {"op": rng.choice(["relu", "celu"])},
        }
        if rng.random() < 0.5:
            stage["skip"] = {"op": "identity"}
        if rng.random() < 0.7:
            stage["pool"] = {"op": "max_pool", "size": 2}
        if rng.random() < 0.5:
            stage["res"] = {
                "conv": {"op": "conv2d", "out": width},
                "act": {"op": "relu"},
                "id": {"op": "identity"},
            }
            stage["add"] = {"op": "add", "in": ["res/id", "res/conv" if rng.random() < 0.5 else "res/input"]}
        net[f"stage{i}"] = stage
    net["head"] = {
        "pool": {"op": "global_avg_pool"},
        "flat": {"op": "flatten"},
        "fc": {"op": "linear", "out": 3},
    }
    return build_graph(recipe_from_dict({"input": {"shape": [3, 16, 16]}, "network": net}))


# --- exact passes keep the function -------------------------------------------


@pytest.mark.parametrize("name", [n for n, spec in PASSES.items() if spec.exact])
def test_exact_passes_keep_resnet9s_function(resnet9, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # remove_identity finds no identity in ResNet-9
        after, report = apply_pass(resnet9, name)
    assert_same_function(resnet9, after)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", [n for n, spec in PASSES.items() if spec.exact])
def test_exact_passes_keep_a_random_networks_function(name, seed):
    g = random_network(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some random networks have nothing to change
        after, report = apply_pass(g, name)
    assert_same_function(g, after, shape=(3, 16, 16))


def test_random_networks_give_the_exact_passes_work():
    for name in ("swap_pool_activation", "remove_identity"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matches = [apply_pass(random_network(seed), name)[1].matches for seed in range(6)]
        assert sum(m > 0 for m in matches) >= 4, (name, matches)


def test_swap_pool_activation_structure(resnet9):
    after, report = apply_pass(resnet9, "swap_pool_activation")
    assert report.exact and report.matches == 3
    assert inputs(after, "layer1/pool") == ["layer1/conv_bn/bn"]
    assert inputs(after, "layer1/conv_bn/act") == ["layer1/pool"]
    assert inputs(after, "layer1/residual/res1/conv") == ["layer1/conv_bn/act"]
    assert inputs(after, "layer1/residual/add") == ["layer1/conv_bn/act", "layer1/residual/res2/act"]
    assert after.nodes["layer1/conv_bn/act"]["shape"] == (128, 16, 16)
    # The head's pool follows an add, not an activation: left alone.
    assert inputs(after, "head/pool") == ["layer3/residual/add"]


def test_remove_identity_rewires_consumers_and_output():
    g = build_graph(
        recipe_from_dict(
            {
                "network": {
                    "a": {"op": "conv2d", "out": 4},
                    "i": {"op": "identity"},
                    "b": {"op": "add", "in": ["i", "a"]},
                    "out": {"op": "identity"},
                }
            }
        )
    )
    after, report = apply_pass(g, "remove_identity")
    assert report.matches == 2 and sorted(report.removed) == ["i", "out"]
    assert inputs(after, "b") == ["a", "a"] and after.graph["output"] == "b"
    assert_same_function(g, after)


def test_passes_are_pure(resnet9):
    before = {n: (d["op"], dict(d["params"]), inputs(resnet9, n)) for n, d in resnet9.nodes(data=True)}
    for name in ("swap_pool_activation", "pool_before_bn", "ghost_batch_norm", "freeze_bn_scale"):
        apply_pass(resnet9, name)
    assert before == {n: (d["op"], d["params"], inputs(resnet9, n)) for n, d in resnet9.nodes(data=True)}


# --- function-changing passes produce their structure -------------------------


def test_pool_before_bn_structure(resnet9):
    for start in (resnet9, apply_pass(resnet9, "swap_pool_activation")[0]):
        after, report = apply_pass(start, "pool_before_bn")
        assert not report.exact and report.matches == 3
        for layer in ("layer1", "layer2", "layer3"):
            assert inputs(after, f"{layer}/pool") == [f"{layer}/conv_bn/conv"]
            assert inputs(after, f"{layer}/conv_bn/bn") == [f"{layer}/pool"]
            assert inputs(after, f"{layer}/conv_bn/act") == [f"{layer}/conv_bn/bn"]
        assert after.nodes["layer1/conv_bn/bn"]["shape"] == (128, 16, 16)
        assert inputs(after, "layer2/conv_bn/conv") == ["layer1/residual/add"]


def test_replace_op(resnet9):
    after, report = apply_pass(resnet9, "replace_op", {"from": "relu", "to": {"op": "celu", "alpha": 0.075}})
    assert report.matches == len(report.changed) == 8
    celus = [n for n in after if after.nodes[n]["op"] == "celu"]
    assert len(celus) == 8 and all(after.nodes[n]["params"] == {"alpha": 0.075} for n in celus)
    only_layer1, report = apply_pass(
        resnet9, "replace_op", {"from": "relu", "to": "gelu", "where": "layer1/*"}
    )
    assert report.matches == 3 and only_layer1.nodes["prep/act"]["op"] == "relu"
    assert only_layer1.nodes["layer1/residual/res2/act"]["params"] == {"approximate": "none"}


def test_ghost_batch_norm_structure_and_splits_one_is_plain_bn(resnet9):
    after, report = apply_pass(resnet9, "ghost_batch_norm", {"splits": 16}, PassContext(batch_size=512))
    assert report.matches == 8
    assert all(
        after.nodes[n]["params"]["splits"] == 16 for n in after if after.nodes[n]["op"] == "ghost_batch_norm"
    )
    module = compile_graph(after)
    assert isinstance(module.layer1.conv_bn.bn, GhostBatchNorm)
    assert module.layer1.conv_bn.bn.running_mean.shape == (128 * 16,)
    one, _ = apply_pass(resnet9, "ghost_batch_norm", {"splits": 1})
    assert_same_function(resnet9, one, batch=8)


def test_ghost_batch_norm_normalises_each_split_and_averages_for_eval():
    torch.manual_seed(0)
    bn = GhostBatchNorm(3, splits=4, momentum=1.0)  # momentum 1: running stats = last batch's
    x = torch.randn(8, 3, 5, 5) * torch.arange(1, 9.0).view(8, 1, 1, 1)
    y = bn(x)
    for split in range(4):
        images = x[split::4]  # view(n/s, c*s): split j holds images j, j+s, ...
        mean = images.mean((0, 2, 3), keepdim=True)
        var = images.var((0, 2, 3), unbiased=False, keepdim=True)
        torch.testing.assert_close(y[split::4], (images - mean) / torch.sqrt(var + bn.eps))
    bn.eval()
    per_split_means = torch.stack([x[j::4].mean((0, 2, 3)) for j in range(4)])
    expected = (x - per_split_means.mean(0).view(1, 3, 1, 1)) / torch.sqrt(
        bn.running_var.view(4, 3).mean(0).view(1, 3, 1, 1) + bn.eps
    )
    torch.testing.assert_close(bn(x), expected)
    bn.train()
    with pytest.raises(ValueError, match="ghost batch norm with 4 splits got a batch of 6 images"):
        bn(torch.randn(6, 3, 5, 5))


def test_freeze_bn_scale(resnet9):
    celu, _ = apply_pass(resnet9, "replace_op", {"from": "relu", "to": {"op": "celu", "alpha": 0.075}})
    after, report = apply_pass(
        celu,
        "freeze_bn_scale",
        {"celu_alpha_scale": 4, "output_multiplier": 0.0625, "bias_lr_scale": 64, "bias_wd_scale": 1 / 64},
    )
    assert report.matches == 8
    bn = after.nodes["layer2/conv_bn/bn"]
    assert bn["params"]["weight_trainable"] is False and bn["params"]["weight_init"] == 1.0
    assert bn["optim"] == {"bias": {"lr_scale": 64.0, "wd_scale": 1 / 64}}
    assert after.nodes["layer2/conv_bn/act"]["params"]["alpha"] == pytest.approx(0.3)
    assert after.nodes["head/scale"]["params"]["by"] == 0.0625
    module = compile_graph(after)
    assert not module.layer2.conv_bn.bn.weight.requires_grad
    assert module.layer2.conv_bn.bn.bias.requires_grad
    s = summarize(after)
    frozen_bn = 64 + 128 * 3 + 256 + 512 * 3
    assert (s["params"], s["frozen_params"]) == (6_573_120 - frozen_bn, frozen_bn)


# --- whitening ------------------------------------------------------------------


def test_whitening_filters_make_the_patch_covariance_the_identity():
    x = images(300).double()
    eps = 1e-6
    filters, eigenvalues = whitening_filters(x, kernel=3, eps=eps)
    assert filters.shape == (27, 3, 3, 3) and filters.dtype == torch.float32
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])  # largest first
    out = torch.nn.functional.conv2d(x, filters.double())  # every valid 3x3 patch
    flat = out.transpose(0, 1).reshape(27, -1)
    covariance = flat @ flat.T / (flat.shape[1] - 1)
    # Whitened: covariance diag(lambda / (lambda + eps)); with these images the smallest
    # eigenvalue is > 1e-3, so every diagonal entry is 1 within 0.1%, off-diagonals < 1e-3.
    assert eigenvalues.min() > 1e-3
    torch.testing.assert_close(covariance, torch.eye(27, dtype=torch.float64), atol=1e-3, rtol=0)
    # With the seed's eps = 0.01 the directions with lambda >> eps still come out white.
    filters, eigenvalues = whitening_filters(x, kernel=3, eps=0.01)
    out = torch.nn.functional.conv2d(x, filters.double()).transpose(0, 1).reshape(27, -1)
    covariance = out @ out.T / (out.shape[1] - 1)
    expected = torch.diag((eigenvalues / (eigenvalues + 0.01)).double())
    torch.testing.assert_close(covariance, expected, atol=2e-3, rtol=1e-3)


def test_whiten_stem_structure_and_fixed_filters(resnet9):
    data = images(64)
    context = PassContext(train_images=lambda n: data[:n])
    after, report = apply_pass(resnet9, "whiten_stem", {"images": 50}, context)
    assert report.added == ["prep/whiten"] and report.changed == ["prep/conv"]
    whiten = after.nodes["prep/whiten"]
    assert whiten["params"] == {
        "out": 27,
        "kernel": 3,
        "stride": 1,
        "padding": 1,
        "bias": False,
        "groups": 1,
        "trainable": False,
        "bias_trainable": None,
        "init": "default",
    }
    assert after.nodes["prep/conv"]["params"]["kernel"] == 1
    assert after.nodes["prep/conv"]["shape"] == (64, 32, 32)
    assert inputs(after, "prep/whiten") == [INPUT] and inputs(after, "prep/conv") == ["prep/whiten"]
    expected, _ = whitening_filters(data[:50], 3, 0.01)
    module = compile_graph(after)
    torch.testing.assert_close(module.prep.whiten.weight, expected)
    module(torch.randn(4, 3, 32, 32)).sum().backward()
    assert module.prep.whiten.weight.grad is None  # fixed: receives no gradient
    assert module.prep.conv.weight.grad is not None
    s = summarize(after)
    assert s["frozen_params"] == 27 * 27 and s["params"] == 6_573_120 - 3 * 9 * 64 + 27 * 64


def test_whiten_stem_without_images_draws_but_does_not_compile(resnet9):
    after, _ = apply_pass(resnet9, "whiten_stem")
    assert summarize(after)["frozen_params"] == 27 * 27
    with pytest.raises(
        RecipeError,
        match="node 'prep/whiten': cannot compile: the whitening filters are computed from training images",
    ):
        compile_graph(after)


# --- illegal uses ---------------------------------------------------------------


def recipe_with(write, transforms, extra=""):
    path = write("r.yaml", f"base: {RECIPES / 'resnet9.yaml'}\n{extra}transforms:\n{transforms}")
    recipe = load_recipe(path)
    return recipe, build_graph(recipe)


@pytest.mark.parametrize(
    "transforms, extra, batch, message",
    [
        (
            "  - replace_op: {from: relu, to: gelu}\n  - swap_pool_activation\n",
            "",
            None,
            r"r.yaml:4: node 'layer1/conv_bn/act': pass 'swap_pool_activation' \(transforms item 2\): "
            r"activation 'gelu' is not monotonic non-decreasing, .* \(use pool_before_bn",
        ),
        (
            "  - ghost_batch_norm: {splits: 16}\n",
            "train: {batch_size: 500}\n",
            500,
            r"r.yaml:4: node 'prep/bn': pass 'ghost_batch_norm' \(transforms item 1\): batch size 500 is "
            r"not divisible by splits=16 \(set splits to a divisor of the batch size",
        ),
        (
            "  - swap_pool_activaton\n",
            "",
            None,
            r"r.yaml:3: unknown pass 'swap_pool_activaton' \(did you mean 'swap_pool_activation'\?\)",
        ),
        (
            "  - ghost_batch_norm: {split: 16}\n",
            "",
            None,
            r"r.yaml:3: unknown parameter 'split' for pass 'ghost_batch_norm' .*did you mean 'splits'",
        ),
        (
            "  - replace_op: {from: rleu, to: celu}\n",
            "",
            None,
            r"pass 'replace_op' \(transforms item 1\): unknown op 'rleu' \(did you mean 'relu'\?\)",
        ),
        (
            "  - remove_identity: {strict: true}\n",
            "",
            None,
            r"r.yaml:3: pass 'remove_identity' \(transforms item 1\) found nothing to change",
        ),
    ],
)
def test_illegal_uses_name_the_pass_the_node_and_the_fix(write, transforms, extra, batch, message):
    recipe, g = recipe_with(write, transforms, extra)
    with pytest.raises(RecipeError, match=message):
        apply_transforms(g, recipe, PassContext(batch_size=batch))


def test_a_pass_that_finds_nothing_warns(write):
    recipe, g = recipe_with(write, "  - remove_identity\n")
    with pytest.warns(
        UserWarning,
        match=r"r.yaml:3: pass 'remove_identity' \(transforms item 1\) "
        r"found nothing to change",
    ):
        after, reports = apply_transforms(g, recipe)
    assert reports[0].matches == 0


def test_stages(write):
    recipe, g = recipe_with(write, "  - swap_pool_activation\n  - pool_before_bn\n")
    assert apply_transforms(g, recipe, stop=0)[1] == []
    assert [r.name for r in apply_transforms(g, recipe, stop=1)[1]] == ["swap_pool_activation"]
    with pytest.raises(RecipeError, match="stage 3 does not exist: the recipe lists 2 transforms"):
        apply_transforms(g, recipe, stop=3)


def test_user_registered_pass(write):
    @register_pass("double_widths", params={"factor": 2}, exact=False)
    def double_widths(g, context, factor):
        """Multiply every conv's output channels."""
        convs = [n for n in g if g.nodes[n]["op"] == "conv2d"]
        for n in convs:
            g.nodes[n]["params"] = {**g.nodes[n]["params"], "out": g.nodes[n]["params"]["out"] * factor}
        return len(convs)

    try:
        g = build_graph(
            recipe_from_dict(
                {
                    "input": {"shape": [3, 8, 8]},
                    "network": {
                        "a": {"op": "conv2d", "out": 4},
                        "b": {"op": "conv2d", "out": 6},
                        "p": {"op": "global_avg_pool"},
                        "f": {"op": "flatten"},
                    },
                }
            )
        )
        after, report = apply_pass(g, "double_widths", {"factor": 3})
        assert report.matches == 2 and after.nodes["f"]["shape"] == (18,)
        assert compile_graph(after)(torch.randn(2, 3, 8, 8)).shape == (2, 18)
    finally:
        del PASSES["double_widths"]


def test_the_seeds_passes_on_resnet9():
    recipe = load_recipe(RECIPES / "resnet9_passes.yaml")
    data = images(32)
    g, reports = apply_transforms(
        build_graph(recipe), recipe, PassContext(train_images=lambda n: data[:n], batch_size=512)
    )
    assert [r.name for r in reports] == [
        "swap_pool_activation",
        "pool_before_bn",
        "replace_op",
        "ghost_batch_norm",
        "freeze_bn_scale",
        "whiten_stem",
    ]
    assert all(r.matches > 0 for r in reports)
    s = summarize(g)
    frozen_bn = 64 + 128 * 3 + 256 + 512 * 3
    # The 1x1 conv 27 -> 64 has as many weights (1,728) as the 3x3 conv 3 -> 64 it replaces.
    assert s["params"] == 6_573_120 - frozen_bn
    assert s["frozen_params"] == frozen_bn + 27 * 27
    module = compile_graph(g)
    module.train()
    assert module(torch.randn(32, 3, 32, 32)).shape == (32, 10)


def test_ghost_batch_norm_by_split_size_follows_the_batch(resnet9):
    for batch, splits in ((512, 16), (128, 4)):
        after, _ = apply_pass(resnet9, "ghost_batch_norm", {"split_size": 32}, PassContext(batch_size=batch))
        assert after.nodes["layer1/conv_bn/bn"]["params"]["splits"] == splits
    with pytest.raises(RecipeError, match="batch size 100 is not divisible by split_size=32"):
        apply_pass(resnet9, "ghost_batch_norm", {"split_size": 32}, PassContext(batch_size=100))
    with pytest.raises(RecipeError, match="give splits or split_size, not both"):
        apply_pass(resnet9, "ghost_batch_norm", {"split_size": 32, "splits": 4}, PassContext(batch_size=128))

"""The records' training, step by step, against airbench's update written here in plain
torch from its published code (../shared/docs/anchors.md): SGD groups with airbench's
learning-rate and weight-decay arithmetic, Muon, lookahead, the schedules and the whitening
bias's span. netgraph drives its own loop's step (engine.Training.step) on the same batches;
the networks are the recipes at small widths, loaded into tools/reference_airbench.py."""

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPES, ROOT
from test_optimizers import published_ns5

from netgraph import load_recipe
from netgraph.graph.build import build_graph
from netgraph.graph.executor import compile_graph, parameter_options
from netgraph.graph.passes import PassContext, apply_transforms
from netgraph.runs.plan import fit_to_data, load_data, normalisation
from netgraph.train.config import data_config, train_config
from netgraph.train.engine import Training, to_device

sys.path.insert(0, str(ROOT / "tools"))
import reference_airbench  # noqa: E402

WIDTHS = (8, 16, 16)  # the records' networks at small widths: the arithmetic is the same


def netgraph_run(name: str, train_images: int):
    """(netgraph's Training of the recipe at WIDTHS on CPU in float32, its model, the batch size)."""
    recipe = load_recipe(
        RECIPES / "airbench" / f"{name}.yaml",
        [
            "train.precision=float32",
            "train.channels_last=false",
            "train.compile=none",
            f"network.group1.c={WIDTHS[0]}",
            f"network.group2.c={WIDTHS[1]}",
            f"network.group3.c={WIDTHS[2]}",
            "data.dataset=synthetic",
            f"data.synthetic={{train: {train_images}, test: 64, classes: 10}}",
        ],
    )
    dconfig = data_config(recipe)
    dataset = load_data(dconfig)
    recipe, dconfig = fit_to_data(recipe, dataset)
    mean, std = normalisation(dataset, dconfig)
    data = to_device(dataset, "cpu", mean, std, dconfig.pad, torch.float32)
    config = train_config(recipe, "cpu")
    graph, _ = apply_transforms(
        build_graph(recipe), recipe, PassContext(train_images=data.train_sample, batch_size=config.batch_size)
    )
    torch.manual_seed(0)
    model = compile_graph(graph)
    run = Training(
        model, data, config, dconfig.augmentations, dconfig.max_groups, parameter_options(graph), None
    )
    return run, model, config.batch_size


def reference_like(model, name: str):
    ref = reference_airbench.AirbenchNet(
        scale=1 / 9 if name == "airbench94" else 1 / 256,
        zero_whiten_bias=True,
        unit_std_head=False,
        widths=WIDTHS,
    )
    ref.load_state_dict(model.state_dict())
    return ref


def batches(n: int, batch: int):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


def assert_same_state(model, ref, tol=1e-6):
    ours, theirs = model.state_dict(), ref.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        if ours[k].is_floating_point():
            torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=tol, msg=k)


@pytest.mark.slow
def test_airbench94_steps_as_published():
    """Every step of a whole (short) run: 1 step an epoch, 9.9 epochs = 10 steps, so the
    warm-up knot (step 2), the whitening bias's last step (3), lookahead (steps 5 and 10) and
    the final write-back (10) all happen."""
    run, model, batch = netgraph_run("airbench94", 1024)
    ref = reference_like(model, "airbench94")
    spe, total = 1, math.ceil(9.9 * 1)
    assert (run.steps_per_epoch, run.total_steps) == (spe, total)
    # airbench94.py: kilostep_scale, SGD groups, LambdaLR over np.interp, LookaheadState
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    lr, wd = 11.5 / kilostep, 0.0153 * batch / kilostep
    lr_biases = lr * 64
    norm_biases = [p for n, p in ref.named_parameters() if "norm" in n and p.requires_grad]
    other = [p for n, p in ref.named_parameters() if "norm" not in n and p.requires_grad]
    opt = torch.optim.SGD(
        [
            dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
            dict(params=other, lr=lr, weight_decay=wd / lr),
        ],
        momentum=0.85,
        nesterov=True,
    )
    initial = [lr_biases, lr]
    factor = lambda s: np.interp(s, [0, int(0.23 * total), total], [0.2, 1, 0.07])  # noqa: E731
    for group, base in zip(opt.param_groups, initial):  # LambdaLR sets factor(0) at construction
        group["lr"] = base * factor(0)
    alpha = 0.95**5 * (torch.arange(total + 1) / total) ** 3
    net_views = [v for v in ref.state_dict().values() if v.dtype in (torch.half, torch.float)]
    ema = [v.clone() for v in net_views]

    def lookahead(decay):
        torch._foreach_lerp_(ema, net_views, 1 - decay)
        torch._foreach_copy_(net_views, ema)

    for step, (x, y) in enumerate(batches(total, batch)):
        ref.whiten.bias.requires_grad = step // spe < 3  # epoch < whiten_bias_epochs
        loss = F.cross_entropy(ref(x), y, label_smoothing=0.2, reduction="none").sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group, base in zip(opt.param_groups, initial):  # scheduler.step(): the next step's rate
            group["lr"] = base * factor(step + 1)
        current = step + 1
        if current % 5 == 0:
            lookahead(alpha[current].item())
        if current >= total:
            lookahead(1.0)
        run.step(x, y)
        assert_same_state(model, ref)
    assert run.step_count == total


@pytest.mark.slow
def test_airbench94_muon_steps_as_published():
    """Every step of a short run: 1 step an epoch, 8 epochs = 8 steps; the whitening bias's
    own decay ends at step ceil(3 x 1) = 3, after which it is frozen; Muon on every filter."""
    run, model, batch = netgraph_run("airbench94_muon", 2000)
    ref = reference_like(model, "airbench94_muon")
    spe = 1
    total, whiten_steps = math.ceil(8 * spe), math.ceil(3 * spe)
    # airbench94_muon.py main(): SGD (fused) for biases and the head, Muon for the filters
    bias_lr, head_lr, wd = 0.053, 0.67, 2e-6 * batch
    filters = [p for p in ref.parameters() if len(p.shape) == 4 and p.requires_grad]
    norm_biases = [p for n, p in ref.named_parameters() if "norm" in n and p.requires_grad]
    opt1 = torch.optim.SGD(
        [
            dict(params=[ref.whiten.bias], lr=bias_lr, weight_decay=wd / bias_lr),
            dict(params=norm_biases, lr=bias_lr, weight_decay=wd / bias_lr),
            dict(params=[ref.head.fc.weight], lr=head_lr, weight_decay=wd / head_lr),
        ],
        momentum=0.85,
        nesterov=True,
        fused=True,
    )
    initial = [g["lr"] for g in opt1.param_groups]
    buffers = [torch.zeros_like(p) for p in filters]
    for step, (x, y) in enumerate(batches(total, batch)):
        loss = F.cross_entropy(ref(x), y, label_smoothing=0.2, reduction="sum")
        loss.backward()
        if step >= whiten_steps:  # abm: the whitening bias detached, so it has no gradient
            ref.whiten.bias.grad = None
        opt1.param_groups[0]["lr"] = initial[0] * (1 - step / whiten_steps)
        for group, base in zip(opt1.param_groups[1:], initial[1:]):
            group["lr"] = base * (1 - step / total)
        opt1.step()
        muon_lr = 0.24 * (1 - step / total)
        with torch.no_grad():  # abm Muon.step, as published
            for p, buf in zip(filters, buffers):
                g = p.grad
                buf.mul_(0.6).add_(g)
                g = g.add(buf, alpha=0.6)
                p.mul_(len(p) ** 0.5 / p.norm())
                p.add_(published_ns5(g.reshape(len(g), -1)).view(g.shape), alpha=-muon_lr)
        ref.zero_grad(set_to_none=True)
        run.step(x, y)
        assert_same_state(model, ref)
    assert run.step_count == total

"""tools/bench.py: the compiled network costs no more than the hand-written one, and the
benchmark's record holds what docs/performance.md reports."""

import collections
import json
import statistics

import pytest
import torch
from conftest import RECIPES
from torch.utils._python_dispatch import TorchDispatchMode

import bench
from netgraph import load_recipe


def test_compiled_resnet9_forward_backward_within_10_percent_of_hand_written():
    """Median of alternating rounds on the CPU (on an H100: 1.000, docs/performance.md)."""
    torch.manual_seed(0)
    result = bench.bench_step(
        load_recipe(RECIPES / "resnet9.yaml"), torch.device("cpu"), batch=8, steps=2, reps=5, overrides=[]
    )
    assert result["output_difference_float32"] < 1e-4  # the same function, so a fair race
    assert 0.9 <= result["ratio_median"] <= 1.1, result["rounds"]


def _compiled_and_hand_written(recipe_name):
    """The recipe's network after its passes (whitening from 2,000 random images), compiled,
    and the hand-written twin (ResNet-9, or the airbench network) with the same structure and
    weights."""
    from netgraph import build_graph, compile_graph
    from netgraph.graph.passes import PassContext, apply_transforms

    recipe = load_recipe(RECIPES / recipe_name)
    torch.manual_seed(0)
    images = torch.randn(2000, 3, 32, 32)
    graph, _ = apply_transforms(
        build_graph(recipe), recipe, PassContext(train_images=lambda n: images[:n], batch_size=64)
    )
    module = compile_graph(graph)
    return module, bench.reference_for(module)


class _CountOperations(TorchDispatchMode):
    """Counts the ATen operations a piece of code runs, by name (what the kernels are)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "recipe_name",
    ["resnet9.yaml", "bag_of_tricks.yaml", "airbench/airbench94.yaml", "airbench/airbench94_muon.yaml"],
)
def test_compiled_network_runs_exactly_the_hand_written_operations(recipe_name):
    """The timing-free half of the ratio above: a forward and backward of the compiled network
    runs the same ATen operations, as many times each, as the hand-written one, so the
    framework adds no copy, cast or reshape (CPU timing noise, 0.95-1.13 under load, would
    hide one that costs 5%)."""
    module, reference = _compiled_and_hand_written(recipe_name)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    counts = []
    for model in (module, reference):
        with _CountOperations() as counted:
            torch.nn.functional.cross_entropy(model(x), y).backward()
        counts.append(counted.counts)
    assert sum(counts[0].values()) > 80  # convolutions, batch norms, pools, their gradients
    assert counts[0] == counts[1], (counts[0] - counts[1], counts[1] - counts[0])


def test_the_reference_follows_the_bag_of_tricks_network():
    module, reference = _compiled_and_hand_written("bag_of_tricks.yaml")
    assert reference.layer1.conv_bn.bn.splits == 2 and reference.head.scale == 0.0625
    assert isinstance(reference.layer1.conv_bn.act, torch.nn.CELU) and reference.layer1.pool_before_bn
    assert bench.check_same_function(module.train(), reference.train(), torch.randn(64, 3, 32, 32)) < 1e-4
    # and a different network is told apart
    reference.layer1.pool_before_bn = False
    assert bench.check_same_function(module.train(), reference.train(), torch.randn(64, 3, 32, 32)) > 1e-3


@pytest.mark.slow
def test_bench_record_on_a_small_run(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert (
        bench.main(
            [
                str(RECIPES / "tiny.yaml"),
                "--device",
                "cpu",
                "--parts",
                "train,augment",
                "--train-reps",
                "1",
                "--reps",
                "1",
                "--set",
                "data.dataset=synthetic",
                "--set",
                "data.synthetic.train=512",
                "--set",
                "data.synthetic.test=128",
                "--set",
                "train.epochs=3",
                "--variant",
                "plain=train.foreach=true",
                "--variant",
                "loop=train.foreach=false",
                "--json-out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert {"command", "device", "torch", "date", "peak_flops_measured", "augment", "train"} <= set(record)
    plain, loop = record["train"]["variants"]["plain"], record["train"]["variants"]["loop"]
    assert plain["train_time_ratio_to_plain"] == 1.0
    # the ratio is the median over rounds of each round's loop / plain time (one round here)
    ratios = [a["train_time_s"] / b["train_time_s"] for a, b in zip(loop["runs"], plain["runs"], strict=True)]
    assert len(ratios) == 1 and loop["train_time_ratio_to_plain"] == pytest.approx(statistics.median(ratios))
    for v in (plain, loop):
        assert v["train_time_s"] == pytest.approx(statistics.median(r["train_time_s"] for r in v["runs"]))
        # 512 training images: 4 whole batches of tiny.yaml's 128 an epoch
        assert v["images_per_s"] == pytest.approx(
            statistics.median(512 / r["epoch_time_s"] for r in v["runs"])
        )
    assert plain["test_acc_mean"] == loop["test_acc_mean"]  # the loop is the same update
    printed = capsys.readouterr().out
    assert "plain" in printed and "0.0 TFLOP/s" not in printed  # a CPU's rate in GFLOP/s


def test_flop_rates_keep_their_digits():
    assert bench.flop_rate(157.3e12) == "157.3 TFLOP/s"
    assert bench.flop_rate(21.44e9) == "21.4 GFLOP/s" and bench.flop_rate(3e5) == "0.3 MFLOP/s"

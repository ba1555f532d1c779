"""tools/bench.py: the compiled network costs no more than the hand-written one, and the
benchmark's record holds what README's Performance section reports."""
import json

import torch

from conftest import RECIPES
from netgraph import load_recipe
import bench


def test_compiled_resnet9_forward_backward_within_10_percent_of_hand_written():
    """Median of alternating rounds on the CPU (on an H100: 1.000, README Performance)."""
    torch.manual_seed(0)
    result = bench.bench_step(load_recipe(RECIPES / "resnet9.yaml"), torch.device("cpu"), batch=8,
                              steps=2, reps=5, overrides=[])
    assert result["output_difference_float32"] < 1e-4  # the same function, so a fair race
    assert 0.9 <= result["ratio_median"] <= 1.1, result["rounds"]


def test_the_reference_follows_the_bag_of_tricks_network():
    from netgraph import build_graph, compile_graph
    from netgraph.passes import PassContext, apply_transforms
    recipe = load_recipe(RECIPES / "bag_of_tricks.yaml")
    images = torch.randn(2000, 3, 32, 32)
    graph, _ = apply_transforms(build_graph(recipe), recipe,
                                PassContext(train_images=lambda n: images[:n], batch_size=64))
    module = compile_graph(graph)
    reference = bench.reference_for(module)
    assert reference.layer1.conv_bn.bn.splits == 2 and reference.head.scale == 0.0625
    assert isinstance(reference.layer1.conv_bn.act, torch.nn.CELU) and reference.layer1.pool_before_bn
    assert bench.check_same_function(module.train(), reference.train(), torch.randn(64, 3, 32, 32)) < 1e-4
    # and a different network is told apart
    reference.layer1.pool_before_bn = False
    assert bench.check_same_function(module.train(), reference.train(), torch.randn(64, 3, 32, 32)) > 1e-3


def test_bench_record_on_a_small_run(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main([str(RECIPES / "tiny.yaml"), "--device", "cpu",
                       "--parts", "train,augment", "--train-reps", "1", "--reps", "1",
                       "--set", "data.dataset=synthetic", "--set", "data.synthetic.train=512",
                       "--set", "data.synthetic.test=128", "--set", "train.epochs=3",
                       "--variant", "plain=train.foreach=true", "--variant", "loop=train.foreach=false",
                       "--json-out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert {"command", "device", "torch", "date", "peak_flops_measured", "augment", "train"} <= set(record)
    plain, loop = record["train"]["variants"]["plain"], record["train"]["variants"]["loop"]
    assert plain["train_time_ratio_to_plain"] == 1.0 and loop["images_per_s"] > 0
    assert plain["test_acc_mean"] == loop["test_acc_mean"]  # the loop is the same update
    assert "plain" in capsys.readouterr().out

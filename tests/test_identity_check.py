"""tools/identity_check.py's comparison can fail: one flipped bit, a dtype, a missing key or another
test loss is a difference; copies are identical. No git history, no training."""

import copy

import identity_check
import numpy as np
import torch

from netgraph.data.arrays import read_arrays


def run(state, acc=0.5, loss=1.25):
    return {"state": state, "test_acc": acc, "test_loss": loss}


def state():
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "bn.running_mean": torch.randn(4, generator=g),
        "bn.num_batches_tracked": torch.tensor(5),
        "mask": torch.tensor([True, False]),
    }


def flip_bit(t, index, bit=0):
    """``t`` with one bit of one element flipped (int32 view of a float32 tensor)."""
    t = t.clone()
    t.view(-1).view(torch.int32)[index] ^= 1 << bit
    return t


def test_identical_copies_are_identical():
    a = state()
    assert identity_check.compare(run(a), run(copy.deepcopy(a))) == (True, None)


def test_one_flipped_bit_is_a_difference_naming_the_tensor():
    a, b = state(), state()
    b["bn.running_mean"] = flip_bit(b["bn.running_mean"], 2)  # the lowest mantissa bit
    assert torch.allclose(a["bn.running_mean"], b["bn.running_mean"])  # close is not equal
    identical, where = identity_check.compare(run(a), run(b))
    assert not identical and where.startswith("bn.running_mean: values differ (1 of 4 elements")


def test_the_first_difference_is_in_the_base_key_order():
    a, b = state(), state()
    b["conv.weight"] = flip_bit(b["conv.weight"], 0)
    b["bn.running_mean"] = flip_bit(b["bn.running_mean"], 0)
    assert identity_check.compare(run(a), run(b))[1].startswith("conv.weight")


def test_signed_zero_and_nan_are_compared_as_bits():
    zero, nan = torch.tensor([0.0]), torch.tensor([float("nan")])
    assert not identity_check.compare(run({"w": zero}), run({"w": -zero}))[0]
    assert identity_check.compare(run({"w": nan}), run({"w": nan.clone()}))[0]


def test_keys_dtypes_shapes_and_metrics_are_differences():
    a = state()
    cases = {
        "keys": {k: v for k, v in a.items() if k != "mask"},
        "dtype": {**a, "bn.num_batches_tracked": torch.tensor(5, dtype=torch.int32)},
        "shape": {**a, "bn.running_mean": a["bn.running_mean"].reshape(2, 2)},
    }
    for what, b in cases.items():
        identical, where = identity_check.compare(run(a), run(b))
        assert not identical and what in where
    assert identity_check.compare(run(a), run(a, loss=1.25 + 2**-40)) == (
        False,
        "test_loss: 1.25 vs 1.2500000000009095",
    )
    assert not identity_check.compare(run(a), run(a, acc=0.25))[0]


def test_the_random_arrays_are_read_by_data_dataset_arrays(tmp_path):
    path = tmp_path / "random.npz"
    identity_check.write_arrays(path, (1, 8, 8), train=64, test=20)
    data = read_arrays(path)
    assert tuple(data.train_images.shape) == (64, 1, 8, 8) and len(data.test_labels) == 20
    again = tmp_path / "again.npz"
    identity_check.write_arrays(again, (1, 8, 8), train=64, test=20)
    assert np.array_equal(np.load(path)["x_train"], np.load(again)["x_train"])  # a fixed seed


def test_a_recipe_setting_is_read_along_its_base_chain():
    digits = identity_check.ROOT / "recipes" / "examples" / "digits.yaml"
    assert identity_check.chain_value(digits, ("input", "shape"), None) == [1, 8, 8]
    assert identity_check.chain_value(digits, ("train", "batch_size"), None) == 64
    ladder = identity_check.ROOT / "recipes" / "ladder" / "09_tta.yaml"
    assert identity_check.chain_value(ladder, ("input", "shape"), None) == [3, 32, 32]  # resnet9.yaml's
    assert identity_check.chain_value(ladder, ("nothing", "here"), "default") == "default"

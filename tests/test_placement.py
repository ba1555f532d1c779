"""data.placement: host gives the batches and the trained weights of device, bit for bit,
with the same batch-group draws; auto says what it chose and why."""

import textwrap

import pytest
import torch

from netgraph import load_recipe
from netgraph.data.synthetic import synthetic
from netgraph.runs.plan import choose_placement
from netgraph.runs.run import run_recipe
from netgraph.train import augment
from netgraph.train.augment import BatchGroupLoader
from netgraph.train.config import data_config
from netgraph.train.engine import to_device

MEAN, STD = (128.0,) * 3, (64.0,) * 3
AUGMENT = [augment.Crop(16), augment.Flip(), augment.Cutout(4)]


def loaders(data, host_first_augment=AUGMENT):
    device = to_device(data, "cpu", MEAN, STD, pad=2, dtype=torch.float32)
    host = to_device(data, "cpu", MEAN, STD, pad=2, dtype=torch.float32, host=True)
    assert host.host and host.train_padded.dtype == torch.uint8 and device.train_padded.dtype == torch.float32
    make = lambda d: BatchGroupLoader(
        d.train_padded,
        d.train_labels,
        64,
        host_first_augment,
        seed=3,
        max_groups=50,
        normalize=d.normalize,
        host=d.host,
    )
    return make(device), make(host)


@pytest.mark.parametrize(
    "augmentations",
    [AUGMENT, [augment.Flip(), augment.Crop(16)], []],
    ids=["crop first", "flip first", "none"],
)
def test_host_batches_are_the_device_batches_bit_for_bit(augmentations):
    data = synthetic(300, 10, shape=(3, 16, 16), classes=4, seed=0)
    on_device, on_host = loaders(data, augmentations)
    for _ in range(2):  # two epochs: new draws each
        pairs = list(zip(on_device, on_host))
        assert len(pairs) == len(on_device) == 4
        for (x, y), (hx, hy) in pairs:
            assert torch.equal(x, hx) and torch.equal(y, hy)
    # resuming mid-epoch skips the same batches
    state = on_device.epoch_state
    assert all(
        torch.equal(a[0], b[0]) for a, b in zip(on_device.epoch(state, skip=2), on_host.epoch(state, skip=2))
    )


RECIPE = """
    data:
      dataset: synthetic
      synthetic: {train: 256, test: 64, classes: 4}
      augment: [crop, flip, {cutout: 8}]
    train:
      epochs: 2
      batch_size: 64
      lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
      ema: {momentum: 0.9, every: 2}
    transforms:
      - whiten_stem: {kernel: 3, eps: 0.01, images: 100}
    network:
      conv: {op: conv2d, out: 8, bias: false}
      bn: {op: batch_norm}
      act: {op: relu}
      pool: {op: global_avg_pool}
      flat: {op: flatten}
      fc: {op: linear, out: 4}
"""


def test_host_placement_trains_the_same_weights_as_device(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    runs = {}
    for placement in ("device", "host"):
        recipe = load_recipe(path, [f"data.placement={placement}"])
        runs[placement] = run_recipe(recipe, device="cpu")
    (device_run, device_model, _), (host_run, host_model, _) = runs["device"], runs["host"]
    assert (device_run.placement, host_run.placement) == ("device", "host")
    assert device_run.test_acc == host_run.test_acc
    assert [e["train_loss"] for e in device_run.log] == [e["train_loss"] for e in host_run.log]
    for (name, a), (_, b) in zip(device_model.state_dict().items(), host_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_auto_says_what_it_chose(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    dataset = synthetic(256, 64, classes=4)
    config = data_config(load_recipe(path, ["data.placement=auto"]))
    chosen, reason = choose_placement(config, dataset, torch.device("cpu"), torch.float32)
    assert chosen == "device" and "on a CPU, host and device memory are one" in reason
    config = data_config(load_recipe(path, ["data.placement=host"]))
    assert choose_placement(config, dataset, torch.device("cpu"), torch.float32)[0] == "host"


@pytest.mark.cuda
def test_auto_on_a_gpu_chooses_host_for_a_set_larger_than_the_share(tmp_path, monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    config = data_config(load_recipe(path, ["data.placement=auto"]))
    dataset = synthetic(256, 64, classes=4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100_000, 10**9))
    chosen, reason = choose_placement(config, dataset, torch.device("cuda"), torch.float16)
    assert chosen == "host" and "more than 50% of the 0.00 GiB free on the GPU" in reason
    on_device, on_host = [
        to_device(dataset, "cuda", MEAN, STD, 4, torch.float16, host=h) for h in (False, True)
    ]
    assert on_host.train_padded.is_pinned() and on_host.train_padded.device.type == "cpu"
    make = lambda d: BatchGroupLoader(
        d.train_padded,
        d.train_labels,
        64,
        AUGMENT[:1] + [augment.Flip()],
        seed=1,
        normalize=d.normalize,
        device="cuda",
        host=d.host,
    )
    for (x, _), (hx, _) in zip(make(on_device), make(on_host)):
        assert torch.equal(x, hx)

"""Images of other sizes and channel counts than 3 x 32 x 32, through the data: section
checks, normalisation, summary and render, the whitening pass, the pictures and training."""

import json

import numpy as np
import pytest
from conftest import small_network

from netgraph import RecipeError, load_recipe
from netgraph.cli import main
from netgraph.data.sources import load
from netgraph.runs.plan import fit_to_data, normalisation, normalisation_line

NETWORK = small_network(3)


def npz(path, shape=(12, 10), n=60, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)
    y = np.arange(n) % classes
    np.savez(path, x_train=x[: n - 15], y_train=y[: n - 15], x_test=x[n - 15 :], y_test=y[n - 15 :])
    return path


def recipe(tmp_path, data, extra=""):
    path = tmp_path / "r.yaml"
    path.write_text(f"data: {data}\n" + extra + NETWORK)
    return load_recipe(path)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            "{dataset: arrays, pad: 2, augment: [{crop: 15}]}",
            r"r.yaml:1: crop size 15 does not fit in images of 16 x 14",
        ),
        (
            "{dataset: arrays, pad: 0, augment: [{cutout: 11}]}",
            r"r.yaml:1: cutout size 11 does not fit in images of 12 x 10",
        ),
        ("{dataset: arrays, pad: 10}", r"r.yaml:1: data.pad 10 does not fit images of 12 x 10 pixels"),
        (
            "{dataset: arrays, pad: 1, augment: [crop]}",
            r"crop without a size crops to the image size, but the images are 12 x 10",
        ),
    ],
)
def test_augmentation_sizes_are_checked_against_the_real_images(tmp_path, data, message):
    dataset = load("arrays", npz(tmp_path / "a.npz"))
    r = recipe(tmp_path, data)
    with pytest.raises(RecipeError, match=message):
        fit_to_data(r, dataset)


def test_input_shape_defaults_from_the_data_and_summary_reads_it(tmp_path, capsys):
    path = npz(tmp_path / "a.npz", shape=(12, 12, 3))
    r = recipe(tmp_path, "{dataset: arrays, pad: 2, augment: [crop, {cutout: 5}]}")
    fitted, dconfig = fit_to_data(r, load("arrays", path))
    assert fitted.input_shape == [3, 12, 12] and r.input_shape == [3, 32, 32]  # the original untouched
    assert dconfig.augmentations[0].size == 12  # crop to the image size
    assert main(["summary", str(tmp_path / "r.yaml"), "--data-dir", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    shapes = {row["path"]: row["shape"] for row in summary["nodes"]}
    assert shapes["input"] == [3, 12, 12] and shapes["conv"] == [8, 12, 12]


def test_normalisation_from_the_training_set_or_the_recipe(tmp_path):
    dataset = load("arrays", npz(tmp_path / "a.npz"))
    x = dataset.train_images.double()
    mean, std = normalisation(dataset)
    assert mean == pytest.approx([x.mean().item()]) and std == pytest.approx([x.std().item()])
    assert normalisation_line(dataset).startswith("normalising with the statistics of its 45 training images")
    _, given = fit_to_data(
        recipe(tmp_path, "{dataset: arrays, pad: 0, augment: [], mean: [100], std: [50]}"), dataset
    )
    assert normalisation(dataset, given) == ((100.0,), (50.0,))
    _, wrong = fit_to_data(
        recipe(tmp_path, "{dataset: arrays, pad: 0, augment: [], mean: [1, 2, 3], std: [1, 1, 1]}"), dataset
    )
    with pytest.raises(RecipeError, match="data.mean needs 1 values, one per channel"):
        normalisation(dataset, wrong)
    with pytest.raises(RecipeError, match="data.std must be a list of positive numbers"):
        recipe(tmp_path, "{dataset: arrays, mean: [1], std: [0]}") and fit_to_data(
            recipe(tmp_path, "{dataset: arrays, mean: [1], std: [0]}"), dataset
        )


def test_grayscale_pictures_and_whitening(tmp_path):
    pytest.importorskip("matplotlib")
    from netgraph.runs import show

    dataset = load("arrays", npz(tmp_path / "a.npz", shape=(12, 12)))
    r = recipe(
        tmp_path,
        "{dataset: arrays, pad: 2, augment: [crop, {cutout: 4}]}",
        "transforms: [{whiten_stem: {kernel: 3, eps: 0.01, images: 40}}]\n",
    )
    r, _ = fit_to_data(r, dataset)
    picture = show.show_augment(r, tmp_path / "augment.png", images=4, dataset=dataset)
    assert picture.data["draws"].shape == (2, 4, 1, 12, 12)
    from matplotlib.image import imread

    pixels = imread(tmp_path / "augment.png")[..., :3]
    assert (pixels.max(-1) - pixels.min(-1) > 0.05).mean() < 0.001  # drawn in grey, not a colour map
    whitening = show.show_whitening(r, tmp_path / "whitening.png", dataset=dataset)
    assert whitening.data["patches"].shape == (9, 1, 3, 3)

"""data.dataset: arrays: a .npz or a folder of .npy files, NHWC uint8, every refusal, and
netgraph train on it with input.shape taken from the data."""

import json
import textwrap

import numpy as np
import pytest
from conftest import small_network

from netgraph import RecipeError
from netgraph.cli import main
from netgraph.data.arrays import read_arrays
from netgraph.data.sources import load

NETWORK = small_network(4)


def arrays(n_train=40, n_test=12, shape=(8, 8, 3), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_train + n_test,) + shape, dtype=np.uint8)
    y = np.arange(n_train + n_test) % classes
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}


def test_npz_and_npy_folder_read_pixel_exact_as_nchw(tmp_path):
    a = arrays()
    np.savez(tmp_path / "a.npz", classes=np.array(["w", "x", "y", "z"]), **a)
    folder = tmp_path / "npy"
    folder.mkdir()
    for key, value in a.items():
        np.save(folder / f"{key}.npy", value)
    for path in (tmp_path / "a.npz", folder):
        d = load("arrays", path)
        assert d.image_shape == (3, 8, 8) and d.train_images.dtype.is_floating_point is False
        np.testing.assert_array_equal(d.train_images.numpy(), a["x_train"].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(d.test_labels.numpy(), a["y_test"])
    assert load("arrays", tmp_path / "a.npz").classes == ["w", "x", "y", "z"]
    assert load("arrays", folder).classes == ["0", "1", "2", "3"]


def test_grayscale_nhw_and_keras_labels(tmp_path):
    a = arrays(shape=(6, 5))
    a["y_train"] = a["y_train"][:, None]  # Keras stores N x 1
    np.savez(tmp_path / "g.npz", **a)
    d = read_arrays(tmp_path / "g.npz")
    assert d.image_shape == (1, 6, 5) and d.train_labels.shape == (40,)
    np.testing.assert_array_equal(d.train_images.numpy()[:, 0], a["x_train"])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda a: a.update(
                x_train=a["x_train"].transpose(0, 3, 1, 2), x_test=a["x_test"].transpose(0, 3, 1, 2)
            ),
            r"x_train has shape \(40, 3, 8, 8\): channels first \(NCHW\).*transpose\(0, 2, 3, 1\)",
        ),
        (lambda a: a.update(x_train=a["x_train"] / 255.0), r"x_train is float64, not uint8.*\* 255"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), r"y_train has shape \(39,\), expected 40 labels"),
        (lambda a: a.update(y_test=a["y_test"] - 5), r"y_test holds the label -5"),
        (lambda a: a.update(y_train=a["y_train"].astype(float)), r"y_train is float64, not integers"),
        (lambda a: a.pop("y_test"), r"has no y_test"),
        (
            lambda a: a.update(x_test=a["x_test"][:, :4]),
            r"x_train images are \(3, 8, 8\).*x_test images \(3, 4, 8\)",
        ),
        (lambda a: a.update(x_train=np.zeros((40, 8, 8, 5), np.uint8)), r"x_train has 5 channels"),
        (
            lambda a: a.update(classes=np.array(["a", "b"])),
            r"classes names 2 classes, but the labels go up to 3",
        ),
    ],
)
def test_bad_arrays_are_refused_naming_the_file(tmp_path, change, message):
    a = arrays()
    change(a)
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(RecipeError, match=message) as error:
        read_arrays(tmp_path / "bad.npz")
    assert error.value.file == str(tmp_path / "bad.npz")


def test_object_arrays_and_non_files_are_refused(tmp_path):
    a = arrays()
    a["classes"] = np.array([{"a": 1}], dtype=object)  # would need a pickle to load
    np.savez(tmp_path / "obj.npz", **a)
    with pytest.raises(RecipeError, match="cannot read these arrays"):
        read_arrays(tmp_path / "obj.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(RecipeError, match="cannot read these arrays"):
        read_arrays(tmp_path / "text.npz")
    with pytest.raises(RecipeError, match="no such file"):
        read_arrays(tmp_path / "absent.npz")
    with pytest.raises(RecipeError, match="missing x_train.npy"):
        read_arrays(tmp_path)
    with pytest.raises(RecipeError, match="no path was given.*--data-dir"):
        load("arrays", None)


def test_train_on_an_npz_takes_the_input_shape_from_the_data(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", **arrays(n_train=128, n_test=32, shape=(12, 12), classes=4))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        textwrap.dedent("""
        data: {dataset: arrays, pad: 2, augment: [crop, flip, {cutout: 4}]}
        train: {epochs: 2, batch_size: 32, lr: {knots: [0, 1, epochs], values: [0, 0.1, 0]}}
        """)
        + NETWORK
    )
    out = tmp_path / "result.json"
    assert (
        main(
            [
                "train",
                str(recipe),
                "--device",
                "cpu",
                "--data-dir",
                str(tmp_path / "a.npz"),
                "--log",
                str(tmp_path / "log.jsonl"),
                "--json-out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "a: 128 training and 32 test images of 1 x 12 x 12, 4 classes (0, 1, 2, 3)" in printed
    assert "normalising with the statistics of its 128 training images: mean (" in printed
    assert json.loads(out.read_text())["train_images"] == 128


def test_an_input_shape_the_data_does_not_have_is_refused_before_training(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", **arrays(n_train=128, n_test=32, shape=(12, 12), classes=4))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        textwrap.dedent("""
        input: {shape: [3, 32, 32]}
        data: {dataset: arrays, pad: 2}
        train: {epochs: 2, batch_size: 32, lr: {knots: [0, 1, epochs], values: [0, 0.1, 0]}}
        """)
        + NETWORK
    )
    assert (
        main(
            [
                "train",
                str(recipe),
                "--device",
                "cpu",
                "--data-dir",
                str(tmp_path / "a.npz"),
                "--log",
                str(tmp_path / "log.jsonl"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "r.yaml:2: input.shape is [3, 32, 32], but the a images are 1 x 12 x 12" in err
    assert "epoch" not in capsys.readouterr().out

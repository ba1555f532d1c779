"""data.dataset: folder: class-folder trees of generated PNGs, both layouts, the split,
grayscale and RGB, data.size, the cache and its invalidation, and every refusal."""

import json
import os
import textwrap

import numpy as np
import pytest
import yaml
from conftest import RECIPES, SAMPLE
from PIL import Image

from netgraph import RecipeError
from netgraph.cli import main
from netgraph.data import folder as image_folder
from netgraph.data.dataset import CACHE_ENV, Dataset
from netgraph.data.folder import read_folder


def write_tree(root, images, labels, names=("cat", "dog", "emu")):
    """images (N x H x W x C or N x H x W uint8) as root/NAME/IIII.png; the file of each image."""
    files = []
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
        files.append(folder / f"{i:04d}.png")
    return files


def random_images(n, shape=(6, 7, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + shape, dtype=np.uint8)


def test_train_and_test_folders_read_pixel_exact(tmp_path):
    train, test = random_images(9), random_images(6, seed=1)
    write_tree(tmp_path / "d" / "train", train, [0, 1, 2] * 3)
    write_tree(tmp_path / "d" / "test", test, [2, 1] * 3, names=("cat", "dog", "emu"))
    (tmp_path / "d" / "train" / "cat" / "notes.txt").write_text("skipped: not an image")
    d = read_folder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert d.classes == ["cat", "dog", "emu"] and d.image_shape == (3, 6, 7) and d.name == "d"
    # files are read class by class, by name: cat 0000, 0003, 0006, dog 0001, ...
    order = [0, 3, 6, 1, 4, 7, 2, 5, 8]
    np.testing.assert_array_equal(d.train_images.numpy(), train[order].transpose(0, 3, 1, 2))
    assert d.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.test_labels.tolist() == [1, 1, 1, 2, 2, 2]


def test_one_tree_is_split_per_class_with_a_fixed_seed(tmp_path):
    write_tree(tmp_path / "d", random_images(50, (4, 4, 3)), [0] * 20 + [1] * 30)
    a = read_folder(tmp_path / "d", test_fraction=0.2, cache_dir=tmp_path / "c1")
    b = read_folder(tmp_path / "d", test_fraction=0.2, cache_dir=tmp_path / "c2")
    other = read_folder(tmp_path / "d", test_fraction=0.2, split_seed=1, cache_dir=tmp_path / "c3")
    assert sorted(a.test_labels.tolist()) == [0] * 4 + [1] * 6  # a fifth of each class
    assert len(a.train_labels) == 40
    assert (a.test_images == b.test_images).all() and not (a.test_images == other.test_images).all()
    everything = lambda d: sorted(map(bytes, np.concatenate([d.train_images.numpy(), d.test_images.numpy()])))
    assert everything(a) == everything(other)  # the same images, split otherwise


def test_grayscale_rgb_and_mixed(tmp_path):
    gray = random_images(4, (5, 5))
    write_tree(tmp_path / "g", gray, [0, 1, 0, 1])
    d = read_folder(tmp_path / "g", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert d.image_shape == (1, 5, 5)
    rgb = read_folder(tmp_path / "g", test_fraction=0.5, channels=3, cache_dir=tmp_path / "c")
    assert rgb.image_shape == (3, 5, 5) and (rgb.train_images == d.train_images).all()  # L repeated
    Image.fromarray(random_images(1, (5, 5, 3))[0]).save(tmp_path / "g" / "cat" / "colour.png")
    mixed = read_folder(tmp_path / "g", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert mixed.image_shape == (3, 5, 5)
    luma = read_folder(tmp_path / "g", test_fraction=0.5, channels=1, cache_dir=tmp_path / "c")
    assert luma.image_shape == (1, 5, 5)


def test_another_size_is_refused_naming_the_file_or_resized(tmp_path):
    files = write_tree(tmp_path / "d", random_images(4, (8, 8, 3)), [0, 1, 0, 1])
    Image.fromarray(random_images(1, (12, 10, 3))[0]).save(files[2])
    with pytest.raises(
        RecipeError, match=r"this image is 12 x 10 \(H x W\), but 3 of the 4 images are 8 x 8.*data.size"
    ) as e:
        read_folder(tmp_path / "d", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert e.value.file == str(files[2])
    d = read_folder(tmp_path / "d", test_fraction=0.5, size=[16, 12], cache_dir=tmp_path / "c")
    assert d.image_shape == (3, 16, 12)
    with Image.open(files[2]) as image:  # the stated filter
        expected = np.asarray(image.resize((12, 16), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    everything = np.concatenate([d.train_images.numpy(), d.test_images.numpy()])
    assert any((x == expected).all() for x in everything)


def test_a_corrupt_image_names_its_file(tmp_path):
    files = write_tree(tmp_path / "d", random_images(4), [0, 1, 0, 1])
    files[1].write_bytes(files[1].read_bytes()[:30])  # truncated
    with pytest.raises(RecipeError, match="cannot decode this image") as e:
        read_folder(tmp_path / "d", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert e.value.file == str(files[1])


def test_the_cache_is_read_the_second_time_and_invalidated_by_a_change(tmp_path, monkeypatch):
    files = write_tree(tmp_path / "d", random_images(6), [0, 1, 2] * 2)
    first = read_folder(tmp_path / "d", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c" / image_folder.CACHE_SUBFOLDER).iterdir())) == 1
    decode = image_folder._decode
    calls = []
    monkeypatch.setattr(image_folder, "_decode", lambda *a: calls.append(a[0]) or decode(*a))
    again = read_folder(tmp_path / "d", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert calls == [] and (again.train_images == first.train_images).all()
    new = random_images(1, seed=7)[0]
    Image.fromarray(new).save(files[0])
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # even within a clock tick
    changed = read_folder(tmp_path / "d", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert len(calls) == 6
    everything = np.concatenate([changed.train_images.numpy(), changed.test_images.numpy()])
    assert any((x == new.transpose(2, 0, 1)).all() for x in everything)
    files[3].unlink()  # a file gone: decoded again, one image fewer
    fewer = read_folder(tmp_path / "d", test_fraction=0.5, cache_dir=tmp_path / "c")
    assert len(fewer.train_labels) + len(fewer.test_labels) == 5 and len(calls) == 11


@pytest.mark.parametrize(
    "layout, message",
    [
        ("empty", r"holds no class folders"),
        ("empty class", r"class folder 'dog' holds no images"),
        ("test only class", r"test class 'yak' has no train folder"),
    ],
)
def test_bad_trees_are_refused(tmp_path, layout, message):
    root = tmp_path / "d"
    root.mkdir()
    if layout == "empty class":
        write_tree(root, random_images(2), [0, 0])
        (root / "dog").mkdir()
    if layout == "test only class":
        write_tree(root / "train", random_images(2), [0, 0])
        write_tree(root / "test", random_images(2), [0, 3], names=("cat", "dog", "emu", "yak"))
    with pytest.raises(RecipeError, match=message):
        read_folder(root, cache_dir=tmp_path / "c")


def test_train_on_a_folder_names_the_classes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    labels = np.arange(160) % 2
    images = (rng.integers(0, 128, size=(160, 10, 10)) + 100 * labels[:, None, None]).astype(np.uint8)
    write_tree(tmp_path / "shapes", images, labels, names=("dark", "light"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        textwrap.dedent("""
        data: {dataset: folder, pad: 2, augment: [crop, flip], test_fraction: 0.25}
        train: {epochs: 2, batch_size: 30, lr: {knots: [0, 1, epochs], values: [0, 0.2, 0]}}
        network:
          conv: {op: conv2d, out: 8, bias: false}
          bn: {op: batch_norm}
          act: {op: relu}
          pool: {op: global_avg_pool}
          flat: {op: flatten}
          fc: {op: linear, out: 2}
        """)
    )
    assert (
        main(
            [
                "train",
                str(recipe),
                "--device",
                "cpu",
                "--data-dir",
                str(tmp_path / "shapes"),
                "--log",
                str(tmp_path / "log.jsonl"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "shapes: 120 training and 40 test images of 1 x 10 x 10, 2 classes (dark, light)" in printed


# --- real images no one here wrote ------------------------------------------------------


def test_scikit_learn_digits_as_a_png_tree_train_with_the_example_recipe(tmp_path, capsys, monkeypatch):
    """The 1,797 8 x 8 digits scikit-learn ships, written here as DIGIT/NNNN.png, read back
    pixel for pixel and trained on with recipes/examples/digits.yaml (4 epochs here)."""
    datasets = pytest.importorskip("sklearn.datasets")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    digits = datasets.load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    write_tree(tmp_path / "digits", images, digits.target, names=[str(i) for i in range(10)])
    d = read_folder(tmp_path / "digits")
    assert d.image_shape == (1, 8, 8) and d.classes == [str(i) for i in range(10)]
    assert len(d.train_labels) + len(d.test_labels) == 1797
    assert sorted(map(bytes, np.concatenate([d.train_images, d.test_images]))) == sorted(
        map(bytes, images[:, None])
    )
    out = tmp_path / "result.json"
    assert (
        main(
            [
                "train",
                str(RECIPES / "examples" / "digits.yaml"),
                "--data-dir",
                str(tmp_path / "digits"),
                "--device",
                "cpu",
                "--set",
                "train.epochs=4",
                "--set",
                "train.lr={knots: [0, 1, epochs], values: [0, 0.4, 0]}",
                # the trained weights tested: after 4 short epochs the moving average (0.99^5
                # every 5 steps, 17 updates) is still mostly the initial weights
                "--set",
                "train.ema=null",
                "--log",
                str(tmp_path / "log.jsonl"),
                "--json-out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "digits: 1,438 training and 359 test images of 1 x 8 x 8, 10 classes (0, 1, 2, 3, 4, 5, 6, "
        "7, 8, 9); normalising with the statistics of its 1,438 training images" in printed
    )
    assert json.loads(out.read_text())["test_acc"] > 0.2  # chance: 0.1; 97% after 10 epochs


@pytest.mark.slow
def test_the_cifar_sample_as_png_folders_is_the_binary_layout(tmp_path):
    """The real sample (samples/cifar10) written as train/CLASS and test/CLASS PNGs holds the binary files'
    pixels, and trains to the same accuracy with the same seed (on the same image order)."""
    import torch

    from netgraph import recipe_from_dict
    from netgraph.data.cifar import load_cifar
    from netgraph.data.dataset import CIFAR10_MEAN, CIFAR10_STD
    from netgraph.runs.run import run_recipe

    binary = load_cifar("cifar10", data_dir=SAMPLE)
    for split, images, labels in (
        ("train", binary.train_images, binary.train_labels),
        ("test", binary.test_images, binary.test_labels),
    ):
        write_tree(
            tmp_path / "png" / split,
            images.permute(0, 2, 3, 1).numpy(),
            labels.tolist(),
            names=binary.classes,
        )
    png = read_folder(tmp_path / "png", cache_dir=tmp_path / "cache")
    assert png.classes == binary.classes  # CIFAR-10's order is alphabetical, as folders are read
    # The folder is read class by class, each in file (= binary) order.
    by_class = lambda labels: torch.from_numpy(np.argsort(labels.numpy(), kind="stable"))
    train, test = by_class(binary.train_labels), by_class(binary.test_labels)
    assert torch.equal(png.train_images, binary.train_images[train])
    assert torch.equal(png.test_images, binary.test_images[test])
    assert torch.equal(png.train_labels, binary.train_labels[train])
    reordered = Dataset(
        binary.train_images[train],
        binary.train_labels[train],
        binary.test_images[test],
        binary.test_labels[test],
        binary.classes,
        "cifar10",
    )
    sections = yaml.safe_load(textwrap.dedent(SMALL_NETWORK))
    sections["data"] = {
        "augment": ["crop", "flip", {"cutout": 8}],
        "mean": list(CIFAR10_MEAN),
        "std": list(CIFAR10_STD),
    }  # the binary's constants
    results = [
        run_recipe(recipe_from_dict(sections), device="cpu", dataset=d, seed=1)[0] for d in (reordered, png)
    ]
    assert results[0].test_acc == results[1].test_acc and results[0].test_acc > 0.2
    assert [e["train_loss"] for e in results[0].log] == [e["train_loss"] for e in results[1].log]


SMALL_NETWORK = """
    train:
      epochs: 2
      batch_size: 128
      lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
    network:
      conv: {op: conv2d, out: 16, bias: false}
      bn: {op: batch_norm}
      act: {op: relu}
      pool: {op: max_pool, size: 2}
      conv2: {op: conv2d, out: 32, bias: false}
      bn2: {op: batch_norm}
      act2: {op: relu}
      gpool: {op: global_max_pool}
      flat: {op: flatten}
      fc: {op: linear, out: 10}
"""

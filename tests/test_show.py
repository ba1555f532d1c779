"""`netgraph show`: each picture from tiny inputs, its file, and the numbers behind it."""

import json
import math
import statistics
import struct
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from netgraph import RecipeError, build_graph, compile_graph, load_recipe
from netgraph.cli import main
from netgraph.data.dataset import preprocess
from netgraph.graph.passes.whiten_stem import patch_covariance, whitening_filters
from netgraph.runs import show
from netgraph.runs.plan import load_data, normalisation
from netgraph.runs.run import log_entry
from netgraph.train.augment import BatchGroupLoader
from netgraph.train.config import data_config, train_config
from netgraph.train.engine import EpochLog, to_device, train

pytest.importorskip("matplotlib")

NETWORK = """
    network:
      conv: {op: conv2d, out: 4, bias: false}
      bn: {op: batch_norm}
      act: {op: relu}
      conv2: {op: conv2d, out: 4, bias: false}
      bn2: {op: batch_norm, weight_trainable: false}
      act2: {op: relu}
      pool: {op: global_avg_pool}
      flat: {op: flatten}
      fc: {op: linear, out: 3}
"""
DATA = """
    data:
      dataset: synthetic
      synthetic: {train: 96, test: 32, classes: 3}
      augment: [crop, flip, {cutout: 4}]
"""
TRAIN = """
    train:
      epochs: 2
      batch_size: 32
      lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
"""


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature; and that
    matplotlib can decode the whole file to that many pixels."""
    from matplotlib.image import imread

    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    assert imread(path).shape[:2] == (height, width)
    return width, height


def svg_size(path):
    """(width, height) in pixels at show.DPI of an SVG that parses as XML."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return tuple(round(float(root.get(k).removesuffix("pt")) / 72 * show.DPI) for k in ("width", "height"))


# --- augment ---------------------------------------------------------------------------


def test_augment_grid_is_the_loader_s_draws(write, tmp_path, capsys):
    recipe_path = write("r.yaml", DATA + NETWORK)
    out = tmp_path / "aug.png"
    assert (
        main(
            [
                "show",
                "augment",
                str(recipe_path),
                "-o",
                str(out),
                "--images",
                "5",
                "--draws",
                "3",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    assert f"wrote {out} (675 x 600 pixels)" in capsys.readouterr().out
    assert png_size(out) == (675, 600)  # (1 + 1.15 x 5 images) x (1 + 1.25 x 4 rows) inches

    recipe = load_recipe(recipe_path)
    dataset = load_data(data_config(recipe))
    data = show.augment_data(recipe, dataset, images=5, draws=3, seed=7)
    originals, draws = data["originals"], data["draws"]
    assert originals.shape == (5, 3, 32, 32) and draws.shape == (3, 5, 3, 32, 32)
    assert 0 <= draws.min() and draws.max() <= 1
    # Every draw changes every image (cutout always does) and no two draws are alike.
    for d in range(3):
        assert all(not torch.allclose(draws[d, i], originals[i]) for i in range(5))
        for e in range(d):
            assert not torch.equal(draws[d], draws[e])
    # The draws are the real loader's epochs on those images, with the same seed.
    mean, std = normalisation(dataset)
    config = data_config(recipe)
    loader = BatchGroupLoader(
        preprocess(dataset.train_images[:5], mean, std, pad=4),
        dataset.train_labels[:5],
        5,
        config.augmentations,
        seed=7,
        shuffle=False,
    )
    for d in range(3):
        assert torch.equal(data["normalised"][d], next(iter(loader))[0])
    assert data["augmentations"] == "crop 32x32 (after reflect padding by 4), flip, cutout 4x4"


def test_augment_colours_are_de_normalised(write):
    """With flips only, each drawn image is its original or its mirror, in 0..1 colours."""
    recipe = load_recipe(
        write("r.yaml", DATA.replace("[crop, flip, {cutout: 4}]", "[flip]\n      pad: 0") + NETWORK)
    )
    data = show.augment_data(recipe, load_data(data_config(recipe)), images=6, draws=2)
    originals = data["originals"]
    for image, original in zip(data["draws"].flatten(0, 1), originals.repeat(2, 1, 1, 1)):
        assert torch.allclose(image, original, atol=1e-5) or torch.allclose(
            image, original.flip(-1), atol=1e-5
        )
    assert not torch.allclose(data["draws"], originals.expand(2, -1, -1, -1, -1), atol=1e-5)


# --- whitening -------------------------------------------------------------------------


def test_whitening_patches_are_the_sorted_eigenvectors(write, tmp_path):
    recipe_path = write(
        "r.yaml",
        DATA
        + NETWORK
        + """
    transforms:
      - whiten_stem: {kernel: 2, images: 50, eps: 0.02}
    """,
    )
    out = tmp_path / "eig.svg"
    assert main(["show", "whitening", str(recipe_path), "-o", str(out), "--count", "5"]) == 0
    assert svg_size(out) == (1000, 475)  # 10 x (0.9 + 1.05 x 1 row + 2.8) inches

    recipe = load_recipe(recipe_path)
    dataset = load_data(data_config(recipe))
    data = show.whitening_data(recipe, dataset)
    values, vectors, patches = data["eigenvalues"], data["eigenvectors"], data["patches"]
    assert data["kernel"] == 2 and data["images"] == 50 and patches.shape == (12, 3, 2, 2)
    assert torch.all(values[:-1] >= values[1:])  # largest first
    mean, std = normalisation(dataset)
    covariance = patch_covariance(preprocess(dataset.train_images[:50], mean, std), 2)
    assert torch.allclose(covariance @ vectors, vectors * values, atol=1e-8)
    assert torch.allclose(vectors.T @ vectors, torch.eye(12, dtype=vectors.dtype), atol=1e-10)
    for i in range(12):
        assert torch.equal(patches[i].flatten(), vectors[:, i])
    # The same directions the whitening pass builds its filters from.
    filters, _ = whitening_filters(preprocess(dataset.train_images[:50], mean, std), 2, 0.02)
    scale = (values.clamp(min=0) + 0.02).sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(filters.double() * scale, patches, atol=1e-5)


def test_whitening_needs_a_whitening_stem(write, tmp_path, capsys):
    recipe_path = write("r.yaml", DATA + NETWORK)
    assert main(["show", "whitening", str(recipe_path), "-o", str(tmp_path / "e.png")]) == 2
    err = capsys.readouterr().err
    assert "r.yaml: the recipe has no whiten_stem transform" in err
    assert "--set 'transforms+=[whiten_stem]'" in err and len(err.splitlines()) == 1


# --- params ----------------------------------------------------------------------------


def _bn_values(model):
    """[weight mean, weight std, bias mean, bias std] per batch-norm layer, now."""
    return [
        [v.item() for t in (m.weight, m.bias) for v in reversed(torch.std_mean(t, correction=0))]
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]


def test_parameter_statistics_are_the_model_s_values_at_the_logged_steps(write):
    recipe = load_recipe(write("r.yaml", DATA + NETWORK + TRAIN + "      log_params: 3\n"))
    config = train_config(recipe, "cpu")
    dataset = load_data(data_config(recipe))
    mean, std = normalisation(dataset)
    data = to_device(dataset, "cpu", mean, std, 4, torch.float32)
    model = compile_graph(build_graph(recipe))
    seen = {0: _bn_values(model)}
    step = 0

    def on_step(_, __):
        nonlocal step
        step += 1
        seen[step] = _bn_values(model)

    result = train(model, data, config, data_config(recipe).augmentations, on_step=on_step)
    logged = [e.params for e in result.log]
    assert [p["steps"] for p in logged] == [[0, 3], [6]]  # 3 steps an epoch, every 3 steps
    for p in logged:
        assert list(p["layers"]) == ["bn", "bn2"] and p["steps_per_epoch"] == 3
        assert p["layers"]["bn"]["weight_trainable"] and not p["layers"]["bn2"]["weight_trainable"]
        for i, s in enumerate(p["steps"]):
            for name, actual in zip(("bn", "bn2"), seen[s]):
                layer = p["layers"][name]
                recorded = [layer[k][i] for k in ("weight_mean", "weight_std", "bias_mean", "bias_std")]
                assert recorded == pytest.approx(actual, abs=1e-7), (name, s)
    assert seen[6][0] != seen[0][0]  # the statistics moved: the test compares something
    assert seen[6][1][:2] == [1.0, 0.0]  # the frozen scale stays at exactly 1


def test_an_epoch_without_a_logged_step(write):
    """Every 5 steps at 3 steps an epoch: epoch 3 (steps 7..9) records nothing."""
    recipe = load_recipe(
        write("r.yaml", DATA + NETWORK + TRAIN.replace("epochs: 2", "epochs: 3") + "      log_params: 5\n")
    )
    dataset = load_data(data_config(recipe))
    mean, std = normalisation(dataset)
    result = train(
        compile_graph(build_graph(recipe)),
        to_device(dataset, "cpu", mean, std, 4, torch.float32),
        train_config(recipe, "cpu"),
        data_config(recipe).augmentations,
    )
    assert [e.params["steps"] for e in result.log] == [[0], [5], []]
    assert result.log[2].params["layers"]["bn"]["bias_mean"] == []


def test_a_group_past_its_until_is_recorded_as_the_recipe_made_it(write):
    """bn's bias trains 2 steps, then stops requiring a gradient (eager runs only): its flag in
    the record stays the recipe's, so a compiled run and an eager one draw the same picture."""
    until = "      param_groups: [{params: bn.bias, until: {steps: 2}}]\n      log_params: 3\n"
    recipe = load_recipe(write("r.yaml", DATA + NETWORK + TRAIN + until))
    dataset = load_data(data_config(recipe))
    mean, std = normalisation(dataset)
    model = compile_graph(build_graph(recipe))
    biases = []
    on_step = lambda _, __: biases.append(model.bn.bias.detach().clone())  # noqa: E731
    result = train(
        model,
        to_device(dataset, "cpu", mean, std, 4, torch.float32),
        train_config(recipe, "cpu"),
        data_config(recipe).augmentations,
        on_step=on_step,
    )
    assert [torch.equal(a, b) for a, b in zip(biases, biases[1:])] == [False, True, True, True, True]
    assert all(e.params["layers"]["bn"]["bias_trainable"] for e in result.log)


@pytest.mark.cuda
def test_recording_never_waits_for_the_gpu():
    """A record is queued on the device: no operation in it synchronises with the host."""
    from netgraph.train.engine import ParamStats

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).cuda()
    stats = ParamStats(model, 1)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3):
            stats.record(step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.flush(3)["layers"]["1"]["weight_mean"] == [1.0, 1.0, 1.0]


def test_without_log_params_the_log_has_no_statistics(write):
    dataset = load_data(data_config(load_recipe(write("r.yaml", DATA + NETWORK))))
    line = log_entry(EpochLog(1, 0.1, 1.0, 0.5, 1.0, 0.5, 2.0, 3.0), dataset)
    assert "params" not in line and (line["dataset"], line["train_images"]) == ("synthetic", 96)


def test_train_logs_statistics_and_show_params_and_curves_draw_them(write, tmp_path, capsys):
    recipe_path = write("r.yaml", DATA + NETWORK + TRAIN)
    log = tmp_path / "log.jsonl"
    assert (
        main(
            [
                "train",
                str(recipe_path),
                "--device",
                "cpu",
                "--runs",
                "2",
                "--quiet",
                "--set",
                "train.log_params=2",
                "--log",
                str(log),
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["seed"], e["params"]["steps"]) for e in lines] == [
        (0, [0, 2]),
        (0, [4, 6]),
        (1, [0, 2]),
        (1, [4, 6]),
    ]

    out = tmp_path / "params.png"
    assert main(["show", "params", str(log), "-o", str(out), "--seed", "1"]) == 0
    assert png_size(out) == (800, 350)  # 8 x (2.1 x 1 row + 1.4) inches
    data = show.params_data(show.read_runs([log]), seed=1)
    assert data["epoch"] == [0, 2 / 3, 4 / 3, 2]
    assert (
        data["layers"]["bn"]["bias_std"]
        == lines[2]["params"]["layers"]["bn"]["bias_std"] + lines[3]["params"]["layers"]["bn"]["bias_std"]
    )
    assert "synthetic data, 96 training images" == data["dataset"]

    out = tmp_path / "curves.png"
    assert main(["show", "curves", str(log), "-o", str(out)]) == 0
    assert png_size(out) == (800, 850)
    capsys.readouterr()
    assert main(["show", "params", str(log), "-o", str(out), "--seed", "5"]) == 2
    assert "no run with seed 5 in the log (seeds in it: 0, 1)" in capsys.readouterr().err


# --- curves ----------------------------------------------------------------------------


def _write_log(path, recipe, seeds, acc):
    """A log of two epochs per seed; test accuracy acc[seed][epoch - 1], no test at epoch 1
    for seed 2."""
    with open(path, "w") as f:
        for seed in seeds:
            for epoch in (1, 2):
                test = None if (seed, epoch) == (2, 1) else acc[seed][epoch - 1]
                f.write(
                    json.dumps(
                        {
                            "recipe": recipe,
                            "seed": seed,
                            "epoch": epoch,
                            "lr": 0.1 * epoch,
                            "train_loss": 2.0 / epoch + seed,
                            "train_acc": 0.5,
                            "test_loss": 1.0,
                            "test_acc": test,
                            "dataset": "cifar10",
                            "train_images": 4068,
                        }
                    )
                    + "\n"
                )


def test_curves_mean_and_band_over_seeds_and_logs(tmp_path):
    acc = {0: [0.2, 0.6], 1: [0.4, 0.7], 2: [0.9, 0.8]}
    _write_log(tmp_path / "a.jsonl", "r.yaml", [0, 1], acc)
    _write_log(tmp_path / "b.jsonl", "r.yaml", [2], acc)
    runs = show.read_runs([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    assert [(r["seed"], r["dataset"]) for r in runs] == [
        (s, "CIFAR-10 subset, 4,068 training images") for s in (0, 1, 2)
    ]
    (series,) = show.curves_data(runs)
    assert series["seeds"] == [0, 1, 2] and series["epoch"] == [1, 2]
    assert series["test_acc"]["n"] == [2, 3]  # seed 2 has no test at epoch 1
    assert series["test_acc"]["mean"] == pytest.approx([0.3, 0.7])
    assert series["test_acc"]["std"] == pytest.approx([statistics.stdev([0.2, 0.4]), 0.1])
    assert series["train_loss"]["mean"] == pytest.approx([3.0, 2.0])  # 2/epoch + mean seed 1
    assert series["train_loss"]["std"] == pytest.approx([1.0, 1.0])
    by_file = show.curves_data(runs, by_file=True)
    assert [s["seeds"] for s in by_file] == [[0, 1], [2]] and by_file[1]["test_acc"]["std"] == [0.0, 0.0]
    assert math.isnan(by_file[1]["test_acc"]["mean"][0])

    _write_log(tmp_path / "c.jsonl", "r.yaml", [1], acc)
    with pytest.raises(RecipeError, match=r"c.jsonl: seed 1 of r.yaml is in the logs twice"):
        show.curves_data(show.read_runs([tmp_path / "a.jsonl", tmp_path / "c.jsonl"]))


def test_curves_draw_several_logs_to_svg(tmp_path):
    acc = {0: [0.2, 0.6], 1: [0.4, 0.7], 2: [0.9, 0.8]}
    _write_log(tmp_path / "a.jsonl", "r.yaml", [0, 1, 2], acc)
    _write_log(tmp_path / "b.jsonl", "other.yaml", [0], acc)
    out = tmp_path / "deep" / "curves.svg"
    assert main(["show", "curves", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "-o", str(out)]) == 0
    assert svg_size(out) == (800, 850)
    assert "CIFAR-10 subset" in out.read_text()  # the title names the data


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        (None, r"log.jsonl: log file not found \(write one with netgraph train --log FILE\)"),
        ("{not json\n", r"log.jsonl:1: not a JSON line"),
        ('{"recipe": "r", "seed": 0}\n', r"log.jsonl:1: the line has no epoch, lr, train_loss, train_acc"),
        ("\n", r"log.jsonl: the log holds no epochs"),
    ],
)
def test_bad_logs(tmp_path, capsys, text, message):
    import re

    log = tmp_path / "log.jsonl"
    if text is not None:
        log.write_text(text)
    assert main(["show", "curves", str(log), "-o", str(tmp_path / "c.png")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_log_without_statistics_says_how_to_record_them(tmp_path, capsys):
    _write_log(tmp_path / "a.jsonl", "r.yaml", [0], {0: [0.1, 0.2]})
    assert main(["show", "params", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "p.png")]) == 2
    assert (
        "a.jsonl: the log has no batch-norm statistics (train with --set train.log_params=5"
        in capsys.readouterr().err
    )


def test_unknown_picture_format(tmp_path, capsys):
    assert main(["show", "curves", "x.jsonl", "-o", str(tmp_path / "c.jpg")]) == 2
    assert (
        "c.jpg: cannot tell the picture format from '.jpg' (name the output .png, .svg or .pdf)"
        in capsys.readouterr().err
    )


def test_without_matplotlib_one_line_says_what_to_install(tmp_path, capsys, monkeypatch):
    _write_log(tmp_path / "a.jsonl", "r.yaml", [0], {0: [0.1, 0.2]})
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["show", "curves", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "netgraph: error: netgraph show draws with matplotlib, which is not installed "
        "(pip install matplotlib)\n"
    )
    assert not (tmp_path / "c.png").exists()

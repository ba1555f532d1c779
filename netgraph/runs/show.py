"""The original code's pictures of a recipe and its training runs: ``netgraph show``.

- ``augment``: training images and independent draws of the recipe's augmentation
- ``whitening``: the leading eigen-patches of the patch covariance the whitening stem uses
- ``params``: batch-norm scales and biases during a run trained with ``train.log_params``
- ``curves``: loss, accuracy and learning rate per epoch, mean and band over seeds

Each ``*_data`` function computes what is drawn through the code training uses (the
batch-group loader, the whitening pass's eigen-decomposition, the JSON-lines log) and
needs no matplotlib, so the tests check the numbers; each ``show_*`` draws them.
matplotlib is optional (``pip install matplotlib``, or ``pip install -e '.[plot]'`` in
this checkout) and imported only to draw.
Figures are drawn on a ``matplotlib.figure.Figure`` (no pyplot, no global state) with
constrained layout, so a PNG is exactly the figure size x 100 dots per inch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from netgraph.core.errors import RecipeError
from netgraph.recipe.load import Recipe
from netgraph.runs.log import data_label, data_name, read_records

DPI = 100
FORMATS = ("png", "svg", "pdf")
PLOT_HINT = "pip install matplotlib"  # not 'netgraph[plot]': PyPI's netgraph is another project


@dataclass
class Picture:
    """A written figure: its file, its size in pixels at DPI, and the data drawn."""

    path: Path
    width: int
    height: int
    data: Dict[str, Any]


# --- drawing helpers ---------------------------------------------------------------------


def _output(path) -> Path:
    """The output file, checked before any work: its format comes from its extension."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in FORMATS:
        raise RecipeError(
            f"cannot tell the picture format from '{path.suffix or path.name}'",
            file=str(path),
            hint="name the output .png, .svg or .pdf",
        )
    return path


def _figure(width: float, height: float):
    """A new figure of width x height inches, or the one-line error without matplotlib."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise RecipeError(
            "netgraph show draws with matplotlib, which is not installed", hint=PLOT_HINT
        ) from None
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(figure, path: Path, data: Dict[str, Any]) -> Picture:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower().lstrip(".")
    # No creation date in SVG and PDF files, so redrawing the same data gives the same file.
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    figure.savefig(path, format=fmt, dpi=DPI, metadata=metadata)
    width, height = figure.get_size_inches()
    return Picture(path, round(width * DPI), round(height * DPI), data)


def _plan(recipe, data_dir: Optional[str] = None, dataset=None):
    """A Plan as given, or the recipe prepared on the CPU as train would prepare it."""
    from netgraph.runs.plan import Plan, prepare

    return (
        recipe
        if isinstance(recipe, Plan)
        else prepare(recipe, data_dir=data_dir, device="cpu", dataset=dataset)
    )


# --- augment -----------------------------------------------------------------------------


def describe_augmentations(augmentations: Sequence, pad: int) -> str:
    """'crop 32x32 (after reflect padding by 4), flip, cutout 8x8'."""
    from netgraph.train.augment import AlternatingFlip, Crop, Cutout, Flip, Translate

    words = []
    for a in augmentations:
        if isinstance(a, Translate):
            words.append(f"translate by up to {a.pixels} pixels")
        elif isinstance(a, AlternatingFlip):
            words.append("alternating flip")
        elif isinstance(a, Crop):
            words.append(f"crop {a.size}x{a.size}" + (f" (after reflect padding by {pad})" if pad else ""))
        elif isinstance(a, Cutout):
            words.append(f"cutout {a.size}x{a.size}")
        elif isinstance(a, Flip):
            words.append("flip")
        else:
            words.append(type(a).__name__.lower())
    return ", ".join(words)


def augment_data(recipe, dataset=None, images: int = 8, draws: int = 2, seed: int = 0) -> Dict:
    """The first ``images`` training images and ``draws`` independent draws of the recipe's
    augmentation of them, through netgraph.train.augment.BatchGroupLoader as training uses it.

    The loader holds just these images (normalised and padded as training does), with
    batch_size = images and shuffle off; each iteration is a new epoch, so a new draw of
    choices. With as many groups as images (min(choices, max_groups, images)), each image
    gets its own random choice. Returns colours in 0..1: ``originals`` (n, C, H, W) and
    ``draws`` (draws, n, C, H', W'), plus the loader's normalised output (``normalised``).
    ``recipe``: a Plan, or a Recipe prepared here (on ``dataset`` if given)."""
    from netgraph.data.dataset import preprocess
    from netgraph.runs.plan import normalisation
    from netgraph.train.augment import BatchGroupLoader

    plan = _plan(recipe, dataset=dataset)
    recipe, dataset, config = plan.recipe, plan.dataset, plan.dconfig
    if not config.augmentations:
        raise recipe.error(
            "data.augment is empty: there is no augmentation to show",
            ("data",),
            hint="set data.augment, e.g. [crop, flip, {cutout: 8}]",
        )
    if images < 1 or draws < 1:
        raise RecipeError(
            f"need at least one image and one draw, got {images} and {draws}",
            hint="e.g. --images 8 --draws 2",
        )
    n = min(images, len(dataset.train_labels))
    mean, std = normalisation(dataset, config)
    padded = preprocess(dataset.train_images[:n], mean, std, pad=config.pad)
    loader = BatchGroupLoader(
        padded,
        dataset.train_labels[:n],
        n,
        config.augmentations,
        seed=seed,
        max_groups=config.max_groups,
        shuffle=False,
    )
    normalised = torch.stack([next(iter(loader))[0] for _ in range(draws)])
    mean_t = torch.tensor(mean).view(1, 1, -1, 1, 1) / 255
    std_t = torch.tensor(std).view(1, 1, -1, 1, 1) / 255
    return {
        "originals": dataset.train_images[:n].float() / 255,
        "draws": (normalised.float() * std_t + mean_t).clamp(0, 1),
        "normalised": normalised,
        "labels": dataset.train_labels[:n].tolist(),
        "classes": list(dataset.classes),
        "augmentations": describe_augmentations(config.augmentations, config.pad),
        "dataset": data_label(dataset.name, len(dataset.train_labels)),
        "seed": seed,
    }


def show_augment(
    recipe: Recipe,
    output,
    *,
    data_dir: Optional[str] = None,
    images: int = 8,
    draws: int = 2,
    seed: int = 0,
    dataset=None,
) -> Picture:
    """A grid: the original images in the top row, one row per draw below."""
    path = _output(output)
    plan = _plan(recipe, data_dir, dataset)
    recipe, data = plan.recipe, augment_data(plan, None, images, draws, seed)
    originals, drawn = data["originals"], data["draws"]
    n, rows = originals.shape[0], 1 + drawn.shape[0]
    figure = _figure(1.0 + 1.15 * n, 1.0 + 1.25 * rows)
    axes = figure.subplots(rows, n, squeeze=False)
    for col in range(n):
        for row in range(rows):
            image = originals[col] if row == 0 else drawn[row - 1, col]
            ax = axes[row][col]
            _imshow(ax, image)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel("original" if row == 0 else f"draw {row}", fontsize=10)
        axes[0][col].set_title(data["classes"][data["labels"][col]], fontsize=9)
    from netgraph.runs.plan import run_name

    figure.suptitle(
        f"{run_name(recipe)}: {data['augmentations']}\n"
        f"{n} images of the {data['dataset']}; each row below the originals is one "
        f"draw (one epoch) of the batch-group loader",
        fontsize=10,
    )
    return _save(figure, path, data)


def _imshow(ax, image: torch.Tensor) -> None:
    """A C x H x W image in 0..1: colours for 3 channels, grey for 1."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")


# --- whitening ---------------------------------------------------------------------------


def whiten_params(recipe: Recipe) -> Dict[str, Any]:
    """The recipe's whiten_stem parameters (kernel, eps, images), defaults filled in."""
    from netgraph.core.schema import check_params
    from netgraph.graph.passes import get_pass
    from netgraph.recipe.load import transform_entry

    for i, entry in enumerate(recipe.transforms):
        name, params = transform_entry(entry, recipe, i)
        if name == "whiten_stem":
            params = {k: v for k, v in params.items() if k != "strict"}
            try:
                return check_params("pass 'whiten_stem'", get_pass(name).params, params)
            except RecipeError as err:
                raise err.located(*recipe.where(("transforms", i))) from None
    raise recipe.error(
        "the recipe has no whiten_stem transform, so no whitening to show",
        ("transforms",),
        hint="add one with --set 'transforms+=[whiten_stem]', or show recipes/bag_of_tricks.yaml",
    )


def whitening_data(recipe, dataset=None) -> Dict:
    """Eigenvalues (largest first) and eigen-patches (d, C, k, k) of the covariance of the
    recipe's whiten_stem k x k patches, on the first ``images`` normalised training images,
    from netgraph.graph.passes.whiten_stem.patch_eigen, the code the pass computes its filters with."""
    from netgraph.data.dataset import preprocess
    from netgraph.graph.passes.whiten_stem import patch_eigen
    from netgraph.runs.plan import normalisation

    plan = _plan(recipe, dataset=dataset)
    recipe, dataset = plan.recipe, plan.dataset
    params = whiten_params(recipe)
    kernel = params["kernel"]
    n = min(params["images"], len(dataset.train_labels))
    mean, std = normalisation(dataset, plan.dconfig)
    images = preprocess(dataset.train_images[:n], mean, std, pad=0)
    eigenvalues, eigenvectors = patch_eigen(images, kernel)
    patches = eigenvectors.T.reshape(-1, images.shape[1], kernel, kernel)
    return {
        "eigenvalues": eigenvalues,
        "eigenvectors": eigenvectors,
        "patches": patches,
        "kernel": kernel,
        "eps": params["eps"],
        "images": n,
        "dataset": data_label(dataset.name, len(dataset.train_labels)),
        "images_text": (f"all {n:,}" if n == len(dataset.train_labels) else f"the first {n:,}")
        + f" training images of the {data_name(dataset.name, len(dataset.train_labels))}",
    }


def show_whitening(
    recipe: Recipe, output, *, data_dir: Optional[str] = None, count: int = 12, dataset=None
) -> Picture:
    """The leading ``count`` eigen-patches, each as +v and -v side by side and labelled
    with sqrt(eigenvalue) as in the original code, over the whole spectrum as bars."""
    path = _output(output)
    plan = _plan(recipe, data_dir, dataset)
    recipe, data = plan.recipe, whitening_data(plan)
    patches, eigenvalues, kernel = data["patches"], data["eigenvalues"], data["kernel"]
    d = len(eigenvalues)
    count = max(1, min(count, d))
    if patches.shape[1] not in (1, 3):
        raise RecipeError(
            f"eigen-patches are drawn as grey or as colours of 3 channels; these "
            f"images have {patches.shape[1]}",
            file=recipe.file,
        )
    roots = eigenvalues.clamp(min=0).sqrt()
    per_row = min(count, 6)
    rows = math.ceil(count / per_row)
    figure = _figure(10, 0.9 + 1.05 * rows + 2.8)
    top, bottom = figure.subfigures(2, 1, height_ratios=[0.9 + 1.05 * rows, 2.8])
    _draw_eigen_patches(top.subplots(rows, per_row, squeeze=False), patches, roots, count, kernel)
    from netgraph.runs.plan import run_name

    top.suptitle(
        f"{run_name(recipe)}: leading eigenvectors of the covariance of "
        f"{kernel}x{kernel} patches of {data['images_text']} (normalised)\n"
        f"each shown with both signs, mid grey = 0; in brackets sqrt(eigenvalue), the "
        f"standard deviation along it in normalised pixel units",
        fontsize=10,
    )
    _draw_spectrum(bottom.subplots(), roots, count, data["eps"])
    return _save(figure, path, data)


def _draw_eigen_patches(axes, patches: torch.Tensor, roots: torch.Tensor, count: int, kernel: int) -> None:
    """The first ``count`` patches on a grid of axes, +v | gap | -v, the rest blank."""
    per_row = len(axes[0])
    # One scale for every patch (they all have unit length), mid grey = 0.
    scale = 0.5 / patches[:count].abs().max().item()
    gap = torch.ones(patches.shape[1], kernel, 1, dtype=patches.dtype)
    for i in range(len(axes) * per_row):
        ax = axes[i // per_row][i % per_row]
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.set_axis_off()
            continue
        v = patches[i]
        pair = torch.cat([0.5 + scale * v, gap, 0.5 - scale * v], dim=2)  # +v | gap | -v
        _imshow(ax, pair)
        ax.set_title(f"#{i + 1}  ({roots[i].item():.2f})", fontsize=9)
        ax.set_xlabel("+v   |   -v", fontsize=8)


def _draw_spectrum(ax, roots: torch.Tensor, count: int, eps: float) -> None:
    """Every sqrt(eigenvalue) as a bar (the drawn ones blue) over the sqrt(eps) floor."""
    d = len(roots)
    shown = ["tab:blue" if i < count else "tab:gray" for i in range(d)]
    ax.bar(range(1, d + 1), roots.numpy(), color=shown)
    floor = math.sqrt(eps)
    ax.axhline(
        floor,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"sqrt(eps) = {floor:.2f}: filter i divides by sqrt(eigenvalue + eps)",
    )
    ax.set_yscale("log")
    ax.set_xlim(0.3, d + 0.7)
    ax.set_xlabel(f"eigen-direction, largest first (all {d}; blue: drawn above)")
    ax.set_ylabel("sqrt(eigenvalue)\n(normalised pixel units)")
    ax.legend(loc="upper right", fontsize=8)


# --- training logs -----------------------------------------------------------------------

REQUIRED_KEYS = ("recipe", "seed", "epoch", "lr", "train_loss", "train_acc")


def read_runs(paths: Sequence) -> List[Dict[str, Any]]:
    """The runs in JSON-lines logs written by netgraph train --log, in order: each a dict
    with ``file``, ``recipe``, ``seed``, ``epochs`` (the log's lines for it) and, if the
    log names it, ``dataset`` (a data_label). A run is consecutive lines of one recipe
    and seed in one file; a line that is not an epoch's is refused with its file and line."""
    runs: List[Dict[str, Any]] = []
    for path in paths:
        before = len(runs)
        for entry in read_records(path, REQUIRED_KEYS, strict=True):
            run = runs[-1] if len(runs) > before else None
            if run is None or (run["recipe"], run["seed"]) != (entry["recipe"], entry["seed"]):
                run = {"file": str(path), "recipe": entry["recipe"], "seed": entry["seed"], "epochs": []}
                if "dataset" in entry and "train_images" in entry:
                    run["dataset"] = data_label(entry["dataset"], entry["train_images"])
                runs.append(run)
            run["epochs"].append(entry)
        if len(runs) == before:
            raise RecipeError(
                "the log holds no epochs", file=str(path), hint="give a log written by netgraph train --log"
            )
    return runs


def _data_title(runs: Sequence[Dict]) -> str:
    labels = sorted({r.get("dataset", "data set not named in the log") for r in runs})
    return "; ".join(labels)


# --- params ------------------------------------------------------------------------------


def params_data(runs: Sequence[Dict], seed: Optional[int] = None) -> Dict:
    """The batch-norm statistics of one run (the first, or the one with ``seed``) joined
    over its epochs: ``epoch`` (step / steps per epoch, 0 = before training) and, per layer,
    ``weight_mean``, ``weight_std``, ``bias_mean``, ``bias_std`` at those steps."""
    chosen = [r for r in runs if seed is None or r["seed"] == seed]
    if not chosen:
        raise RecipeError(
            f"no run with seed {seed} in the log",
            file=runs[0]["file"],
            hint="seeds in it: " + ", ".join(str(r["seed"]) for r in runs),
        )
    run = chosen[0]
    if any("params" not in e for e in run["epochs"]):
        raise RecipeError(
            "the log has no batch-norm statistics",
            file=run["file"],
            hint="train with --set train.log_params=5 to record them every 5 steps",
        )
    steps: List[float] = []
    layers: Dict[str, Dict[str, Any]] = {}  # per layer: each statistic's values, and trainable flags
    for e in run["epochs"]:
        p = e["params"]
        steps += [s / p["steps_per_epoch"] for s in p["steps"]]
        for name, values in p["layers"].items():
            layer = layers.setdefault(
                name, {k: [] for k in ("weight_mean", "weight_std", "bias_mean", "bias_std")}
            )
            for key in layer:
                layer[key] += values[key]
            layer["weight_trainable"] = values["weight_trainable"]
            layer["bias_trainable"] = values["bias_trainable"]
    return {
        "recipe": run["recipe"],
        "seed": run["seed"],
        "file": run["file"],
        "every": run["epochs"][0]["params"]["every"],
        "epoch": steps,
        "layers": layers,
        "dataset": run.get("dataset", "data set not named in the log"),
    }


def show_params(logs: Sequence, output, *, seed: Optional[int] = None) -> Picture:
    """One panel per batch-norm layer: mean and mean +- std over channels of its scales
    (weights) and biases against training epochs."""
    path = _output(output)
    data = params_data(read_runs(logs), seed)
    layers = data["layers"]
    ncols = min(4, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    figure = _figure(max(8.0, 2.6 * ncols + 0.6), 2.1 * nrows + 1.4)  # 8 in: room for the title
    axes = figure.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    x = data["epoch"]
    colours = {"weight": "tab:blue", "bias": "tab:orange"}
    names = {"weight": "scale (weight)", "bias": "bias"}
    for i, (name, layer) in enumerate(layers.items()):
        ax = axes[i // ncols][i % ncols]
        for kind in ("weight", "bias"):
            mean, std = layer[f"{kind}_mean"], layer[f"{kind}_std"]
            ax.fill_between(
                x,
                [m - s for m, s in zip(mean, std)],
                [m + s for m, s in zip(mean, std)],
                color=colours[kind],
                alpha=0.25,
                linewidth=0,
            )
            ax.plot(x, mean, color=colours[kind], linewidth=1.5, label=names[kind])
        frozen = [names[k].split()[0] + "s" for k in ("weight", "bias") if not layer[f"{k}_trainable"]]
        ax.set_title(name + (f"\n({' and '.join(frozen)} frozen)" if frozen else ""), fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.grid(alpha=0.3)
    for j in range(len(layers), nrows * ncols):
        axes[j // ncols][j % ncols].set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_tick_params(labelbottom=True)
    for row in axes:
        row[0].set_ylabel("parameter value")
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9)
    figure.suptitle(
        f"Batch-norm scales and biases during training: {data['recipe']}, seed "
        f"{data['seed']}\n{data['dataset']}; line: mean over the layer's channels, "
        f"band: mean ± std; every {data['every']} steps",
        fontsize=10,
    )
    return _save(figure, path, data)


# --- curves ------------------------------------------------------------------------------


def _lr_per_step(epochs: Sequence[Dict]):
    """(epochs elapsed, rate) at every step the log's schedule ran, or None if not recorded."""
    first = epochs[0] if epochs else {}
    if not {"lr_knots", "lr_values", "steps_per_epoch"} <= set(first):
        return None
    from netgraph.train.schedule import PiecewiseLinear, StepSchedule

    steps = first["steps_per_epoch"]
    total = first.get("total_steps", max(e["epoch"] for e in epochs) * steps)
    # older logs: knots in epochs, every epoch whole
    schedule = StepSchedule(
        PiecewiseLinear(first["lr_knots"], first["lr_values"]), first.get("lr_unit", "epochs"), steps, total
    )
    ks = range(min(total, max(e["epoch"] for e in epochs) * steps))
    return [k / steps for k in ks], [schedule.at(k) for k in ks]


METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "lr")


def curves_data(runs: Sequence[Dict], by_file: bool = False) -> List[Dict]:
    """Series of runs, one per recipe (or per log file with ``by_file``), each with its
    seeds and, per metric and epoch, the mean and sample standard deviation (n - 1; 0 for
    one run) over the runs that logged it. A seed twice in one series is an error: two
    different runs of one recipe and seed cannot both be samples of it."""
    series: Dict[str, Dict] = {}
    for run in runs:
        key = run["file"] if by_file else run["recipe"]
        s = series.setdefault(key, {"label": key, "runs": [], "seeds": []})
        if run["seed"] in s["seeds"]:
            other = next(r["file"] for r in s["runs"] if r["seed"] == run["seed"])
            raise RecipeError(
                f"seed {run['seed']} of {run['recipe']} is in the logs twice (also in {other})",
                file=run["file"],
                hint="pass --by-file to draw each log as its own series",
            )
        s["runs"].append(run)
        s["seeds"].append(run["seed"])
    for s in series.values():
        epochs = sorted({e["epoch"] for r in s["runs"] for e in r["epochs"]})
        s["epoch"] = epochs
        for metric in METRICS:
            means, stds, counts = [], [], []
            for epoch in epochs:
                values = [
                    e[metric]
                    for r in s["runs"]
                    for e in r["epochs"]
                    if e["epoch"] == epoch and e.get(metric) is not None
                ]
                means.append(statistics.fmean(values) if values else math.nan)
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
                counts.append(len(values))
            s[metric] = {"mean": means, "std": stds, "n": counts}
    return list(series.values())


def show_curves(logs: Sequence, output, *, by_file: bool = False) -> Picture:
    """Loss and accuracy per epoch (train solid, test dashed), a colour per series, the
    band mean +- std over seeds, and the learning rate underneath."""
    path = _output(output)
    runs = read_runs(logs)
    series = curves_data(runs, by_file)
    figure = _figure(8, 8.5)
    from matplotlib.ticker import MaxNLocator

    loss_ax, acc_ax, lr_ax = figure.subplots(3, 1, sharex=True, height_ratios=[3, 3, 1.6])
    colours = [f"C{i}" for i in range(10)]
    lr_label = "learning rate\n(each step)"
    for i, s in enumerate(series):
        colour = colours[i % len(colours)]
        label = _series_label(s)
        for ax, metric, scale in ((loss_ax, "loss", 1), (acc_ax, "acc", 100)):
            for split, style in (("train", "-"), ("test", "--")):
                first = (split, metric) == ("train", "loss")
                _plot_metric(ax, s, f"{split}_{metric}", scale, style, colour, label if first else None)
        per_step = _lr_per_step(s["runs"][0]["epochs"])
        if per_step:  # the rate of every step, warm-up from 0 included
            lr_ax.plot(*per_step, color=colour, linewidth=1.2)
        else:  # a log from before the schedule was recorded: each epoch's last rate
            lr_ax.plot(s["epoch"], s["lr"]["mean"], color=colour, marker="o", markersize=3)
            lr_label = "learning rate\n(at each epoch's end)"
    # Line styles explained once, with grey lines that stand for every series.
    loss_ax.plot([], [], "-", color="gray", label="train (augmented batches, during the epoch)")
    loss_ax.plot([], [], "--", color="gray", label="test (after the epoch)")
    loss_ax.set_ylabel("loss per image (nats)")
    loss_ax.legend(fontsize=8, loc="upper right")
    acc_ax.set_ylabel("accuracy (%)")
    lr_ax.set_ylabel(lr_label)
    lr_ax.set_xlabel("epoch")
    lr_ax.set_ylim(bottom=0)
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
    names = ", ".join(s["label"] for s in series)
    figure.suptitle(f"Training curves: {names}\n{_data_title(runs)}", fontsize=10)
    return _save(figure, path, {"series": series})


def _series_label(s: Dict) -> str:
    """A series' legend entry: its name, its seeds and, if logged, what its test measures."""
    n = len(s["seeds"])
    label = f"{s['label']}: " + (f"mean ± std over {n} seeds" if n > 1 else f"seed {s['seeds'][0]}")
    tested = s["runs"][0]["epochs"][0].get("tested") if s["runs"][0]["epochs"] else None
    if tested:  # the moving average's test accuracy sits at chance for a few epochs
        label += f"\n  test: {tested}"
    return label


def _plot_metric(ax, s: Dict, key: str, scale: float, style: str, colour: str, label: Optional[str]) -> None:
    """One metric of a series (``train_loss``, ...) against epochs, with its band over seeds;
    the test band lighter, so the two stay apart where they overlap."""
    m = s[key]
    points = [
        (x, mu * scale, sd * scale)
        for x, mu, sd in zip(s["epoch"], m["mean"], m["std"])
        if not math.isnan(mu)
    ]
    if not points:
        return
    xs, mus, sds = zip(*points)
    ax.plot(xs, mus, style, color=colour, marker="o", markersize=3, label=label)
    if len(s["seeds"]) > 1:
        ax.fill_between(
            xs,
            [a - b for a, b in zip(mus, sds)],
            [a + b for a, b in zip(mus, sds)],
            color=colour,
            alpha=0.25 if key.startswith("train") else 0.12,
            linewidth=0,
        )


# --- ablation ----------------------------------------------------------------------------


def show_ablation(rows: Sequence[Dict], output) -> Picture:
    """Accuracy against training time for each recipe of an ablation (``netgraph.runs.ablate``
    table rows): mean and standard deviation both ways, recipes joined in table order,
    each labelled with its step number (the recipe name before its first '_')."""
    output = _output(output)
    figure = _figure(7, 4.5)
    ax = figure.subplots()
    points = [(r["train_time_s"]["mean"], r["acc"]["mean"]) for r in rows]
    ax.plot([t for t, _ in points], [a for _, a in points], color="#2166ac", alpha=0.3)
    for i, (r, (t, a)) in enumerate(zip(rows, points)):
        spread = [0 if math.isnan(v) else v for v in (r["train_time_s"]["std"], r["acc"]["std"])]
        ax.errorbar(t, a, xerr=spread[0], yerr=spread[1], fmt="o", capsize=3, color="#2166ac")
        # The step's number ("02a" of "02a_pool_before_activation") keeps close points
        # legible; labels alternate above and below the point.
        label = r["step"].split("_")[0] if "_" in r["step"] else r["step"]
        ax.annotate(label, (t, a), fontsize=8, xytext=(4, 6 if i % 2 else -11), textcoords="offset points")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy (%)")
    first = rows[0] if rows else {}
    ax.set_title(
        f"{data_label(first.get('dataset', '?'), first.get('train_images') or 0)}; "
        f"{first.get('device')}\nmean and standard deviation of {first.get('runs')} runs "
        f"per recipe",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    return _save(figure, output, {"points": points})


def check_sweep_picture(paths: Sequence[str], output) -> Path:
    """The --plot file of a sweep over ``paths``, checked before anything trains."""
    if not 1 <= len(paths) <= 2:
        raise RecipeError(
            f"a sweep's picture shows one or two swept paths, not {len(paths)}",
            file="--plot",
            hint="sweep fewer paths, or leave out --plot and read table.csv",
        )
    return _output(output)


def _axis(values: Sequence) -> tuple:
    """Positions for values on an axis: the numbers themselves, or 0, 1, ... for other values."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return (list(values) if numeric else list(range(len(values)))), numeric


def show_sweep(rows: Sequence[Dict], output) -> Picture:
    """A sweep's picture (``netgraph.runs.sweep`` rows): for one swept path, test accuracy
    against its value with the 95% interval as a band; for two, a heat map of the means."""
    paths = list(rows[0]["setting"])
    output = check_sweep_picture(paths, output)
    figure = _figure(6, 4.2)
    ax = figure.subplots()
    if len(paths) == 1:
        data = _sweep_line(ax, rows, paths[0])
    else:
        data = _sweep_heat(figure, ax, rows, paths)
    first = rows[0]
    n = sorted({r["runs"] for r in rows})
    runs = f"{n[0]}" if len(n) == 1 else f"{n[0]} to {n[-1]}"
    ax.set_title(
        f"{data_label(first.get('dataset', '?'), first.get('train_images') or 0)}; "
        f"{first.get('device')}\nmean test accuracy of {runs} runs, the best starred",
        fontsize=9,
    )
    return _save(figure, output, data)


def _sweep_line(ax, rows, path) -> Dict:
    values = [r["setting"][path] for r in rows]
    x, numeric = _axis(values)
    mean = [r["acc"]["mean"] for r in rows]
    low = [m if math.isnan(r["acc"]["ci_low"]) else r["acc"]["ci_low"] for m, r in zip(mean, rows)]
    high = [m if math.isnan(r["acc"]["ci_high"]) else r["acc"]["ci_high"] for m, r in zip(mean, rows)]
    ax.fill_between(x, low, high, color="#2166ac", alpha=0.2, label="95% interval")
    ax.plot(x, mean, "o-", color="#2166ac", label="mean")
    best = next(i for i, r in enumerate(rows) if r["best"])
    ax.plot([x[best]], [mean[best]], "*", color="#b2182b", markersize=14, label="best")
    if not numeric:
        ax.set_xticks(x, [str(v) for v in values])
    ax.set_xlabel(path)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return {"x": values, "mean": mean, "low": low, "high": high}


def _sweep_heat(figure, ax, rows, paths) -> Dict:
    import numpy as np

    ys = list(dict.fromkeys(r["setting"][paths[0]] for r in rows))
    xs = list(dict.fromkeys(r["setting"][paths[1]] for r in rows))
    means = np.full((len(ys), len(xs)), np.nan)
    cells = []
    for r in rows:
        i, j = ys.index(r["setting"][paths[0]]), xs.index(r["setting"][paths[1]])
        means[i, j] = r["acc"]["mean"]
        cells.append((i, j, f"{r['acc']['mean']:.2f}" + ("*" if r["best"] else ""), r["best"]))
    image = ax.imshow(means, cmap="viridis", aspect="auto", origin="lower")
    for i, j, label, best in cells:  # dark text on the light cells, light on the dark
        color = "black" if image.norm(means[i, j]) > 0.6 else "white"
        weight = "bold" if best else None
        ax.text(j, i, label, ha="center", va="center", fontsize=8, color=color, weight=weight)
    figure.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(paths[1])
    ax.set_ylabel(paths[0])
    return {"x": xs, "y": ys, "mean": means.tolist()}

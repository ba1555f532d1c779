"""A recipe's `train:` and `data:` sections as the engine's plain configs.

Each key is checked like an op parameter (type, range, unknown keys with a
"did you mean"), and a mistake names the recipe file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from netgraph.core.errors import RecipeError, did_you_mean, shown
from netgraph.core.registry import Registry
from netgraph.core.schema import Param, check_params
from netgraph.data import SOURCES
from netgraph.recipe.load import Recipe
from netgraph.train import augment, param_groups, views
from netgraph.train.averaging import AVERAGING
from netgraph.train.engine import COMPILE_MODES, EVAL_VIEWS, PRECISIONS, TrainConfig, resolve_precision
from netgraph.train.optimizers import OPTIMIZERS
from netgraph.train.schedule import END, SCHEDULE_SHAPES, UNITS, PiecewiseLinear, checked_lists


def _default(name: str) -> Any:
    """TrainConfig's default for ``name``: the one place it is written."""
    value = TrainConfig.__dataclass_fields__[name].default
    return list(value) if isinstance(value, tuple) else value


TRAIN_PARAMS = {
    # a number of epochs, fractional ones cut the last (9.9 of 48 steps: 476 steps), or steps
    "epochs": Param((int, float), _default("epochs"), positive=True),
    "steps": Param(int, None, optional=True, positive=True),
    "batch_size": Param(int, _default("batch_size"), positive=True),
    # a number, {knots, values[, unit]}, or {shape: NAME, unit, ...} (schedule.SCHEDULE_SHAPES)
    "lr": Param(dict, {"knots": _default("lr_knots"), "values": _default("lr_values")}),
    # a name or {name: {key: value}} (optimizers.OPTIMIZERS)
    "optimizer": Param((str, dict), _default("optimizer")),
    "momentum": Param(float, _default("momentum"), nonnegative=True),
    "weight_decay": Param(float, _default("weight_decay"), nonnegative=True),
    "loss": Param(str, _default("loss"), choices=("sum", "mean")),
    "label_smoothing": Param(float, _default("label_smoothing"), nonnegative=True),
    # auto: float16 (the original code's half-precision model, batch norm in float32) on a GPU,
    # float32 on a CPU, whose half-precision convolutions are slow.
    "precision": Param(str, _default("precision"), choices=("auto",) + PRECISIONS),
    "ema": Param(dict, None, optional=True),  # the short form of average: {ema: {...}}
    "average": Param(dict, None, optional=True),  # {NAME: {key: value}} (averaging.AVERAGING)
    "tta": Param(list, [], optional=True),
    "seed": Param(int, _default("seed"), nonnegative=True),
    "eval_batch_size": Param(int, _default("eval_batch_size"), positive=True),
    # the per-epoch table's test columns: every N epochs and the last (0: none), through the
    # plain image (the records' way: train.tta's views once, at the final evaluation) or tta
    "eval_every": Param(int, _default("eval_every"), nonnegative=True),
    "eval_view": Param(str, _default("eval_view"), choices=EVAL_VIEWS),
    # [{params: "*.bn.bias", kind: ..., lr_scale: 64, optimizer: sgd, until: {epochs: 3}, ...}]:
    # parameter groups by name (globs) and kind, on top of (and overriding) what passes record
    "param_groups": Param(list, [], optional=True),
    # every N steps, the mean and std of each batch-norm weight and bias (netgraph show params)
    "log_params": Param(int, _default("log_params"), nonnegative=True),
    # speed options (README "Performance" measures each): NHWC activations; torch.compile of
    # the model, compile time reported apart; the fused (foreach) optimizer update
    "channels_last": Param(bool, _default("channels_last")),
    # reduce-overhead (CUDA graphs) is left out: on the bag-of-tricks network it fails in torch
    # 2.11 ("accessing tensor output of CUDAGraphs that has been overwritten", README Performance)
    # max-autotune tries several kernels per convolution and matmul while compiling (minutes,
    # reported apart); its -no-cudagraphs form leaves out the CUDA graphs that failed above
    "compile": Param(str, _default("compile"), choices=("none",) + COMPILE_MODES),
    "foreach": Param(bool, _default("foreach")),
    # torchrun: batch norm over the global batch instead of per rank (README "Several GPUs")
    "sync_batch_norm": Param(bool, _default("sync_batch_norm")),
}
DATA_PARAMS = {
    # folder: DIR/CLASS/*.png or DIR/train|test/CLASS/*.png; arrays: a .npz of NHWC uint8
    # x_train, y_train, x_test, y_test (netgraph.data.folder, netgraph.data.arrays)
    "dataset": Param(str, "cifar10"),  # a registered data source (netgraph.data.SOURCES)
    "dir": Param(str, None, optional=True),
    "download": Param(bool, True),
    "pad": Param(int, 4, nonnegative=True),
    "augment": Param(list, ["crop", "flip", {"cutout": 8}]),
    "max_groups": Param(int, augment.MAX_GROUPS, positive=True),
    "synthetic": Param(dict, {}),  # the synthetic source's sizes (netgraph.data.synthetic.PARAMS)
    # keep the padded training set as uint8 on the device and normalise each batch: 240 MB
    # instead of 480 MB (float16) or 960 MB (float32) for 50,000 images, for small GPUs
    "keep_uint8": Param(bool, False),
    # where the padded training set lives: device (the original code's: on the GPU), host (uint8 in
    # pinned host memory, each batch gathered there and copied over), auto (host when the
    # padded set would take more than run.HOST_SHARE of the free GPU memory)
    "placement": Param(str, "device", choices=("device", "host", "auto")),
    # the data set's name in logs, tables and pictures, e.g. "CIFAR-10 (JPEG copy)" for a copy
    # the loader cannot tell from the original
    "label": Param(str, None, optional=True),
    # folder only: resize every image to [H, W] (one number: square); without it every
    # image must have one size. channels: 1 or 3, else 1 when every image is grayscale
    "size": Param((int, list), None, optional=True, positive=True),
    "channels": Param(int, None, optional=True, choices=(1, 3)),
    # folder only, one tree of class folders: the share of each class held out as the test
    # set, drawn with split_seed (fixed, so the split is the same on every run)
    "test_fraction": Param(float, 0.2, positive=True),
    "split_seed": Param(int, 0, nonnegative=True),
    # per-channel mean and std in 0-255 units; default: CIFAR-10's published ones for
    # cifar10, else the training set's own (train prints them)
    "mean": Param(list, None, optional=True),
    "std": Param(list, None, optional=True),
}


def _check(recipe: Recipe, section: str, specs: Dict[str, Param]) -> Dict[str, Any]:
    raw = dict(recipe.sections.get(section) or {})
    # Lists of names and mappings are checked below; Param(list) alone means integers.
    loose = {k: raw.pop(k) for k in ("tta", "augment", "param_groups", "mean", "std") if k in raw}
    lr = raw.pop("lr") if section == "train" and "lr" in raw else None
    try:
        values = check_params(f"the {section}: section", specs, raw)
    except RecipeError as err:
        raise err.located(*recipe.where((section, err.key))) from None
    for key, value in loose.items():
        if key == "tta":  # a list, a {views: [...]} mapping or a preset: views.parse_tta checks it
            continue
        if not isinstance(value, list) and not (value is None and key in ("mean", "std")):
            raise recipe.error(
                f"{section}.{key} must be a list, got {shown(value)}",
                (section, key),
                hint=f"e.g. {key}: {LIST_EXAMPLES[key]}",
            )
    values.update(loose)
    if lr is not None:
        values["lr"] = _learning_rate(recipe, lr)
    return values


def _learning_rate(recipe: Recipe, lr: Any) -> Dict[str, Any]:
    """train.lr as given: a number is a constant rate (lr: 0.4)."""
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return {"knots": [0], "values": [lr]}
    if not isinstance(lr, dict):
        raise recipe.error(
            f"train.lr must be a number or a schedule, got {shown(lr)}",
            ("train", "lr"),
            hint="e.g. lr: 0.4, or lr: {knots: [0, 5, epochs], values: [0, 0.4, 0]}",
        )
    return lr


def schedule_spec(value: Any, what: str) -> Dict[str, Any]:
    """A schedule as written (a number, {knots, values[, unit]}, {shape: NAME, unit, ...}) as
    {knots, values, unit}; a RecipeError naming ``what`` (train.lr) if it is not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"knots": [0], "values": [float(value)], "unit": "epochs"}
    if not isinstance(value, dict):
        raise RecipeError(
            f"{what} must be a number or a schedule, got {shown(value)}",
            hint="e.g. lr: 0.4, or lr: {knots: [0, 5, epochs], values: [0, 0.4, 0]}",
        )
    raw = dict(value)
    unit = raw.pop("unit", "epochs")
    if unit not in UNITS:
        raise RecipeError(
            f"{what}.unit must be one of {', '.join(UNITS)}, got {shown(unit)}",
            hint="epochs (the default), steps, or fraction (0 to 1 of training)",
        )
    shape = raw.pop("shape", "piecewise_linear")
    spec = SCHEDULE_SHAPES.lookup(shape, f"in {what}.shape")
    if shape == "piecewise_linear" and set(raw) != {"knots", "values"}:
        raise RecipeError(
            f"{what} needs exactly knots: [...] and values: [...] (in {unit} and "
            f"learning rates), got keys {sorted(map(str, raw))}",
            hint="e.g. lr: {knots: [0, 5, epochs], values: [0, 0.4, 0]}",
        )
    params = check_params(f"schedule shape '{shape}' in {what}", spec.params, raw)
    knots, values = spec.function(END[unit], **params)
    knots, values = checked_lists(knots, values)
    if not any(isinstance(k, str) for k in knots):  # expressions are checked once the run's length is known
        PiecewiseLinear(knots, values)
    return {"knots": knots, "values": values, "unit": unit}


def named_part(value: Any, registry: Registry, what: str) -> Dict[str, Any]:
    """An optimizer or averaging as written at ``what``: NAME or {NAME: {key: value}}, as
    {name, params} checked against the registered part's parameters."""
    part, params = registry.parse(value, what)
    return {"name": part.name, "params": params}


GROUP_PARAMS = {
    "params": Param(str, None, optional=True),
    "kind": Param((str, list), None, optional=True),
    "lr_scale": Param(float, 1.0, nonnegative=True),
    "wd_scale": Param(float, 1.0, nonnegative=True),
    "momentum": Param(float, None, optional=True, nonnegative=True),
    "weight_decay": Param(float, None, optional=True, nonnegative=True),
    # checked below: a name or {name: {...}}; a schedule; {epochs|steps|fraction: N}
    "optimizer": Param(object, None, optional=True),
    "lr": Param(object, None, optional=True),
    "until": Param(object, None, optional=True),
}


def param_group_item(item: Any) -> Dict[str, Any]:
    """One train.param_groups item checked: selectors (params, kind) and settings."""
    if not isinstance(item, dict):
        raise RecipeError(
            f"each train.param_groups item is a mapping, got {shown(item)}",
            hint="e.g. {params: '*.bn.bias', lr_scale: 64}",
        )
    out = check_params("a train.param_groups item", GROUP_PARAMS, dict(item))
    complex_keys = {k: out.pop(k) for k in ("optimizer", "lr", "until") if out[k] is not None}
    if out["params"] is None and out["kind"] is None:
        raise RecipeError(
            "a train.param_groups item selects parameters by params (a glob on their "
            "names) or kind, and has neither",
            hint="e.g. {params: '*.bn.bias', lr_scale: 64}",
        )
    kinds = [out["kind"]] if isinstance(out["kind"], str) else (out["kind"] or [])
    for kind in kinds:
        if kind not in param_groups.KINDS:
            raise RecipeError(
                f"unknown parameter kind {shown(kind)} in train.param_groups",
                hint=did_you_mean(kind, param_groups.KINDS) or "kinds: " + ", ".join(param_groups.KINDS),
            )
    out = {k: v for k, v in out.items() if v is not None}
    if "optimizer" in complex_keys:
        out["optimizer"] = named_part(complex_keys["optimizer"], OPTIMIZERS, "train.param_groups optimizer")
    if "lr" in complex_keys:
        out["lr"] = schedule_spec(complex_keys["lr"], "a train.param_groups item's lr")
    if "until" in complex_keys:
        out["until"] = _until(complex_keys["until"])
    return out


def _until(value: Any) -> Dict[str, float]:
    ok = isinstance(value, dict) and len(value) == 1 and next(iter(value)) in UNITS
    n = next(iter(value.values())) if ok else None
    if (
        not ok
        or isinstance(n, bool)
        or not isinstance(n, (int, float))
        or not n > 0
        or (next(iter(value)) == "steps" and not isinstance(n, int))
    ):
        raise RecipeError(
            f"until is {{epochs: N}}, {{steps: N}} or {{fraction: F}} with N > 0 "
            f"(steps whole), got {shown(value)}",
            hint="e.g. until: {epochs: 3}: trained in the first 3 epochs, then frozen",
        )
    return dict(value)


def _fitting_knots(knots, epochs: float) -> Optional[str]:
    """A ready --set for knots that fit a run shorter than ``knots`` allow: the knots at the
    fewest whole epochs above ``epochs`` they fit, scaled down to ``epochs`` (so [0, epochs/5,
    epochs - 2] at 1 epoch is [0, 0.2, 0.333], the shape they have at 3). ``epochs`` may be
    fractional (train.epochs: 1.5)."""
    from netgraph.train.schedule import knot_value

    first = math.floor(epochs) + 1  # epochs + 1 for whole epochs, as before
    start = next((n for n in range(first, 1001) if all(_knots_fit(knots, m) for m in range(n, n + 3))), None)
    if start is None:
        return None
    points = [round(knot_value(k, start) * epochs / start, 3) for k in knots]
    return "--set 'train.lr.knots=[" + ", ".join(f"{p:g}" for p in points) + "]'"


def _knots_fit(knots, epochs: int) -> bool:
    from netgraph.train.schedule import knot_value

    try:
        points = [knot_value(k, epochs) for k in knots]
    except RecipeError:
        return False
    return all(b >= a for a, b in zip(points, points[1:]))


LIST_EXAMPLES = {
    "tta": "[flip]",
    "augment": "[crop, flip, {cutout: 8}]",
    "param_groups": "[{params: '*.bn.bias', lr_scale: 64}]",
    "mean": "[125.3, 123.0, 113.9]",
    "std": "[63.0, 62.1, 66.7]",
}


def train_config(recipe: Recipe, device_type: str = "cpu") -> TrainConfig:
    t = _check(recipe, "train", TRAIN_PARAMS)
    if not t["label_smoothing"] <= 1:
        raise recipe.error(
            f"train.label_smoothing is a share of the target spread over the classes, "
            f"from 0 to 1; got {t['label_smoothing']}",
            ("train", "label_smoothing"),
            hint="e.g. label_smoothing: 0.2 (the bag of tricks' and airbench's)",
        )
    lr = _located(recipe, ("train", "lr"), schedule_spec, t["lr"], "train.lr")
    if lr["unit"] == "epochs" and t["steps"] is None:
        _check_epoch_knots(recipe, lr, t["epochs"])
    optimizer = _located(
        recipe, ("train", "optimizer"), named_part, t["optimizer"], OPTIMIZERS, "train.optimizer"
    )
    average = _average(recipe, t)
    tta = t["tta"] or []
    _located(recipe, ("train", "tta"), views.parse_tta, tta)
    groups = [
        _located(recipe, ("train", "param_groups", i), param_group_item, item)
        for i, item in enumerate(t["param_groups"] or [])
    ]
    precision = resolve_precision(t["precision"], device_type)
    return TrainConfig(
        epochs=t["epochs"],
        steps=t["steps"],
        batch_size=t["batch_size"],
        lr_knots=lr["knots"],
        lr_values=lr["values"],
        lr_unit=lr["unit"],
        optimizer=optimizer["name"],
        optimizer_params=optimizer["params"],
        momentum=t["momentum"],
        weight_decay=t["weight_decay"],
        loss=t["loss"],
        label_smoothing=t["label_smoothing"],
        precision=precision,
        average=average,  # train.ema is read as train.average: {ema: ...}
        tta=tta,
        seed=t["seed"],
        eval_batch_size=t["eval_batch_size"],
        eval_every=t["eval_every"],
        eval_view=t["eval_view"],
        param_groups=groups,
        log_params=t["log_params"],
        channels_last=t["channels_last"],
        compile=t["compile"],
        foreach=t["foreach"],
        sync_batch_norm=t["sync_batch_norm"],
    )


def _average(recipe: Recipe, t: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """train.average, or train.ema read as train.average: {ema: ...}; None: no averaging."""
    if t["ema"] and t["average"]:
        raise recipe.error(
            "train.ema and train.average both average the weights; give one",
            ("train", "ema"),
            hint="train.ema: {momentum: 0.99} is train.average: {ema: {momentum: 0.99}}",
        )
    if not (t["ema"] or t["average"]):
        return None
    key = "ema" if t["ema"] else "average"
    average = _located(
        recipe,
        ("train", key),
        named_part,
        {"ema": t["ema"]} if t["ema"] else t["average"],
        AVERAGING,
        "train.average",
    )
    if average["name"] == "ema" and not average["params"]["momentum"] < 1:
        raise recipe.error(
            f"train.{key}.momentum must be below 1, got {average['params']['momentum']}", ("train", key)
        )
    return average


def _located(recipe: Recipe, where: tuple, check, *args):
    """check(*args), its RecipeError located at the recipe's line for ``where``."""
    try:
        return check(*args)
    except RecipeError as err:
        raise err.located(*recipe.where(where)) from None


def _check_epoch_knots(recipe: Recipe, lr: Dict[str, Any], epochs: float) -> None:
    """train.lr's knots in epochs fit the run's epochs, else a ready --set that fits."""
    try:
        PiecewiseLinear.in_epochs(lr["knots"], lr["values"], epochs)
    except RecipeError as err:
        if "lr" not in recipe.train:  # the default's 5-epoch warm-up outlasts a short run
            raise recipe.error(
                f"the default learning-rate schedule warms up for 5 epochs, longer than epochs: {epochs}",
                ("train", "epochs"),
                hint="set train.lr, e.g. --set 'train.lr={knots: [0, epochs/5, "
                "epochs], values: [0, 0.4, 0]}'",
            ) from None
        fix = _fitting_knots(lr["knots"], epochs) if isinstance(lr["knots"], list) else None
        if fix and err.hint and "needs epochs" in err.hint:
            err.hint += f", e.g. {fix}"
        # epochs from a --set, knots from a parent file: the --set first, then the knots' line
        raise recipe.blame(err.located(*recipe.where(("train", "lr"))), ("train", "epochs")) from None


def _data_default(name: str) -> Any:
    return DATA_PARAMS[name].default


@dataclass
class DataConfig:
    """The data: section as read; each default is DATA_PARAMS' (written once, there)."""

    dataset: str = _data_default("dataset")
    dir: Optional[str] = _data_default("dir")
    download: bool = _data_default("download")
    pad: int = _data_default("pad")
    augmentations: List[Any] = field(default_factory=list)  # built from data.augment
    max_groups: int = _data_default("max_groups")
    synthetic: Dict[str, int] = field(default_factory=dict)
    keep_uint8: bool = _data_default("keep_uint8")
    label: Optional[str] = _data_default("label")
    size: Optional[List[int]] = _data_default("size")  # [H, W]
    channels: Optional[int] = _data_default("channels")
    test_fraction: float = _data_default("test_fraction")
    split_seed: int = _data_default("split_seed")
    mean: Optional[List[float]] = _data_default("mean")
    std: Optional[List[float]] = _data_default("std")
    placement: str = _data_default("placement")
    shape: Optional[Tuple[int, ...]] = None  # the image shape (C, H, W) it was checked against, if known

    def folder_options(self) -> Dict[str, Any]:
        """What netgraph.data.folder.read_folder takes."""
        return {
            "size": self.size,
            "channels": self.channels,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }


def data_config(recipe: Recipe, image_shape: Optional[Sequence[int]] = None) -> DataConfig:
    """The data: section; sizes are checked against ``image_shape`` (C, H, W), by default the
    data set's known shape (CIFAR: 3 x 32 x 32; a folder with data.size: that size). A data
    set whose shape is known only once read is checked again with it (``run_recipe``)."""
    d = _check(recipe, "data", DATA_PARAMS)
    size = _size(recipe, d["size"])
    if not d["test_fraction"] < 1:
        raise recipe.error(
            f"data.test_fraction must be below 1, got {d['test_fraction']}",
            ("data", "test_fraction"),
            hint="e.g. 0.2: a fifth of each class is the test set",
        )
    stats = {key: _stats(recipe, d, key) for key in ("mean", "std")}
    try:
        source = SOURCES.lookup(d["dataset"], "in data.dataset")
    except RecipeError as err:
        raise err.located(*recipe.where(("data", "dataset"))) from None
    shape = tuple(image_shape) if image_shape is not None else source.shape
    if shape is None and size is not None:
        shape = (d["channels"] or 3, *size)
    augmentations = _augmentations(recipe, d, shape)
    try:
        synthetic = check_params(
            "data.synthetic", SOURCES["synthetic"].params, d["synthetic"], prefix="synthetic."
        )
    except RecipeError as err:
        raise err.located(*recipe.where(("data", "synthetic", err.key))) from None
    checked = shape is not None
    return DataConfig(
        d["dataset"],
        d["dir"],
        d["download"],
        d["pad"],
        augmentations,
        d["max_groups"],
        synthetic,
        d["keep_uint8"],
        d["label"],
        size,
        d["channels"],
        d["test_fraction"],
        d["split_seed"],
        stats["mean"],
        stats["std"],
        d["placement"],
        tuple(shape) if checked else None,
    )


def _augmentations(recipe: Recipe, d: Dict[str, Any], shape: Optional[Tuple[int, ...]]) -> List[Any]:
    """data.augment built in order, each checked against the shape the one before it gives
    (the padded image first); ``shape`` None: not known yet, nothing is checked."""
    checked = shape is not None
    channels, height, width = shape if shape is not None else (3, 32, 32)  # a stand-in, not checked
    if checked and d["pad"] >= min(height, width):
        raise recipe.error(
            f"data.pad {d['pad']} does not fit images of {height} x {width} pixels",
            ("data", "pad"),
            hint=f"reflect padding adds at most {min(height, width) - 1} "
            "pixels a side; the original code uses 4 on 32 x 32",
        )
    augmentations = []
    seen = (channels, height + 2 * d["pad"], width + 2 * d["pad"])  # what the first one sees
    for i, entry in enumerate(d["augment"]):
        augmentation = _augmentation(recipe, entry, i, (height, width) if checked else None)
        try:
            if checked:
                augmentation.check(seen)
        except RecipeError as err:
            raise err.located(*recipe.where(("data", "augment", i))) from None
        seen = augmentation.output_shape(seen)
        augmentations.append(augmentation)
    return augmentations


def _size(recipe: Recipe, size) -> Optional[List[int]]:
    """data.size: 64 or [64, 48] -> [H, W]."""
    if size is None:
        return None
    size = [size, size] if isinstance(size, int) else size
    if len(size) != 2:
        raise recipe.error(
            f"data.size is one number or [H, W], got {size}",
            ("data", "size"),
            hint="e.g. size: 32, or size: [48, 64]",
        )
    return list(size)


def _stats(recipe: Recipe, d: Dict[str, Any], key: str) -> Optional[List[float]]:
    values = d[key]
    if values is None:
        return None
    if (
        not values
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        or (key == "std" and min(values) <= 0)
    ):
        raise recipe.error(
            f"data.{key} must be a list of {'positive ' if key == 'std' else ''}"
            f"numbers (0-255 units), one per channel, got {shown(values)}",
            ("data", key),
            hint=f"e.g. {key}: {LIST_EXAMPLES[key]}",
        )
    return [float(v) for v in values]


def _augmentation(recipe: Recipe, entry: Any, index: int, image_hw: Optional[Sequence[int]]):
    """'crop' (to the image size), 'flip', {cutout: 8}, {crop: 28}: augment.AUGMENTATIONS;
    ``image_hw`` None: the size is not known yet (a stand-in of 32 is used until run_recipe
    checks it again)."""
    where = ("data", "augment", index)
    if entry == "crop" and image_hw is not None and image_hw[0] != image_hw[1]:
        raise recipe.error(
            f"crop without a size crops to the image size, but the images are "
            f"{image_hw[0]} x {image_hw[1]}: a crop is square",
            where,
            hint=f"give the size, e.g. {{crop: {min(image_hw)}}}, and input.shape to match",
        )
    try:
        return augment.build_augmentation(entry, image_hw[0] if image_hw else 32)
    except RecipeError as err:
        raise err.located(*recipe.where(where)) from None

"""A recipe's `train:` and `data:` sections as the engine's plain configs.

Each key is checked like an op parameter (type, range, unknown keys with a
"did you mean"), and a mistake names the recipe file and line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import augment
from .engine import PRECISIONS, TTA_VIEWS, TrainConfig
from .errors import RecipeError
from .ops import Param, check_params
from .recipe import Recipe
from .schedule import PiecewiseLinear

TRAIN_PARAMS = {
    "epochs": Param(int, 24, positive=True),
    "batch_size": Param(int, 512, positive=True),
    "lr": Param(dict, {"knots": [0, 5, "epochs"], "values": [0.0, 0.4, 0.0]}),
    "momentum": Param(float, 0.9, nonnegative=True),
    "weight_decay": Param(float, 5e-4, nonnegative=True),
    "loss": Param(str, "sum", choices=("sum", "mean")),
    "label_smoothing": Param(float, 0.0, nonnegative=True),
    # auto: float16 (the seed's half-precision model, batch norm in float32) on a GPU,
    # float32 on a CPU, whose half-precision convolutions are slow.
    "precision": Param(str, "auto", choices=("auto",) + PRECISIONS),
    "ema": Param(dict, None, optional=True),
    "tta": Param(list, [], optional=True),
    "seed": Param(int, 0, nonnegative=True),
    "eval_batch_size": Param(int, 512, positive=True),
    # [{params: "*.bn.bias", lr_scale: 64, wd_scale: 0.015625}]: multipliers by parameter name
    # (globs), on top of (and overriding) those passes record.
    "param_groups": Param(list, [], optional=True),
    # every N steps, the mean and std of each batch-norm weight and bias (netgraph show params)
    "log_params": Param(int, 0, nonnegative=True),
    # speed options (README "Performance" measures each): NHWC activations; torch.compile of
    # the model, compile time reported apart; the fused (foreach) optimizer update
    "channels_last": Param(bool, False),
    # reduce-overhead (CUDA graphs) is left out: on the bag-of-tricks network it fails in torch
    # 2.11 ("accessing tensor output of CUDAGraphs that has been overwritten", README Performance)
    "compile": Param(str, "none", choices=("none", "default")),
    "foreach": Param(bool, True),
    # torchrun: batch norm over the global batch instead of per rank (README "Several GPUs")
    "sync_batch_norm": Param(bool, False),
}
DATA_PARAMS = {
    "dataset": Param(str, "cifar10", choices=("cifar10", "cifar100", "synthetic")),
    "dir": Param(str, None, optional=True),
    "download": Param(bool, True),
    "pad": Param(int, 4, nonnegative=True),
    "augment": Param(list, ["crop", "flip", {"cutout": 8}]),
    "max_groups": Param(int, 200, positive=True),
    "synthetic": Param(dict, {"train": 50000, "test": 10000, "classes": 10}),
    # keep the padded training set as uint8 on the device and normalise each batch: 240 MB
    # instead of 480 MB (float16) or 960 MB (float32) for 50,000 images, for small GPUs
    "keep_uint8": Param(bool, False),
    # the data set's name in logs, tables and pictures, e.g. "CIFAR-10 (JPEG copy)" for a copy
    # the loader cannot tell from the original
    "label": Param(str, None, optional=True),
}


def _check(recipe: Recipe, section: str, specs: Dict[str, Param]) -> Dict[str, Any]:
    raw = dict(recipe.sections.get(section) or {})
    # Lists of names and mappings are checked below; Param(list) alone means integers.
    loose = {k: raw.pop(k) for k in ("tta", "augment", "param_groups") if k in raw}
    lr = raw.pop("lr") if section == "train" and "lr" in raw else None
    try:
        values = check_params(f"the {section}: section", specs, raw)
    except RecipeError as err:
        raise err.located(*recipe.where((section, err.key))) from None
    for key, value in loose.items():
        if not isinstance(value, list):
            raise recipe.error(f"{section}.{key} must be a list, got {value!r}", (section, key),
                               hint=f"e.g. {key}: {LIST_EXAMPLES[key]}")
    values.update(loose)
    if lr is not None:
        values["lr"] = _learning_rate(recipe, lr)
    return values


def _learning_rate(recipe: Recipe, lr: Any) -> Dict[str, Any]:
    """train.lr as {knots, values}: a number is a constant rate (lr: 0.4)."""
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return {"knots": [0], "values": [lr]}
    if not isinstance(lr, dict):
        raise recipe.error(f"train.lr must be a number or a schedule, got {lr!r}", ("train", "lr"),
                           hint="e.g. lr: 0.4, or lr: {knots: [0, 5, epochs], values: [0, 0.4, 0]}")
    return lr


def _fitting_knots(knots, epochs: int) -> Optional[str]:
    """A ready --set for knots that fit a run shorter than ``knots`` allow: the knots at the
    fewest epochs they fit, scaled down to ``epochs`` (so [0, epochs/5, epochs - 2] at 1 epoch
    is [0, 0.2, 0.333], the shape they have at 3)."""
    from .schedule import knot_value
    start = next((n for n in range(epochs + 1, 1001) if all(
        _knots_fit(knots, m) for m in range(n, n + 3))), None)
    if start is None:
        return None
    points = [round(knot_value(k, start) * epochs / start, 3) for k in knots]
    return "--set 'train.lr.knots=[" + ", ".join(f"{p:g}" for p in points) + "]'"


def _knots_fit(knots, epochs: int) -> bool:
    from .schedule import knot_value
    try:
        points = [knot_value(k, epochs) for k in knots]
    except RecipeError:
        return False
    return all(b >= a for a, b in zip(points, points[1:]))


LIST_EXAMPLES = {"tta": "[flip]", "augment": "[crop, flip, {cutout: 8}]",
                 "param_groups": "[{params: '*.bn.bias', lr_scale: 64}]"}
SYNTHETIC_PARAMS = {"train": Param(int, 50000, positive=True), "test": Param(int, 10000, positive=True),
                    "classes": Param(int, 10, positive=True)}


def train_config(recipe: Recipe, device_type: str = "cpu") -> TrainConfig:
    t = _check(recipe, "train", TRAIN_PARAMS)
    lr = t["lr"]
    if set(lr) != {"knots", "values"}:
        raise recipe.error("train.lr needs exactly knots: [...] and values: [...] (epochs and "
                           f"learning rates), got keys {sorted(map(str, lr))}", ("train", "lr"),
                           hint="e.g. lr: {knots: [0, 5, epochs], values: [0, 0.4, 0]}")
    try:
        PiecewiseLinear.in_epochs(lr["knots"], lr["values"], t["epochs"])
    except RecipeError as err:
        if "lr" not in recipe.train:  # the default's 5-epoch warm-up outlasts a short run
            raise recipe.error(f"the default learning-rate schedule warms up for 5 epochs, longer "
                               f"than epochs: {t['epochs']}", ("train", "epochs"),
                               hint="set train.lr, e.g. --set 'train.lr={knots: [0, epochs/5, "
                                    "epochs], values: [0, 0.4, 0]}'") from None
        fix = _fitting_knots(lr["knots"], t["epochs"]) if isinstance(lr["knots"], list) else None
        if fix and err.hint and "needs epochs" in err.hint:
            err.hint += f", e.g. {fix}"
        # epochs from a --set, knots from a parent file: the --set first, then the knots' line
        raise recipe.blame(err.located(*recipe.where(("train", "lr"))), ("train", "epochs")) from None
    ema = t["ema"] or {}
    if ema:
        try:
            ema = check_params("train.ema", {"momentum": Param(float, 0.99, positive=True),
                                             "every": Param(int, 5, positive=True)}, ema)
        except RecipeError as err:
            raise err.located(*recipe.where(("train", "ema"))) from None
        if not ema["momentum"] < 1:
            raise recipe.error(f"train.ema.momentum must be below 1, got {ema['momentum']}",
                               ("train", "ema"))
    tta = t["tta"] or []
    for view in tta:
        if not isinstance(view, str) or view not in TTA_VIEWS:
            raise recipe.error(f"unknown test-time view {view!r} in train.tta", ("train", "tta"),
                               hint="views: " + ", ".join(TTA_VIEWS))
    groups = t["param_groups"] or []
    for i, group in enumerate(groups):
        try:
            if not isinstance(group, dict):
                raise RecipeError(f"each train.param_groups item is a mapping, got {group!r}")
            groups[i] = check_params("a train.param_groups item",
                                     {"params": Param(str), "lr_scale": Param(float, 1.0, nonnegative=True),
                                      "wd_scale": Param(float, 1.0, nonnegative=True)}, group)
        except RecipeError as err:
            raise err.located(*recipe.where(("train", "param_groups", i))) from None
    precision = t["precision"]
    if precision == "auto":
        precision = "float16" if device_type == "cuda" else "float32"
    return TrainConfig(epochs=t["epochs"], batch_size=t["batch_size"], lr_knots=list(lr["knots"]),
                       lr_values=[float(v) for v in lr["values"]], momentum=t["momentum"],
                       weight_decay=t["weight_decay"], loss=t["loss"],
                       label_smoothing=t["label_smoothing"], precision=precision,
                       ema_momentum=ema.get("momentum"), ema_every=ema.get("every", 5),
                       tta=list(tta), seed=t["seed"], eval_batch_size=t["eval_batch_size"],
                       param_groups=groups, log_params=t["log_params"],
                       channels_last=t["channels_last"], compile=t["compile"], foreach=t["foreach"],
                       sync_batch_norm=t["sync_batch_norm"])


@dataclass
class DataConfig:
    dataset: str = "cifar10"
    dir: Optional[str] = None
    download: bool = True
    pad: int = 4
    augmentations: List[Any] = field(default_factory=list)
    max_groups: int = 200
    synthetic: Dict[str, int] = field(default_factory=dict)
    keep_uint8: bool = False
    label: Optional[str] = None


def data_config(recipe: Recipe, image_size: int = 32) -> DataConfig:
    d = _check(recipe, "data", DATA_PARAMS)
    if d["pad"] >= image_size:
        raise recipe.error(f"data.pad {d['pad']} does not fit images of {image_size} pixels",
                           ("data", "pad"), hint=f"reflect padding adds at most {image_size - 1} "
                                                 "pixels a side; the seed uses 4")
    augmentations = []
    shape = (3, image_size + 2 * d["pad"], image_size + 2 * d["pad"])  # what the first one sees
    for i, entry in enumerate(d["augment"]):
        augmentation = _augmentation(recipe, entry, i, image_size)
        try:
            augmentation.check(shape)
        except RecipeError as err:
            raise err.located(*recipe.where(("data", "augment", i))) from None
        shape = augmentation.output_shape(shape)
        augmentations.append(augmentation)
    try:
        synthetic = check_params("data.synthetic", SYNTHETIC_PARAMS, d["synthetic"], prefix="synthetic.")
    except RecipeError as err:
        raise err.located(*recipe.where(("data", "synthetic", err.key))) from None
    return DataConfig(d["dataset"], d["dir"], d["download"], d["pad"], augmentations,
                      d["max_groups"], synthetic, d["keep_uint8"], d["label"])


def _augmentation(recipe: Recipe, entry: Any, index: int, image_size: int):
    """'crop' (to the image size), 'flip', {cutout: 8}, {crop: 28}."""
    name, value = (entry, None) if isinstance(entry, str) else \
        next(iter(entry.items())) if isinstance(entry, dict) and len(entry) == 1 else (None, None)
    where = ("data", "augment", index)
    if name == "flip" and value is None:
        return augment.Flip()
    if name in ("crop", "cutout"):
        size = image_size if value is None and name == "crop" else value
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise recipe.error(f"{name} needs a positive size, got {value!r}", where,
                               hint=f"e.g. {{{name}: 8}}")
        return augment.Crop(size) if name == "crop" else augment.Cutout(size)
    raise recipe.error(f"unknown augmentation {entry!r}", where,
                       hint="use crop, flip, {crop: SIZE} or {cutout: SIZE}")

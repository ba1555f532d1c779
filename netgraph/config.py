"""A recipe's `train:` and `data:` sections as the engine's plain configs.

Each key is checked like an op parameter (type, range, unknown keys with a
"did you mean"), and a mistake names the recipe file and line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from . import augment
from . import views
from .engine import COMPILE_MODES, PRECISIONS, TrainConfig
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
    # max-autotune tries several kernels per convolution and matmul while compiling (minutes,
    # reported apart); its -no-cudagraphs form leaves out the CUDA graphs that failed above
    "compile": Param(str, "none", choices=("none",) + COMPILE_MODES),
    "foreach": Param(bool, True),
    # torchrun: batch norm over the global batch instead of per rank (README "Several GPUs")
    "sync_batch_norm": Param(bool, False),
}
DATA_PARAMS = {
    # folder: DIR/CLASS/*.png or DIR/train|test/CLASS/*.png; arrays: a .npz of NHWC uint8
    # x_train, y_train, x_test, y_test (netgraph.image_folder, netgraph.arrays)
    "dataset": Param(str, "cifar10", choices=("cifar10", "cifar100", "synthetic", "folder", "arrays")),
    "dir": Param(str, None, optional=True),
    "download": Param(bool, True),
    "pad": Param(int, 4, nonnegative=True),
    "augment": Param(list, ["crop", "flip", {"cutout": 8}]),
    "max_groups": Param(int, 200, positive=True),
    "synthetic": Param(dict, {"train": 50000, "test": 10000, "classes": 10}),
    # keep the padded training set as uint8 on the device and normalise each batch: 240 MB
    # instead of 480 MB (float16) or 960 MB (float32) for 50,000 images, for small GPUs
    "keep_uint8": Param(bool, False),
    # where the padded training set lives: device (the seed's: on the GPU), host (uint8 in
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
# The image shape (C, H, W) of the data sets whose shape is known before they are read.
KNOWN_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "synthetic": (3, 32, 32)}


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
                 "param_groups": "[{params: '*.bn.bias', lr_scale: 64}]",
                 "mean": "[125.3, 123.0, 113.9]", "std": "[63.0, 62.1, 66.7]"}
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
    try:
        views.parse_tta(tta)
    except RecipeError as err:
        raise err.located(*recipe.where(("train", "tta"))) from None
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
                       tta=tta, seed=t["seed"], eval_batch_size=t["eval_batch_size"],
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
    size: Optional[List[int]] = None  # [H, W]
    channels: Optional[int] = None
    test_fraction: float = 0.2
    split_seed: int = 0
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    placement: str = "device"

    def folder_options(self) -> Dict[str, Any]:
        """What netgraph.image_folder.read_folder takes."""
        return {"size": self.size, "channels": self.channels, "test_fraction": self.test_fraction,
                "split_seed": self.split_seed}


def data_config(recipe: Recipe, image_shape: Optional[Sequence[int]] = None) -> DataConfig:
    """The data: section; sizes are checked against ``image_shape`` (C, H, W), by default the
    data set's known shape (CIFAR: 3 x 32 x 32; a folder with data.size: that size). A data
    set whose shape is known only once read is checked again with it (``run_recipe``)."""
    d = _check(recipe, "data", DATA_PARAMS)
    size = _size(recipe, d["size"])
    if not d["test_fraction"] < 1:
        raise recipe.error(f"data.test_fraction must be below 1, got {d['test_fraction']}",
                           ("data", "test_fraction"), hint="e.g. 0.2: a fifth of each class is the test set")
    stats = {key: _stats(recipe, d, key) for key in ("mean", "std")}
    shape = tuple(image_shape) if image_shape is not None else KNOWN_SHAPES.get(d["dataset"])
    if shape is None and size is not None:
        shape = (d["channels"] or 3, *size)
    checked = shape is not None
    channels, height, width = shape if checked else (3, 32, 32)  # a stand-in, not checked
    if checked and d["pad"] >= min(height, width):
        raise recipe.error(f"data.pad {d['pad']} does not fit images of {height} x {width} pixels",
                           ("data", "pad"), hint=f"reflect padding adds at most {min(height, width) - 1} "
                                                 "pixels a side; the seed uses 4 on 32 x 32")
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
    try:
        synthetic = check_params("data.synthetic", SYNTHETIC_PARAMS, d["synthetic"], prefix="synthetic.")
    except RecipeError as err:
        raise err.located(*recipe.where(("data", "synthetic", err.key))) from None
    return DataConfig(d["dataset"], d["dir"], d["download"], d["pad"], augmentations,
                      d["max_groups"], synthetic, d["keep_uint8"], d["label"], size, d["channels"],
                      d["test_fraction"], d["split_seed"], stats["mean"], stats["std"], d["placement"])


def _size(recipe: Recipe, size) -> Optional[List[int]]:
    """data.size: 64 or [64, 48] -> [H, W]."""
    if size is None:
        return None
    size = [size, size] if isinstance(size, int) else size
    if len(size) != 2:
        raise recipe.error(f"data.size is one number or [H, W], got {size}", ("data", "size"),
                           hint="e.g. size: 32, or size: [48, 64]")
    return list(size)


def _stats(recipe: Recipe, d: Dict[str, Any], key: str) -> Optional[List[float]]:
    values = d[key]
    if values is None:
        return None
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
            or (key == "std" and min(values) <= 0):
        raise recipe.error(f"data.{key} must be a list of {'positive ' if key == 'std' else ''}"
                           f"numbers (0-255 units), one per channel, got {values!r}", ("data", key),
                           hint=f"e.g. {key}: {LIST_EXAMPLES[key]}")
    return [float(v) for v in values]


def _augmentation(recipe: Recipe, entry: Any, index: int, image_hw: Optional[Sequence[int]]):
    """'crop' (to the image size), 'flip', {cutout: 8}, {crop: 28}: augment.AUGMENTATIONS;
    ``image_hw`` None: the size is not known yet (a stand-in of 32 is used until run_recipe
    checks it again)."""
    where = ("data", "augment", index)
    if entry == "crop" and image_hw is not None and image_hw[0] != image_hw[1]:
        raise recipe.error(f"crop without a size crops to the image size, but the images are "
                           f"{image_hw[0]} x {image_hw[1]}: a crop is square", where,
                           hint=f"give the size, e.g. {{crop: {min(image_hw)}}}, and input.shape to match")
    try:
        return augment.build_augmentation(entry, image_hw[0] if image_hw else 32)
    except RecipeError as err:
        raise err.located(*recipe.where(where)) from None

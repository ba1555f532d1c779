"""Running a recipe: data -> graph and passes -> module -> engine.

``run_recipe`` is what ``netgraph train`` does once per seed. Timing follows
the seed's rule: reading files from disk is not counted; moving the data to
the device, preprocessing it, the passes (the whitening stem's eigen-
decomposition included), training, all are; evaluation is not.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch

from . import data as datasets
from .config import DataConfig, data_config, train_config
from .engine import DeviceData, EpochLog, input_dtype, synchronize, to_device, train
from .errors import RecipeError
from .executor import compile_graph, parameter_options
from .graph import build_graph
from .passes import PassContext, apply_transforms
from .recipe import Recipe
from .summary import summarize


def resolve_device(requested: Optional[str]) -> torch.device:
    """The device to train on: CUDA when present unless one is named."""
    if requested is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn("no CUDA GPU found: training on the CPU (pass --device cpu to silence this)",
                      stacklevel=2)
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise RecipeError(f"unknown device '{requested}'", hint="use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"device '{requested}' was asked for, but this torch sees no CUDA GPU "
                          f"(torch {torch.__version__})",
                          hint="use --device cpu, or install a CUDA build of torch on a GPU machine")
    return device


def load_data(config: DataConfig, data_dir: Optional[str] = None, seed: int = 0) -> datasets.Dataset:
    """The recipe's data set, read into uint8 tensors on the CPU."""
    if config.dataset == "synthetic":
        s = config.synthetic
        return datasets.synthetic(s["train"], s["test"], classes=s["classes"], seed=seed)
    return datasets.load_cifar(config.dataset, data_dir=data_dir or config.dir,
                               download=config.download)


def normalisation(dataset: datasets.Dataset):
    """CIFAR-10's published statistics (the seed's), else the training set's own."""
    if dataset.name == "cifar10":
        return datasets.CIFAR10_MEAN, datasets.CIFAR10_STD
    return datasets.channel_stats(dataset.train_images)


@dataclass
class RunResult:
    recipe: str
    seed: int
    device: str
    test_acc: float
    test_loss: float
    train_time_s: float
    setup_time_s: float
    eval_time_s: float
    epochs: int
    params: int
    dataset: str
    train_images: int
    test_images: int
    log: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        """The result without the per-epoch log, for JSON output."""
        return {k: v for k, v in asdict(self).items() if k != "log"}


def run_recipe(recipe: Recipe, *, seed: Optional[int] = None, device: Optional[str] = None,
               data_dir: Optional[str] = None, dataset: Optional[datasets.Dataset] = None,
               on_epoch: Optional[Callable[[EpochLog], None]] = None,
               on_step: Optional[Callable[[int, int], None]] = None,
               eval_every_epoch: bool = True):
    """Train the recipe once; returns (RunResult, trained module, graph). Without
    ``eval_every_epoch`` only the final model is evaluated (ablations need no curve)."""
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    config = train_config(recipe, device.type)
    config.eval_every_epoch = eval_every_epoch
    if seed is not None:
        config.seed = seed
    dconfig = data_config(recipe)
    if dataset is None:
        dataset = load_data(dconfig, data_dir, seed=0)
    mean, std = normalisation(dataset)
    graph = build_graph(recipe)
    torch.manual_seed(config.seed)

    synchronize(device)
    start = time.perf_counter()
    device_data: DeviceData = to_device(dataset, device, mean, std, dconfig.pad,
                                        input_dtype(config.precision))
    context = PassContext(train_images=lambda n: device_data.train_images[:n].float(),
                          batch_size=config.batch_size)
    graph, _ = apply_transforms(graph, recipe, context)
    model = compile_graph(graph).to(device)
    synchronize(device)
    setup_time = time.perf_counter() - start

    result = train(model, device_data, config, dconfig.augmentations, dconfig.max_groups,
                   parameter_options(graph), setup_time, on_epoch, on_step)
    run = RunResult(recipe=recipe.file or recipe.name, seed=config.seed, device=device_name(device),
                    test_acc=result.test_acc, test_loss=result.test_loss,
                    train_time_s=result.train_time_s, setup_time_s=setup_time,
                    eval_time_s=result.eval_time_s, epochs=config.epochs,
                    params=summarize(graph)["params"], dataset=dataset.name,
                    train_images=len(dataset.train_labels), test_images=len(dataset.test_labels),
                    log=[log_entry(e, dataset) for e in result.log])
    return run, result.model, graph


def log_entry(entry: EpochLog, dataset: datasets.Dataset) -> Dict[str, Any]:
    """One epoch's line of the JSON-lines log: it names the data set, so a picture of the
    log can too, and carries batch-norm statistics only when train.log_params records them."""
    line = asdict(entry)
    params = line.pop("params")
    line.update(dataset=dataset.name, train_images=len(dataset.train_labels))
    if params is not None:
        line["params"] = params
    return line


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def context_without_data(recipe: Recipe) -> PassContext:
    """What the passes get when a graph is drawn, summarised or rebuilt for saved weights:
    no training images (a whitening stem is built, its filters left to training or to the
    saved weights) and the batch size training would use."""
    from .config import TRAIN_PARAMS
    batch = recipe.train.get("batch_size", TRAIN_PARAMS["batch_size"].default)
    return PassContext(batch_size=batch if isinstance(batch, int) else None)


# --- saved models ---------------------------------------------------------------

MODEL_FORMAT = "netgraph-model-1"


def save_model(path, model: torch.nn.Module, recipe: Recipe, run: RunResult) -> None:
    """The trained weights with the merged recipe and the run's result, written
    atomically (a temporary file renamed into place)."""
    import os
    from pathlib import Path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": MODEL_FORMAT, "recipe": recipe.sections, "recipe_file": recipe.file,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "result": run.summary()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_model(path, device: torch.device):
    """(recipe, graph, module in eval mode, saved result) from a file written by save_model.
    Read with ``weights_only=True``: the file holds tensors and plain data only."""
    from .executor import compile_graph
    from .recipe import recipe_from_dict
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RecipeError("model file not found", file=str(path)) from None
    except Exception as e:  # a truncated file or one that is not a netgraph model
        raise RecipeError(f"cannot read the model file: {type(e).__name__}: {e}", file=str(path),
                          hint="it should be written by netgraph train --save") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise RecipeError("not a netgraph model file", file=str(path),
                          hint="write one with netgraph train --save")
    recipe = recipe_from_dict(payload["recipe"], file=payload.get("recipe_file"))
    graph, _ = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe))
    model = compile_graph(graph, allow_pending=True)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise RecipeError(f"the weights do not fit the recipe saved with them: {e}",
                          file=str(path)) from None
    return recipe, graph, model.to(device).eval(), payload.get("result", {})

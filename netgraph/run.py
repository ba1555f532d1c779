"""Running a recipe: data -> graph and passes -> module -> engine.

``run_recipe`` is what ``netgraph train`` does once per seed. Timing follows
the seed's rule: reading files from disk is not counted; moving the data to
the device, preprocessing it, the passes (the whitening stem's eigen-
decomposition included), training, all are; evaluation is not.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from . import data as datasets
from . import distributed, files
from .config import DataConfig, data_config, train_config
from .distributed import Ranks
from .engine import DeviceData, EpochLog, input_dtype, synchronize, to_device, total_steps, train
from .errors import RecipeError
from .executor import compile_graph, parameter_options
from .graph import build_graph
from .passes import PassContext, apply_transforms
from .recipe import Recipe
from .summary import activation_memory_error, device_memory, parameter_memory_error, summarize
from .train_state import TrainState


def resolve_device(requested: Optional[str]) -> torch.device:
    """The device to train on: CUDA when present unless one is named."""
    if requested is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        warnings.warn(
            "no CUDA GPU found: training on the CPU (pass --device cpu to silence this)", stacklevel=2
        )
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise RecipeError(f"unknown device '{requested}'", hint="use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(
            f"device '{requested}' was asked for, but this torch sees no CUDA GPU "
            f"(torch {torch.__version__})",
            hint="use --device cpu, or install a CUDA build of torch on a GPU machine",
        )
    return device


def load_data(config: DataConfig, data_dir: Optional[str] = None, seed: int = 0) -> datasets.Dataset:
    """The recipe's data set, read into uint8 tensors on the CPU."""
    return datasets.load(
        config.dataset,
        data_dir or config.dir,
        download=config.download,
        synthetic_sizes=config.synthetic,
        folder_options=config.folder_options(),
        seed=seed,
    )


def normalisation(dataset: datasets.Dataset, config: Optional[DataConfig] = None):
    """data.mean and data.std if the recipe gives them, else CIFAR-10's published statistics
    (the seed's) for cifar10, else the training set's own."""
    if config is not None and (config.mean or config.std):
        channels = dataset.image_shape[0]
        for key, values in (("mean", config.mean), ("std", config.std)):
            if values is None or len(values) != channels:
                raise RecipeError(
                    f"data.{key} needs {channels} values, one per channel of the "
                    f"{dataset.name} images, got {values}",
                    hint="give both data.mean and data.std, or neither to use the training set's own",
                )
        return tuple(config.mean), tuple(config.std)
    if dataset.name == "cifar10":
        return datasets.CIFAR10_MEAN, datasets.CIFAR10_STD
    return datasets.channel_stats(dataset.train_images)


def normalisation_line(dataset: datasets.Dataset, config: Optional[DataConfig] = None) -> str:
    """How the images are normalised, in words, for the train command's header."""
    mean, std = normalisation(dataset, config)
    source = (
        "data.mean and data.std"
        if config is not None and (config.mean or config.std)
        else "CIFAR-10's published statistics"
        if dataset.name == "cifar10"
        else f"the statistics of its {len(dataset.train_labels):,} training images"
    )
    numbers = lambda values: "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
    return f"normalising with {source}: mean {numbers(mean)}, std {numbers(std)}"


# data.placement: auto keeps the padded training set on the host when it would take more
# than this share of the GPU's free memory: the rest is for the model's activations (the
# bag of tricks at batch 512 peaks near 2 GiB) and the allocator's slack.
HOST_SHARE = 0.5


def choose_placement(
    config: DataConfig, dataset: datasets.Dataset, device: torch.device, dtype: torch.dtype
) -> Tuple[str, str]:
    """(device or host, the reason in words) for data.placement."""
    if config.placement != "auto":
        return config.placement, f"data.placement: {config.placement}"
    if device.type != "cuda":
        return "device", "data.placement: auto chose device (on a CPU, host and device memory are one)"
    n, c, h, w = dataset.train_images.shape
    size = (
        n
        * c
        * (h + 2 * config.pad)
        * (w + 2 * config.pad)
        * (1 if config.keep_uint8 else torch.empty((), dtype=dtype).element_size())
    )
    free, _ = torch.cuda.mem_get_info(device)
    chosen, than = ("host", "more") if size > HOST_SHARE * free else ("device", "less")
    return chosen, (
        f"data.placement: auto chose {chosen}: the padded training set takes "
        f"{size / 2**30:.2f} GiB, {than} than {HOST_SHARE:.0%} of the "
        f"{free / 2**30:.2f} GiB free on the GPU"
    )


def fit_to_data(recipe: Recipe, dataset: datasets.Dataset) -> Tuple[Recipe, DataConfig]:
    """The recipe with input.shape taken from the data when it sets none, and its data:
    section checked against the images' real size; an input.shape the data does not have
    is refused before anything trains."""
    dconfig = data_config(recipe, dataset.image_shape)
    shape = list(dataset.image_shape)  # the test images, as the network sees them
    given = (recipe.sections.get("input") or {}).get("shape")
    if given is None:
        sections = dict(recipe.sections, input={**(recipe.sections.get("input") or {}), "shape": shape})
        return dataclasses.replace(recipe, sections=sections), dconfig
    if list(given) != shape:
        raise recipe.error(
            f"input.shape is {list(given)}, but the {dataset.name} images are "
            f"{' x '.join(map(str, shape))} (channels x height x width)",
            ("input", "shape"),
            hint=f"set input.shape: {shape}, or leave input.shape out to take the data's",
        )
    return recipe, dconfig


# Training needs at least the weights, their gradients, the optimizer's buffer and an averaged
# copy: four float32 copies of the parameters, before any activation.
PARAMETER_COPIES = 4


def preflight(
    recipe: Recipe, graph, dataset: datasets.Dataset, dconfig: DataConfig, device: torch.device
) -> None:
    """What training would fail on, refused before any of it, with the recipe's line: fewer
    outputs than the data has classes; training batches (after data.augment) the network cannot
    take; parameters that do not fit in the device's memory."""
    output = graph.graph["output"]
    outputs = graph.nodes[output]["shape"]
    where = ("network",) + tuple(output.split("/"))
    if len(outputs) != 1 or outputs[0] < dataset.num_classes:
        raise recipe.error(
            f"the network's output is {' x '.join(map(str, outputs))}, but the "
            f"{dataset.name} images have {dataset.num_classes} classes: it needs one "
            f"logit per class",
            where,
            node=output,
            hint=f"end the network with a linear layer of out: {dataset.num_classes}",
        )
    # the arithmetic is summary's (netgraph.summary), shared with compile_graph and `summary`
    counts = summarize(graph, train_config(recipe, device.type).batch_size)
    from .augment import check_augmentations

    c, h, w = dataset.image_shape
    batches = tuple(check_augmentations(dconfig.augmentations, (c, h + 2 * dconfig.pad, w + 2 * dconfig.pad)))
    if batches != tuple(dataset.image_shape):
        # the network must take the training batches with the layers it has for the test images
        sections = dict(
            recipe.sections, input={**(recipe.sections.get("input") or {}), "shape": list(batches)}
        )
        try:
            other = summarize(build_graph(dataclasses.replace(recipe, sections=sections)))["nodes"]
            why = next(
                (
                    f"node '{a['path']}' would have {b['params']:,} parameters instead of {a['params']:,}"
                    for a, b in zip(counts["nodes"], other)
                    if a["params"] != b["params"]
                ),
                None,
            )
        except RecipeError as err:
            why = err.message
        if why:
            raise recipe.error(
                f"data.augment makes training batches of {' x '.join(map(str, batches))}, "
                f"the test images are {' x '.join(map(str, dataset.image_shape))}, and "
                f"the network cannot take both: {why}",
                ("data", "augment"),
                hint=f"crop to the images' size, {{crop: {h}}}, or make the network "
                f"size-independent (a global pool before the head)",
            )
    have, where = device_memory(device), device_name(device)
    refusal = activation_memory_error(graph, counts, have, where) or parameter_memory_error(
        graph, have, where, copies=PARAMETER_COPIES
    )
    if refusal:
        raise refusal


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
    compile_time_s: float = 0.0  # torch.compile's warm-up (train.compile), not in train_time_s
    peak_memory_gib: Optional[float] = None  # CUDA: the most memory allocated at once
    world_size: int = 1  # processes that trained it together (torchrun)
    # what the passes resolved from: the batch each process trained on (ghost batch norm's
    # splits follow it), saved with the model so that it loads the graph it trained
    pass_context: Dict[str, Any] = field(default_factory=dict)
    placement: str = "device"  # where the training set was (data.placement)
    steps: int = 0  # optimizer steps (train.steps, or train.epochs x steps an epoch, rounded up)
    log: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        """The result without the per-epoch log, for JSON output."""
        return {k: v for k, v in asdict(self).items() if k not in ("log", "pass_context")}


def run_recipe(
    recipe: Recipe,
    *,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    data_dir: Optional[str] = None,
    dataset: Optional[datasets.Dataset] = None,
    on_epoch: Optional[Callable[[EpochLog], None]] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
    eval_every_epoch: bool = True,
    checkpoint: Optional[Callable[[Dict], None]] = None,
    resume: Optional[Dict] = None,
    ranks: Optional[Ranks] = None,
):
    """Train the recipe once; returns (RunResult, trained module, graph). Without
    ``eval_every_epoch`` only the final model is evaluated (ablations need no curve).
    ``checkpoint`` and ``resume`` are the engine's (see ``engine.train`` and
    ``checkpoint_writer``); ``ranks`` trains data-parallel (see netgraph.distributed)."""
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    config = train_config(recipe, device.type)
    config.eval_every_epoch = eval_every_epoch
    if seed is not None:
        config.seed = seed
    dconfig = data_config(recipe)
    if dataset is None:
        dataset = load_data(dconfig, data_dir, seed=0)
    recipe, dconfig = fit_to_data(recipe, dataset)
    mean, std = normalisation(dataset, dconfig)
    graph = build_graph(recipe)
    preflight(recipe, graph, dataset, dconfig, device)
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the seed: shapes are fixed, take the fastest kernels
    rank_batch = distributed.check_batch(config.batch_size, ranks) if ranks else config.batch_size
    if len(dataset.train_labels) < config.batch_size:
        raise recipe.error(
            f"the training set ({len(dataset.train_labels)} images) is smaller than one "
            f"batch ({config.batch_size} images)",
            ("train", "batch_size"),
            hint="use a smaller train.batch_size",
        )

    try:
        synchronize(device)
        start = time.perf_counter()
        placement, _ = choose_placement(dconfig, dataset, device, input_dtype(config.precision))
        device_data: DeviceData = to_device(
            dataset,
            device,
            mean,
            std,
            dconfig.pad,
            input_dtype(config.precision),
            dconfig.keep_uint8,
            host=placement == "host",
        )
        context = PassContext(train_images=device_data.train_sample, batch_size=rank_batch)
        graph, _ = apply_transforms(graph, recipe, context)
        if config.sync_batch_norm:
            refuse_ghost_batch_norm(recipe, graph)
        model = compile_graph(graph).to(device)
        synchronize(device)
        setup_time = time.perf_counter() - start

        result = train(
            model,
            device_data,
            config,
            dconfig.augmentations,
            dconfig.max_groups,
            parameter_options(graph),
            setup_time,
            on_epoch,
            on_step,
            checkpoint=checkpoint,
            resume=resume,
            ranks=ranks,
        )
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory(recipe, device, config.batch_size, dconfig.keep_uint8) from None
    peak = result.peak_memory_bytes
    run = RunResult(
        recipe=run_name(recipe),
        seed=config.seed,
        device=device_name(device),
        test_acc=result.test_acc,
        test_loss=result.test_loss,
        train_time_s=result.train_time_s,
        setup_time_s=setup_time,
        eval_time_s=result.eval_time_s,
        epochs=config.epochs,
        params=summarize(graph)["params"],
        dataset=dconfig.label or dataset.name,
        train_images=len(dataset.train_labels),
        test_images=len(dataset.test_labels),
        compile_time_s=result.compile_time_s,
        peak_memory_gib=None if peak is None else peak / 2**30,
        world_size=ranks.world if ranks else 1,
        pass_context=saved_context(context),
        placement=placement,
        steps=result.steps,
        log=[log_entry(e, dataset, dconfig.label) for e in result.log],
    )
    return run, result.model, graph


def group_lines(recipe: Recipe, graph=None) -> List[str]:
    """The recipe's parameter groups as training resolves them (what the passes record, then
    train.param_groups), one line each: tensors, optimizer, what differs from train:'s."""
    from . import param_groups

    config = train_config(recipe)
    if graph is None:
        graph, _ = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe))
    model = compile_graph(graph, allow_pending=True)
    groups = param_groups.resolve(model, parameter_options(graph), config.param_groups)
    return [g.describe({"optimizer": config.optimizer}) for g in groups]


def combined_result(finished: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One result for the runs of one command: run 0's alone, or for several the mean, standard
    deviation, minimum and maximum of test accuracy and training time, the mean test loss,
    the seeds and every run."""
    result = dict(finished[0])
    if len(finished) > 1:
        result["test_loss"] = statistics.mean(r["test_loss"] for r in finished)  # not run 0's alone
        for key in ("test_acc", "train_time_s"):
            values = [r[key] for r in finished]
            result.update(
                {
                    key: statistics.mean(values),
                    f"{key}_std": statistics.stdev(values),
                    f"{key}_min": min(values),
                    f"{key}_max": max(values),
                }
            )
        result.update(seed=finished[0]["seed"], seeds=[r["seed"] for r in finished], runs=finished)
    return result


def refuse_ghost_batch_norm(recipe: Recipe, graph) -> None:
    """train.sync_batch_norm normalises over the whole global batch; ghost batch norm over
    parts of it: one recipe cannot ask for both."""
    ghost = [n for n, a in graph.nodes(data=True) if a.get("op") == "ghost_batch_norm"]
    if ghost:
        raise recipe.error(
            f"train.sync_batch_norm normalises over the global batch, but {len(ghost)} "
            f"batch-norm node(s) are ghost batch norm, which normalises over parts of it",
            ("train", "sync_batch_norm"),
            node=ghost[0],
            hint="drop one of the two: without sync_batch_norm, batch norm per rank "
            "is already ghost batch norm with one split a rank",
        )


def out_of_memory(recipe: Recipe, device: torch.device, batch_size: int, keep_uint8: bool) -> RecipeError:
    """The message for a CUDA out-of-memory error: what ran out and what to change."""
    gpu = "the GPU"
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
        gpu = (
            f"the {torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB of "
            f"{torch.cuda.get_device_name(device)}"
        )
    hint = f"use a smaller train.batch_size (e.g. --set train.batch_size={max(1, batch_size // 2)})"
    if not keep_uint8:
        hint += ", or data.keep_uint8: true to keep the training images as uint8 on the GPU"
    return RecipeError(
        f"out of GPU memory: the recipe at batch {batch_size} does not fit in the {gpu}",
        file=recipe.file,
        hint=hint,
    )


def log_entry(entry: EpochLog, dataset: datasets.Dataset, label: Optional[str] = None) -> Dict[str, Any]:
    """One epoch's line of the JSON-lines log: it names the data set, so a picture of the
    log can too, and carries batch-norm statistics only when train.log_params records them."""
    line = asdict(entry)
    params = line.pop("params")
    line.update(dataset=label or dataset.name, train_images=len(dataset.train_labels))
    if params is not None:
        line["params"] = params
    return line


def log_entry_line(
    recipe: str,
    seed: int,
    entry,
    dataset: datasets.Dataset,
    label: Optional[str] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """One JSON line of ``netgraph train``'s epoch log (an EpochLog or its dict), with ``extra``
    keys (the learning-rate schedule, so ``show curves`` can draw it per step)."""
    import json

    if isinstance(entry, dict):
        entry = EpochLog(**entry)
    return json.dumps({"recipe": recipe, "seed": seed, **log_entry(entry, dataset, label), **(extra or {})})


def tested_model(config) -> str:
    """Which model the test columns are of, in words (the log records it, the header and
    `show curves` say it)."""
    average = config.averaging()
    if average and average["name"] == "ema":
        return (
            f"moving average of the weights (train.ema: momentum {average['params']['momentum']}, "
            f"every {average['params']['every']} steps), not the weights trained"
        )
    if average:
        return f"the weights as trained, with train.average: {average['name']} {average['params']}"
    return "the weights as trained"


def schedule_record(config, train_images: int) -> Dict[str, Any]:
    """train.lr as the engine runs it: knots (evaluated) and values in their unit, steps an epoch
    and in all (the engine sets step k's rate to the schedule at k in its unit, schedule.py)."""
    steps = max(1, train_images // config.batch_size)
    schedule = config.lr_schedule(steps)
    return {
        "lr_knots": schedule.knots,
        "lr_values": schedule.values,
        "lr_unit": config.lr_unit,
        "steps_per_epoch": steps,
        "total_steps": total_steps(config, steps),
        "tested": tested_model(config),
    }


def run_name(recipe: Recipe) -> str:
    """How logs and results name a recipe: its file, or its name when built in memory."""
    return recipe.file or recipe.name


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    threads = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {threads} thread{'s' * (threads != 1)})"


def saved_context(context: PassContext) -> Dict[str, Any]:
    """What of a pass context is saved with a model: the batch size the passes saw (under
    torchrun the per-rank batch, from which ghost batch norm resolves its splits); what they
    resolve from the training images (whitening filters) is in the weights."""
    return {"batch_size": context.batch_size}


def context_without_data(recipe: Recipe, saved: Optional[Dict[str, Any]] = None) -> PassContext:
    """What the passes get when a graph is drawn, summarised or rebuilt for saved weights:
    no training images (a whitening stem is built, its filters left to training or to the
    saved weights) and the batch size training used (``saved``, from ``saved_context``) or,
    for a recipe not yet trained, would use on one process."""
    from .config import TRAIN_PARAMS

    if isinstance(saved, dict) and type(saved.get("batch_size")) is int and saved["batch_size"] > 0:
        return PassContext(batch_size=saved["batch_size"])
    batch = recipe.train.get("batch_size", TRAIN_PARAMS["batch_size"].default)
    return PassContext(batch_size=batch if isinstance(batch, int) else None)


# --- saved models ---------------------------------------------------------------

MODEL_FORMAT = "netgraph-model-1"
CHECKPOINT_FORMAT = "netgraph-checkpoint-1"


def save_atomically(payload: Dict, path, what: str = "file", kept: files.Kept = None) -> None:
    """torch.save to a new temporary file beside ``path`` (unique, O_EXCL, never through a
    symlink), then rename it into place: a crash while writing leaves the previous file
    whole, a full disk ends in one WriteFailed. See netgraph.files."""
    files.save_atomically(payload, path, what, kept)


def _with_checksum(payload: Dict) -> Dict:
    return {**payload, "checksum": files.checksum(payload)}


def save_model(path, model: torch.nn.Module, recipe: Recipe, run: RunResult, kept: files.Kept = None) -> None:
    """The trained weights with the merged recipe and the run's result, written atomically
    (``kept``: what a failed write leaves, for its message)."""
    save_atomically(
        _with_checksum(
            {
                "format": MODEL_FORMAT,
                "recipe": recipe.sections,
                "recipe_file": recipe.file,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "pass_context": run.pass_context,
                "result": run.summary(),
            }
        ),
        path,
        "model file",
        kept,
    )


def checkpoint_writer(
    path, recipe: Recipe, seed: int, finished: List[Dict], every: int = 1
) -> Callable[[Dict], None]:
    """The engine's checkpoint callback for ``netgraph train``: the training state of the run
    with this seed, the recipe it trains and the results of the runs already finished,
    written atomically to ``path`` every ``every`` epochs (0: only when interrupted)."""

    def write(state: Dict) -> None:
        completed = state["epoch"] - 1
        if state["skip"] or (every and completed % every == 0):
            save_atomically(
                _with_checksum(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "recipe": recipe.sections,
                        "recipe_file": recipe.file,
                        "seed": seed,
                        "finished": list(finished),
                        "threads": torch.get_num_threads(),
                        "state": state,
                    }
                ),
                path,
                "checkpoint",
                lambda: kept_checkpoint(path),
            )

    return write


def kept_checkpoint(path) -> str:
    """What a failed write leaves to go on from, in words, the checkpoint read back (and its
    checksum checked) to say so: 'the checkpoint of seed 0 after epoch 1 is intact: ...'."""
    try:
        payload = _load(path, "checkpoint", CHECKPOINT_FORMAT, "netgraph train")
        _check_keys(payload, _CHECKPOINT_KEYS, path, "checkpoint", "netgraph train")
        _check_keys(payload["state"], _STATE_KEYS, path, "checkpoint", "netgraph train", "state.")
    except RecipeError:
        return "no checkpoint was written yet: free space (or point --checkpoint elsewhere) and run the command again"
    from .engine import resume_point

    state = payload["state"]
    return (
        f"the checkpoint of seed {payload['seed']} {resume_point(state['epoch'], state['skip'])} is "
        f"intact: free space and run the same command with --resume"
    )


# What a checkpoint and a saved model hold (key: the types it may have); checked on load,
# after the checksum, so a file of another version or made by hand is refused in one line.
_CHECKPOINT_KEYS = {
    "format": str,
    "recipe": dict,
    "recipe_file": (str, type(None)),
    "seed": int,
    "finished": list,
    "state": dict,
    "checksum": str,
}
_STATE_KEYS = {"step": int, "epoch": int, "skip": int, "model": dict}
_MODEL_KEYS = {
    "format": str,
    "recipe": dict,
    "recipe_file": (str, type(None)),
    "state_dict": dict,
    "result": dict,
    "checksum": str,
}


def _check_keys(payload: Dict, keys: Dict, path, what: str, writer: str, prefix: str = "") -> None:
    for key, types in keys.items():
        value = payload.get(key)
        if key not in payload or not isinstance(value, types) or isinstance(value, bool):
            got = "is missing" if key not in payload else f"is {type(value).__name__}"
            raise RecipeError(
                f"the {what}'s '{prefix}{key}' {got}",
                file=str(path),
                hint=f"it was not written by this netgraph's {writer}",
            )


def _load(path, what: str, expected_format: str, writer: str) -> Dict:
    """A file netgraph wrote, read with ``weights_only=True`` (tensors and plain data only),
    its checksum checked."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RecipeError(f"{what} not found", file=str(path), hint=f"it is written by {writer}") from None
    except Exception as e:  # a truncated file, one that is not netgraph's, one carrying code
        raise RecipeError(
            f"cannot read the {what}: {_load_failure(e)}",
            file=str(path),
            hint=f"it should be written by {writer}",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise RecipeError(f"not a netgraph {what}", file=str(path), hint=f"write one with {writer}")
    files.check_checksum(payload, path, what, writer)
    return payload


def _load_failure(error: Exception) -> str:
    """Why torch.load failed, in one line: not torch's advice to load with weights_only=False
    (which would run whatever code the file carries)."""
    text = str(error)
    if "Weights only load failed" in text:
        reason = next(
            (line.strip() for line in text.splitlines() if "WeightsUnpickler error" in line),
            "it holds objects other than tensors and plain data",
        )
        return f"it holds more than tensors and plain data, and is not loaded ({reason})"
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def load_checkpoint(path, recipe: Recipe) -> Dict:
    """A checkpoint from ``checkpoint_writer``, checked to be of this recipe (after --set)."""
    payload = _load(path, "checkpoint", CHECKPOINT_FORMAT, "netgraph train")
    _check_keys(payload, _CHECKPOINT_KEYS, path, "checkpoint", "netgraph train")
    _check_keys(payload["state"], _STATE_KEYS, path, "checkpoint", "netgraph train", "state.")
    if payload["recipe"] != recipe.sections:
        raise RecipeError(
            f"the checkpoint is of another recipe (or other --set options) than {run_name(recipe)}",
            file=str(path),
            hint="resume with the recipe and --set options it was started with, or "
            "start afresh without --resume",
        )
    _check_progress(payload["state"], path, recipe)
    try:
        TrainState.from_dict(payload["state"])  # every field's type, before the loop reads any
    except RecipeError as err:
        err.file = str(path)
        raise
    warn_on_other_thread_count(path, payload.get("threads"))
    return payload


def _check_progress(state: Dict, path, recipe: Recipe) -> None:
    """The epoch, step and skip of a checkpoint fit its recipe's run: 1 <= epoch <= epochs + 1
    (epochs + 1: finished), 0 <= skip <= step (skip counts steps of the epoch in progress)."""
    config = train_config(recipe, "cpu")
    # a run given in steps has as many epochs as the data's size makes: not known here
    epochs = math.ceil(config.epochs) if config.steps is None else None
    epoch, step, skip = state["epoch"], state["step"], state["skip"]
    for name, ok in (
        ("epoch", 1 <= epoch and (epochs is None or epoch <= epochs + 1)),
        ("skip", 0 <= skip <= max(step, 0)),
        ("step", step >= 0),
    ):
        if not ok:
            raise RecipeError(
                f"the checkpoint's {name} is {state[name]}, which the run of "
                f"{epochs or config.steps} {'epochs' if epochs else 'steps'} at step {step} "
                f"cannot have reached",
                file=str(path),
                hint="the file is damaged: start afresh without --resume",
            )


def warn_on_other_thread_count(path, saved: Optional[int]) -> None:
    """A resumed run equals the uninterrupted one bit for bit only at the thread count it was
    started with: on the CPU, sums over more threads are added in another order."""
    if saved is not None and saved != torch.get_num_threads():
        warnings.warn(
            f"{path}: the checkpoint was written by a run on {saved} CPU threads, this one "
            f"has {torch.get_num_threads()}: the resumed run will not be bit-identical to "
            f"an uninterrupted one (set OMP_NUM_THREADS={saved} to make it so)",
            stacklevel=2,
        )


def load_model(path, device: torch.device):
    """(recipe, graph, module in eval mode, saved result) from a file written by save_model.
    Read with ``weights_only=True``: the file holds tensors and plain data only."""
    from .recipe import recipe_from_dict

    payload = _load(path, "model file", MODEL_FORMAT, "netgraph train --save")
    _check_keys(payload, _MODEL_KEYS, path, "model file", "netgraph train --save")
    recipe = recipe_from_dict(payload["recipe"], file=payload.get("recipe_file"))
    graph, _ = apply_transforms(
        build_graph(recipe), recipe, context_without_data(recipe, payload.get("pass_context"))
    )
    model = compile_graph(graph, allow_pending=True)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as e:
        raise RecipeError(f"the weights do not fit the recipe saved with them: {e}", file=str(path)) from None
    return recipe, graph, model.to(device).eval(), payload.get("result", {})


# --- one recipe trained for several seeds, resumable ---------------------------------------


class SeedRuns:
    """``netgraph train`` below the command line: one recipe trained once per seed, each
    epoch's line appended to the log as it ends, the state checkpointed (resumable from the
    seed and step it stopped at), models saved, and the runs combined. Only the main process
    (rank 0) writes files; ``main=False`` leaves them alone."""

    def __init__(
        self,
        recipe: Recipe,
        dataset: datasets.Dataset,
        seeds: List[int],
        device: torch.device,
        log_path,
        checkpoint_path,
        checkpoint_every: int = 1,
        ranks: Optional[Ranks] = None,
        label: Optional[str] = None,
        main: bool = True,
    ):
        self.recipe, self.dataset, self.seeds, self.device, self.ranks = (
            recipe,
            dataset,
            list(seeds),
            device,
            ranks,
        )
        self.log_path, self.checkpoint_path, self.every = log_path, checkpoint_path, checkpoint_every
        self.label, self.main, self.runs = label, main, len(seeds)
        self.finished: List[Dict[str, Any]] = []
        self._resume: Optional[Dict] = None
        self._kept: List[str] = []  # log lines of what is resumed, written before the first new one
        self._log_started = False
        self.lr_record = schedule_record(train_config(recipe, device.type), len(dataset.train_labels))

    def resume(self) -> Tuple[int, str]:
        """Continue from the checkpoint: (its seed, where in its run, in words). The seeds before
        it are finished (their results are in the checkpoint, their lines in the log)."""
        from .ablate import read_runs
        from .engine import resume_point

        if self.ranks:
            raise RecipeError(
                "--resume continues a single-process run; resume a torchrun run by starting it afresh"
            )
        saved = load_checkpoint(self.checkpoint_path, self.recipe)
        if saved["seed"] not in self.seeds:
            raise RecipeError(
                f"the checkpoint is of seed {saved['seed']}, not one of this command's "
                f"seeds {self.seeds[0]}..{self.seeds[-1]}",
                file=str(self.checkpoint_path),
                hint="resume with the --seed and --runs it was started with",
            )
        self.finished, self._resume = saved["finished"], saved["state"]
        self.seeds = self.seeds[self.seeds.index(saved["seed"]) :]
        done = {r["seed"] for r in self.finished}
        self._kept = [json.dumps(r) for r in read_runs(self.log_path) if r["seed"] in done] if done else []
        self._kept += [self._line(saved["seed"], e) for e in self._resume["log"]]
        return saved["seed"], resume_point(self._resume["epoch"], self._resume["skip"])

    def which(self, seed: int) -> str:
        """'run 2 of 3 (seed 1)'."""
        return f"run {self.runs - len(self.seeds) + self.seeds.index(seed) + 1} of {self.runs} (seed {seed})"

    def train(
        self,
        seed: int,
        on_epoch: Optional[Callable[[EpochLog], None]] = None,
        on_step: Optional[Callable[[int, int], None]] = None,
    ):
        """Train the run of ``seed``: (RunResult, trained module). TrainingInterrupted passes
        through with the state checkpointed."""

        def epoch_done(entry):
            if on_epoch:
                on_epoch(entry)
            if self.main:  # each epoch's line at once, so an interrupted run keeps its log
                self._write(self._line(seed, entry))

        writer = (
            checkpoint_writer(self.checkpoint_path, self.recipe, seed, self.finished, self.every)
            if self.main
            else None
        )
        resume, self._resume = (self._resume if seed == self.seeds[0] else None), None
        run, model, _ = run_recipe(
            self.recipe,
            seed=seed,
            device=self.device,
            dataset=self.dataset,
            on_epoch=epoch_done,
            on_step=on_step,
            checkpoint=writer,
            resume=resume,
            ranks=self.ranks,
        )
        self.finished.append(run.summary())
        return run, model

    def save(self, model, run: RunResult, path) -> Path:
        """Save a run's model to ``path`` (FILE-seedN.pt when the command trains several)."""
        path = Path(path)
        if self.runs > 1:
            path = path.with_name(f"{path.stem}-seed{run.seed}{path.suffix}")
        save_model(path, model, self.recipe, run, self._kept_checkpoint)
        return path

    def _kept_checkpoint(self) -> str:
        return kept_checkpoint(self.checkpoint_path)

    def finish(self, command: str, outputs=()) -> Dict[str, Any]:
        """Every run done: the checkpoint removed (nothing is left to resume), and the combined
        result with the command, torch version and date, written to each of ``outputs``."""
        import datetime

        result = {
            "command": command,
            "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **combined_result(self.finished),
        }
        for out in outputs:  # before the checkpoint goes: a full disk here can be resumed
            if out is not None:
                text = json.dumps(result, indent=2) + "\n"
                files.write_text_atomically(out, text, "result", self._kept_checkpoint)
        if self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        return result

    def _line(self, seed: int, entry) -> str:
        return log_entry_line(run_name(self.recipe), seed, entry, self.dataset, self.label, self.lr_record)

    def _write(self, line: str) -> None:
        """The log is (re)written when the first epoch has something to add: the kept lines, then
        one line an epoch."""
        if not self._log_started:  # atomically: a full disk must not empty the log of a resumed run
            kept = "".join(kept + "\n" for kept in self._kept)
            files.write_text_atomically(self.log_path, kept, "epoch log", self._kept_checkpoint)
            self._log_started = True
        files.append_line(self.log_path, line, "epoch log", self._kept_checkpoint)

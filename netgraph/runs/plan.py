"""A run prepared once: (recipe, data, device, overrides) -> ``Plan``.

``prepare`` reads the train: and data: sections into their configs, loads the data set, fits
the recipe to the images (input.shape from the data), builds the graph and refuses, with the
recipe's line, whatever training would fail on (``preflight``). Everything that trains, draws
or compares runs takes the Plan (or builds one with ``prepare``): nothing below re-reads the
recipe.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import networkx as nx
import torch

from netgraph import data as datasets
from netgraph.core.clock import process_seconds
from netgraph.core.errors import RecipeError
from netgraph.data import dataset as images
from netgraph.graph.build import build_graph
from netgraph.graph.executor import compile_graph, parameter_options
from netgraph.graph.passes import PassContext, apply_transforms
from netgraph.graph.summary import activation_memory_error, device_memory, parameter_memory_error, summarize
from netgraph.recipe.load import Recipe, load_recipe
from netgraph.train import param_groups
from netgraph.train.augment import check_augmentations
from netgraph.train.config import TRAIN_PARAMS, DataConfig, TrainConfig, data_config, train_config
from netgraph.train.ranks import Ranks, rank_batch


@dataclass
class Plan:
    """What every run of one recipe shares, prepared once and handed down."""

    recipe: Recipe  # checked, with input.shape taken from the data when it set none
    config: TrainConfig  # train:, for this device
    dconfig: DataConfig  # data:, checked against the images' real shape
    dataset: datasets.Dataset  # uint8 tensors on the CPU
    graph: nx.DiGraph  # built and preflighted; the passes run per seed, on the data on the device
    device: torch.device
    summary: Dict[str, Any]  # summarize(graph, macs=False): parameters, shapes, memory (no MACs)
    ranks: Optional[Ranks] = None  # torchrun's processes, None for one
    data_dir: Optional[str] = None  # --data-dir, as given
    # time accounting (runs/timing.py): the process's age when prepare began (interpreter,
    # imports, the command line, the recipe read), and prepare's own seconds (data read from
    # disk, the graph built and checked, its summary)
    start_up_s: float = 0.0
    prepare_s: float = 0.0

    @property
    def name(self) -> str:
        """How logs and results name the recipe: its file, or its name when built in memory."""
        return run_name(self.recipe)

    @property
    def rank_batch(self) -> int:
        """The batch each process trains on (the passes resolve ghost batch norm's splits from it)."""
        return rank_batch(self.config.batch_size, self.ranks)

    def seeded(self, seed: Optional[int]) -> TrainConfig:
        """The train config of one run: this plan's, with ``seed`` (None: the recipe's)."""
        return dataclasses.replace(self.config, seed=self.config.seed if seed is None else seed)


def prepare(
    recipe: Union[Recipe, str, os.PathLike],
    *,
    overrides: Iterable[str] = (),
    data_dir: Optional[str] = None,
    device: Union[str, torch.device, None] = None,
    dataset: Optional[datasets.Dataset] = None,
    ranks: Optional[Ranks] = None,
    data_cache: Optional[Dict[tuple, datasets.Dataset]] = None,
) -> Plan:
    """The one way a run is prepared: the recipe (a file with ``overrides``, or a Recipe), its
    configs, its data (``dataset`` if given, else read from ``data_dir`` or the recipe's
    data:; ``data_cache`` keeps data sets read for other plans), the graph, and every refusal
    training would otherwise reach minutes later."""
    start_up, began = process_seconds(), time.perf_counter()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(os.fspath(recipe), overrides)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    config = train_config(recipe, device.type)  # a typo in train: before minutes of loading data
    dconfig = data_config(recipe)
    if dataset is None:
        cache = {} if data_cache is None else data_cache
        key = (dconfig.dataset, data_dir or dconfig.dir, str(dconfig.synthetic))
        if key not in cache:
            cache[key] = load_data(dconfig, data_dir)
        dataset = cache[key]
    recipe, dconfig = fit_to_data(recipe, dataset, dconfig)
    graph = build_graph(recipe)
    summary = preflight(recipe, graph, dataset, dconfig, device, config)
    try:
        rank_batch(config.batch_size, ranks)
    except RecipeError as err:
        raise err.located(*recipe.where(("train", "batch_size"))) from None
    plan = Plan(recipe, config, dconfig, dataset, graph, device, summary, ranks, data_dir)
    plan.start_up_s, plan.prepare_s = start_up, time.perf_counter() - began
    return plan


def network(recipe: Recipe, *, data_dir: Optional[str] = None, stage: Optional[int] = None):
    """(graph after the transforms, or the first ``stage`` of them; their reports; the recipe)
    for drawing and summarising. The data: and train: sections are checked too (a typo there
    is flagged before anything trains); with ``data_dir`` the run is prepared on the CPU as
    train would prepare it (input.shape from the images, every preflight refusal)."""
    if data_dir:
        recipe = prepare(recipe, data_dir=data_dir, device="cpu").recipe
    else:
        train_config(recipe), data_config(recipe)
    graph, reports = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe), stop=stage)
    return graph, reports, recipe


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
        sizes=config.synthetic,
        seed=seed,
        **config.folder_options(),
    )


def normalisation(dataset: datasets.Dataset, config: Optional[DataConfig] = None):
    """data.mean and data.std if the recipe gives them, else CIFAR-10's published statistics
    (the original code's) for cifar10, else the training set's own."""
    if config is not None and (config.mean or config.std):
        channels = dataset.image_shape[0]
        for key, values in (("mean", config.mean), ("std", config.std)):
            if values is None or len(values) != channels:
                raise RecipeError(
                    f"data.{key} needs {channels} values, one per channel of the "
                    f"{dataset.name} images, got {values}",
                    hint="give both data.mean and data.std, or neither to use the training set's own",
                )
        assert config.mean is not None and config.std is not None  # the loop refuses None
        return tuple(config.mean), tuple(config.std)
    if dataset.name == "cifar10":
        return images.CIFAR10_MEAN, images.CIFAR10_STD
    return images.channel_stats(dataset.train_images)


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


def fit_to_data(
    recipe: Recipe, dataset: datasets.Dataset, dconfig: Optional[DataConfig] = None
) -> Tuple[Recipe, DataConfig]:
    """The recipe with input.shape taken from the data when it sets none, and its data:
    section checked against the images' real size (``dconfig`` is kept when it was checked
    against that size already: a source of known shape); an input.shape the data does not
    have is refused before anything trains."""
    if dconfig is None or dconfig.shape != tuple(dataset.image_shape):
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
    recipe: Recipe,
    graph,
    dataset: datasets.Dataset,
    dconfig: DataConfig,
    device: torch.device,
    config: Optional[TrainConfig] = None,
) -> Dict[str, Any]:
    """What training would fail on, refused before any of it, with the recipe's line: fewer
    outputs than the data has classes; training batches (after data.augment) the network cannot
    take; parameters that do not fit in the device's memory. Returns the graph's summary."""
    _check_outputs(recipe, graph, dataset)
    batch = (config or train_config(recipe, device.type)).batch_size
    counts = summarize(graph, batch, macs=False)  # no check needs them; `netgraph summary` counts them
    _check_training_batches(recipe, counts, dataset, dconfig)
    _check_memory(graph, counts, device)
    return counts


def _check_outputs(recipe: Recipe, graph, dataset: datasets.Dataset) -> None:
    """One logit per class at least."""
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


def _check_training_batches(recipe: Recipe, counts, dataset: datasets.Dataset, dconfig: DataConfig) -> None:
    """The network takes the training batches (after data.augment) with the layers it has for
    the test images."""
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


def _check_memory(graph, counts, device: torch.device) -> None:
    """The largest output of a batch, and the parameters' copies training keeps, fit the
    device: the arithmetic is the graph stage's (netgraph.graph.summary), shared with
    compile_graph and `netgraph summary`."""
    have, where = device_memory(device), device_name(device)
    refusal = activation_memory_error(graph, counts, have, where) or parameter_memory_error(
        graph, have, where, copies=PARAMETER_COPIES
    )
    if refusal:
        raise refusal


def group_lines(recipe: Recipe, config: Optional[TrainConfig] = None, graph=None) -> List[str]:
    """The recipe's parameter groups as training resolves them (what the passes record, then
    train.param_groups), one line each: tensors, optimizer, what differs from train:'s."""
    config = config or train_config(recipe)
    if graph is None:
        graph, _ = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe))
    model = compile_graph(graph, allow_pending=True)
    groups = param_groups.resolve(model, parameter_options(graph), config.param_groups)
    return [g.describe({"optimizer": config.optimizer}) for g in groups]


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

    if isinstance(saved, dict) and type(saved.get("batch_size")) is int and saved["batch_size"] > 0:
        return PassContext(batch_size=saved["batch_size"])
    batch = recipe.train.get("batch_size", TRAIN_PARAMS["batch_size"].default)
    return PassContext(batch_size=batch if isinstance(batch, int) else None)

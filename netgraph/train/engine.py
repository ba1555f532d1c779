"""The training engine: a compiled module, data on the device, a plain config.

Read top to bottom: the config, the original code's optimizer, the moving average, the
loss, data preparation, evaluation, and the loop (test-time views: netgraph.train.views).
Nothing here knows about recipes or graphs (``netgraph.runs.run`` wires those in).

Units follow the original code (docs/ladder.md gives its hyperparameters): learning rates and weight decay are given
for a loss averaged over the batch; with ``loss: sum`` (the original code's choice, a
built-in loss scaling for float16) the loss is summed and the learning rate
divided by the batch size, the weight decay multiplied by it, which is the
same update.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from netgraph.core.errors import RecipeError
from netgraph.data.dataset import Dataset, normalizer, preprocess
from netgraph.graph.executor import half_precision
from netgraph.train import param_groups
from netgraph.train.augment import MAX_GROUPS, BatchGroupLoader, eval_batches
from netgraph.train.averaging import AVERAGING
from netgraph.train.optimizers import OPTIMIZERS
from netgraph.train.param_groups import Group
from netgraph.train.ranks import Ranks, rank_batch
from netgraph.train.schedule import PiecewiseLinear, StepSchedule
from netgraph.train.state import TrainState, to_cpu
from netgraph.train.views import parse_tta, predict

PRECISIONS = ("float32", "float16", "bfloat16")
# torch.compile's modes (reduce-overhead is left out: config.py says why)
COMPILE_MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs")
# what the per-epoch table's test columns see: the image alone, or train.tta's views
EVAL_VIEWS = ("plain", "tta")


@dataclass
class TrainConfig:
    """A run's training settings: the one place their defaults are written (config.py's
    recipe table reads them from here)."""

    epochs: float = 24  # may be fractional (9.9): the last epoch is cut after ceil(epochs x steps) steps
    steps: Optional[int] = None  # the run's length in steps instead of epochs
    batch_size: int = 512
    lr_knots: Sequence = (0, 5, "epochs")  # in lr_unit, or expressions such as "epochs/5"
    lr_values: Sequence[float] = (0.0, 0.4, 0.0)
    lr_unit: str = "epochs"  # epochs, steps or fraction (schedule.UNITS)
    optimizer: str = "bag_of_tricks"  # an optimizers.OPTIMIZERS name
    optimizer_params: Dict = field(default_factory=dict)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss: str = "sum"  # "sum" (the original code) or "mean"
    label_smoothing: float = 0.0
    # float32, float16 (model in half, batch norm in float32), bfloat16 (autocast); auto:
    # float16 on a GPU, float32 on a CPU, whose half-precision convolutions are slow
    precision: str = "auto"
    average: Optional[Dict] = None  # {"name": an averaging.AVERAGING kind, "params": {...}}
    # train.tta as written (netgraph.train.views.parse_tta reads it): views besides the image, e.g.
    # ["flip"], or {"views": [{"view": ..., "weight": ...}, ...]}, or "airbench"
    tta: Any = ()
    seed: int = 0
    eval_batch_size: int = 512
    # the per-epoch table's test columns: every eval_every epochs and after the last (0: none),
    # the test set seen through eval_view, "plain" (the image alone, as the records evaluate each
    # epoch) or "tta" (train.tta's views); the final evaluation always averages train.tta's views
    eval_every: int = 1
    eval_view: str = "plain"
    # param_groups.resolve's items: selectors (params glob, kind) and settings, later ones winning
    param_groups: Sequence[Dict] = ()
    log_params: int = 0  # every N steps, record batch-norm weight/bias statistics (0: off)
    # speed (README "Performance" measures each)
    channels_last: bool = False  # NHWC activations: tensor-core convolutions without transposes
    compile: str = "none"  # a COMPILE_MODES mode: torch.compile the model; compile time reported apart
    foreach: bool = True  # the optimizer update as fused multi-tensor kernels (False: a loop)
    # torch.distributed: batch norm over the global batch, not per rank (distributed.SyncBatchNorm)
    sync_batch_norm: bool = False

    def lr_schedule(self, steps_per_epoch: Optional[int] = None) -> PiecewiseLinear:
        """train.lr's curve in its unit (knot expressions evaluated; ``steps_per_epoch`` is
        needed for a run given in steps, or for knots naming ``steps``)."""
        if steps_per_epoch is None:
            return PiecewiseLinear.in_epochs(self.lr_knots, self.lr_values, self.epochs)
        total = total_steps(self, steps_per_epoch)
        return PiecewiseLinear.in_epochs(self.lr_knots, self.lr_values, total / steps_per_epoch, total)


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The run's optimizer steps: train.steps, else ceil(epochs x steps an epoch) (airbench94:
    ceil(9.9 x 48) = 476; the 1e-9 keeps 0.1 x 30 = 3.0000000000000004 at 3)."""
    if config.steps is not None:
        return config.steps
    return max(1, math.ceil(config.epochs * steps_per_epoch - 1e-9))


def resolve_precision(precision: str, device) -> str:
    """train.precision: auto is float16 on a GPU, float32 on a CPU."""
    if precision != "auto":
        return precision
    return "float16" if torch.device(device).type == "cuda" else "float32"


def check_fits(train_images: int, batch_size: int) -> None:
    """A training set smaller than one batch trains no step: refused before any work."""
    if train_images < batch_size:
        raise RecipeError(
            f"the training set ({train_images} images) is smaller than one batch ({batch_size} images)",
            hint="use a smaller train.batch_size",
            setting=("train", "batch_size"),
        )


# --- parameter statistics ---------------------------------------------------------


class ParamStats:
    """Mean and standard deviation over channels (ddof 0) of every batch-norm layer's
    weight (scale) and bias, recorded every ``every`` steps, for ``netgraph show params``.

    A record is one std_mean per tensor, stacked into one (layers x 4) tensor that stays
    on the device; the epoch's records are read back once, at the end of the epoch where
    the loop reads its loss anyway, so logging adds no host sync per step. Layers are
    named by node path (``layer1/conv_bn/bn``)."""

    def __init__(self, model: nn.Module, every: int):
        self.every = every
        self.layers = [
            (name.replace(".", "/"), m)
            for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
        ]
        # as the model came to the loop: a group past its `until` may stop requiring a gradient
        # mid-run (GroupRun.stop_grads_after_until) in eager runs only, and the record must not
        # depend on that
        self.trainable = [(m.weight.requires_grad, m.bias.requires_grad) for _, m in self.layers]
        self.steps: List[int] = []
        self.records: List[torch.Tensor] = []

    @torch.no_grad()
    def record(self, step: int) -> None:
        values = []
        for _, m in self.layers:
            for tensor in (m.weight, m.bias):
                std, mean = torch.std_mean(tensor, correction=0)
                values += [mean, std]
        self.records.append(torch.stack(values).view(len(self.layers), 4))
        self.steps.append(step)

    def flush(self, steps_per_epoch: int) -> Dict:
        """The records since the last flush as plain lists (one read from the device)."""
        # records x layers x 4; an epoch may have none when N exceeds the steps of an epoch
        table = torch.stack(self.records).float().cpu().tolist() if self.records else []
        layers = {}
        for i, (name, _) in enumerate(self.layers):
            column = [[record[i][k] for record in table] for k in range(4)]
            layers[name] = {
                "weight_mean": column[0],
                "weight_std": column[1],
                "bias_mean": column[2],
                "bias_std": column[3],
                "weight_trainable": self.trainable[i][0],
                "bias_trainable": self.trainable[i][1],
            }
        entry = {
            "every": self.every,
            "steps_per_epoch": steps_per_epoch,
            "steps": self.steps,
            "layers": layers,
        }
        self.steps, self.records = [], []
        return entry


# --- loss (test-time views: netgraph.train.views) ---------------------------------------


def label_smoothing_loss(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float, reduction: str = "sum"
) -> torch.Tensor:
    """(1 - s) x cross-entropy + s x the mean over classes of -log p, per image."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction=reduction)


# --- data on the device ----------------------------------------------------------


@dataclass
class DeviceData:
    """Images on the device: training images padded for cropping, normalised, or kept as
    uint8 with ``normalize`` applied to each batch (a quarter of float32's memory)."""

    train_padded: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pad: int
    normalize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    host: bool = False  # data.placement: host: train_padded is uint8 in (pinned) host memory

    @property
    def train_images(self) -> torch.Tensor:
        """The unpadded training images as stored (a view, no copy)."""
        p = self.pad
        return self.train_padded[:, :, p:-p, p:-p] if p else self.train_padded

    def train_sample(self, n: int) -> torch.Tensor:
        """The first n training images, unpadded, normalised, float32 (for the passes)."""
        x = self.train_images[:n].to(self.test_images.device)  # host placement: the same sample
        return (self.normalize(x) if self.normalize else x).float()


def to_device(
    data: Dataset, device, mean, std, pad: int, dtype, keep_uint8: bool = False, host: bool = False
) -> DeviceData:
    """uint8 images to the device, then normalised and padded there, once; with
    ``keep_uint8`` the padded training set stays uint8 and batches are normalised; with
    ``host`` (data.placement: host) it stays uint8 in host memory, pinned for CUDA, and
    only the labels, the test set and the normalisation constants go to the device."""
    if host:
        padded = _pad_uint8(data.train_images, pad)
        padded = padded.pin_memory() if torch.device(device).type == "cuda" else padded
        test = preprocess(data.test_images.to(device), mean, std, pad=0, dtype=dtype)
        return DeviceData(
            padded,
            data.train_labels.to(device),
            test,
            data.test_labels.to(device),
            pad,
            normalize=normalizer(mean, std, device, dtype),
            host=True,
        )
    d = data.to(device)
    test = preprocess(d.test_images, mean, std, pad=0, dtype=dtype)
    if not keep_uint8:
        return DeviceData(
            preprocess(d.train_images, mean, std, pad=pad, dtype=dtype),
            d.train_labels,
            test,
            d.test_labels,
            pad,
        )
    padded = _pad_uint8(d.train_images, pad)
    return DeviceData(
        padded,
        d.train_labels,
        test,
        d.test_labels,
        pad,
        normalize=normalizer(mean, std, padded.device, dtype),
    )


def _pad_uint8(images: torch.Tensor, pad: int) -> torch.Tensor:
    # Reflect padding of integers is exact in float32; in chunks, so no full float copy is made.
    return torch.cat(
        [
            F.pad(chunk.float(), (pad,) * 4, mode="reflect").to(torch.uint8) if pad else chunk
            for chunk in images.split(4096)
        ]
    )


def input_dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "float16" else torch.float32


# --- evaluation -------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    ranks: Optional[Ranks] = None,
    tta: Any = None,
):
    """(accuracy, mean loss) on the test images, in batches, with test-time views (``tta``,
    train.tta's forms; None: config.tta); with ranks, each rank evaluates every W-th image
    and the counts are summed over ranks."""
    was_training = model.training
    model.eval()
    n = len(images)
    if ranks:
        images, labels = images[ranks.rank :: ranks.world], labels[ranks.rank :: ranks.world]
    correct = torch.zeros((), device=images.device)
    loss = torch.zeros((), device=images.device)
    views = parse_tta(config.tta if tta is None else tta)  # once, not once a batch
    with _autocast(config.precision, images.device):
        for x, y in eval_batches(images, labels, config.eval_batch_size):
            logits = predict(model, _memory_format(x, config), views)
            correct += (logits.argmax(1) == y).sum()
            loss += F.cross_entropy(logits, y, reduction="sum")
    if ranks:
        from netgraph.train import distributed  # only a run of several ranks imports it

        distributed.all_reduce_sum(correct, loss)
    model.train(was_training)
    return correct.item() / n, loss.item() / n


def _autocast(precision: str, device):
    enabled = precision == "bfloat16"
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def _memory_format(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# --- compilation ------------------------------------------------------------------


def compile_model(
    model: nn.Module, config: TrainConfig, example: torch.Tensor, eval_shapes: Sequence[int]
) -> tuple:
    """(compiled forward, seconds spent compiling). torch.compile compiles lazily on the
    first calls; those are made here on random inputs of the shapes training and evaluation
    will use, so the compile time is counted apart (as the field reports it), and the
    model's state (weights, gradients, batch-norm statistics) is restored afterwards."""
    mode = None if config.compile == "default" else config.compile
    forward = torch.compile(model, dynamic=False, mode=mode)
    device = example.device
    saved = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    synchronize(device)
    start = time.perf_counter()
    was_training = model.training
    for _ in range(2):
        with _autocast(config.precision, device):
            out = forward(_memory_format(torch.randn_like(example), config))
        label_smoothing_loss(
            out, torch.zeros(len(out), dtype=torch.long, device=device), config.label_smoothing
        ).backward()
    model.eval()
    with torch.no_grad(), _autocast(config.precision, device):
        for n in eval_shapes:
            for _ in range(2):
                x = torch.randn((n,) + tuple(example.shape[1:]), dtype=example.dtype, device=device)
                predict(forward, _memory_format(x, config), config.tta)
    model.train(was_training)
    synchronize(device)
    seconds = time.perf_counter() - start
    model.load_state_dict(saved)
    for p in model.parameters():
        p.grad = None
    torch.set_rng_state(rng)
    return forward, seconds


# --- parameter groups and their optimizers ---------------------------------------------


@dataclass
class GroupRun:
    """One parameter group as the loop drives it: where its torch group lives (optimizer and
    index: torch replaces its group dicts when a state is loaded), its own schedule (None:
    train.lr), its multipliers, and the last step it trains (None: every step)."""

    group: Group
    optimizer: torch.optim.Optimizer
    index: int
    schedule: Optional[StepSchedule]
    lr_scale: float
    batch_lr: float  # 1 / batch size for a summed loss and an update linear in the gradient
    until: Optional[int]

    def set_lr(self, step: int, default: float) -> None:
        """The learning rate of step ``step`` (1-based); ``default`` is train.lr's value there."""
        value = self.schedule.at(step) if self.schedule is not None else default
        self.optimizer.param_groups[self.index]["lr"] = value * self.batch_lr * self.lr_scale

    def freeze_after_until(self, step: int) -> None:
        """Past ``until``, the group's gradients are dropped, so no optimizer moves it."""
        if self.until is not None and step > self.until:
            for p in self.group.params:
                p.grad = None

    def stop_grads_after_until(self, step: int) -> None:
        """Past ``until``, before the forward: the group's parameters stop requiring a gradient,
        so autograd skips the backward that only they need, as airbench94_muon does with
        requires_grad. Its frozen whitening bias drops the first conv's and GELU's backward in
        10 of the 16 steps of issue 33's reduced run, 2.2 s + 0.9 s of a 44 s profile on 2 CPU
        cores (torch.profiler, conv and GELU backward: 112 calls against airbench's 102)."""
        if self.until is not None and step > self.until:
            for p in self.group.params:
                p.requires_grad_(False)

    def restore_grads(self) -> None:
        """The group's parameters trainable again, as the model was handed to the loop."""
        for p in self.group.params:
            p.requires_grad_(True)


def until_step(until: Optional[Dict], steps_per_epoch: int, total: int) -> Optional[int]:
    """The last step of a group's ``until: {epochs: N} | {steps: N} | {fraction: F}``."""
    if until is None:
        return None
    ((unit, n),) = until.items()
    if unit == "steps":
        return int(n)
    return math.ceil(n * (steps_per_epoch if unit == "epochs" else total) - 1e-9)


def build_optimizers(
    model: nn.Module, config: TrainConfig, options: Dict, steps_per_epoch: int, total: int
) -> tuple:
    """(the torch optimizers, a GroupRun per parameter group): the groups resolved from the
    passes' ``options`` and train.param_groups, one optimizer per distinct optimizer setting
    (in the order the groups first use it), each group one torch parameter group of it."""

    def unused(i):
        warnings.warn(
            f"train.param_groups item {i + 1} ({config.param_groups[i]}) matches no "
            f"trainable parameter; names look like 'layer1.conv_bn.bn.bias'",
            stacklevel=3,
        )

    summed = config.loss == "sum"
    chosen: Dict[str, list] = {}  # optimizer setting -> [spec, params, torch groups, group indices]
    settings = []
    for n, group in enumerate(param_groups.resolve(model, options, config.param_groups, unused)):
        s = group.settings
        name, params = (
            (s["optimizer"]["name"], s["optimizer"]["params"])
            if s["optimizer"]
            else (config.optimizer, config.optimizer_params)
        )
        spec = OPTIMIZERS[name]
        scaled = summed and spec.linear  # see the module docstring
        decay = config.weight_decay if s["weight_decay"] is None else s["weight_decay"]
        torch_group = {
            "params": group.params,
            "momentum": config.momentum if s["momentum"] is None else s["momentum"],
            "weight_decay": decay * (config.batch_size if scaled else 1.0) * s["wd_scale"],
        }
        entry = chosen.setdefault(json.dumps([name, params], sort_keys=True), [spec, params, [], []])
        entry[2].append(torch_group)
        entry[3].append(n)
        schedule = (
            StepSchedule.build(s["lr"]["knots"], s["lr"]["values"], s["lr"]["unit"], steps_per_epoch, total)
            if s["lr"]
            else None
        )
        settings.append(
            (
                group,
                schedule,
                s["lr_scale"],
                1.0 / config.batch_size if scaled else 1.0,
                until_step(s["until"], steps_per_epoch, total),
            )
        )
    optimizers = []
    runs: List[Optional[GroupRun]] = [None] * len(settings)  # each filled below
    for spec, params, torch_groups, indices in chosen.values():
        if "foreach" in spec.params and params.get("foreach") is None:
            params = {**params, "foreach": config.foreach}
        optimizer = spec.function(torch_groups, **params)
        optimizers.append(optimizer)
        for index, n in enumerate(indices):
            group, schedule, lr_scale, batch_lr, until = settings[n]
            runs[n] = GroupRun(group, optimizer, index, schedule, lr_scale, batch_lr, until)
    return optimizers, runs


def build_averaging(spec: Optional[Dict], model: nn.Module, steps_per_epoch: int):
    """train.average's object (averaging.AVERAGING), or None; a build parameter called
    ``steps_per_epoch`` gets the run's."""
    if not spec:
        return None
    build = AVERAGING[spec["name"]].function
    extra = (
        {"steps_per_epoch": steps_per_epoch}
        if "steps_per_epoch" in inspect.signature(build).parameters
        else {}
    )
    return build(model, **spec["params"], **extra)


# --- the loop ---------------------------------------------------------------------


@dataclass
class EpochLog:
    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_loss: Optional[float]
    test_acc: Optional[float]
    epoch_time: float  # seconds of training in this epoch (evaluation excluded)
    total_time: float  # seconds of training so far, set-up included
    params: Optional[Dict] = None  # batch-norm statistics of this epoch (ParamStats.flush)
    # each parameter group's learning rate at the epoch's last step, as its optimizer has it
    # (train.lr's value or the group's own, x lr_scale, x 1/batch for a summed loss), in group order
    group_lr: Optional[List[float]] = None


@dataclass
class TrainResult:
    test_acc: float
    test_loss: float
    train_time_s: float  # set-up (data to device, preprocessing, passes) plus training
    eval_time_s: float  # the final evaluation
    epochs: int  # epochs run (the last may be cut short: train.epochs 9.9, train.steps)
    log: List[EpochLog] = field(default_factory=list)
    model: Optional[nn.Module] = None  # the evaluated model (the moving average if enabled)
    compile_time_s: float = 0.0  # torch.compile's warm-up, not in train_time_s
    peak_memory_bytes: Optional[int] = None  # CUDA only: the most allocated at once
    steps: int = 0  # optimizer steps run
    epoch_eval_time_s: float = 0.0  # the per-epoch evaluations (train.eval_every), the final one apart
    log_time_s: float = 0.0  # after each epoch: its log line handed on, the checkpoint written
    # Training's own set-up, compilation apart: the loader, the optimizers (torch's first one
    # imports torch._dynamo, 1-3 s on a CPU), the averaging; not in train_time_s
    engine_setup_time_s: float = 0.0


class NonFiniteLoss(RecipeError):
    """The training loss became NaN or infinite."""


def resume_point(epoch: int, skip: int) -> str:
    """Where a run stopped (epoch ``epoch`` with ``skip`` steps done), worded alike when it
    stops and when it resumes: 'after step 5 of epoch 2', 'after epoch 2'."""
    return f"after step {skip} of epoch {epoch}" if skip else f"after epoch {epoch - 1}"


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; the state was handed to the checkpoint callback first.
    ``epoch`` and ``skip`` are where the checkpoint goes on (skip: steps of it already done)."""

    def __init__(self, epoch: int, skip: int, signal_name: str):
        super().__init__(f"{signal_name}: stopped {resume_point(epoch, skip)}")
        self.epoch, self.skip, self.signal_name = epoch, skip, signal_name


class _StopSignals:
    """While training: SIGINT and SIGTERM set a flag the loop checks after each step (the
    main thread only, where Python delivers signals); a second Ctrl-C stops at once."""

    def __init__(self, active: bool):
        import threading

        self.active = active and threading.current_thread() is threading.main_thread()
        self.received: Optional[str] = None
        self._old: Dict[int, Any] = {}  # signal -> its handler before

    def __enter__(self):
        import signal

        if self.active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class Training:
    """One run, set up: the model (in its precision and memory format), its forward (compiled
    or not, data-parallel or not), the batch-group loader, the optimizers and their groups,
    train.lr, the averaging and the parameter statistics. ``step`` is one optimizer step;
    ``epoch`` runs one epoch of them; ``state`` and ``restore`` are a TrainState."""

    def __init__(
        self,
        model: nn.Module,
        data: DeviceData,
        config: TrainConfig,
        augmentations: Sequence,
        max_groups: int,
        options: Dict,
        ranks: Optional[Ranks],
        setup_time: float = 0.0,
    ):
        began = time.perf_counter()
        self.model, self.data, self.config, self.ranks = model, data, config, ranks
        self.device = device = data.train_labels.device  # images stay on the host with placement: host
        torch.manual_seed(config.seed)
        self._prepare_model()
        self.loader = BatchGroupLoader(
            data.train_padded,
            data.train_labels,
            config.batch_size,
            augmentations,
            seed=config.seed,
            max_groups=max_groups,
            normalize=data.normalize,
            device=device,
            host=data.host,
        )
        self._count_steps()
        self.optimizers, self.groups = build_optimizers(
            model, config, options, self.steps_per_epoch, self.total_steps
        )
        self.average = build_averaging(config.average, model, self.steps_per_epoch)
        self.stats = self._param_stats()
        self.summed = config.loss == "sum"
        # DistributedDataParallel averages gradients over ranks; a summed loss wants their sum.
        self.loss_scale = float(ranks.world) if ranks and self.summed else 1.0
        self._build_forward()
        # A parameter that stops requiring a gradient mid-run would make torch.compile recompile
        # (its guards hold requires_grad) and DistributedDataParallel wait for a gradient that
        # never comes, so there a frozen group's gradients are computed and dropped instead.
        self.stop_grads = config.compile == "none" and not (ranks and ranks.world > 1)
        self.after_step = self._after_step_hooks()
        self.result = TrainResult(
            math.nan,
            math.nan,
            setup_time,
            0.0,
            self.epochs,
            compile_time_s=self.compile_time,
            steps=self.total_steps,
        )
        self.step_count = 0
        self.losses = torch.zeros(self.steps_per_epoch, device=device)  # per step, read once an epoch
        self.correct = torch.zeros((), device=device)
        self.result.engine_setup_time_s = time.perf_counter() - began - self.compile_time

    def _prepare_model(self) -> None:
        """The model in the run's batch norm, precision and memory format."""
        model, config, device = self.model, self.config, self.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ranks = self.ranks
        self.synced = bool(ranks and ranks.world > 1 and config.sync_batch_norm)
        if self.synced:
            from netgraph.train import distributed

            distributed.synchronise_batch_norm(model)
        if config.precision == "float16":
            half_precision(model, torch.float16)
        if config.channels_last:
            # torch's stubs leave out the memory_format that Module.to takes
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def _count_steps(self) -> None:
        """Steps an epoch (from the loader), steps and epochs in all, and train.lr per step."""
        config = self.config
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            check_fits(len(self.data.train_labels), config.batch_size)
        self.total_steps = total_steps(config, self.steps_per_epoch)
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = StepSchedule.build(
            config.lr_knots, config.lr_values, config.lr_unit, self.steps_per_epoch, self.total_steps
        )

    def _param_stats(self) -> Optional[ParamStats]:
        """train.log_params' recorder, None without it or without batch-norm layers to record."""
        stats = ParamStats(self.model, self.config.log_params) if self.config.log_params else None
        if stats and not stats.layers:
            warnings.warn(
                "train.log_params: the model has no batch-norm layers, nothing to record", stacklevel=4
            )
            return None
        return stats

    def _build_forward(self) -> None:
        """The forward that trains (data-parallel, compiled) and the model and forward that evaluate."""
        model, config, ranks = self.model, self.config, self.ranks
        # With one rank there is nothing to all-reduce: DistributedDataParallel alone cost 10-12% of
        # the epoch on an H100 (bench/results/bag_of_tricks_{eager,compile}_h100.json), so it is left out.
        net = model
        if ranks and ranks.world > 1:
            from netgraph.train import distributed

            net = distributed.wrap(model, self.device)
        self.forward, self.compile_time = self._compiled(net) if config.compile != "none" else (net, 0.0)
        self.evaluated = self.average.evaluated if self.average else model
        # the compiled forward when it is the model evaluated; a moving-average copy runs eagerly
        self.evaluator = (
            self.forward if config.compile != "none" and self.evaluated is model else self.evaluated
        )

    def _after_step_hooks(self) -> List[Callable[[int], None]]:
        """Around each step, not in it: the averaging, then the parameter statistics."""
        hooks: List[Callable[[int], None]] = []
        average, stats = self.average, self.stats
        if average:
            hooks.append(lambda k: average.after_step(k, self.total_steps))
        if stats:
            hooks.append(lambda k: stats.record(k) if k % stats.every == 0 else None)
        return hooks

    def _compiled(self, net: nn.Module) -> tuple:
        """(the compiled forward, seconds compiling), warmed up on the shapes the run will use."""
        config, ranks, test = self.config, self.ranks, self.data.test_images
        per_rank = rank_batch(config.batch_size, ranks)
        n_test = len(test) // (ranks.world if ranks else 1)
        eval_shapes = sorted({min(config.eval_batch_size, n_test), n_test % config.eval_batch_size} - {0})
        compiled = compile_model(net, config, test[:per_rank], eval_shapes)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # compilation's own workspace is not training's
        return compiled

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on batch (x, y): each group's learning rate for this step, the
        forward and backward pass, the groups past their ``until`` dropped, every optimizer's
        step, then the ``after_step`` hooks (averaging, statistics)."""
        config, k = self.config, self.step_count + 1
        default = self.schedule.at(k)
        for group in self.groups:
            group.set_lr(k, default)
            if self.stop_grads:
                group.stop_grads_after_until(k)
        with _autocast(config.precision, self.device):
            logits = self.forward(_memory_format(x, config))
        loss = label_smoothing_loss(logits, y, config.label_smoothing, "sum" if self.summed else "mean")
        (loss * self.loss_scale if self.loss_scale != 1 else loss).backward()
        for group in self.groups:
            group.freeze_after_until(k)
        for optimizer in self.optimizers:
            optimizer.step()
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.step_count = k
        for hook in self.after_step:
            hook(k)
        i = (k - 1) % self.steps_per_epoch
        self.losses[i] = loss.detach() * (1 if self.summed else len(y))
        self.correct += (logits.detach().argmax(1) == y).sum()

    def steps_in(self, epoch: int) -> int:
        """Steps of epoch ``epoch``: all of them but in a last epoch cut short."""
        return min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch)

    def epoch(
        self, epoch: int, skip: int, generator_state, on_step, signals, checkpoint, elapsed: float
    ) -> float:
        """Run epoch ``epoch`` from its step ``skip``; the seconds it trained. On SIGINT/SIGTERM,
        the state goes to ``checkpoint`` after the step in progress and TrainingInterrupted
        is raised."""
        steps = self.steps_in(epoch)
        synchronize(self.device)
        start = time.perf_counter()
        for i, (x, y) in enumerate(self.loader.epoch(generator_state, skip, epoch), start=skip):
            if i >= steps:
                break
            if self.ranks:
                x, y = x[self.ranks.rank :: self.ranks.world], y[self.ranks.rank :: self.ranks.world]
            self.step(x, y)
            if on_step:
                on_step(i + 1, steps)
            if signals.received and i + 1 < steps:
                synchronize(self.device)
                if checkpoint:
                    checkpoint(self.state(epoch, i + 1, elapsed + time.perf_counter() - start).to_dict())
                raise TrainingInterrupted(epoch, i + 1, signals.received)
        synchronize(self.device)
        return elapsed + time.perf_counter() - start

    def state(self, epoch: int, skip: int, elapsed: float = 0.0) -> TrainState:
        """The whole training state, on the CPU: ``epoch`` is the epoch to run next, or in
        progress with ``skip`` of its steps done."""
        # the generator as this epoch began (mid-epoch) or as the next will begin
        generator = self.loader.epoch_state if skip else self.loader.generator.get_state()
        assert generator is not None  # mid-epoch: the loader began the epoch, which set epoch_state
        return TrainState(
            step=self.step_count,
            epoch=epoch,
            skip=skip,
            model=to_cpu(self.model.state_dict()),
            optimizers=[to_cpu(o.state_dict()) for o in self.optimizers],
            generator=generator,
            average=to_cpu(self.average.state_dict()) if self.average else None,
            stats={"steps": list(self.stats.steps), "records": to_cpu(self.stats.records)}
            if self.stats
            else None,
            epoch_losses=to_cpu(self.losses) if skip else None,
            epoch_correct=float(self.correct.item()) if skip else 0.0,
            epoch_elapsed=elapsed,
            train_time_s=self.result.train_time_s,
            log=[asdict(e) for e in self.result.log],
        )

    def restore(self, state: TrainState) -> None:
        self.model.load_state_dict(state.model)
        if len(state.optimizers) != len(self.optimizers):
            raise RecipeError(
                f"the training state has {len(state.optimizers)} optimizers, the recipe "
                f"{len(self.optimizers)}",
                hint="resume with the recipe it was started with",
            )
        for optimizer, saved in zip(self.optimizers, state.optimizers):
            optimizer.load_state_dict(saved)
        if self.average:
            self.average.load_state_dict(state.average)
        if self.stats and state.stats:
            self.stats.steps = list(state.stats["steps"])
            self.stats.records = [r.to(self.device) for r in state.stats["records"]]
        self.loader.generator.set_state(state.generator)
        self.step_count = state.step
        self.result.train_time_s = state.train_time_s
        self.result.log = [EpochLog(**e) for e in state.log]
        if state.skip:
            assert state.epoch_losses is not None  # Training.state keeps them whenever skip > 0
            self.losses.copy_(state.epoch_losses)
            self.correct.fill_(state.epoch_correct)


def train(
    model: nn.Module,
    data: DeviceData,
    config: TrainConfig,
    augmentations: Sequence = (),
    max_groups: int = MAX_GROUPS,
    parameter_options: Optional[Dict] = None,
    setup_time: float = 0.0,
    on_epoch: Optional[Callable[[EpochLog], None]] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
    checkpoint: Optional[Callable[[Dict], None]] = None,
    resume: Optional[Dict] = None,
    ranks: Optional[Ranks] = None,
) -> TrainResult:
    """Train ``model`` on ``data`` and evaluate it; times follow the original code's rule
    (training counted, evaluation not, CUDA synchronised around the timer).

    ``checkpoint(state)`` is called with the whole training state (TrainState.to_dict) after
    every epoch and, when SIGINT or SIGTERM arrives, after the step in progress (then
    TrainingInterrupted is raised); ``resume=state`` continues from such a state to the same
    result as an uninterrupted run. A NaN or infinite loss raises NonFiniteLoss at the end of
    its epoch, before that epoch's checkpoint, so the last good one is kept. With ``ranks``
    (torch.distributed, see netgraph.train.distributed) each rank trains on its share of every batch."""
    config = replace(config, precision=resolve_precision(config.precision, data.train_labels.device))
    saved = TrainState.from_dict(resume) if resume is not None else None
    run = Training(model, data, config, augmentations, max_groups, parameter_options or {}, ranks, setup_time)
    first, skip = 1, 0
    if saved is not None:
        run.restore(saved)
        first, skip = saved.epoch, saved.skip
    elif run.stats:
        run.stats.record(0)  # the initial values
    model.train()
    run_epochs(run, first, skip, saved, on_step, on_epoch, checkpoint)
    result = run.result
    if math.isnan(result.test_acc):  # resumed from a checkpoint written after the last epoch
        final_evaluation(run)
    if run.device.type == "cuda":
        result.peak_memory_bytes = torch.cuda.max_memory_allocated(run.device)
    result.model = run.evaluated
    return result


def run_epochs(
    run: Training,
    first: int,
    skip: int,
    saved: Optional[TrainState],
    on_step: Optional[Callable[[int, int], None]],
    on_epoch: Optional[Callable[[EpochLog], None]],
    checkpoint: Optional[Callable[[Dict], None]],
) -> None:
    """Epochs ``first`` to the last (``skip`` steps of the first done before, when resuming
    ``saved`` mid-epoch), each ended by end_epoch; a stop signal ends the run after its epoch.
    Groups that stopped requiring a gradient past their ``until`` are trainable again after."""
    try:
        with _StopSignals(checkpoint is not None) as signals:
            for epoch in range(first, run.epochs + 1):
                resuming = saved if skip else None  # skip > 0 only when resuming mid-epoch
                if not resuming:
                    run.losses.zero_()
                    run.correct.zero_()
                epoch_time = run.epoch(
                    epoch,
                    skip,
                    resuming.generator if resuming else None,
                    on_step,
                    signals,
                    checkpoint,
                    resuming.epoch_elapsed if resuming else 0.0,
                )
                skip = 0
                end_epoch(run, epoch, epoch_time, on_epoch, checkpoint)
                if signals.received and epoch < run.epochs:
                    raise TrainingInterrupted(epoch + 1, 0, signals.received)
    finally:
        for group in run.groups:
            group.restore_grads()


def end_epoch(run: Training, epoch: int, epoch_time: float, on_epoch, checkpoint) -> None:
    """After epoch ``epoch``: its time counted, its losses read (the epoch's one read from the
    device) and checked, batch-norm statistics averaged over ranks, the test set evaluated
    (epoch_tests), the epoch's log entry handed on, the state checkpointed (timed apart)."""
    config, result, ranks = run.config, run.result, run.ranks
    result.train_time_s += epoch_time
    if ranks:
        from netgraph.train import distributed

        distributed.all_reduce_sum(run.losses, run.correct)
    loss_sum = run.losses.sum().item()
    if not math.isfinite(loss_sum):
        raise non_finite_loss(run, epoch, checkpoint is not None and epoch > 1)
    if ranks and not run.synced:  # synchronised statistics are the same on every rank
        from netgraph.train import distributed

        distributed.average_batch_norm_statistics(run.model, ranks.world)
        if run.evaluated is not run.model:
            distributed.average_batch_norm_statistics(run.evaluated, ranks.world)
    seen = run.steps_in(epoch) * config.batch_size
    test_acc, test_loss = epoch_tests(run, epoch)
    entry = EpochLog(
        epoch,
        run.schedule.at(run.step_count),
        loss_sum / seen,
        run.correct.item() / seen,
        test_loss,
        test_acc,
        epoch_time,
        result.train_time_s,
        run.stats.flush(run.steps_per_epoch) if run.stats else None,
        [g.optimizer.param_groups[g.index]["lr"] for g in run.groups],
    )
    result.log.append(entry)
    start = time.perf_counter()
    if on_epoch:
        on_epoch(entry)
    if checkpoint:
        checkpoint(run.state(epoch + 1, 0).to_dict())
    result.log_time_s += time.perf_counter() - start


def same_views(config: TrainConfig) -> bool:
    """Whether the per-epoch view is the final evaluation's (eval_view tta, or no train.tta)."""
    return config.eval_view == "tta" or not config.tta


def epoch_tests(run: Training, epoch: int) -> Tuple[Optional[float], Optional[float]]:
    """The epoch's test columns, (accuracy, loss) or (None, None): train.eval_view every
    train.eval_every epochs and after the last, timed as per-epoch evaluation. After the last
    epoch, the final evaluation with train.tta's views too; when the views are the same it is
    done once, its figures in the row (also with eval_every 0, as the final result)."""
    config, result = run.config, run.result
    last = epoch == run.epochs
    acc = loss = None
    due = config.eval_every > 0 and (epoch % config.eval_every == 0 or last)
    if due and not (last and same_views(config)):
        start = time.perf_counter()
        view = None if config.eval_view == "tta" else ()
        acc, loss = evaluate(
            run.evaluator, run.data.test_images, run.data.test_labels, config, run.ranks, view
        )
        synchronize(run.device)
        result.epoch_eval_time_s += time.perf_counter() - start
    if last:
        final_evaluation(run)
        if same_views(config):
            acc, loss = result.test_acc, result.test_loss
    return acc, loss


def final_evaluation(run: Training) -> None:
    """The trained (or averaged) model on the test set with train.tta's views, timed."""
    result = run.result
    start = time.perf_counter()
    result.test_acc, result.test_loss = evaluate(
        run.evaluator, run.data.test_images, run.data.test_labels, run.config, run.ranks
    )
    synchronize(run.device)
    result.eval_time_s = time.perf_counter() - start


def non_finite_loss(run: Training, epoch: int, kept: bool) -> NonFiniteLoss:
    """The error for a NaN or infinite loss: where it first appeared and at what learning rate."""
    bad = int((~torch.isfinite(run.losses)).nonzero()[0])
    bad_step = (epoch - 1) * run.steps_per_epoch + bad + 1
    return NonFiniteLoss(
        f"the training loss became {run.losses[bad].item()} at epoch {epoch}, step {bad_step} "
        f"(step {bad + 1} of {run.steps_in(epoch)} in the epoch), learning rate "
        f"{run.schedule.at(bad_step):.4g}; training stopped"
        + (
            "; the checkpoint of the last good epoch is kept, to look at: resumed with the same recipe "
            "it meets the same loss"
            if kept
            else ""
        ),
        hint="train afresh with a lower peak learning rate (train.lr.values), or float32 "
        "(train.precision) if float16 overflows; --resume takes only the recipe and --set "
        "options a checkpoint was written with",
    )

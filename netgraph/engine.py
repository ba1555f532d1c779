"""The training engine: a compiled module, data on the device, a plain config.

Read top to bottom: the config, the seed's optimizer, the moving average, the
loss, data preparation, evaluation, and the loop (test-time views: netgraph.views).
Nothing here knows about recipes or graphs (``netgraph.run`` wires those in).

Units follow the seed (ladder.md): learning rates and weight decay are given
for a loss averaged over the batch; with ``loss: sum`` (the seed's choice, a
built-in loss scaling for float16) the loss is summed and the learning rate
divided by the batch size, the weight decay multiplied by it, which is the
same update.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .augment import BatchGroupLoader, eval_batches
from .data import Dataset, normalizer, preprocess
from .distributed import Ranks
from .errors import RecipeError
from .executor import half_precision
from .schedule import PiecewiseLinear
from .views import TTA_VIEWS, ViewSpec, parse_tta, predict, register_view  # noqa: F401 (engine's names before views.py)

PRECISIONS = ("float32", "float16", "bfloat16")
# torch.compile's modes (reduce-overhead is left out: config.py says why)
COMPILE_MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    epochs: int = 24
    batch_size: int = 512
    lr_knots: Sequence = (0, 5, "epochs")  # epochs, or expressions such as "epochs/5"
    lr_values: Sequence[float] = (0.0, 0.4, 0.0)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss: str = "sum"  # "sum" (the seed) or "mean"
    label_smoothing: float = 0.0
    precision: str = "float32"  # float32, float16 (model in half, batch norm in float32), bfloat16 (autocast)
    ema_momentum: Optional[float] = None  # e.g. 0.99: average the weights (and BN statistics)
    ema_every: int = 5  # steps between moving-average updates (momentum ** every per update)
    # train.tta as written (netgraph.views.parse_tta reads it): views besides the image, e.g.
    # ["flip"], or {"views": [{"view": ..., "weight": ...}, ...]}, or "airbench"
    tta: Any = ()
    seed: int = 0
    eval_batch_size: int = 512
    eval_every_epoch: bool = True  # test accuracy in the per-epoch table (not timed)
    # [{"params": glob on parameter names, "lr_scale": ..., "wd_scale": ...}], later ones winning
    param_groups: Sequence[Dict] = ()
    log_params: int = 0  # every N steps, record batch-norm weight/bias statistics (0: off)
    # speed (README "Performance" measures each)
    channels_last: bool = False  # NHWC activations: tensor-core convolutions without transposes
    compile: str = "none"  # a COMPILE_MODES mode: torch.compile the model; compile time reported apart
    foreach: bool = True  # the optimizer update as fused multi-tensor kernels (False: a loop)
    # torch.distributed: batch norm over the global batch, not per rank (distributed.SyncBatchNorm)
    sync_batch_norm: bool = False

    def lr_schedule(self) -> PiecewiseLinear:
        return PiecewiseLinear.in_epochs(self.lr_knots, self.lr_values, self.epochs)


# --- the seed's optimizer --------------------------------------------------------

class NesterovSGD:
    """SGD with Nesterov momentum in the seed's form, per parameter::

        g = grad + wd * w;  g *= lr;  v = momentum * v + g;  w -= g + momentum * v

    The learning rate sits inside the momentum buffer, as in the seed (PyTorch's
    SGD applies it after). Parameter groups carry ``lr_scale`` and ``wd_scale``
    multipliers. The update runs as a few fused ``torch._foreach_*`` kernels per
    group instead of several kernels per parameter.
    """

    def __init__(self, groups: List[Dict], momentum: float, weight_decay: float,
                 foreach: bool = True):
        self.groups = [{"lr_scale": 1.0, "wd_scale": 1.0, **g, "params": list(g["params"])}
                       for g in groups]
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.foreach = foreach
        for g in self.groups:
            g["velocity"] = [torch.zeros_like(p) for p in g["params"]]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        if not self.foreach:
            return self._step_per_parameter(lr)
        for g in self.groups:
            pairs = [(p, v) for p, v in zip(g["params"], g["velocity"]) if p.grad is not None]
            if not pairs:
                continue
            params, velocity = [p for p, _ in pairs], [v for _, v in pairs]
            grads = torch._foreach_add([p.grad for p in params], params,
                                       alpha=self.weight_decay * g["wd_scale"])
            torch._foreach_mul_(grads, lr * g["lr_scale"])
            torch._foreach_mul_(velocity, self.momentum)
            torch._foreach_add_(velocity, grads)
            torch._foreach_add_(grads, velocity, alpha=self.momentum)
            torch._foreach_sub_(params, grads)

    def _step_per_parameter(self, lr: float) -> None:
        """The same update, a few kernels per parameter (for measuring what foreach saves)."""
        for g in self.groups:
            for p, v in zip(g["params"], g["velocity"]):
                if p.grad is None:
                    continue
                update = (p.grad + self.weight_decay * g["wd_scale"] * p) * (lr * g["lr_scale"])
                v.mul_(self.momentum).add_(update)
                p.sub_(update.add_(v, alpha=self.momentum))

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    def state_dict(self) -> Dict:
        return {"velocity": [list(g["velocity"]) for g in self.groups]}

    def load_state_dict(self, state: Dict) -> None:
        with torch.no_grad():
            for g, saved in zip(self.groups, state["velocity"], strict=True):
                for v, s in zip(g["velocity"], saved, strict=True):
                    v.copy_(s)


def parameter_groups(module: nn.Module, options: Dict[str, Dict[str, float]],
                     by_pattern: Sequence[Dict] = ()) -> List[Dict]:
    """Trainable parameters grouped by their (lr_scale, wd_scale) multipliers: those in
    ``options`` (by parameter name, as passes record them), then ``by_pattern`` items
    (``{"params": glob, "lr_scale", "wd_scale"}``, later items winning)."""
    from fnmatch import fnmatchcase
    groups: Dict[tuple, List] = {}
    used = set()
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        o = dict(options.get(name, {}))
        for i, pattern in enumerate(by_pattern):
            if fnmatchcase(name, pattern["params"]):
                used.add(i)
                o.update({k: pattern[k] for k in ("lr_scale", "wd_scale") if k in pattern})
        key = (o.get("lr_scale", 1.0), o.get("wd_scale", 1.0))
        groups.setdefault(key, []).append(p)
    for i, pattern in enumerate(by_pattern):
        if i not in used:
            warnings.warn(f"train.param_groups item {i + 1} ({pattern['params']!r}) matches no "
                          f"trainable parameter; names look like 'layer1.conv_bn.bn.bias'", stacklevel=2)
    return [{"params": ps, "lr_scale": lr, "wd_scale": wd} for (lr, wd), ps in groups.items()]


# --- exponential moving average --------------------------------------------------

class MovingAverage:
    """An averaged copy of a model: every floating-point entry of its state dict,
    so parameters and batch-norm running statistics alike (as the seed does),
    ``avg = rho * avg + (1 - rho) * current`` with ``rho = momentum ** every``
    each time it is updated (every ``every`` steps)."""

    def __init__(self, model: nn.Module, momentum: float, every: int):
        self.model = copy.deepcopy(model)
        self.rho = momentum ** every
        self.every = every
        self._pairs = [(a, b) for a, b in zip(self.model.state_dict().values(),
                                              model.state_dict().values()) if a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        averaged, current = [a for a, _ in self._pairs], [b for _, b in self._pairs]
        torch._foreach_mul_(averaged, self.rho)
        torch._foreach_add_(averaged, current, alpha=1 - self.rho)


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
        self.layers = [(name.replace(".", "/"), m) for name, m in model.named_modules()
                       if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
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
        for i, (name, m) in enumerate(self.layers):
            column = [[record[i][k] for record in table] for k in range(4)]
            layers[name] = {"weight_mean": column[0], "weight_std": column[1],
                            "bias_mean": column[2], "bias_std": column[3],
                            "weight_trainable": m.weight.requires_grad,
                            "bias_trainable": m.bias.requires_grad}
        entry = {"every": self.every, "steps_per_epoch": steps_per_epoch, "steps": self.steps,
                 "layers": layers}
        self.steps, self.records = [], []
        return entry


# --- loss (test-time views: netgraph.views) ---------------------------------------

def label_smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float,
                         reduction: str = "sum") -> torch.Tensor:
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


def to_device(data: Dataset, device, mean, std, pad: int, dtype,
              keep_uint8: bool = False, host: bool = False) -> DeviceData:
    """uint8 images to the device, then normalised and padded there, once; with
    ``keep_uint8`` the padded training set stays uint8 and batches are normalised; with
    ``host`` (data.placement: host) it stays uint8 in host memory, pinned for CUDA, and
    only the labels, the test set and the normalisation constants go to the device."""
    if host:
        padded = _pad_uint8(data.train_images, pad)
        padded = padded.pin_memory() if torch.device(device).type == "cuda" else padded
        test = preprocess(data.test_images.to(device), mean, std, pad=0, dtype=dtype)
        return DeviceData(padded, data.train_labels.to(device), test, data.test_labels.to(device), pad,
                          normalize=normalizer(mean, std, device, dtype), host=True)
    d = data.to(device)
    test = preprocess(d.test_images, mean, std, pad=0, dtype=dtype)
    if not keep_uint8:
        return DeviceData(preprocess(d.train_images, mean, std, pad=pad, dtype=dtype), d.train_labels,
                          test, d.test_labels, pad)
    padded = _pad_uint8(d.train_images, pad)
    return DeviceData(padded, d.train_labels, test, d.test_labels, pad,
                      normalize=normalizer(mean, std, padded.device, dtype))


def _pad_uint8(images: torch.Tensor, pad: int) -> torch.Tensor:
    # Reflect padding of integers is exact in float32; in chunks, so no full float copy is made.
    return torch.cat([F.pad(chunk.float(), (pad,) * 4, mode="reflect").to(torch.uint8) if pad else chunk
                      for chunk in images.split(4096)])


def input_dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "float16" else torch.float32


# --- evaluation -------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
             ranks: Optional[Ranks] = None):
    """(accuracy, mean loss) on the test images, in batches, with test-time views; with
    ranks, each rank evaluates every W-th image and the counts are summed over ranks."""
    was_training = model.training
    model.eval()
    n = len(images)
    if ranks:
        images, labels = images[ranks.rank::ranks.world], labels[ranks.rank::ranks.world]
    correct = torch.zeros((), device=images.device)
    loss = torch.zeros((), device=images.device)
    views = parse_tta(config.tta)  # once, not once a batch
    with _autocast(config.precision, images.device):
        for x, y in eval_batches(images, labels, config.eval_batch_size):
            logits = predict(model, _memory_format(x, config), views)
            correct += (logits.argmax(1) == y).sum()
            loss += F.cross_entropy(logits, y, reduction="sum")
    if ranks:
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

def compile_model(model: nn.Module, config: TrainConfig, example: torch.Tensor,
                  eval_shapes: Sequence[int]) -> tuple:
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
        label_smoothing_loss(out, torch.zeros(len(out), dtype=torch.long, device=device),
                             config.label_smoothing).backward()
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


@dataclass
class TrainResult:
    test_acc: float
    test_loss: float
    train_time_s: float  # set-up (data to device, preprocessing, passes) plus training
    eval_time_s: float  # the final evaluation
    epochs: int
    log: List[EpochLog] = field(default_factory=list)
    model: Optional[nn.Module] = None  # the evaluated model (the moving average if enabled)
    compile_time_s: float = 0.0  # torch.compile's warm-up, not in train_time_s
    peak_memory_bytes: Optional[int] = None  # CUDA only: the most allocated at once


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
        self._old = {}

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


STATE_FORMAT = "netgraph-train-state-1"


def train(model: nn.Module, data: DeviceData, config: TrainConfig, augmentations: Sequence = (),
          max_groups: int = 200, parameter_options: Optional[Dict] = None, setup_time: float = 0.0,
          on_epoch: Optional[Callable[[EpochLog], None]] = None,
          on_step: Optional[Callable[[int, int], None]] = None,
          checkpoint: Optional[Callable[[Dict], None]] = None, resume: Optional[Dict] = None,
          ranks: Optional[Ranks] = None) -> TrainResult:
    """Train ``model`` on ``data`` and evaluate it; times follow the seed's rule
    (training counted, evaluation not, CUDA synchronised around the timer).

    ``checkpoint(state)`` is called with the whole training state after every epoch and,
    when SIGINT or SIGTERM arrives, after the step in progress (then TrainingInterrupted
    is raised); ``resume=state`` continues from such a state to the same result as an
    uninterrupted run. A NaN or infinite loss raises NonFiniteLoss at the end of its
    epoch, before that epoch's checkpoint, so the last good one is kept. With ``ranks``
    (torch.distributed, see netgraph.distributed) each rank trains on its share of every
    batch."""
    device = data.train_labels.device  # the images stay on the host with data.placement: host
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synced = bool(ranks and ranks.world > 1 and config.sync_batch_norm)
    if synced:
        distributed.synchronise_batch_norm(model)
    if config.precision == "float16":
        half_precision(model, torch.float16)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    loader = BatchGroupLoader(data.train_padded, data.train_labels, config.batch_size, augmentations,
                              seed=config.seed, max_groups=max_groups, normalize=data.normalize,
                              device=device, host=data.host)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise RecipeError(f"the training set ({len(data.train_labels)} images) is smaller than one "
                          f"batch ({config.batch_size} images)", hint="use a smaller train.batch_size")
    summed = config.loss == "sum"
    batch_lr = (1.0 / config.batch_size) if summed else 1.0  # see the module docstring
    optimizer = NesterovSGD(parameter_groups(model, parameter_options or {}, config.param_groups),
                            config.momentum,
                            config.weight_decay * (config.batch_size if summed else 1.0),
                            foreach=config.foreach)
    schedule = config.lr_schedule()
    average = MovingAverage(model, config.ema_momentum, config.ema_every) \
        if config.ema_momentum else None
    evaluated = average.model if average else model
    stats = ParamStats(model, config.log_params) if config.log_params else None
    if stats and not stats.layers:
        warnings.warn("train.log_params: the model has no batch-norm layers, nothing to record",
                      stacklevel=2)
        stats = None
    # DistributedDataParallel averages gradients over ranks; a summed loss wants their sum.
    loss_scale = float(ranks.world) if ranks and summed else 1.0
    # With one rank there is nothing to all-reduce: DistributedDataParallel alone cost 10-12% of
    # the epoch on an H100 (bench/results/bag_of_tricks_{eager,compile}_h100.json), so it is left out.
    net = distributed.wrap(model, device) if ranks and ranks.world > 1 else model
    rank_batch = distributed.check_batch(config.batch_size, ranks) if ranks else config.batch_size
    forward, compile_time = net, 0.0
    if config.compile != "none":
        example = data.test_images[:rank_batch]
        n_test = len(data.test_images) // (ranks.world if ranks else 1)
        eval_shapes = sorted({min(config.eval_batch_size, n_test), n_test % config.eval_batch_size} - {0})
        forward, compile_time = compile_model(net, config, example, eval_shapes)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # compilation's own workspace is not training's
    result = TrainResult(math.nan, math.nan, setup_time, 0.0, config.epochs, compile_time_s=compile_time)
    step, first_epoch, skip = 0, 1, 0
    if resume is not None:
        step, first_epoch, skip = _restore(resume, model, optimizer, average, stats, loader, result)
    elif stats:
        stats.record(0)  # the initial values
    model.train()
    losses = torch.zeros(steps_per_epoch, device=device)  # per step, on the device: no sync per step
    correct = torch.zeros((), device=device)
    lr = schedule(step / steps_per_epoch)
    with _StopSignals(checkpoint is not None) as signals:
        for epoch in range(first_epoch, config.epochs + 1):
            epoch_state = resume["epoch_state"] if resume is not None and skip else None
            elapsed = resume["epoch_elapsed"] if resume is not None and skip else 0.0
            if skip:
                losses.copy_(resume["epoch_losses"])
                correct.fill_(resume["epoch_correct"])
            else:
                losses.zero_()
                correct.zero_()
            synchronize(device)
            start = time.perf_counter()
            for i, (x, y) in enumerate(loader.epoch(epoch_state, skip, epoch), start=skip):
                if ranks:
                    x, y = x[ranks.rank::ranks.world], y[ranks.rank::ranks.world]
                # step k (1-based) uses the rate at k / steps_per_epoch, as the seed reads its
                # schedule after counting the step (at 0, step 1 would use lr 0 and change nothing)
                lr = schedule((step + 1) / steps_per_epoch)
                with _autocast(config.precision, device):
                    logits = forward(_memory_format(x, config))
                loss = label_smoothing_loss(logits, y, config.label_smoothing,
                                            "sum" if summed else "mean")
                (loss * loss_scale if loss_scale != 1 else loss).backward()
                optimizer.step(lr * batch_lr)
                optimizer.zero_grad()
                step += 1
                if average and step % average.every == 0:
                    average.update()
                if stats and step % stats.every == 0:
                    stats.record(step)
                losses[i] = loss.detach() * (1 if summed else len(y))
                correct += (logits.detach().argmax(1) == y).sum()
                if on_step:
                    on_step(i + 1, steps_per_epoch)
                if signals.received and i + 1 < steps_per_epoch:
                    synchronize(device)
                    if checkpoint:
                        checkpoint(_state(model, optimizer, average, stats, loader, result, step,
                                          epoch, i + 1, losses, correct,
                                          elapsed + time.perf_counter() - start))
                    raise TrainingInterrupted(epoch, i + 1, signals.received)
            skip = 0
            synchronize(device)
            epoch_time = elapsed + time.perf_counter() - start
            result.train_time_s += epoch_time
            if ranks:
                distributed.all_reduce_sum(losses, correct)
            loss_sum = losses.sum().item()  # the epoch's one read from the device
            if not math.isfinite(loss_sum):
                bad = int((~torch.isfinite(losses)).nonzero()[0])
                bad_step = (epoch - 1) * steps_per_epoch + bad + 1
                raise NonFiniteLoss(
                    f"the training loss became {losses[bad].item()} at epoch {epoch}, step {bad_step} "
                    f"(step {bad + 1} of {steps_per_epoch} in the epoch), learning rate "
                    f"{schedule(bad_step / steps_per_epoch):.4g}; training stopped" +
                    ("; the checkpoint of the last good epoch is kept" if checkpoint and epoch > 1 else ""),
                    hint="lower the peak learning rate (train.lr.values), or use float32 "
                         "(train.precision) if float16 overflows")
            if ranks and not synced:  # synchronised statistics are the same on every rank
                distributed.average_batch_norm_statistics(model, ranks.world)
                if average:
                    distributed.average_batch_norm_statistics(average.model, ranks.world)
            seen = steps_per_epoch * config.batch_size
            test_acc = test_loss = None
            if config.eval_every_epoch or epoch == config.epochs:
                start = time.perf_counter()
                test_acc, test_loss = evaluate(_evaluator(evaluated, forward, average, config), data.test_images,
                                               data.test_labels, config, ranks)
                synchronize(device)
                if epoch == config.epochs:
                    result.eval_time_s = time.perf_counter() - start
            entry = EpochLog(epoch, lr, loss_sum / seen, correct.item() / seen, test_loss,
                             test_acc, epoch_time, result.train_time_s,
                             stats.flush(steps_per_epoch) if stats else None)
            result.log.append(entry)
            if on_epoch:
                on_epoch(entry)
            if checkpoint:
                checkpoint(_state(model, optimizer, average, stats, loader, result, step, epoch + 1, 0))
            if signals.received and epoch < config.epochs:
                raise TrainingInterrupted(epoch + 1, 0, signals.received)
    if device.type == "cuda":
        result.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
    result.test_acc, result.test_loss = result.log[-1].test_acc, result.log[-1].test_loss
    result.model = evaluated
    return result


def _evaluator(evaluated: nn.Module, forward: Callable, average, config: TrainConfig) -> Callable:
    """The compiled forward when it is the model evaluated; the moving average runs eagerly."""
    return forward if config.compile != "none" and not average else evaluated


def _state(model, optimizer, average, stats, loader, result, step, epoch, skip, losses=None,
           correct=None, elapsed=0.0) -> Dict:
    """Everything training needs to go on from here: tensors and plain data only, so it
    loads with ``torch.load(weights_only=True)``. ``epoch`` is the epoch to run next (or in
    progress, with ``skip`` of its batches done)."""
    cpu = lambda t: t.detach().cpu().clone()  # noqa: E731
    return {
        "format": STATE_FORMAT, "step": step, "epoch": epoch, "skip": skip,
        "model": {k: cpu(v) for k, v in model.state_dict().items()},
        "optimizer": {"velocity": [[cpu(v) for v in g] for g in optimizer.state_dict()["velocity"]]},
        "average": {k: cpu(v) for k, v in average.model.state_dict().items()} if average else None,
        "stats": {"steps": list(stats.steps), "records": [cpu(r) for r in stats.records]} if stats else None,
        # the generator as this epoch began (mid-epoch) or as the next will begin
        "epoch_state": loader.epoch_state if skip else loader.generator.get_state(),
        "epoch_losses": cpu(losses) if skip else None,
        "epoch_correct": float(correct.item()) if skip else 0.0,
        "epoch_elapsed": elapsed,
        "train_time_s": result.train_time_s,
        "log": [asdict(e) for e in result.log],
    }


def _restore(state: Dict, model, optimizer, average, stats, loader, result) -> tuple:
    if state.get("format") != STATE_FORMAT:
        raise RecipeError("not a netgraph training state", hint="resume from a file netgraph train wrote")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if average:
        average.model.load_state_dict(state["average"])
    if stats and state.get("stats"):
        device = next(model.parameters()).device
        stats.steps = list(state["stats"]["steps"])
        stats.records = [r.to(device) for r in state["stats"]["records"]]
    loader.generator.set_state(state["epoch_state"])
    result.train_time_s = state["train_time_s"]
    result.log = [EpochLog(**e) for e in state["log"]]
    return state["step"], state["epoch"], state["skip"]

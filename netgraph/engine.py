"""The training engine: a compiled module, data on the device, a plain config.

Read top to bottom: the config, the seed's optimizer, the moving average, the
loss, test-time augmentation, data preparation, evaluation, and the loop.
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
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .augment import BatchGroupLoader, eval_batches
from .data import Dataset, preprocess
from .errors import RecipeError
from .executor import half_precision
from .schedule import PiecewiseLinear

PRECISIONS = ("float32", "float16", "bfloat16")


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
    tta: Sequence[str] = ()  # test-time views besides the image itself, e.g. ("flip",)
    seed: int = 0
    eval_batch_size: int = 512
    eval_every_epoch: bool = True  # test accuracy in the per-epoch table (not timed)
    # [{"params": glob on parameter names, "lr_scale": ..., "wd_scale": ...}], later ones winning
    param_groups: Sequence[Dict] = ()
    log_params: int = 0  # every N steps, record batch-norm weight/bias statistics (0: off)

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

    def __init__(self, groups: List[Dict], momentum: float, weight_decay: float):
        self.groups = [{"lr_scale": 1.0, "wd_scale": 1.0, **g, "params": list(g["params"])}
                       for g in groups]
        self.momentum = momentum
        self.weight_decay = weight_decay
        for g in self.groups:
            g["velocity"] = [torch.zeros_like(p) for p in g["params"]]

    @torch.no_grad()
    def step(self, lr: float) -> None:
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

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None


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


# --- loss and test-time augmentation ---------------------------------------------

def label_smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float,
                         reduction: str = "sum") -> torch.Tensor:
    """(1 - s) x cross-entropy + s x the mean over classes of -log p, per image."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction=reduction)


TTA_VIEWS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "flip": lambda x: x.flip(3),  # the horizontal mirror
}


def predict(model: nn.Module, x: torch.Tensor, tta: Sequence[str] = ()) -> torch.Tensor:
    """Logits averaged over the image and each test-time view of it."""
    logits = model(x).float()
    for view in tta:
        logits = logits + model(TTA_VIEWS[view](x)).float()
    return logits / (1 + len(tta))


# --- data on the device ----------------------------------------------------------

@dataclass
class DeviceData:
    """Normalised images on the device: training images padded for cropping."""
    train_padded: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pad: int

    @property
    def train_images(self) -> torch.Tensor:
        """The unpadded training images (a view, no copy)."""
        p = self.pad
        return self.train_padded[:, :, p:-p, p:-p] if p else self.train_padded


def to_device(data: Dataset, device, mean, std, pad: int, dtype) -> DeviceData:
    """uint8 images to the device, then normalised and padded there, once."""
    d = data.to(device)
    return DeviceData(preprocess(d.train_images, mean, std, pad=pad, dtype=dtype), d.train_labels,
                      preprocess(d.test_images, mean, std, pad=0, dtype=dtype), d.test_labels, pad)


def input_dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "float16" else torch.float32


# --- evaluation -------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig):
    """(accuracy, mean loss) on the test images, in batches, with test-time views."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=images.device)
    loss = torch.zeros((), device=images.device)
    with _autocast(config.precision, images.device):
        for x, y in eval_batches(images, labels, config.eval_batch_size):
            logits = predict(model, x, config.tta)
            correct += (logits.argmax(1) == y).sum()
            loss += F.cross_entropy(logits, y, reduction="sum")
    model.train(was_training)
    n = len(images)
    return correct.item() / n, loss.item() / n


def _autocast(precision: str, device):
    enabled = precision == "bfloat16"
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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


def train(model: nn.Module, data: DeviceData, config: TrainConfig, augmentations: Sequence = (),
          max_groups: int = 200, parameter_options: Optional[Dict] = None, setup_time: float = 0.0,
          on_epoch: Optional[Callable[[EpochLog], None]] = None,
          on_step: Optional[Callable[[int, int], None]] = None) -> TrainResult:
    """Train ``model`` on ``data`` and evaluate it; times follow the seed's rule
    (training counted, evaluation not, CUDA synchronised around the timer)."""
    device = data.train_padded.device
    torch.manual_seed(config.seed)
    if config.precision == "float16":
        half_precision(model, torch.float16)
    loader = BatchGroupLoader(data.train_padded, data.train_labels, config.batch_size, augmentations,
                              seed=config.seed, max_groups=max_groups)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise RecipeError(f"the training set ({len(data.train_labels)} images) is smaller than one "
                          f"batch ({config.batch_size} images)", hint="use a smaller train.batch_size")
    summed = config.loss == "sum"
    batch_lr = (1.0 / config.batch_size) if summed else 1.0  # see the module docstring
    optimizer = NesterovSGD(parameter_groups(model, parameter_options or {}, config.param_groups),
                            config.momentum,
                            config.weight_decay * (config.batch_size if summed else 1.0))
    schedule = config.lr_schedule()
    average = MovingAverage(model, config.ema_momentum, config.ema_every) \
        if config.ema_momentum else None
    evaluated = average.model if average else model
    stats = ParamStats(model, config.log_params) if config.log_params else None
    if stats and not stats.layers:
        warnings.warn("train.log_params: the model has no batch-norm layers, nothing to record",
                      stacklevel=2)
        stats = None
    if stats:
        stats.record(0)  # the initial values
    result = TrainResult(math.nan, math.nan, setup_time, 0.0, config.epochs)
    step = 0
    model.train()
    for epoch in range(1, config.epochs + 1):
        synchronize(device)
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)  # statistics stay on the device: no sync per step
        correct = torch.zeros((), device=device)
        seen = 0
        for x, y in loader:
            lr = schedule(step / steps_per_epoch)
            with _autocast(config.precision, device):
                logits = model(x)
            loss = label_smoothing_loss(logits, y, config.label_smoothing,
                                        "sum" if summed else "mean")
            loss.backward()
            optimizer.step(lr * batch_lr)
            optimizer.zero_grad()
            step += 1
            if average and step % average.every == 0:
                average.update()
            if stats and step % stats.every == 0:
                stats.record(step)
            loss_sum += loss.detach() * (1 if summed else len(y))
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if on_step:
                on_step(step - (epoch - 1) * steps_per_epoch, steps_per_epoch)
        synchronize(device)
        epoch_time = time.perf_counter() - start
        result.train_time_s += epoch_time
        test_acc = test_loss = None
        if config.eval_every_epoch or epoch == config.epochs:
            start = time.perf_counter()
            test_acc, test_loss = evaluate(evaluated, data.test_images, data.test_labels, config)
            synchronize(device)
            if epoch == config.epochs:
                result.eval_time_s = time.perf_counter() - start
        entry = EpochLog(epoch, lr, loss_sum.item() / seen, correct.item() / seen, test_loss,
                         test_acc, epoch_time, result.train_time_s,
                         stats.flush(steps_per_epoch) if stats else None)
        result.log.append(entry)
        if on_epoch:
            on_epoch(entry)
    result.test_acc, result.test_loss = result.log[-1].test_acc, result.log[-1].test_loss
    result.model = evaluated
    return result

"""The bag of tricks' final recipe trained by an independent loop: plain PyTorch and numpy,
not importing netgraph, written from Page's article and ../shared/docs/ladder.md in the
original loop's form, so that netgraph's training can be compared with it seed for seed.

    python tools/reference_train.py --data-dir ../shared/data/cifar10-subset --width 16 32 64 128 \\
        --batch 128 --epochs 10 --seed 0

What it does, in the original's form (ladder.md, "Shared settings", steps 2b-9 and "Checked
against the original code"):
- data: the CIFAR-10 binary layout, normalised with the published mean and std, training
  images reflect-padded by 4 once;
- augmentation per epoch, per augmentation (crop 32 of 40, flip): the data shuffled and cut
  into k contiguous groups, k = the number of choices (capped at 200, drawn at random), one
  choice per group; then shuffled into batches, the last partial one dropped;
- network: whitening stem (fixed 3x3 PCA filters of 10,000 training images' patches, each
  v_i / sqrt(lambda_i + 0.01), then a 1x1 conv, BN, CELU), conv-pool-BN-CELU(0.3) layers
  with residuals, ghost batch norm (splits of 32 images, interleaved as the original's
  view does), batch-norm weights frozen at 1, max-pool head, linear without bias x 0.0625;
- loss: label smoothing 0.2, summed over the batch;
- update: Nesterov with the learning rate inside the velocity, per parameter
  g = -lr (grad + wd w); v = mom v + g; w += g + mom v, lr = schedule / batch,
  wd = 5e-4 x batch, batch-norm biases lr x 64 and wd / 64; step k (1-based) of an epoch
  reads the schedule at (epoch + k / steps) (the step is counted first);
- moving average: momentum 0.99 every 5 steps (0.99^5 an update) of every float in the
  state dict (batch-norm statistics included), the counter restarted each epoch (updates
  after steps 1, 6, 11, ...); evaluated in place of the weights;
- ghost batch norm of the averaged model: the splits' statistics are averaged only when
  the module switches from training to evaluation, so from the second evaluation the
  averaged model uses split 0's statistics (``--ghost-eval mean`` averages them each time);
- evaluation: the mean of the logits of each test image and its mirror, after every epoch
  (not timed), as the original's table.
Prints one JSON line per run (test accuracy, loss, time), appended to ``--log`` if given.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = np.array([125.31, 122.95, 113.87], np.float32)
STD = np.array([62.99, 62.09, 66.70], np.float32)


# --- data ------------------------------------------------------------------------------------


def read_batches(folder: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) from the binary layout."""
    folder = Path(folder)
    folder = folder / "cifar-10-batches-bin" if (folder / "cifar-10-batches-bin").is_dir() else folder

    def read(path):
        raw = np.fromfile(path, np.uint8).reshape(-1, 1 + 3 * 32 * 32)
        return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)

    train = [read(p) for p in sorted(folder.glob("data_batch_*.bin"))]
    x_test, y_test = read(folder / "test_batch.bin")
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)


def normalise(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((x.astype(np.float32) - MEAN[:, None, None]) / STD[:, None, None])


def group_choices(n: int, choices: int, generator: torch.Generator, cap: int = 200) -> torch.Tensor:
    """One choice per image: a shuffled data set cut into k contiguous groups, one choice each."""
    k = min(choices, cap)
    picked = torch.randperm(choices, generator=generator)[:k] if choices > cap else torch.arange(k)
    order = torch.randperm(n, generator=generator)
    out = torch.empty(n, dtype=torch.long)
    for group, part in enumerate(torch.tensor_split(order, k)):
        out[part] = picked[group]
    return out


def augment(padded: torch.Tensor, generator: torch.Generator, size: int = 32) -> torch.Tensor:
    """Crop (81 offsets of a 40x40 image) then flip (2), each drawn per group as above."""
    n, _, h, w = padded.shape
    offsets = (h - size + 1) * (w - size + 1)
    crop = group_choices(n, offsets, generator)
    out = torch.empty(n, padded.shape[1], size, size)
    for choice in crop.unique().tolist():  # one slice per offset: a handful of large copies
        rows = (crop == choice).nonzero().flatten()
        y, x = divmod(choice, w - size + 1)
        out[rows] = padded[rows, :, y : y + size, x : x + size]
    flip = group_choices(n, 2, generator).bool()
    out[flip] = out[flip].flip(3)
    return out


# --- the network -----------------------------------------------------------------------------


class GhostBatchNorm(nn.BatchNorm2d):
    """The original's: running statistics per split, collated on a train-to-eval switch only
    (``collate_each_eval`` collates at every evaluation instead)."""

    def __init__(self, c: int, splits: int, collate_each_eval: bool = False):
        super().__init__(c, eps=1e-5, momentum=0.1)
        self.splits, self.collate_each_eval = splits, collate_each_eval
        self.register_buffer("running_mean", torch.zeros(c * splits))
        self.register_buffer("running_var", torch.ones(c * splits))
        self.weight.requires_grad_(False)  # frozen at 1 (step 6)

    def collate(self):
        c, s = self.num_features, self.splits
        self.running_mean = self.running_mean.view(s, c).mean(0).repeat(s)
        self.running_var = self.running_var.view(s, c).mean(0).repeat(s)

    def train(self, mode: bool = True):
        if self.training and not mode:
            self.collate()
        return super().train(mode)

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.splits
        if self.training:
            return F.batch_norm(
                x.view(-1, c * s, h, w),
                self.running_mean,
                self.running_var,
                self.weight.repeat(s),
                self.bias.repeat(s),
                True,
                self.momentum,
                self.eps,
            ).view(n, c, h, w)
        return F.batch_norm(
            x,
            self.running_mean[:c],
            self.running_var[:c],
            self.weight,
            self.bias,
            False,
            self.momentum,
            self.eps,
        )


class Net(nn.Module):
    def __init__(self, widths: List[int], whitening: torch.Tensor, splits: int, collate_each_eval: bool):
        super().__init__()
        bn = lambda c: GhostBatchNorm(c, splits, collate_each_eval)  # noqa: E731
        c0, c1, c2, c3 = widths
        self.whiten = nn.Conv2d(3, whitening.shape[0], 3, padding=1, bias=False)
        self.whiten.weight.data.copy_(whitening)
        self.whiten.weight.requires_grad_(False)
        self.prep = nn.Sequential(nn.Conv2d(whitening.shape[0], c0, 1, bias=False), bn(c0), nn.CELU(0.3))
        block = lambda a, b, pool: nn.Sequential(  # noqa: E731
            nn.Conv2d(a, b, 3, padding=1, bias=False),
            *([nn.MaxPool2d(2)] if pool else []),
            bn(b),
            nn.CELU(0.3),
        )
        self.layer1, self.res1 = (
            block(c0, c1, True),
            nn.Sequential(block(c1, c1, False), block(c1, c1, False)),
        )
        self.layer2 = block(c1, c2, True)
        self.layer3, self.res3 = (
            block(c2, c3, True),
            nn.Sequential(block(c3, c3, False), block(c3, c3, False)),
        )
        self.fc = nn.Linear(c3, 10, bias=False)

    def forward(self, x):
        x = self.prep(self.whiten(x))
        x = self.layer1(x)
        x = x + self.res1(x)
        x = self.layer3(self.layer2(x))
        x = x + self.res3(x)
        return self.fc(F.adaptive_max_pool2d(x, 1).flatten(1)) * 0.0625


def whitening_filters(images: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """PCA whitening of 3x3 patches (not mean-centred), float64 eigen-solver, largest first."""
    patches = F.unfold(images.double(), 3).transpose(1, 2).reshape(-1, 27)
    covariance = patches.T @ patches / (len(patches) - 1)
    values, vectors = torch.linalg.eigh(covariance)
    values, vectors = values.flip(0), vectors.flip(1)
    return (vectors.T / torch.sqrt(values.clamp(min=0) + eps)[:, None]).reshape(27, 3, 3, 3).float()


# --- training --------------------------------------------------------------------------------


def lr_at(epoch: float, knots: List[float], values: List[float]) -> float:
    return float(np.interp(epoch, knots, values))


def nesterov_step(params: List[Tuple[torch.Tensor, torch.Tensor, float, float]], momentum: float) -> None:
    """(weight, velocity, lr, wd) per parameter: the original's update, lr inside the velocity."""
    with torch.no_grad():
        for w, v, lr, wd in params:
            g = (w.grad + wd * w) * -lr
            v.mul_(momentum).add_(g)
            w.add_(g + momentum * v)


def smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.2) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)
    return ((1 - smoothing) * nll - smoothing * logp.mean(dim=1)).sum()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> Tuple[float, float]:
    model.eval()
    for m in model.modules():
        if isinstance(m, GhostBatchNorm) and m.collate_each_eval:
            m.collate()
    logits = torch.cat([(model(part) + model(part.flip(3))) / 2 for part in x.split(batch)])
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def train(args) -> Dict:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x_train, y_train, x_test, y_test = read_batches(args.data_dir)
    train_images = normalise(x_train)
    test_images, y_test_t = normalise(x_test), torch.from_numpy(y_test)
    padded = F.pad(train_images, (4, 4, 4, 4), mode="reflect")
    labels = torch.from_numpy(y_train)
    model = Net(
        args.width, whitening_filters(train_images[:10000]), args.batch // 32, args.ghost_eval == "mean"
    )
    ema = copy.deepcopy(model)
    b = args.batch
    groups = []  # (weight, velocity, lr multiplier, wd); batch-norm biases lr x64, wd /64
    for name, w in model.named_parameters():
        if w.requires_grad:
            bias = name.endswith("bias")
            groups.append((w, torch.zeros_like(w), 64.0 if bias else 1.0, 5e-4 * b / (64 if bias else 1)))
    steps = len(labels) // b
    knots = [0, args.epochs / 5, args.epochs - 2]
    rho = 0.99**5
    train_time, curve, start = 0.0, [], time.perf_counter()
    for epoch in range(args.epochs):
        x = augment(padded, generator)
        order = torch.randperm(len(labels), generator=generator)
        model.train()
        for k in range(steps):
            index = order[k * b : (k + 1) * b]
            loss = smoothed_loss(model(x[index]), labels[index])
            for w, _, _, _ in groups:
                w.grad = None
            loss.backward()
            # the original counts the step, then reads the schedule; "before" reads it first
            phase = k + 1 if args.lr_phase == "after" else k
            lr = lr_at(epoch + phase / steps, knots, [0, 1.0, 0.1]) / b
            nesterov_step([(w, v, lr * scale, wd) for w, v, scale, wd in groups], 0.9)
            # the original's counter restarts each epoch (after its steps 1, 6, 11, ...);
            # "global" counts across epochs (after steps 5, 10, ... of the whole run)
            if (k % 5 == 0) if args.ema_counter == "epoch" else ((epoch * steps + k + 1) % 5 == 0):
                with torch.no_grad():
                    for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
                        if e.is_floating_point():
                            e.mul_(rho).add_(m, alpha=1 - rho)
        train_time += time.perf_counter() - start
        # evaluated every epoch, as the original's table: its first switch to evaluation is
        # what collates the averaged model's ghost statistics (see GhostBatchNorm)
        acc, loss = evaluate(ema, test_images, y_test_t)
        curve.append(round(acc, 4))
        start = time.perf_counter()
    return {
        "tool": "tools/reference_train.py",
        "seed": args.seed,
        "test_acc": acc,
        "test_loss": loss,
        "train_time_s": train_time,
        "test_acc_by_epoch": curve,
        "epochs": args.epochs,
        "batch": b,
        "width": args.width,
        "ghost_eval": args.ghost_eval,
        "lr_phase": args.lr_phase,
        "ema_counter": args.ema_counter,
        "train_images": len(labels),
        "test_images": len(y_test),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a folder in the CIFAR-10 binary layout")
    parser.add_argument("--width", type=int, nargs=4, default=[64, 128, 256, 512])
    parser.add_argument("--batch", type=int, default=512, help="a multiple of 32 (the ghost splits' size)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    # the original's timing details, each switchable to the other legitimate choice
    parser.add_argument(
        "--ghost-eval",
        choices=("original", "mean"),
        default="original",
        help="the averaged model's ghost statistics: collated once (original) or each evaluation",
    )
    parser.add_argument(
        "--lr-phase",
        choices=("after", "before"),
        default="after",
        help="step k reads the schedule at k/steps (after: the original) or (k-1)/steps",
    )
    parser.add_argument(
        "--ema-counter",
        choices=("epoch", "global"),
        default="epoch",
        help="the every-5-steps counter restarts each epoch (the original) or runs on",
    )
    parser.add_argument("--log", type=Path, help="append the result as a JSON line")
    args = parser.parse_args(argv)
    if args.batch % 32 or args.epochs < 3:
        parser.error("--batch must be a multiple of 32 and --epochs at least 3 (the schedule's knots)")
    result = train(args)
    line = json.dumps(result)
    print(line)
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Averaging of the weights during training, registered by kind (``train.average``).

- ``ema``: a moving average kept beside the model and evaluated instead of it (the
  bag of tricks'; ``train.ema`` is its short form);
- ``lookahead``: every ``every`` steps the average moves toward the weights and is
  written back into them, with a decay that ramps up over training; at the last step
  the weights become the average (airbench94's).

Both cover every floating-point entry of the model's state dict, so the batch-norm
running statistics are averaged with the weights, as the anchors do. An averaging
object has ``after_step(step, total_steps)`` (step is 1-based, called after each
optimizer step), ``evaluated`` (the module to evaluate), ``state_dict()`` and
``load_state_dict()``. A build parameter called ``steps_per_epoch`` receives the run's
steps an epoch.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from netgraph.core.registry import Registry
from netgraph.core.schema import Param

# An averaging kind is a plain Part: ``function(model, **params)`` makes it.
AVERAGING = Registry("averaging", "averaging", "netgraph.register_averaging")


def register_averaging(name: str, *, params: Optional[Dict[str, Any]] = None, replace: bool = False):
    """Register an averaging kind; decorate ``build(model, **params)``, which returns an object
    with ``after_step(step, total_steps)``, ``evaluated``, ``state_dict()`` and
    ``load_state_dict(state)`` (see the module docstring). A recipe names it with
    ``train.average: {name: {key: value}}``."""
    return AVERAGING.decorator(name, params=params, replace=replace)


def _float_entries(model: nn.Module) -> List[torch.Tensor]:
    """The model's floating-point state (weights and batch-norm statistics), as views."""
    return [v for v in model.state_dict().values() if v.is_floating_point()]


class MovingAverage:
    """An averaged copy of a model, ``avg = rho * avg + (1 - rho) * current`` with
    ``rho = momentum ** every`` every ``every`` steps; the copy is evaluated.

    ``counter``: ``run`` counts the steps of the whole run (updates after steps every,
    2 every, ...); ``epoch`` restarts the count each epoch, as the bag of tricks' original
    loop does (updates after steps 1, 1 + every, ... of each epoch: 7 an epoch of 31 steps
    against 6.2, so the average lags the weights less; tools/fidelity_study.py measured
    what that does)."""

    def __init__(
        self,
        model: nn.Module,
        momentum: float,
        every: int,
        counter: str = "run",
        steps_per_epoch: Optional[int] = None,
    ):
        if counter == "epoch" and not steps_per_epoch:
            raise ValueError("a moving average counted per epoch needs steps_per_epoch")
        self.model = copy.deepcopy(model)
        self.rho = momentum**every
        self.every, self.counter, self.steps_per_epoch = every, counter, steps_per_epoch
        self._pairs = [
            (a, b)
            for a, b in zip(self.model.state_dict().values(), model.state_dict().values())
            if a.is_floating_point()
        ]

    @property
    def evaluated(self) -> nn.Module:
        return self.model

    @torch.no_grad()
    def update(self) -> None:
        averaged, current = [a for a, _ in self._pairs], [b for _, b in self._pairs]
        torch._foreach_mul_(averaged, self.rho)
        torch._foreach_add_(averaged, current, alpha=1 - self.rho)

    def after_step(self, step: int, total_steps: int) -> None:
        if self.counter == "run":
            due = step % self.every == 0
        else:  # the step's place in its epoch, from 0
            assert self.steps_per_epoch is not None  # __init__ refuses counter epoch without it
            due = (step - 1) % self.steps_per_epoch % self.every == 0
        if due:
            self.update()

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


@register_averaging(
    "ema",
    params={
        "momentum": Param(float, 0.99, positive=True),
        "every": Param(int, 5, positive=True),
        "counter": Param(str, "run", choices=("run", "epoch")),
    },
)
def _ema(
    model: nn.Module,
    momentum: float = 0.99,
    every: int = 5,
    counter: str = "run",
    steps_per_epoch: Optional[int] = None,
) -> MovingAverage:
    """A moving average of the weights, updated every `every` steps with momentum^every, evaluated;
    counter: epoch restarts the count each epoch (the bag of tricks' original loop)."""
    if not momentum < 1:
        raise ValueError(f"ema momentum must be below 1, got {momentum}")
    return MovingAverage(model, momentum, every, counter, steps_per_epoch)


class Lookahead:
    """airbench94's lookahead: every ``every`` steps, with d = decay^every (step / total)^power,
    ``avg <- avg + (1 - d) (w - avg)`` and then ``w <- avg``; after the last step ``w <- avg``.
    The average starts as the model's initial state. Early in training d is near 0 and the
    average follows the weights; near the end it holds 0.95^5 = 0.77 of itself each time."""

    def __init__(self, model: nn.Module, every: int, decay: float, power: float):
        self.model, self.every, self.decay, self.power = model, every, decay, power
        self._current = _float_entries(model)
        self.average = [v.detach().clone() for v in self._current]

    @property
    def evaluated(self) -> nn.Module:
        return self.model

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        if step % self.every == 0:
            d = self.decay**self.every * (step / total_steps) ** self.power
            torch._foreach_lerp_(self.average, self._current, 1 - d)
            torch._foreach_copy_(self._current, self.average)
        if step >= total_steps:
            torch._foreach_copy_(self._current, self.average)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {str(i): v for i, v in enumerate(self.average)}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        if len(state) != len(self.average):
            raise ValueError(f"a lookahead state of {len(state)} tensors for a model of {len(self.average)}")
        with torch.no_grad():
            for i, v in enumerate(self.average):
                v.copy_(state[str(i)])


@register_averaging(
    "lookahead",
    params={
        "every": Param(int, 5, positive=True),
        "decay": Param(float, 0.95, nonnegative=True),
        "power": Param(float, 3.0, nonnegative=True),
    },
)
def _lookahead(model: nn.Module, every: int = 5, decay: float = 0.95, power: float = 3.0) -> Lookahead:
    """Every `every` steps the average moves toward the weights and is written back (airbench94)."""
    return Lookahead(model, every, decay, power)

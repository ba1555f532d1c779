"""Optimizers as ``torch.optim.Optimizer`` subclasses, registered by name, one per
parameter group of a recipe (``train.optimizer``, ``train.param_groups[i].optimizer``).

Built in:

- ``bag_of_tricks``: SGD with Nesterov momentum in the bag of tricks' form, the
  learning rate inside the momentum buffer (the default; bit-identical to netgraph's
  update before optimizers were registered);
- ``sgd``: ``torch.optim.SGD`` (learning rate outside the buffer; Nesterov, foreach,
  fused as torch offers them), the records' optimizer for biases and the head;
- ``muon``: airbench94_muon's Muon for conv filters: Nesterov momentum, each filter
  viewed as an out x (in k k) matrix and orthogonalised by a few quintic Newton-Schulz
  iterations, the weight renormalised to norm sqrt(out) before each step.

An optimizer's update is *linear* when it scales with the gradient (SGD): with
``train.loss: sum`` its learning rate is divided by the batch size and its weight
decay multiplied by it (engine.py's units). Muon's update does not depend on the
gradient's scale, so neither is rescaled for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from netgraph.core.registry import Part, Registry
from netgraph.core.schema import Param


@dataclass(frozen=True)
class OptimizerSpec(Part):
    """A registered optimizer: ``function(groups, **params)`` returns a torch.optim.Optimizer
    over ``groups`` (torch parameter-group dicts, each with ``params``, ``lr``, ``momentum``
    and ``weight_decay``; the engine sets ``lr`` before every step)."""

    linear: bool = True  # the update scales with the gradient (see the module docstring)


OPTIMIZERS = Registry("optimizer", "optimizers", "netgraph.register_optimizer", OptimizerSpec)


def register_optimizer(
    name: str, *, params: Optional[Dict[str, Any]] = None, linear: bool = True, replace: bool = False
):
    """Register an optimizer; decorate ``build(groups, **params) -> torch.optim.Optimizer``.
    ``groups`` are torch parameter groups with ``params``, ``lr``, ``momentum`` and
    ``weight_decay`` set; ``params`` are declared as for ops and set in a recipe with
    ``optimizer: {name: {key: value}}``. A parameter called ``foreach`` defaults to
    ``train.foreach``. ``linear``: see the module docstring."""
    return OPTIMIZERS.decorator(name, params=params, replace=replace, linear=linear)


# --- the bag of tricks' Nesterov form ----------------------------------------------


class BagOfTricksSGD(torch.optim.Optimizer):
    """SGD with Nesterov momentum in the bag of tricks' form, per parameter::

        g = grad + wd * w;  g *= lr;  v = momentum * v + g;  w -= g + momentum * v

    The learning rate sits inside the momentum buffer (torch's SGD applies it after), so
    a schedule acts on the gradients as they enter the buffer. With ``foreach`` the update
    runs as a few fused ``torch._foreach_*`` kernels per group instead of several kernels
    per parameter."""

    def __init__(
        self, params, lr: float = 0.0, momentum: float = 0.9, weight_decay: float = 0.0, foreach: bool = True
    ):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=foreach))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocity = [self._velocity(p) for p in params]
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            if not group["foreach"]:
                for p, v in zip(params, velocity):
                    update = (p.grad + decay * p) * lr
                    v.mul_(momentum).add_(update)
                    p.sub_(update.add_(v, alpha=momentum))
                continue
            grads = torch._foreach_add([p.grad for p in params], params, alpha=decay)
            torch._foreach_mul_(grads, lr)
            torch._foreach_mul_(velocity, momentum)
            torch._foreach_add_(velocity, grads)
            torch._foreach_add_(grads, velocity, alpha=momentum)
            torch._foreach_sub_(params, grads)

    def _velocity(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p)
        return state["velocity"]


@register_optimizer("bag_of_tricks", params={"foreach": Param(bool, None, optional=True)})
def _bag_of_tricks(groups: List[Dict], foreach: bool = True) -> torch.optim.Optimizer:
    """The bag of tricks' Nesterov SGD, the learning rate inside the momentum (the default)."""
    return BagOfTricksSGD(groups, foreach=foreach)


# --- torch's SGD ----------------------------------------------------------------------


@register_optimizer(
    "sgd",
    params={"nesterov": False, "dampening": 0.0, "foreach": Param(bool, None, optional=True), "fused": False},
)
def _sgd(
    groups: List[Dict],
    nesterov: bool = False,
    dampening: float = 0.0,
    foreach: bool = True,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """torch.optim.SGD: v = momentum v + (grad + wd w); w -= lr (grad + wd w + momentum v) with nesterov."""
    # torch checks nesterov against the constructor's momentum; each group carries its own
    return torch.optim.SGD(
        groups,
        lr=0.0,
        momentum=groups[0]["momentum"],
        nesterov=nesterov,
        dampening=dampening,
        foreach=None if fused else foreach,
        fused=fused or None,
    )


# --- Muon -----------------------------------------------------------------------------

# airbench94_muon's quintic Newton-Schulz coefficients (a, b, c), chosen there to maximise
# the slope at zero: the iteration pushes singular values towards roughly 0.5-1.5, not 1.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """An approximate orthogonalisation of the 2-D ``g`` (U V^T of its SVD, roughly), in
    bfloat16 as airbench94_muon computes it: scaled to norm 1, transposed to be wide,
    ``steps`` iterations of X <- a X + (b A + c A^2) X with A = X X^T."""
    a, b, c = NEWTON_SCHULZ
    x = g.bfloat16()
    x = x / (x.norm() + eps)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon in airbench94_muon's form, for conv filters (and other tensors of 2 or more
    dimensions, viewed as out x rest matrices), per parameter::

        v = momentum v + grad;  g = grad + momentum v (nesterov) or v
        w *= sqrt(out) / ||w||  (normalize);  w -= lr NS(g as out x (in k k))

    with NS ``ns_steps`` quintic Newton-Schulz iterations (``newton_schulz``) and a decoupled
    ``weight_decay`` (w *= 1 - lr wd; the records use none). ``torch.optim.Muon`` does not fit:
    it takes 2-D parameters only, keeps its momentum as an average (v <- m v + (1 - m) g),
    scales its step by the matrix shape and does not renormalise the weights."""

    def __init__(
        self,
        params,
        lr: float = 0.0,
        momentum: float = 0.6,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        ns_steps: int = 3,
        normalize: bool = True,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                nesterov=nesterov,
                ns_steps=ns_steps,
                normalize=normalize,
            ),
        )
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 2:
                    raise ValueError(
                        f"Muon orthogonalises matrices and filters; a parameter of "
                        f"shape {tuple(p.shape)} is not one"
                    )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(p.grad)
                g = p.grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                if group["normalize"]:
                    p.mul_(len(p) ** 0.5 / p.norm())
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                update = newton_schulz(g.reshape(len(g), -1), group["ns_steps"]).view(g.shape)
                p.add_(update, alpha=-lr)


@register_optimizer(
    "muon",
    params={"nesterov": True, "ns_steps": Param(int, 3, positive=True), "normalize": True},
    linear=False,
)
def _muon(
    groups: List[Dict], nesterov: bool = True, ns_steps: int = 3, normalize: bool = True
) -> torch.optim.Optimizer:
    """Muon (airbench94_muon): orthogonalised Nesterov momentum for conv filters."""
    return Muon(groups, nesterov=nesterov, ns_steps=ns_steps, normalize=normalize)

"""Everything a training run needs to go on from where it stopped, as plain data.

``TrainState.to_dict()`` holds tensors, numbers, strings, lists and dicts only, so a
checkpoint loads with ``torch.load(weights_only=True)``; ``from_dict`` checks the
format and each field's type before anything is used, so a damaged or foreign file is
one clear error rather than a failure deep in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from netgraph.core.errors import RecipeError

STATE_FORMAT = "netgraph-train-state-2"


@dataclass
class TrainState:
    step: int  # optimizer steps done
    epoch: int  # the epoch to run next, or the one in progress when skip > 0 (1-based)
    skip: int  # steps of that epoch done
    model: Dict[str, torch.Tensor]
    optimizers: List[Dict[str, Any]]  # each torch optimizer's state_dict, in the groups' order
    generator: torch.Tensor  # the augmentation generator as epoch `epoch` began (skip > 0) or will begin
    average: Optional[Dict[str, torch.Tensor]] = None
    stats: Optional[Dict[str, Any]] = None  # ParamStats' steps and records not yet flushed
    epoch_losses: Optional[torch.Tensor] = None  # skip > 0: the epoch's per-step losses so far
    epoch_correct: float = 0.0
    epoch_elapsed: float = 0.0  # seconds of the epoch in progress already trained
    train_time_s: float = 0.0
    log: List[Dict[str, Any]] = field(default_factory=list)  # the finished epochs' EpochLog dicts

    def to_dict(self) -> Dict[str, Any]:
        return {"format": STATE_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, state: Any) -> TrainState:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise RecipeError(
                f"not a netgraph training state of this version (format {found!r}, "
                f"expected {STATE_FORMAT!r})",
                hint="resume from a checkpoint this netgraph's train wrote, or start afresh",
            )
        for name, types in _TYPES.items():
            value = state.get(name)
            if name not in state or not isinstance(value, types) or isinstance(value, bool):
                raise RecipeError(
                    f"the training state's '{name}' is "
                    f"{'missing' if name not in state else type(value).__name__}",
                    hint="the checkpoint is damaged: start afresh without --resume",
                )
        if not 0 <= state["skip"] <= state["step"] or state["epoch"] < 1:
            raise RecipeError(
                f"the training state's step {state['step']}, epoch {state['epoch']} "
                f"and skip {state['skip']} do not fit together",
                hint="the checkpoint is damaged: start afresh without --resume",
            )
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


_NONE = type(None)
_TYPES: Dict[str, Union[type, Tuple[type, ...]]] = {
    "step": int,
    "epoch": int,
    "skip": int,
    "model": dict,
    "optimizers": list,
    "generator": torch.Tensor,
    "average": (dict, _NONE),
    "stats": (dict, _NONE),
    "epoch_losses": (torch.Tensor, _NONE),
    "epoch_correct": (int, float),
    "epoch_elapsed": (int, float),
    "train_time_s": (int, float),
    "log": list,
}


def to_cpu(value: Any) -> Any:
    """A copy of ``value`` with every tensor in it detached and on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_cpu(v) for v in value]
    return value

"""Parameter groups: which trainable parameters get which optimizer, learning rate,
schedule, momentum, weight decay and training span.

A recipe's ``train.param_groups`` is a list of items; an item selects parameters by a
glob on their names (``params: "*.bn.bias"``), by kind (``kind: filter``), or both, and
sets any of the group keys. Each parameter starts from the multipliers the passes
recorded for it (``freeze_bn_scale``: bias lr x64, wd /64), then takes the keys of every
item that selects it, in order, later items winning key by key. Parameters whose
settings come out the same form one group, in the order their first parameter appears
in the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable, Dict, List, Optional, Sequence

from torch import nn

# What an item may set besides its selectors, and what each means when it is left out.
SETTINGS = {
    "lr_scale": 1.0,  # times the group's schedule
    "wd_scale": 1.0,  # times the group's weight decay
    "optimizer": None,  # None: train.optimizer
    "lr": None,  # a schedule of the group's own; None: train.lr
    "momentum": None,  # None: train.momentum
    "weight_decay": None,  # None: train.weight_decay
    "until": None,  # {epochs: N} or {steps: N}: trained for the first N, then frozen
}


def _owner(model: nn.Module) -> Dict[str, nn.Module]:
    """Each parameter's name -> the module that holds it."""
    return {
        f"{prefix}.{name}" if prefix else name: module
        for prefix, module in model.named_modules()
        for name, _ in module.named_parameters(recurse=False)
    }


def _head(model: nn.Module) -> Optional[nn.Module]:
    """The last module, in the model's order, that holds parameters of its own."""
    holders = [m for _, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return holders[-1] if holders else None


# kind name -> (what it selects, in words; predicate(name, parameter, owner module, head module))
KINDS: Dict[str, tuple] = {
    "filter": ("4-D conv filters", lambda n, p, m, h: p.dim() == 4),
    "matrix": ("2-D weights (linear layers)", lambda n, p, m, h: p.dim() == 2),
    "vector": ("1-D parameters (biases, batch-norm scales)", lambda n, p, m, h: p.dim() == 1),
    "bias": ("parameters named bias", lambda n, p, m, h: n.rsplit(".", 1)[-1] == "bias"),
    "batch_norm": (
        "parameters of batch-norm layers",
        lambda n, p, m, h: isinstance(m, nn.modules.batchnorm._BatchNorm),
    ),
    "conv": ("parameters of conv layers", lambda n, p, m, h: isinstance(m, nn.modules.conv._ConvNd)),
    "linear": ("parameters of linear layers", lambda n, p, m, h: isinstance(m, nn.Linear)),
    "head": ("parameters of the last layer that has any", lambda n, p, m, h: m is h),
}


@dataclass
class Group:
    """One parameter group as resolved: its parameters and settings (SETTINGS' keys)."""

    names: List[str]
    params: List[nn.Parameter]
    settings: Dict[str, Any] = field(default_factory=dict)

    def describe(self, defaults: Dict[str, Any]) -> str:
        """One line for the train command's header: how many parameters and what differs."""
        shown = {k: v for k, v in self.settings.items() if v != SETTINGS[k] and k != "optimizer"}
        count = sum(p.numel() for p in self.params)
        what = ", ".join(f"{k} {_short(v)}" for k, v in shown.items()) or "the train: defaults"
        example = self.names[0] + (f" and {len(self.names) - 1} more" if len(self.names) > 1 else "")
        optimizer = self.settings["optimizer"]
        name = (
            f"{optimizer['name']} {_short(optimizer['params'])}" if optimizer else defaults.get("optimizer")
        )
        return (
            f"{len(self.names)} tensor{'s' if len(self.names) > 1 else ''} ({count:,} values: "
            f"{example}): {name}; {what}"
        )


def _short(value: Any) -> str:
    return (
        json.dumps(value, separators=(", ", ": "))
        if isinstance(value, (dict, list))
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def selects(item: Dict[str, Any], name: str, param, owner: nn.Module, head) -> bool:
    """Whether a param_groups item selects this parameter: its glob and every kind it names."""
    if item.get("params") is not None and not fnmatchcase(name, item["params"]):
        return False
    kinds = item.get("kind")
    kinds = [kinds] if isinstance(kinds, str) else (kinds or [])
    return all(KINDS[k][1](name, param, owner, head) for k in kinds)


def resolve(
    model: nn.Module,
    options: Dict[str, Dict[str, float]],
    items: Sequence[Dict[str, Any]],
    on_unused: Optional[Callable[[int], None]] = None,
) -> List[Group]:
    """The model's trainable parameters in groups: the passes' ``options`` by parameter
    name, then each matching item of ``items`` (later ones winning key by key); an item
    that selects no trainable parameter is reported to ``on_unused(index)``."""
    owners, head = _owner(model), _head(model)
    groups: Dict[str, Group] = {}
    used = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        settings = dict(SETTINGS)
        settings.update({k: v for k, v in options.get(name, {}).items() if k in SETTINGS})
        for i, item in enumerate(items):
            if selects(item, name, p, owners[name], head):
                used.add(i)
                settings.update({k: item[k] for k in SETTINGS if k in item})
        key = json.dumps(settings, sort_keys=True, default=str)
        group = groups.setdefault(key, Group([], [], settings))
        group.names.append(name)
        group.params.append(p)
    for i in range(len(items)):
        if i not in used and on_unused:
            on_unused(i)
    return list(groups.values())

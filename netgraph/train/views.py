"""Test-time views: registered transforms of a test batch whose logits are averaged.

``train.tta`` takes two forms (README "train"):

- a list, the original code's: ``[flip]`` is the image and each listed view, equally weighted
  (logits summed, divided by 1 + the number of views);
- a mapping ``{views: [{view: V, weight: W}, ...]}``: each view's logits times its
  weight, the weights positive and normalised to sum 1; ``identity`` is the image as it is.

A view is a name (``flip``), a name with parameters (``{translate: {dy: -1, dx: -1}}``), or
a list of those applied in order (``[{translate: {dy: -1, dx: -1}}, flip]``: shifted, then
mirrored). ``tta: airbench`` is airbench94's six views (AIRBENCH below).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from netgraph.core.errors import RecipeError, shown
from netgraph.core.registry import Registry
from netgraph.core.schema import Param

# A view is a plain Part: ``function(images, **params) -> images`` of the same shape.
TTA_VIEWS = Registry("test-time view", "views", "netgraph.register_view")


def register_view(name: str, replace: bool = False, *, params: Optional[Dict[str, Any]] = None):
    """Register a test-time view; decorate ``function(images, **params) -> images`` (a batch
    N x C x H x W to one of the same shape). ``params`` is declared as for ops; a recipe sets
    them with ``{name: {key: value}}``. ``train.tta: [name]`` averages its logits with the image's."""
    return TTA_VIEWS.decorator(name, params=params, replace=replace)


@register_view("flip")
def _mirror(x: torch.Tensor) -> torch.Tensor:
    """The horizontal mirror."""
    return x.flip(3)


@register_view("translate", params={"dy": Param(int, 0), "dx": Param(int, 0)})
def _translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The window of the image's size starting (dy, dx) from its corner, reflect padded."""
    # Output pixel (i, j) is input pixel (i + dy, j + dx), reflected at the borders, as the
    # translate augmentation's offsets: airbench94's padded[:, :, 0:32, 0:32] with pad 1 is
    # dy = dx = -1. Reflect padding by max(|dy|, |dx|) gives the same pixels as by |dy| and
    # |dx| apart (a reflected index does not depend on the padding around it).
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return x
    height, width = x.shape[2:]
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    return padded[:, :, pad + dy : pad + dy + height, pad + dx : pad + dx + width]


@register_view("identity")
def _identity(x: torch.Tensor) -> torch.Tensor:
    """The image as it is (for the weighted form of train.tta)."""
    return x


# airbench94's test-time augmentation (airbench94.py, infer_mirror_translate):
# 0.5 mirror(x) + 0.5 mean(mirror(shift(-1, -1)), mirror(shift(1, 1))), mirror(x) the mean of
# x and its flip: the image and its flip 1/4 each, the four shifted views 1/8 each.
_UP_LEFT, _DOWN_RIGHT = {"translate": {"dy": -1, "dx": -1}}, {"translate": {"dy": 1, "dx": 1}}
AIRBENCH = {
    "views": [
        {"view": "identity", "weight": 0.25},
        {"view": "flip", "weight": 0.25},
        {"view": _UP_LEFT, "weight": 0.125},
        {"view": [_UP_LEFT, "flip"], "weight": 0.125},
        {"view": _DOWN_RIGHT, "weight": 0.125},
        {"view": [_DOWN_RIGHT, "flip"], "weight": 0.125},
    ]
}
PRESETS = {"airbench": AIRBENCH}

View = Callable[[torch.Tensor], torch.Tensor]
TTA_EXAMPLE = "[flip], or {views: [{view: identity, weight: 0.5}, {view: flip, weight: 0.5}]}"


def _step(entry: Any) -> Tuple[str, View]:
    """One view of a composition: 'flip' or {translate: {dy: 1, dx: 1}} -> (label, function)."""
    part, params = TTA_VIEWS.parse(entry, "train.tta")
    label = part.name + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
    return label, (lambda x: part.function(x, **params))


def _view(entry: Any) -> Tuple[str, View]:
    """A view, or a list of views applied in order, -> (label, function)."""
    steps = [_step(e) for e in entry] if isinstance(entry, list) and entry else [_step(entry)]

    def composed(x: torch.Tensor) -> torch.Tensor:
        for _, function in steps:
            x = function(x)
        return x

    return " then ".join(label for label, _ in steps), (steps[0][1] if len(steps) == 1 else composed)


def parse_tta(value: Any) -> List[Tuple[str, View, float]]:
    """train.tta -> [(label, view, weight)], the image itself first in the list form.

    The list form's weights are 1 each (predict divides by their sum, 1 + len(list), as the
    original code did); the mapping form's are normalised to sum 1. A RecipeError (unknown
    view with a did-you-mean, a bad weight or parameter) for the caller to locate."""
    if value is None:
        return [("image", _identity, 1.0)]
    if isinstance(value, str) and value in PRESETS:
        value = PRESETS[value]
    if isinstance(value, (list, tuple)):  # TrainConfig's default is ()
        return [("image", _identity, 1.0)] + [(*_view(entry), 1.0) for entry in value]
    if (
        not isinstance(value, dict)
        or set(value) != {"views"}
        or not isinstance(value["views"], list)
        or not value["views"]
    ):
        raise RecipeError(
            f"train.tta must be a list of views, a mapping {{views: [...]}} or a "
            f"preset ({', '.join(PRESETS)}), got {shown(value)}",
            hint=f"e.g. tta: {TTA_EXAMPLE}",
        )
    views = []
    for item in value["views"]:
        if not isinstance(item, dict) or set(item) != {"view", "weight"}:
            raise RecipeError(
                f"each train.tta.views item is {{view: V, weight: W}}, got {shown(item)}",
                hint="e.g. {view: flip, weight: 0.5}, or {view: [{translate: {dy: 1, "
                "dx: 1}}, flip], weight: 0.125}",
            )
        weight = item["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise RecipeError(
                f"a test-time view's weight must be a positive number, got {shown(weight)}",
                hint="weights are relative: they are normalised to sum 1",
            )
        views.append((*_view(item["view"]), float(weight)))
    total = sum(weight for _, _, weight in views)
    return [(label, view, weight / total) for label, view, weight in views]


def describe_tta(value: Any) -> str:
    """'flip' for [flip]; 'identity x 0.25, flip x 0.25, ...' for the weighted form."""
    views = parse_tta(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(label for label, _, _ in views[1:])
    return ", ".join(f"{label} x {weight:g}" for label, _, weight in views)


def predict(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: Any = ()) -> torch.Tensor:
    """Logits averaged over the test-time views of x: the sum of weight x logits over the
    views, divided by the sum of the weights. ``tta`` is train.tta as written, or what
    parse_tta made of it (evaluate parses once, not once a batch)."""
    views = tta if _parsed(tta) else parse_tta(tta)
    logits, total = None, 0.0
    for _, view, weight in views:
        # weight 1 (the list form) multiplies exactly: the original code's sum / (1 + len(tta)) bit for bit
        out = model(view(x)).float() * weight
        logits = out if logits is None else logits + out
        total += weight
    assert logits is not None  # parse_tta gives one view or more
    return logits / total


def _parsed(tta: Any) -> bool:
    """parse_tta's output ([(label, view, weight)]), as against a recipe's value."""
    return isinstance(tta, list) and bool(tta) and isinstance(tta[0], tuple)

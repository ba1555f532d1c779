"""Files a run leaves: the trained model (``--save``) and the training state (``--checkpoint``),
each written atomically with a checksum, read back with ``weights_only=True`` and every key
checked, so a damaged or foreign file is refused in one line."""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, List, Optional

import torch

from netgraph.core.errors import RecipeError
from netgraph.graph.build import build_graph
from netgraph.graph.executor import compile_graph
from netgraph.graph.passes import apply_transforms
from netgraph.recipe.load import Recipe, recipe_from_dict
from netgraph.runs import files
from netgraph.runs.plan import context_without_data, run_name
from netgraph.train.config import TrainConfig, train_config
from netgraph.train.state import TrainState

MODEL_FORMAT = "netgraph-model-1"


CHECKPOINT_FORMAT = "netgraph-checkpoint-1"


def save_atomically(payload: Dict, path, what: str = "file", kept: files.Kept = None) -> None:
    """torch.save to a new temporary file beside ``path`` (unique, O_EXCL, never through a
    symlink), then rename it into place: a crash while writing leaves the previous file
    whole, a full disk ends in one WriteFailed (``kept``: what it leaves, for its message).
    See netgraph.runs.files."""
    files.save_atomically(payload, path, what, kept)


def _with_checksum(payload: Dict) -> Dict:
    return {**payload, "checksum": files.checksum(payload)}


def save_model(path, model: torch.nn.Module, recipe: Recipe, run, kept: files.Kept = None) -> None:
    """The trained weights with the merged recipe and the run's result (a runs.run.RunResult),
    written atomically (``kept``: what a failed write leaves, for its message)."""
    save_atomically(
        _with_checksum(
            {
                "format": MODEL_FORMAT,
                "recipe": recipe.sections,
                "recipe_file": recipe.file,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "pass_context": run.pass_context,
                "result": run.summary(),
            }
        ),
        path,
        "model file",
        kept,
    )


def checkpoint_writer(
    path, recipe: Recipe, seed: int, finished: List[Dict], every: int = 1
) -> Callable[[Dict], None]:
    """The engine's checkpoint callback for ``netgraph train``: the training state of the run
    with this seed, the recipe it trains and the results of the runs already finished,
    written atomically to ``path`` every ``every`` epochs (0: only when interrupted)."""

    def write(state: Dict) -> None:
        completed = state["epoch"] - 1
        if state["skip"] or (every and completed % every == 0):
            save_atomically(
                _with_checksum(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "recipe": recipe.sections,
                        "recipe_file": recipe.file,
                        "seed": seed,
                        "finished": list(finished),
                        "threads": torch.get_num_threads(),
                        "state": state,
                    }
                ),
                path,
                "checkpoint",
                lambda: kept_checkpoint(path),
            )

    return write


def kept_checkpoint(path) -> str:
    """What a failed write leaves to go on from, in words, the checkpoint read back (and its
    checksum checked) to say so: 'the checkpoint of seed 0 after epoch 1 is intact: ...'."""
    try:
        payload = _load(path, "checkpoint", CHECKPOINT_FORMAT, "netgraph train")
        _check_keys(payload, _CHECKPOINT_KEYS, path, "checkpoint", "netgraph train")
        _check_keys(payload["state"], _STATE_KEYS, path, "checkpoint", "netgraph train", "state.")
    except RecipeError:
        return "no checkpoint was written yet: free space (or point --checkpoint elsewhere) and run the command again"
    from netgraph.train.engine import resume_point

    state = payload["state"]
    return (
        f"the checkpoint of seed {payload['seed']} {resume_point(state['epoch'], state['skip'])} is "
        f"intact: free space and run the same command with --resume"
    )


# What a checkpoint and a saved model hold (key: the types it may have); checked on load,
# after the checksum, so a file of another version or made by hand is refused in one line.
_CHECKPOINT_KEYS = {
    "format": str,
    "recipe": dict,
    "recipe_file": (str, type(None)),
    "seed": int,
    "finished": list,
    "state": dict,
    "checksum": str,
}


_STATE_KEYS = {"step": int, "epoch": int, "skip": int, "model": dict}


_MODEL_KEYS = {
    "format": str,
    "recipe": dict,
    "recipe_file": (str, type(None)),
    "state_dict": dict,
    "result": dict,
    "checksum": str,
}


def _check_keys(payload: Dict, keys: Dict, path, what: str, writer: str, prefix: str = "") -> None:
    for key, types in keys.items():
        value = payload.get(key)
        if key not in payload or not isinstance(value, types) or isinstance(value, bool):
            got = "is missing" if key not in payload else f"is {type(value).__name__}"
            raise RecipeError(
                f"the {what}'s '{prefix}{key}' {got}",
                file=str(path),
                hint=f"it was not written by this netgraph's {writer}",
            )


def _load(path, what: str, expected_format: str, writer: str) -> Dict:
    """A file netgraph wrote, read with ``weights_only=True`` (tensors and plain data only),
    its checksum checked."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RecipeError(f"{what} not found", file=str(path), hint=f"it is written by {writer}") from None
    except Exception as e:  # a truncated file, one that is not netgraph's, one carrying code
        raise RecipeError(
            f"cannot read the {what}: {_load_failure(e)}",
            file=str(path),
            hint=f"it should be written by {writer}",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise RecipeError(f"not a netgraph {what}", file=str(path), hint=f"write one with {writer}")
    files.check_checksum(payload, path, what, writer)
    return payload


def _load_failure(error: Exception) -> str:
    """Why torch.load failed, in one line: not torch's advice to load with weights_only=False
    (which would run whatever code the file carries)."""
    text = str(error)
    if "Weights only load failed" in text:
        reason = next(
            (line.strip() for line in text.splitlines() if "WeightsUnpickler error" in line),
            "it holds objects other than tensors and plain data",
        )
        return f"it holds more than tensors and plain data, and is not loaded ({reason})"
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def load_checkpoint(path, recipe: Recipe, config: Optional[TrainConfig] = None) -> Dict:
    """A checkpoint from ``checkpoint_writer``, checked to be of this recipe (after --set) and
    its train config (``config``: the Plan's; read from the recipe when not given)."""
    payload = _load(path, "checkpoint", CHECKPOINT_FORMAT, "netgraph train")
    _check_keys(payload, _CHECKPOINT_KEYS, path, "checkpoint", "netgraph train")
    _check_keys(payload["state"], _STATE_KEYS, path, "checkpoint", "netgraph train", "state.")
    if payload["recipe"] != recipe.sections:
        raise RecipeError(
            f"the checkpoint is of another recipe (or other --set options) than {run_name(recipe)}",
            file=str(path),
            hint="resume with the recipe and --set options it was started with, or "
            "start afresh without --resume",
        )
    _check_progress(payload["state"], path, config or train_config(recipe, "cpu"))
    try:
        TrainState.from_dict(payload["state"])  # every field's type, before the loop reads any
    except RecipeError as err:
        err.file = str(path)
        raise
    warn_on_other_thread_count(path, payload.get("threads"))
    return payload


def _check_progress(state: Dict, path, config: TrainConfig) -> None:
    """The epoch, step and skip of a checkpoint fit its recipe's run: 1 <= epoch <= epochs + 1
    (epochs + 1: finished), 0 <= skip <= step (skip counts steps of the epoch in progress)."""
    # a run given in steps has as many epochs as the data's size makes: not known here
    epochs = math.ceil(config.epochs) if config.steps is None else None
    epoch, step, skip = state["epoch"], state["step"], state["skip"]
    for name, ok in (
        ("epoch", 1 <= epoch and (epochs is None or epoch <= epochs + 1)),
        ("skip", 0 <= skip <= max(step, 0)),
        ("step", step >= 0),
    ):
        if not ok:
            raise RecipeError(
                f"the checkpoint's {name} is {state[name]}, which the run of "
                f"{epochs or config.steps} {'epochs' if epochs else 'steps'} at step {step} "
                f"cannot have reached",
                file=str(path),
                hint="the file is damaged: start afresh without --resume",
            )


def warn_on_other_thread_count(path, saved: Optional[int]) -> None:
    """A resumed run equals the uninterrupted one bit for bit only at the thread count it was
    started with: on the CPU, sums over more threads are added in another order."""
    if saved is not None and saved != torch.get_num_threads():
        warnings.warn(
            f"{path}: the checkpoint was written by a run on {saved} CPU threads, this one "
            f"has {torch.get_num_threads()}: the resumed run will not be bit-identical to "
            f"an uninterrupted one (set OMP_NUM_THREADS={saved} to make it so)",
            stacklevel=2,
        )


def load_model(path, device: torch.device):
    """(recipe, graph, module in eval mode, saved result) from a file written by save_model.
    Read with ``weights_only=True``: the file holds tensors and plain data only."""
    payload = _load(path, "model file", MODEL_FORMAT, "netgraph train --save")
    _check_keys(payload, _MODEL_KEYS, path, "model file", "netgraph train --save")
    recipe = recipe_from_dict(payload["recipe"], file=payload.get("recipe_file"))
    graph, _ = apply_transforms(
        build_graph(recipe), recipe, context_without_data(recipe, payload.get("pass_context"))
    )
    model = compile_graph(graph, allow_pending=True)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as e:
        raise RecipeError(f"the weights do not fit the recipe saved with them: {e}", file=str(path)) from None
    return recipe, graph, model.to(device).eval(), payload.get("result", {})

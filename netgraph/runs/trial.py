"""One run of an ablation or a sweep, wherever it trains (this process, a local worker, a Ray
task): the recipe's Plan, prepared once per process, and the JSON-lines record of its result."""

from __future__ import annotations

import datetime
import hashlib
from typing import Dict, Optional

import torch

from netgraph.data.dataset import Dataset
from netgraph.recipe.load import Recipe, load_recipe
from netgraph.runs.plan import Plan, prepare
from netgraph.runs.run import run_recipe

# per process: each data set is read once, each recipe prepared once
_DATASETS: Dict[tuple, Dataset] = {}
_PLANS: Dict[tuple, Plan] = {}
# a run's epoch lines in what one_run returns, not in the ablation's runs.jsonl (a line per run)
EPOCHS = "epoch_lines"


def plan_of(
    path: str,
    overrides: tuple,
    device: str,
    data_dir: Optional[str],
    recipe: Optional[Recipe] = None,
    data: Optional[Dict[tuple, Dataset]] = None,
) -> Plan:
    """The recipe's Plan in this process, prepared on first use; recipes that read the same data
    set share its tensors. ``recipe`` (loaded elsewhere) and ``data`` (prepare's data_cache, read
    elsewhere) spare a worker on another machine the recipe file and the data set."""
    key = (path, overrides, device, data_dir)
    if key not in _PLANS:
        recipe = recipe or load_recipe(path, list(overrides))
        cache = _DATASETS if data is None else data
        _PLANS[key] = prepare(recipe, data_dir=data_dir, device=device, data_cache=cache)
    return _PLANS[key]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the trained weights and buffers (names, dtypes, bytes): equal digests are
    bit-identical models, wherever they were trained."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def one_run(
    path: str,
    overrides: tuple,
    seed: int,
    device: str,
    data_dir: Optional[str],
    recipe: Optional[Recipe] = None,
    data: Optional[Dict[tuple, Dataset]] = None,
) -> Dict:
    """Train one recipe with one seed; the JSON-lines record of the result, with its epoch lines
    under EPOCHS (for its TensorBoard curves: the Runner takes them out before it records)."""
    plan = plan_of(path, overrides, device, data_dir, recipe, data)
    result, model, _ = run_recipe(plan, seed=seed, eval_every_epoch=False)
    return {
        EPOCHS: result.log,
        "recipe": path,
        "seed": seed,
        "overrides": list(overrides),
        **{k: v for k, v in result.summary().items() if k not in ("recipe", "seed")},
        "weights_sha256": weights_digest(model),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

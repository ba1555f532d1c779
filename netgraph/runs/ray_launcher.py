"""Ray as the launcher of an ablation's or a sweep's runs (``--ray [ADDRESS]``), across machines.

Each (recipe, overrides, seed) is a Ray task that asks for one GPU where the cluster has GPUs,
else one CPU core; the data sets are read once here and put in Ray's object store once (every
task on every node reads them from there), the recipes are loaded here and sent with the tasks.
Each result comes back to the Runner as it finishes, which records it in the same runs.jsonl as
local workers do. A task whose node dies is retried (``max_retries``) and its record says how many
times it started; an interrupt cancels the tasks not finished. Ray is imported only here, and
only when asked for: without ``--ray`` nothing of it is loaded.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from netgraph.core.errors import RecipeError
from netgraph.data.dataset import Dataset
from netgraph.recipe.load import load_recipe
from netgraph.runs.plan import prepare
from netgraph.runs.trial import one_run

INSTALL = "pip install -e '.[ray]'"
RETRIES = 3  # a task is started again this many times when its node or worker dies
Todo = Sequence[Tuple[str, tuple, int]]  # (recipe, overrides, seed) still to train


def import_ray():
    """Ray, or the one line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise RecipeError(
            "--ray needs Ray, which is not installed", hint=f"install it with {INSTALL}"
        ) from None
    return ray


class _Attempts:
    """A Ray actor on the driver's node: how many times each run has started (a retried run's
    task starts again after its node died)."""

    def __init__(self) -> None:
        self.started: Dict[tuple, int] = {}

    def start(self, key: tuple) -> int:
        self.started[key] = self.started.get(key, 0) + 1
        return self.started[key]


def _task(path, overrides, seed, device, data_dir, recipe, data, attempts) -> Dict:
    """One run on whichever node Ray chose: its record, with the node and how many starts it took."""
    import ray
    import torch

    context = ray.get_runtime_context()
    attempt = ray.get(attempts.start.remote((path, tuple(overrides), seed)))
    if device == "cpu":  # the cores Ray gave this task, as a local worker takes its share
        torch.set_num_threads(max(1, int(context.get_assigned_resources().get("CPU", 1))))
    record = one_run(path, tuple(overrides), seed, device, data_dir, recipe, data)
    return {**record, "node": context.get_node_id(), "attempts": attempt}


def connect(ray, address: Optional[str]) -> bool:
    """Join the cluster at ``address``, or start a local one (bound to this machine only) when
    none is given; True when this call started Ray (and so shuts it down)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    return True


def _data(todo: Todo, data_dir: Optional[str]) -> Tuple[Dict, Dict]:
    """Each recipe loaded and each data set read once, here: prepare's data cache (the uint8
    tensors, keyed as prepare keys them) and the recipes by (path, overrides)."""
    cache: Dict[tuple, Dataset] = {}
    recipes = {}
    for path, overrides, _ in todo:
        if (path, overrides) not in recipes:
            recipes[path, overrides] = load_recipe(path, list(overrides))
            prepare(recipes[path, overrides], data_dir=data_dir, device="cpu", data_cache=cache)
    return cache, recipes


def train(
    todo: Todo,
    device: Optional[str],
    data_dir: Optional[str],
    address: Optional[str],
    finished: Callable[[str, tuple, int, Dict], None],
) -> None:
    """Train ``todo`` as Ray tasks on the cluster at ``address`` (a local one if None), calling
    ``finished(path, overrides, seed, record)`` in this process as each run ends."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = connect(ray, address)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0 and device != "cpu"
        cache, recipes = _data(todo, data_dir)
        data = ray.put(cache)  # once, not once per run
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        attempts = ray.remote(_Attempts).options(num_cpus=0, scheduling_strategy=here).remote()
        task = ray.remote(_task).options(  # spread over the nodes, not packed onto this one first
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            max_retries=RETRIES,
            scheduling_strategy="SPREAD",
        )
        run_device = "cuda" if gpus else "cpu"
        refs = {
            task.remote(path, o, seed, run_device, data_dir, recipes[path, o], data, attempts): (
                path,
                o,
                seed,
            )
            for path, o, seed in todo
        }
        _collect(ray, refs, finished)
    finally:
        if started:
            ray.shutdown()


def _collect(ray, refs: Dict, finished) -> None:
    """Each result recorded as it arrives; on an interrupt or a failure, the tasks not finished
    are cancelled (what finished is recorded already)."""
    pending: List = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                finished(*refs[ref], _result(ray, ref))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _result(ray, ref) -> Dict:
    """A task's record; a run that failed raises its own error (a RecipeError as itself)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if isinstance(err.cause, BaseException) else None
        if cause is not None:
            raise cause from None
        raise

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
from netgraph.recipe.load import Recipe, load_recipe
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


class Launcher:
    """The Ray session of one Runner (all rounds of ``--runs auto`` in one): connected, or a local
    cluster started, on the first ``train``; the recipes loaded and the data sets put in the
    object store once; ``close`` shuts down what it started."""

    def __init__(self, device: Optional[str], data_dir: Optional[str], address: Optional[str]):
        self.ray, self.device, self.data_dir, self.address = import_ray(), device, data_dir, address
        self.started: Optional[bool] = None  # None: not connected yet
        self.recipes: Dict[tuple, Recipe] = {}
        self.cache: Dict[
            tuple, Dataset
        ] = {}  # prepare's data cache: the uint8 tensors, keyed as it keys them

    def _open(self) -> None:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.started = connect(ray, self.address)
        gpus = ray.cluster_resources().get("GPU", 0) > 0 and self.device != "cpu"
        self.run_device = "cuda" if gpus else "cpu"
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.attempts = ray.remote(_Attempts).options(num_cpus=0, scheduling_strategy=here).remote()
        self.task = ray.remote(_task).options(  # spread over the nodes, not packed onto this one first
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            max_retries=RETRIES,
            scheduling_strategy="SPREAD",
        )

    def _load(self, todo: Todo) -> None:
        """Each recipe not seen yet loaded, and its data set read, here; the data sets put in
        Ray's object store again only when a new one was read."""
        before = len(self.cache)
        for path, overrides, _ in todo:
            if (path, overrides) not in self.recipes:
                self.recipes[path, overrides] = load_recipe(path, list(overrides))
                prepare(
                    self.recipes[path, overrides], data_dir=self.data_dir, device="cpu", data_cache=self.cache
                )
        if len(self.cache) != before:
            self.data = self.ray.put(self.cache)  # once, not once per run

    def train(self, todo: Todo, finished: Callable[[str, tuple, int, Dict], None]) -> None:
        """Train ``todo`` as Ray tasks, calling ``finished(path, overrides, seed, record)`` here
        as each run ends."""
        if self.started is None:
            self._open()
        self._load(todo)
        refs = {}
        for path, o, seed in todo:
            recipe = self.recipes[path, o]
            ref = self.task.remote(
                path, o, seed, self.run_device, self.data_dir, recipe, self.data, self.attempts
            )
            refs[ref] = (path, o, seed)
        _collect(self.ray, refs, finished)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
        self.started = None


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

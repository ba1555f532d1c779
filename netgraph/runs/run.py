"""Running a recipe: data -> graph and passes -> module -> engine.

``run_recipe`` is what ``netgraph train`` does once per seed. Timing follows
the original code's rule: reading files from disk is not counted; moving the data to
the device, preprocessing it, the passes (the whitening stem's eigen-
decomposition included), training, all are; evaluation is not.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from netgraph import data as datasets
from netgraph.core.errors import RecipeError
from netgraph.graph.executor import compile_graph, parameter_options
from netgraph.graph.passes import PassContext, apply_transforms
from netgraph.recipe.load import Recipe
from netgraph.runs import files
from netgraph.runs.board import open_board, settings
from netgraph.runs.checkpoints import checkpoint_writer, kept_checkpoint, load_checkpoint, save_model
from netgraph.runs.log import read_records
from netgraph.runs.plan import (
    Plan,
    choose_placement,
    device_name,
    normalisation,
    prepare,
    refuse_ghost_batch_norm,
    saved_context,
)
from netgraph.runs.timing import time_accounting
from netgraph.train.engine import (
    DeviceData,
    EpochLog,
    check_fits,
    input_dtype,
    synchronize,
    to_device,
    total_steps,
    train,
)
from netgraph.train.ranks import Ranks


@dataclass
class RunResult:
    recipe: str
    seed: int
    device: str
    test_acc: float
    test_loss: float
    train_time_s: float
    setup_time_s: float
    eval_time_s: float
    epochs: int
    params: int
    dataset: str
    train_images: int
    test_images: int
    compile_time_s: float = 0.0  # torch.compile's warm-up (train.compile), not in train_time_s
    peak_memory_gib: Optional[float] = None  # CUDA: the most memory allocated at once
    world_size: int = 1  # processes that trained it together (torchrun)
    # what the passes resolved from: the batch each process trained on (ghost batch norm's
    # splits follow it), saved with the model so that it loads the graph it trained
    pass_context: Dict[str, Any] = field(default_factory=dict)
    placement: str = "device"  # where the training set was (data.placement)
    steps: int = 0  # optimizer steps (train.steps, or train.epochs x steps an epoch, rounded up)
    epoch_eval_time_s: float = 0.0  # the per-epoch test columns (train.eval_every), not timed in training
    log_time_s: float = 0.0  # each epoch's log line and checkpoint written
    engine_setup_time_s: float = 0.0  # the loader, optimizers and averaging built (engine.TrainResult)
    log: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        """The result without the per-epoch log, for JSON output."""
        return {k: v for k, v in asdict(self).items() if k not in ("log", "pass_context")}


def run_recipe(
    recipe: Union[Plan, Recipe],
    *,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    data_dir: Optional[str] = None,
    dataset: Optional[datasets.Dataset] = None,
    on_epoch: Optional[Callable[[EpochLog], None]] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
    eval_every_epoch: bool = True,
    checkpoint: Optional[Callable[[Dict], None]] = None,
    resume: Optional[Dict] = None,
    ranks: Optional[Ranks] = None,
):
    """Train once: a Plan, or a Recipe prepared here with ``prepare`` (``device``, ``data_dir``,
    ``dataset`` and ``ranks`` are prepare's). Returns (RunResult, trained module, graph).
    Without ``eval_every_epoch`` only the final model is evaluated (ablations need no curve).
    ``checkpoint`` and ``resume`` are the engine's (see ``engine.train`` and
    ``checkpoints.checkpoint_writer``)."""
    plan = (
        recipe
        if isinstance(recipe, Plan)
        else prepare(recipe, data_dir=data_dir, device=device, dataset=dataset, ranks=ranks)
    )
    config = plan.seeded(seed)
    if not eval_every_epoch:  # the final evaluation alone
        config = dataclasses.replace(config, eval_every=0)
    try:  # before any work, with the recipe's line
        check_fits(len(plan.dataset.train_labels), config.batch_size)
    except RecipeError as err:
        raise err.located(*plan.recipe.where(("train", "batch_size"))) from None
    torch.manual_seed(config.seed)
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # as the original code: shapes are fixed, take the fastest kernels
        )
    try:
        setup = _set_up(plan, config)
        result = train(
            setup.model,
            setup.data,
            config,
            plan.dconfig.augmentations,
            plan.dconfig.max_groups,
            parameter_options(setup.graph),
            setup.time,
            on_epoch,
            on_step,
            checkpoint=checkpoint,
            resume=resume,
            ranks=plan.ranks,
        )
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory(plan, config.batch_size) from None
    return _run_result(plan, config, setup, result), result.model, setup.graph


@dataclass
class _SetUp:
    """What one run builds before its first step, timed: the data on the device, the graph after
    the passes, the module."""

    data: DeviceData
    graph: Any
    model: torch.nn.Module
    context: PassContext
    placement: str
    time: float


def _set_up(plan: Plan, config) -> _SetUp:
    """The data to the device, preprocessed; the passes (they resolve from the data on the device
    and the batch each process trains on); the module. Timed, as the original code times it."""
    device, dconfig, dtype = plan.device, plan.dconfig, input_dtype(config.precision)
    synchronize(device)
    start = time.perf_counter()
    placement, _ = choose_placement(dconfig, plan.dataset, device, dtype)
    mean, std = normalisation(plan.dataset, dconfig)
    data = to_device(
        plan.dataset, device, mean, std, dconfig.pad, dtype, dconfig.keep_uint8, host=placement == "host"
    )
    context = PassContext(train_images=data.train_sample, batch_size=plan.rank_batch)
    graph, _ = apply_transforms(plan.graph, plan.recipe, context)
    if config.sync_batch_norm:
        refuse_ghost_batch_norm(plan.recipe, graph)
    model = compile_graph(graph).to(device)
    synchronize(device)
    return _SetUp(data, graph, model, context, placement, time.perf_counter() - start)


def _run_result(plan: Plan, config, setup: _SetUp, result) -> RunResult:
    dataset, peak = plan.dataset, result.peak_memory_bytes
    return RunResult(
        recipe=plan.name,
        seed=config.seed,
        device=device_name(plan.device),
        test_acc=result.test_acc,
        test_loss=result.test_loss,
        train_time_s=result.train_time_s,
        setup_time_s=setup.time,
        eval_time_s=result.eval_time_s,
        epochs=config.epochs,
        # the trainable parameters after the passes, counted on the module: summarize's count,
        # without a second FlopCounterMode pass over the network (0.5 s on the CPU)
        params=sum(p.numel() for p in setup.model.parameters() if p.requires_grad),
        dataset=plan.dconfig.label or dataset.name,
        train_images=len(dataset.train_labels),
        test_images=len(dataset.test_labels),
        compile_time_s=result.compile_time_s,
        peak_memory_gib=None if peak is None else peak / 2**30,
        world_size=plan.ranks.world if plan.ranks else 1,
        pass_context=saved_context(setup.context),
        placement=setup.placement,
        steps=result.steps,
        epoch_eval_time_s=result.epoch_eval_time_s,
        log_time_s=result.log_time_s,
        engine_setup_time_s=result.engine_setup_time_s,
        log=[log_entry(e, dataset, plan.dconfig.label) for e in result.log],
    )


def combined_result(finished: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One result for the runs of one command: run 0's alone, or for several the mean, standard
    deviation, minimum and maximum of test accuracy and training time, the mean test loss,
    the seeds and every run."""
    result = dict(finished[0])
    if len(finished) > 1:
        result["test_loss"] = statistics.mean(r["test_loss"] for r in finished)  # not run 0's alone
        for key in ("test_acc", "train_time_s"):
            values = [r[key] for r in finished]
            result.update(
                {
                    key: statistics.mean(values),
                    f"{key}_std": statistics.stdev(values),
                    f"{key}_min": min(values),
                    f"{key}_max": max(values),
                }
            )
        result.update(seed=finished[0]["seed"], seeds=[r["seed"] for r in finished], runs=finished)
    return result


def out_of_memory(plan: Plan, batch_size: int) -> RecipeError:
    """The message for a CUDA out-of-memory error: what ran out and what to change."""
    gpu, device = "the GPU", plan.device
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
        gpu = (
            f"the {torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB of "
            f"{torch.cuda.get_device_name(device)}"
        )
    hint = f"use a smaller train.batch_size (e.g. --set train.batch_size={max(1, batch_size // 2)})"
    if not plan.dconfig.keep_uint8:
        hint += ", or data.keep_uint8: true to keep the training images as uint8 on the GPU"
    return RecipeError(
        f"out of GPU memory: the recipe at batch {batch_size} does not fit in the {gpu}",
        file=plan.recipe.file,
        hint=hint,
    )


def log_entry(entry: EpochLog, dataset: datasets.Dataset, label: Optional[str] = None) -> Dict[str, Any]:
    """One epoch's line of the JSON-lines log: it names the data set, so a picture of the
    log can too, and carries batch-norm statistics only when train.log_params records them."""
    line = asdict(entry)
    params = line.pop("params")
    line.update(dataset=label or dataset.name, train_images=len(dataset.train_labels))
    if params is not None:
        line["params"] = params
    return line


def log_entry_line(
    recipe: str,
    seed: int,
    entry,
    dataset: datasets.Dataset,
    label: Optional[str] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """One JSON line of ``netgraph train``'s epoch log (an EpochLog or its dict), with ``extra``
    keys (the learning-rate schedule, so ``show curves`` can draw it per step)."""
    import json

    if isinstance(entry, dict):
        entry = EpochLog(**entry)
    return json.dumps({"recipe": recipe, "seed": seed, **log_entry(entry, dataset, label), **(extra or {})})


def tested_model(config) -> str:
    """Which model the test columns are of, in words (the log records it, the header and
    `show curves` say it)."""
    average = config.average
    if average and average["name"] == "ema":
        return (
            f"moving average of the weights (train.ema: momentum {average['params']['momentum']}, "
            f"every {average['params']['every']} steps), not the weights trained"
        )
    if average:
        return f"the weights as trained, with train.average: {average['name']} {average['params']}"
    return "the weights as trained"


def schedule_record(config, train_images: int) -> Dict[str, Any]:
    """train.lr as the engine runs it: knots (evaluated) and values in their unit, steps an epoch
    and in all (the engine sets step k's rate to the schedule at k in its unit, schedule.py)."""
    steps = max(1, train_images // config.batch_size)
    schedule = config.lr_schedule(steps)
    return {
        "lr_knots": schedule.knots,
        "lr_values": schedule.values,
        "lr_unit": config.lr_unit,
        "steps_per_epoch": steps,
        "total_steps": total_steps(config, steps),
        "tested": tested_model(config),
    }


# --- one recipe trained for several seeds, resumable ---------------------------------------


class SeedRuns:
    """``netgraph train`` below the command line: one recipe trained once per seed, each
    epoch's line appended to the log as it ends, the state checkpointed (resumable from the
    seed and step it stopped at), models saved, and the runs combined. Only the main process
    (rank 0) writes files; ``main=False`` leaves them alone."""

    def __init__(
        self,
        plan: Plan,
        seeds: List[int],
        log_path,
        checkpoint_path,
        checkpoint_every: int = 1,
        main: bool = True,
        board: Optional[Path] = None,
    ):
        self.plan, self.recipe, self.seeds = plan, plan.recipe, list(seeds)
        self.board = board  # TensorBoard: each seed's event files in board/seedN (runs/board.py)
        self.log_path, self.checkpoint_path, self.every = log_path, checkpoint_path, checkpoint_every
        self.main, self.runs = main, len(seeds)
        self.finished: List[Dict[str, Any]] = []
        self._resume: Optional[Dict] = None
        self._kept: List[str] = []  # log lines of what is resumed, written before the first new one
        self._log_started = False
        self.lr_record = schedule_record(plan.config, len(plan.dataset.train_labels))

    def resume(self) -> Tuple[int, str]:
        """Continue from the checkpoint: (its seed, where in its run, in words). The seeds before
        it are finished (their results are in the checkpoint, their lines in the log)."""
        from netgraph.train.engine import resume_point

        if self.plan.ranks:
            raise RecipeError(
                "--resume continues a single-process run; resume a torchrun run by starting it afresh"
            )
        saved = load_checkpoint(self.checkpoint_path, self.recipe, self.plan.config)
        if saved["seed"] not in self.seeds:
            raise RecipeError(
                f"the checkpoint is of seed {saved['seed']}, not one of this command's "
                f"seeds {self.seeds[0]}..{self.seeds[-1]}",
                file=str(self.checkpoint_path),
                hint="resume with the --seed and --runs it was started with",
            )
        self.finished, self._resume = saved["finished"], saved["state"]
        self.seeds = self.seeds[self.seeds.index(saved["seed"]) :]
        done = {r["seed"] for r in self.finished}
        self._kept = [json.dumps(r) for r in read_records(self.log_path) if r["seed"] in done] if done else []
        self._kept += [self._line(saved["seed"], e) for e in self._resume["log"]]
        return saved["seed"], resume_point(self._resume["epoch"], self._resume["skip"])

    def which(self, seed: int) -> str:
        """'run 2 of 3 (seed 1)'."""
        return f"run {self.runs - len(self.seeds) + self.seeds.index(seed) + 1} of {self.runs} (seed {seed})"

    def train(
        self,
        seed: int,
        on_epoch: Optional[Callable[[EpochLog], None]] = None,
        on_step: Optional[Callable[[int, int], None]] = None,
    ):
        """Train the run of ``seed``: (RunResult, trained module). TrainingInterrupted passes
        through with the state checkpointed."""

        board = open_board(self.board / f"seed{seed}" if self.board and self.main else None)

        def epoch_done(entry):
            if on_epoch:
                on_epoch(entry)
            if self.main:  # each epoch's line at once, so an interrupted run keeps its log
                line = self._line(seed, entry)
                self._write(line)
                if board:  # the log's own values, as the log has them
                    board.epoch(json.loads(line))

        writer = (
            checkpoint_writer(self.checkpoint_path, self.recipe, seed, self.finished, self.every)
            if self.main
            else None
        )
        resume, self._resume = (self._resume if seed == self.seeds[0] else None), None
        try:
            run, model, _ = run_recipe(
                self.plan, seed=seed, on_epoch=epoch_done, on_step=on_step, checkpoint=writer, resume=resume
            )
            if board:
                board.finish(
                    self.recipe.sections, settings(self.plan.name, seed, self._sets()), run.summary()
                )
        finally:
            if board:
                board.close()
        self.finished.append(run.summary())
        return run, model

    def _sets(self) -> List[str]:
        """The recipe's --set options, as typed."""
        return [text.removeprefix("--set ") for _, text, _ in self.recipe.overrides]

    def save(self, model, run: RunResult, path) -> Path:
        """Save a run's model to ``path`` (FILE-seedN.pt when the command trains several)."""
        path = Path(path)
        if self.runs > 1:
            path = path.with_name(f"{path.stem}-seed{run.seed}{path.suffix}")
        save_model(path, model, self.recipe, run, self._kept_checkpoint)
        return path

    def _kept_checkpoint(self) -> str:
        return kept_checkpoint(self.checkpoint_path)

    def finish(self, command: str, outputs=()) -> Dict[str, Any]:
        """Every run done: the checkpoint removed (nothing is left to resume), and the combined
        result with the command, torch version and date, written to each of ``outputs``."""
        import datetime

        result = {
            "command": command,
            "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **combined_result(self.finished),
            # the whole process's wall time, part by part (runs/timing.py)
            "time_s": time_accounting(self.plan.start_up_s, self.plan.prepare_s, self.finished),
        }
        for out in outputs:  # before the checkpoint goes: a full disk here can be resumed
            if out is not None:
                text = json.dumps(result, indent=2) + "\n"
                files.write_text_atomically(out, text, "result", self._kept_checkpoint)
        if self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        return result

    def _line(self, seed: int, entry) -> str:
        return log_entry_line(
            self.plan.name, seed, entry, self.plan.dataset, self.plan.dconfig.label, self.lr_record
        )

    def _write(self, line: str) -> None:
        """The log is (re)written when the first epoch has something to add: the kept lines, then
        one line an epoch."""
        if not self._log_started:  # atomically: a full disk must not empty the log of a resumed run
            kept = "".join(kept + "\n" for kept in self._kept)
            files.write_text_atomically(self.log_path, kept, "epoch log", self._kept_checkpoint)
            self._log_started = True
        files.append_line(self.log_path, line, "epoch log", self._kept_checkpoint)

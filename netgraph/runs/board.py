"""TensorBoard event files for runs, through ``torch.utils.tensorboard`` (the ``tensorboard``
extra): ``tensorboard --logdir runs/`` then shows every run's curves and, in its HParams tab,
a table of every run's settings and final metrics (a sweep's grid side by side).

Written beside the JSON-lines log, never instead of it (``netgraph show`` reads the log): each
epoch's scalars are taken from the very line the log gets. On by default when the package is
installed; without it, or with ``--no-tensorboard``, nothing is written and nothing imported.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import yaml

# an epoch line's key -> its TensorBoard tag (the step is the line's epoch)
SCALARS = {
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "test_loss": "test/loss",
    "test_acc": "test/accuracy",
    "lr": "lr",
    "epoch_time": "time/epoch_s",
    "total_time": "time/total_s",
}
# a run's result key -> its tag among the HParams table's metrics
METRICS = {
    "test_acc": "final/test_accuracy",
    "test_loss": "final/test_loss",
    "train_time_s": "final/train_time_s",
}


def available() -> bool:
    """Whether the tensorboard package is installed (found, not imported)."""
    return importlib.util.find_spec("tensorboard") is not None


def folder_name(text: str) -> str:
    """A run's name as one folder name: anything but letters, digits, '.', '_', '=', '-' as '_'."""
    return re.sub(r"[^\w.=-]+", "_", text).strip("_") or "run"


def _best_effort(method):
    """Event files are a view of the log, not a record: one that cannot be written (a full disk)
    is a warning, once, and the board then stops writing; the run, its log and its record go on."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.failed:
            return None
        try:
            return method(self, *args, **kwargs)
        except OSError as err:
            self.fail(err)
            return None

    return guarded


class Board:
    """One run's event files in ``folder``; ``close`` always (``with Board(folder) as board``)."""

    def __init__(self, folder: Path):
        self.folder, self.failed = folder, False
        self.writer: Any = None  # a SummaryWriter once open (torch.utils.tensorboard, imported late)
        self._open()

    def fail(self, err: OSError) -> None:
        if not self.failed:
            warnings.warn(f"TensorBoard event files in {self.folder} not written: {err}", stacklevel=3)
        self.failed = True

    @_best_effort
    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.folder))

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Always, failed or not (its writer has a thread)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as err:
                self.fail(err)

    @_best_effort
    def epoch(self, line: Dict[str, Any]) -> None:
        """An epoch's scalars, from its line of the JSON-lines log (the values it records)."""
        for key, tag in SCALARS.items():
            if isinstance(line.get(key), (int, float)):
                self.writer.add_scalar(tag, line[key], line["epoch"])
        for i, value in enumerate(line.get("group_lr") or []):  # each parameter group's own
            self.writer.add_scalar(f"lr/group{i}", value, line["epoch"])
        self.writer.flush()

    @_best_effort
    def finish(self, sections: Dict[str, Any], settings: Dict[str, Any], result: Dict[str, Any]) -> None:
        """The resolved recipe as text, and the run's settings with its final metrics for the
        HParams plugin. Not SummaryWriter.add_hparams: it writes them into a new sub-folder named
        by the time (a second run per run in TensorBoard's list); the same three summaries and
        the metrics' scalars written into this run's own file keep one run, one folder."""
        from torch.utils.tensorboard.summary import hparams

        recipe = yaml.safe_dump(sections, sort_keys=False)
        self.writer.add_text("recipe", "\n".join("    " + line for line in recipe.splitlines()))
        metrics = {tag: result[key] for key, tag in METRICS.items() if result.get(key) is not None}
        file_writer = self.writer.file_writer
        assert file_writer is not None  # SummaryWriter makes it when it is made
        for summary in hparams({k: _hparam(v) for k, v in settings.items()}, metrics):
            file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value)
        self.writer.flush()


def _hparam(value: Any) -> Any:
    """What the HParams plugin takes: a bool, number or string (anything else as its text)."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def settings(recipe: str, seed: int, overrides) -> Dict[str, Any]:
    """A run's hyperparameters for the HParams table: the recipe, the seed, each --set's value."""
    from netgraph.recipe.load import load_yaml_value

    found: Dict[str, Any] = {"recipe": recipe, "seed": seed}
    for text in overrides:
        key, _, value = text.partition("=")
        found[key.strip()] = load_yaml_value(value)
    return found


def record_run(
    folder: Path, sections: Dict[str, Any], record: Dict[str, Any], epochs: Sequence[Dict[str, Any]] = ()
) -> None:
    """An ablation's or sweep's run: its epochs' scalars (training loss, accuracy, learning rates,
    times; its test set is evaluated once, at its end), then recipe, settings and final metrics."""
    with Board(folder) as board:
        for line in epochs:
            board.epoch(line)
        board.finish(sections, settings(record["recipe"], record["seed"], record["overrides"]), record)


def open_board(folder: Optional[Path]) -> Optional[Board]:
    """A Board in ``folder``, or None when there is none or TensorBoard is not installed."""
    return Board(folder) if folder is not None and available() else None

"""`netgraph train` below the command line: a Plan trained once per seed into a run folder of
its own (or the files named), the files locked while it runs, a new folder that nothing was
trained into removed again, the log, checkpoint, models and results written as it goes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from netgraph.runs import files
from netgraph.runs import folder as run_folder
from netgraph.runs.options import TrainOptions
from netgraph.runs.plan import Plan
from netgraph.runs.run import SeedRuns


class TrainSession:
    """``with TrainSession(plan, options) as session:`` chooses and locks the run's files (a new
    folder, the folder resumed, or the files named), and on leaving unlocks them and removes a
    new folder that nothing was trained into (``session.discarded`` then names it). Only the
    main process (rank 0) writes files."""

    def __init__(self, plan: Plan, options: TrainOptions):
        self.plan, self.options = plan, options
        self.main = plan.ranks is None or plan.ranks.main
        self.opts = run_folder.options(options.recipe, options.sets, options.seed, options.runs)
        self.discarded: Optional[Path] = None
        self._locks: list = []

    def __enter__(self) -> TrainSession:
        o = self.options
        self.paths = (
            run_folder.choose(o, self.opts)
            if self.main
            else run_folder.RunFiles(None, Path(os.devnull), Path(os.devnull), None)
        )
        if self.main:
            try:
                self._claim()
            except BaseException:  # a lock that could not be written (a full disk) leaves no folder
                self.__exit__(*sys.exc_info())
                raise
        if self.paths.folder and not o.resume:
            run_folder.write_manifest(self.paths.folder, self.opts, o.command, self.plan.recipe.sections)
        seeds = [o.seed + i for i in range(o.runs)]
        board = self.paths.folder / "tensorboard" if self.paths.folder and o.tensorboard else None
        self.runs = SeedRuns(
            self.plan, seeds, self.paths.log, self.paths.checkpoint, o.checkpoint_every, self.main, board
        )
        return self

    def _claim(self) -> None:
        """Lock the checkpoint and the log: a second netgraph writing either is refused at once."""
        self._locks.append(files.lock(self.paths.checkpoint, "the checkpoint"))
        self._locks.append(files.lock(self.paths.log, "the log"))

    def __exit__(self, kind, error, traceback) -> None:
        # an interrupt (SystemExit 130/143) or a failure: a new folder keeps nothing but its manifest
        if kind is not None and self.main and not self.options.resume:
            if run_folder.discard_if_unused(self.paths.folder):
                self.discarded = self.paths.folder
        for lock in self._locks:
            files.unlock(lock)

    def save(self, model, run) -> Optional[Path]:
        """The run's model where --save asked (model.pt in the run folder for a bare --save)."""
        save = self.options.save
        if not (save and self.main):
            return None
        if save is True:
            folder = self.paths.folder
            assert folder is not None  # TrainOptions.check refuses a bare --save with --log/--checkpoint
            return self.runs.save(model, run, folder / "model.pt")
        return self.runs.save(model, run, save)

    def finish(self) -> Dict[str, Any]:
        """Every seed done: the folder marked finished, the checkpoint removed, the combined
        result written to result.json and --json-out."""
        result = self.runs.finish(self.options.command, [self.paths.result, self.options.json_out])
        run_folder.mark_finished(self.paths.folder)  # once the result is written: else --resume goes on
        return result

"""`netgraph train` below the command line: a Plan trained once per seed into a run folder of
its own (or the files named), the files locked while it runs, a new folder that nothing was
trained into removed again, the log, checkpoint, models and results written as it goes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from netgraph.core.errors import RecipeError
from netgraph.runs import files
from netgraph.runs import folder as run_folder
from netgraph.runs.plan import Plan
from netgraph.runs.run import SeedRuns


@dataclass
class TrainOptions:
    """What a train command asks for, as plain values (the CLI's flags of the same names)."""

    recipe: str  # the recipe file, as given
    sets: list  # its --set options
    seed: int = 0  # the first seed
    runs: int = 1  # seeds seed .. seed + runs - 1
    log: Optional[str] = None  # explicit files instead of a run folder
    checkpoint: Optional[str] = None
    resume: Union[bool, str] = False  # True: the latest unfinished folder; a path: that folder
    overwrite: bool = False
    name: Optional[str] = None  # a word in the new run folder's name
    save: Union[bool, str, None] = None  # True: model.pt in the run folder; a path: that file
    checkpoint_every: int = 1
    json_out: Optional[str] = None
    command: str = "netgraph train"  # as typed, recorded in the folder and the result

    def check(self) -> None:
        """What is refused before anything is read or touched."""
        if self.runs < 1:
            raise RecipeError(f"--runs {self.runs}: train at least once", hint="--runs 1 or more")
        if self.save is True and (self.log or self.checkpoint):
            raise RecipeError(
                "--save without a file saves into the run folder, and --log/--checkpoint "
                "name files instead of one",
                hint="give a file: --save model.pt",
            )


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
        if self.main:  # a second netgraph writing either is refused at once
            self._locks = [
                files.lock(self.paths.checkpoint, "the checkpoint"),
                files.lock(self.paths.log, "the log"),
            ]
        if self.paths.folder and not o.resume:
            run_folder.write_manifest(self.paths.folder, self.opts, o.command, self.plan.recipe.sections)
        seeds = [o.seed + i for i in range(o.runs)]
        self.runs = SeedRuns(
            self.plan, seeds, self.paths.log, self.paths.checkpoint, o.checkpoint_every, self.main
        )
        return self

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
        run_folder.mark_finished(self.paths.folder)
        return self.runs.finish(self.options.command, [self.paths.result, self.options.json_out])

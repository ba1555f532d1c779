"""What a `netgraph train` asks for, as plain values, and what is refused before anything is
read: importing it takes no torch, so a mistake on the command line costs no start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from netgraph.core.errors import RecipeError


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
    tensorboard: bool = True  # event files in the run folder when tensorboard is installed

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

    def check_outputs(self) -> None:
        """Refuse a --save or --json-out file that could not be written at the end (a read-only
        or full disk) now, before the data is loaded and minutes are trained: its folder is
        made and a temporary file created there and removed. The main process's only."""
        from netgraph.runs import files  # here: the options are read before torch is imported

        for path, what in ((self.save, "model file"), (self.json_out, "result")):
            if isinstance(path, str):
                files.check_writable(path, what)

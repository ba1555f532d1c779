"""Run folders: each `netgraph train` writes into a new folder of its own, so no run empties
another's files.

    runs/RECIPE/DATE-TIME[-NAME]/
        run.json      the command, recipe, --sets, seeds and whether the run finished
        recipe.yaml   the recipe as trained: merged along its base: chain, --sets applied
        log.jsonl     one line per epoch and run
        train.ckpt    the training state for --resume, while the run is unfinished
        result.json   the final result

``--resume`` alone continues the latest unfinished folder of the same recipe, --sets, seed and
runs; ``--resume DIR`` a named one. A --log or --checkpoint named explicitly that already exists
is another run's unless this one resumes it, and is refused without ``--overwrite``.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from netgraph.core.errors import RecipeError

ROOT = Path("runs")
MANIFEST = "run.json"


@dataclass
class RunFiles:
    """Where one `netgraph train` writes; ``folder`` is None for explicit --log/--checkpoint."""

    folder: Optional[Path]
    log: Path
    checkpoint: Path
    result: Optional[Path]


def options(recipe_file: str, sets: List[str], seed: int, runs: int) -> dict:
    """What makes two commands the same run, for --resume to find: recipe, --sets, seeds."""
    return {"recipe": str(Path(recipe_file).resolve()), "sets": list(sets), "seed": seed, "runs": runs}


def new_folder(recipe_file: str, name: Optional[str] = None, root: Path = ROOT) -> Path:
    """runs/RECIPE/DATE-TIME[-NAME]/, created empty; -2, -3 ... if two start in one second."""
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise RecipeError(f"--name '{name}' is not a folder name", hint="e.g. --name wide")
    from .files import writing

    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S") + (f"-{name}" if name else "")
    parent = Path(root) / Path(recipe_file).stem
    with writing(parent, "run folder", NOTHING_TRAINED):  # a full or read-only disk
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                folder.mkdir()  # atomic: a second run in the same second takes the next number
                return folder
            except FileExistsError:
                continue
    raise RecipeError(f"cannot make a new run folder in {parent}")


NOTHING_TRAINED = "nothing was trained: free space on its disk, or train elsewhere (--log, --checkpoint)"


def files_in(folder: Path) -> RunFiles:
    return RunFiles(folder, folder / "log.jsonl", folder / "train.ckpt", folder / "result.json")


def discard_if_unused(folder: Optional[Path]) -> bool:
    """Remove a new run folder that nothing was trained into (set-up failed before the first
    epoch's log line or checkpoint): an empty folder would pass for a run. True if removed."""
    if (
        folder is None
        or not folder.is_dir()
        or (folder / "log.jsonl").exists()
        or (folder / "train.ckpt").exists()
    ):
        return False
    from netgraph.runs import files

    for lock in files.held():  # this command's own locks on the log and checkpoint
        if lock.parent == folder:
            files.unlock(lock)
    for path in folder.iterdir():
        if path.name not in ("recipe.yaml", MANIFEST) or not path.is_file():
            return False  # something of the user's: leave the folder alone
        path.unlink()
    folder.rmdir()
    return True


def write_manifest(folder: Path, opts: dict, command: str, recipe_sections: dict) -> None:
    import yaml

    from .files import write_text_atomically

    recipe = f"# {command}\n" + yaml.safe_dump(recipe_sections, sort_keys=False, allow_unicode=True)
    write_text_atomically(folder / "recipe.yaml", recipe, "run folder's recipe", NOTHING_TRAINED)
    manifest = json.dumps({**opts, "command": command, "finished": False}, indent=2) + "\n"
    write_text_atomically(folder / MANIFEST, manifest, "run folder's manifest", NOTHING_TRAINED)


def mark_finished(folder: Optional[Path]) -> None:
    """run.json says the run finished (after its result is written and its checkpoint gone)."""
    if folder is None:
        return
    from .files import write_text_atomically

    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    write_text_atomically(
        path,
        json.dumps({**manifest, "finished": True}, indent=2) + "\n",
        "run folder's manifest",
        "the run finished and its result is written; only run.json still says unfinished",
    )


def _manifest(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def resumable(folder: Path, opts: dict) -> bool:
    """An unfinished run of these options that left a checkpoint."""
    manifest = _manifest(folder)
    if not manifest:
        return False
    return (
        not manifest.get("finished")
        and (folder / "train.ckpt").is_file()
        and {k: manifest.get(k) for k in opts} == opts
    )


def latest_unfinished(recipe_file: str, opts: dict, root: Path = ROOT) -> Path:
    """The newest folder under runs/RECIPE/ that an interrupted run of these options left."""
    parent = Path(root) / Path(recipe_file).stem
    folders = (
        sorted((f for f in parent.iterdir() if f.is_dir()), key=lambda f: f.stat().st_mtime)
        if parent.is_dir()
        else []
    )
    for folder in reversed(folders):
        if resumable(folder, opts):
            return folder
    raise RecipeError(
        f"no interrupted run of {recipe_file} with these options in {parent}/",
        hint="resume a named one with --resume DIR, or start afresh without --resume",
    )


def choose(args, opts: dict) -> RunFiles:
    """The files this command writes: a new folder, the folder it resumes, or explicit paths.
    Nothing is created or emptied here but a new, empty folder."""
    explicit = args.log or args.checkpoint
    if explicit:
        log = Path(args.log) if args.log else Path(args.checkpoint).with_suffix(".jsonl")
        files = RunFiles(
            None, log, Path(args.checkpoint) if args.checkpoint else log.with_suffix(".ckpt"), None
        )
        if not args.resume and not args.overwrite:
            for path in (files.log, files.checkpoint):
                if path.exists():
                    raise RecipeError(
                        "exists, from another run",
                        file=str(path),
                        hint="pass --overwrite to replace it, --resume to continue "
                        "it, or leave out --log/--checkpoint for a new run folder",
                    )
        return files
    if args.resume is True:
        folder = latest_unfinished(args.recipe, opts)
    elif args.resume:
        folder = Path(args.resume)
        if not resumable(folder, opts):
            manifest = _manifest(folder)
            why = (
                "is not a run folder"
                if manifest is None
                else "has finished"
                if manifest.get("finished")
                else "left no checkpoint"
                if not (folder / "train.ckpt").is_file()
                else "is a run of other options: "
                + " ".join([manifest.get("recipe", "?")] + [f"--set {s}" for s in manifest.get("sets", [])])
            )
            raise RecipeError(
                why,
                file=str(folder),
                hint="resume with the recipe, --set, --seed and --runs it was started with",
            )
    else:
        return files_in(new_folder(args.recipe, args.name))
    return files_in(folder)

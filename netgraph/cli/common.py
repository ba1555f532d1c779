"""What every command shares: the recipe arguments, plugins, the command as typed."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
import sys
from pathlib import Path

from netgraph.core.errors import RecipeError
from netgraph.recipe.load import load_recipe


def recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set train.epochs=12 or "
        "--set network.layer1.conv_bn.c=96 (values are YAML); repeatable",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="Python module or .py file to import first, e.g. one that registers "
        "your own ops with netgraph.register_op; repeatable",
    )


DATA_DIR_SHAPE_HELP = (
    "read the data set (as for train) to take input.shape from its images when the recipe sets none"
)


def import_plugin(name: str) -> None:
    """Import a Python file or module that registers ops (recipes never load code themselves)."""
    try:
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            if not path.is_file():
                raise RecipeError(f"plugin file '{name}' not found", file="--import")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:  # no loader for its suffix: not Python
                raise RecipeError(
                    f"plugin file '{name}' is not a Python file",
                    file="--import",
                    hint="give a .py file or a module",
                )
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    except RecipeError:
        raise
    except Exception as e:  # the plugin's own bug: say where, briefly
        raise RecipeError(
            f"importing plugin '{name}' failed: {type(e).__name__}: {e}", file="--import"
        ) from None


def import_plugins(args) -> None:
    """Every --import of the command, in order."""
    for plugin in getattr(args, "imports", ()):
        import_plugin(plugin)


def graph_of(args, stage=None):
    """The recipe's graph after its transforms (the first ``stage`` of them if given)."""
    for plugin in args.imports:
        import_plugin(plugin)
    recipe = load_recipe(args.recipe, args.set)
    from netgraph.runs.plan import network

    return network(recipe, data_dir=getattr(args, "data_dir", None), stage=stage)


def command_line(drop_resume: bool = False) -> str:
    """This command as typed, quoted for a shell (without its --resume [DIR] if asked)."""

    argv = sys.argv[1:]
    if drop_resume and "--resume" in argv:
        i = argv.index("--resume")
        argv = argv[:i] + argv[i + 1 + (i + 1 < len(argv) and not argv[i + 1].startswith("-")) :]
    return " ".join(["netgraph"] + [shlex.quote(a) for a in argv])


def _runs(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of runs or 'auto', got {text!r}") from None


def runs_args(p: argparse.ArgumentParser, what: str) -> None:
    """--runs N or auto, and the sequential test's --max-runs, --precision and --alpha."""
    p.add_argument(
        "--runs",
        type=_runs,
        default=5,
        metavar="N|auto",
        help=f"runs per {what} (seeds SEED..SEED+N-1; default 5), or auto: seeds added 2 at a "
        "time until the sequential test decides (docs/sequential.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--max-runs", type=int, metavar="N", help=f"--runs auto: at most N runs per {what}")
    p.add_argument(
        "--precision",
        type=float,
        metavar="P",
        help="--runs auto: also stop once the difference's interval is within +-P points",
    )
    p.add_argument(
        "--alpha", type=float, default=0.05, help="--runs auto: the test's false-positive rate (0.05)"
    )


def runs_value(args):
    """The API's ``runs``: an int, or Rounds for --runs auto (its mistakes before any training)."""
    from netgraph.runs.ablate import runs_setting

    return runs_setting(args.runs, args.max_runs, args.alpha, args.precision)


def runner_args(p: argparse.ArgumentParser, out: str) -> None:
    """Where many runs train and land (ablate, sweep): data, device, the folder, workers."""
    p.add_argument("--data-dir", help="folder with the data set in an official layout")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument(
        "--out",
        default=out,
        help=f"folder for runs.jsonl, table.md and table.csv (default {out}); "
        "runs already in its runs.jsonl are not trained again",
    )
    p.add_argument("--fresh", action="store_true", help="forget the runs already in --out")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at a time in N processes, one GPU each on CUDA "
        "(0: one per visible GPU; default 1)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="train each run as a Ray task on the cluster at ADDRESS (HOST:PORT of `ray start "
        "--head`), one GPU each where it has GPUs, else one core; without ADDRESS, on a local "
        "cluster Ray starts (pip install -e '.[ray]'; docs/cluster.md)",
    )
    tensorboard_arg(p)


def tensorboard_arg(p: argparse.ArgumentParser) -> None:
    """--no-tensorboard (train, ablate, sweep)."""
    p.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="write no TensorBoard event files (written into the run folder's tensorboard/ "
        "when the tensorboard package is installed)",
    )

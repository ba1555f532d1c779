"""The command line: argument parsing and printing over the Python API, nothing more.

One module per command (summary, render, train, ablate, sweep, eval, list and passes, show), each with
``add_parser(sub)`` and ``run(args)``. Only what parsing needs is imported here: each command
imports the torch side itself, after the recipe is read, so --help, --version and a recipe's
YAML errors take no torch import (2 s).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from typing import List, Optional

from netgraph.cli import ablate, evaluate, listing, render, show, summary, sweep, train
from netgraph.core import __version__
from netgraph.core.errors import RecipeError

COMMANDS = (summary, render, train, ablate, sweep, evaluate, listing, show)  # in --help's order


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netgraph", description="Networks as recipes of named nodes.")
    p.add_argument("--version", action="version", version=f"netgraph {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _command_parser(p: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The sub-command's parser (``show curves``'s for show), whose usage an error should print."""
    for name in (args.command, getattr(args, "what", None)):
        actions = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or name not in actions[0].choices:
            break
        p = actions[0].choices[name]
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = parser()
    args, unknown = p.parse_known_args(argv)
    if unknown:  # e.g. `passes --set ...`: the sub-command's usage, not the top-level one
        _command_parser(p, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    # Warnings about a recipe (e.g. nodes that never reach the output) read as one line each.
    warnings.formatwarning = lambda message, category, *a, **k: f"netgraph: warning: {message}\n"
    try:
        args.run(args)
    except RecipeError as err:
        print(f"netgraph: error: {err}", file=sys.stderr)
        return err.exit_code  # 2, or 1 for a file that could not be written (WriteFailed)
    except KeyboardInterrupt:
        print("netgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `netgraph passes | head`: the reader has gone, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if "netgraph.runs.files" in sys.modules:  # imported by `train` only: --help takes no torch
            sys.modules["netgraph.runs.files"].unlock_all()  # the checkpoint and log locks of `train`
        if argv is None:  # the process's own command line: it ends next
            # the interpreter's last collections need not walk torch's objects: about 0.2 s to
            # exit a process that imported torch instead of 0.7-1.3 s (docs/performance.md)
            gc.freeze()
    return 0

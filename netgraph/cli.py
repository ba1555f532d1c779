"""The command line: argument parsing and printing over the Python API, nothing more."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from . import __version__
from .errors import RecipeError
from .graph import build_graph
from .recipe import load_recipe


def _graph(args):
    for plugin in args.imports:
        import_plugin(plugin)
    return build_graph(load_recipe(args.recipe, args.set))


def import_plugin(name: str) -> None:
    """Import a Python file or module that registers ops (recipes never load code themselves)."""
    try:
        if name.endswith(".py") or os.sep in name:
            path = Path(name)
            if not path.is_file():
                raise RecipeError(f"plugin file '{name}' not found", file="--import")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    except RecipeError:
        raise
    except Exception as e:  # the plugin's own bug: say where, briefly
        raise RecipeError(f"importing plugin '{name}' failed: {type(e).__name__}: {e}",
                          file="--import") from None


def cmd_summary(args) -> None:
    from .summary import format_summary, summarize
    s = summarize(_graph(args))
    print(json.dumps(s, indent=2) if args.json else format_summary(s))


def cmd_render(args) -> None:
    from .render import render
    written, note = render(_graph(args), args.output, direction=args.direction, depth=args.depth)
    if note:
        print(f"netgraph: {note}", file=sys.stderr)
    else:
        print(f"wrote {written}")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=12 or "
                        "--set network.layer1.conv_bn.c=96 (values are YAML); repeatable")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="Python module or .py file to import first, e.g. one that registers "
                        "your own ops with netgraph.register_op; repeatable")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netgraph", description="Networks as recipes of named nodes.")
    p.add_argument("--version", action="version", version=f"netgraph {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("summary", help="table of nodes: shapes, parameters, multiply-accumulates")
    _recipe_args(s)
    s.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    s.set_defaults(run=cmd_summary)

    r = sub.add_parser("render", help="draw the network (svg, png, pdf or dot, by extension)")
    _recipe_args(r)
    r.add_argument("-o", "--output", required=True, help="output file, e.g. graph.svg")
    r.add_argument("--direction", choices=("TB", "LR"), default="TB",
                   help="top-to-bottom (default) or left-to-right")
    r.add_argument("--depth", type=int, default=None, metavar="N",
                   help="draw dicts nested deeper than N levels as one node each (e.g. 2 shows "
                        "layer1/residual as a single box); default: every node")
    r.set_defaults(run=cmd_render)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    # Warnings about a recipe (e.g. nodes that never reach the output) read as one line each.
    warnings.formatwarning = lambda message, category, *a, **k: f"netgraph: warning: {message}\n"
    try:
        args.run(args)
    except RecipeError as err:
        print(f"netgraph: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("netgraph: interrupted", file=sys.stderr)
        return 130
    return 0

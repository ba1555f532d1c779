"""The command line: argument parsing and printing over the Python API, nothing more."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import List, Optional

from . import __version__
from .errors import RecipeError
from .graph import build_graph
from .recipe import load_recipe


def _graph(args):
    return build_graph(load_recipe(args.recipe, args.set))


def cmd_summary(args) -> None:
    from .summary import format_summary, summarize
    s = summarize(_graph(args))
    print(json.dumps(s, indent=2) if args.json else format_summary(s))


def cmd_render(args) -> None:
    from .render import render
    written, note = render(_graph(args), args.output, direction=args.direction)
    if note:
        print(f"netgraph: {note}", file=sys.stderr)
    else:
        print(f"wrote {written}")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=12 or "
                        "--set network.layer1.conv_bn.c=96 (values are YAML); repeatable")


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

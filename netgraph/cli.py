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
from .passes import PASSES, PassContext, apply_transforms
from .recipe import load_recipe


def _graph(args, stage=None):
    """The recipe's graph after its transforms (the first ``stage`` of them if given)."""
    for plugin in args.imports:
        import_plugin(plugin)
    recipe = load_recipe(args.recipe, args.set)
    graph, reports = apply_transforms(build_graph(recipe), recipe, context_for(recipe), stop=stage)
    return graph, reports


def context_for(recipe) -> PassContext:
    """What the passes get when only drawing or summarising: no training images (a whitening
    stem is drawn, its filters are left to `netgraph train`), the batch size if the recipe sets one."""
    batch = recipe.train.get("batch_size")
    return PassContext(batch_size=batch if isinstance(batch, int) else None)


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
    graph, reports = _graph(args)
    s = summarize(graph)
    if args.json:
        s["transforms"] = [{"index": r.index, "name": r.name, "exact": r.exact, "matches": r.matches,
                            "added": r.added, "removed": r.removed, "changed": r.changed,
                            "rewired": r.rewired} for r in reports]
        print(json.dumps(s, indent=2))
        return
    if reports:
        print("transforms applied:\n" + "\n".join("  " + r.line() for r in reports) + "\n")
    print(format_summary(s))


def cmd_render(args) -> None:
    from .render import render
    if args.diff and args.depth is not None:
        raise RecipeError("--diff and --depth cannot be combined", hint="drop one of them")
    graph, reports = _graph(args, stage=args.stage)
    written, note = render(graph, args.output, direction=args.direction, depth=args.depth,
                           reports=reports if args.diff else None)
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
    r.add_argument("--stage", type=int, default=None, metavar="N",
                   help="draw the graph after the first N transforms (0: before any); "
                        "default: after all of them")
    r.add_argument("--diff", action="store_true",
                   help="mark the nodes each transform added, removed, changed or rewired")
    r.set_defaults(run=cmd_render)

    ps = sub.add_parser("passes", help="list the registered graph rewrite passes")
    ps.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                    help="Python module or .py file to import first (your own passes)")
    ps.set_defaults(run=cmd_passes)
    return p


def cmd_passes(args) -> None:
    import yaml
    from .ops import REQUIRED
    for plugin in args.imports:
        import_plugin(plugin)
    print("Every pass also takes strict: true, which turns 'found nothing to change' into an error.\n")
    for name, spec in sorted(PASSES.items()):
        params = ", ".join(k if p.default is REQUIRED else
                           f"{k}: {yaml.safe_dump(p.default, default_flow_style=True).splitlines()[0]}"
                           for k, p in spec.params.items())
        kind = "exact" if spec.exact else "changes the function"
        print(f"{name:22} {spec.summary} [{kind}]" + (f"\n{'':22} parameters: {params}" if params else ""))


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
    except BrokenPipeError:  # e.g. `netgraph passes | head`: the reader has gone, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0

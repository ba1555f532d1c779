"""netgraph render: the network drawn (svg, png, pdf or dot)."""

from __future__ import annotations

import sys

from netgraph.cli.common import DATA_DIR_SHAPE_HELP, graph_of, recipe_args
from netgraph.core.errors import RecipeError


def add_parser(sub) -> None:
    r = sub.add_parser("render", help="draw the network (svg, png, pdf or dot, by extension)")
    recipe_args(r)
    r.add_argument("-o", "--output", required=True, help="output file, e.g. graph.svg")
    r.add_argument("--data-dir", help=DATA_DIR_SHAPE_HELP)
    r.add_argument(
        "--direction", choices=("TB", "LR"), default="TB", help="top-to-bottom (default) or left-to-right"
    )
    r.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="N",
        help="draw dicts nested deeper than N levels as one node each (e.g. 2 shows "
        "layer1/residual as a single box); default: every node",
    )
    r.add_argument(
        "--stage",
        type=int,
        default=None,
        metavar="N",
        help="draw the graph after the first N transforms (0: before any); default: after all of them",
    )
    r.add_argument(
        "--diff", action="store_true", help="mark the nodes each transform added, removed, changed or rewired"
    )
    r.add_argument(
        "--dpi",
        type=int,
        metavar="N",
        help="resolution of a .png in dots per inch, e.g. 300 for print (default 96)",
    )
    titles = r.add_mutually_exclusive_group()
    titles.add_argument("--title", metavar="TEXT", help="the picture's title (default: the recipe's name)")
    titles.add_argument("--no-title", action="store_true", help="no title")
    r.set_defaults(run=run)


def run(args) -> None:
    from netgraph.graph.render import render

    if args.diff and args.depth is not None:
        raise RecipeError("--diff and --depth cannot be combined", hint="drop one of them")
    graph, reports, _ = graph_of(args, stage=args.stage)
    written, note = render(
        graph,
        args.output,
        direction=args.direction,
        depth=args.depth,
        reports=reports if args.diff else None,
        dpi=args.dpi,
        title="" if args.no_title else args.title,
    )
    if note:
        print(f"netgraph: {note}", file=sys.stderr)
    else:
        print(f"wrote {written}")

"""netgraph summary: the table of nodes (shapes, parameters, multiply-accumulates)."""

from __future__ import annotations

import json
import warnings

from netgraph.cli.common import DATA_DIR_SHAPE_HELP, graph_of, recipe_args


def add_parser(sub) -> None:
    s = sub.add_parser("summary", help="table of nodes: shapes, parameters, multiply-accumulates")
    recipe_args(s)
    s.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    s.add_argument("--data-dir", help=DATA_DIR_SHAPE_HELP)
    s.add_argument(
        "--groups",
        action="store_true",
        help="also the parameter groups training resolves (optimizer, rates, spans)",
    )
    s.set_defaults(run=run)


def run(args) -> None:
    from netgraph.graph.summary import format_summary, memory_warnings, summarize
    from netgraph.train.config import train_config

    graph, reports, recipe = graph_of(args)
    s = summarize(graph, train_config(recipe).batch_size)
    for warning in memory_warnings(graph, s):  # what compile_graph and train would refuse
        warnings.warn(warning, stacklevel=1)
    if args.json:
        s["transforms"] = [
            {
                "index": r.index,
                "name": r.name,
                "exact": r.exact,
                "matches": r.matches,
                "added": r.added,
                "removed": r.removed,
                "changed": r.changed,
                "rewired": r.rewired,
            }
            for r in reports
        ]
        print(json.dumps(s, indent=2))
        return
    if reports:
        print("transforms applied:\n" + "\n".join("  " + r.line() for r in reports) + "\n")
    print(format_summary(s))
    if args.groups:
        from netgraph.runs.plan import group_lines

        print("\nparameter groups:\n" + "\n".join("  " + line for line in group_lines(recipe, graph=graph)))

"""netgraph list [KIND]: what is registered, with its parameters (netgraph passes: list passes)."""

from __future__ import annotations

from netgraph.cli.common import import_plugin


def add_parser(sub) -> None:
    ps = sub.add_parser("passes", help="list the registered graph rewrite passes")
    ps.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="Python module or .py file to import first (your own passes)",
    )
    ps.set_defaults(run=run, kind="passes")  # the same as `netgraph list passes`

    ls = sub.add_parser(
        "list", help="the registered ops, passes, augmentations and test-time views, with their parameters"
    )
    ls.add_argument("kind", nargs="?", help="only this kind: ops, passes, augmentations or views")
    ls.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="Python module or .py file to import first (your own parts)",
    )
    ls.set_defaults(run=run)


def run(args) -> None:
    from netgraph import data  # noqa: F401  (with train.config below: every registry)
    from netgraph.core.registry import listing
    from netgraph.graph import passes  # noqa: F401
    from netgraph.train import config  # noqa: F401

    for plugin in args.imports:
        import_plugin(plugin)
    print(listing(args.kind or ""))

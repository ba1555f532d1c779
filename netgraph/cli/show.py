"""netgraph show: the original code's pictures of a recipe and its runs."""

from __future__ import annotations

from netgraph.cli.common import import_plugin, recipe_args
from netgraph.recipe.load import load_recipe


def add_parser(sub) -> None:
    sh = sub.add_parser(
        "show",
        help="the original code's pictures: augmentations, whitening filters, "
        "batch-norm parameters, training curves (needs matplotlib)",
    )
    what = sh.add_subparsers(dest="what", metavar="PICTURE", required=True)
    sa = what.add_parser("augment", help="training images and draws of the recipe's augmentation")
    sw = what.add_parser("whitening", help="leading eigen-patches of the whitening stem's patches")
    for q in (sa, sw):
        recipe_args(q)
        q.add_argument("--data-dir", help="folder with the data set (as for train)")
    sa.add_argument("--images", type=int, default=8, help="training images, the first N (default 8)")
    sa.add_argument("--draws", type=int, default=2, help="independent draws (default 2)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    sw.add_argument("--count", type=int, default=12, help="eigen-patches drawn (default 12)")
    sp = what.add_parser(
        "params", help="batch-norm scales and biases during a run trained with --set train.log_params=N"
    )
    sp.add_argument("log", help="JSON-lines log written by netgraph train --log")
    sp.add_argument("--seed", type=int, help="the run of this seed (default: the first in the log)")
    sc = what.add_parser(
        "curves", help="loss, accuracy and learning rate per epoch; mean and band over seeds"
    )
    sc.add_argument("log", nargs="+", help="JSON-lines logs written by netgraph train --log")
    sc.add_argument(
        "--by-file",
        action="store_true",
        help="one series per log file (default: one per recipe, seeds pooled)",
    )
    for q in (sa, sw, sp, sc):
        q.add_argument("-o", "--output", required=True, help="output file: .png, .svg or .pdf")
        q.set_defaults(run=run)


def run(args) -> None:
    from netgraph.runs import show

    if args.what in ("augment", "whitening"):
        for plugin in args.imports:
            import_plugin(plugin)
        recipe = load_recipe(args.recipe, args.set)
    if args.what == "augment":
        picture = show.show_augment(
            recipe, args.output, data_dir=args.data_dir, images=args.images, draws=args.draws, seed=args.seed
        )
    elif args.what == "whitening":
        picture = show.show_whitening(recipe, args.output, data_dir=args.data_dir, count=args.count)
    elif args.what == "params":
        picture = show.show_params([args.log], args.output, seed=args.seed)
    else:
        picture = show.show_curves(args.log, args.output, by_file=args.by_file)
    print(f"wrote {picture.path} ({picture.width} x {picture.height} pixels)")

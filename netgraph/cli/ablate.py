"""netgraph ablate: recipes trained several times each and tabulated with statistics."""

from __future__ import annotations

from netgraph.cli.common import import_plugin, runner_args, runs_args, runs_value


def add_parser(sub) -> None:
    a = sub.add_parser(
        "ablate",
        help="train recipes several times each and tabulate them with "
        "statistics (mean, spread, confidence, Welch's t-test)",
    )
    a.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe files, in table order")
    runs_args(a, "recipe")
    a.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value in every recipe (e.g. a reduced width); repeatable",
    )
    a.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="Python module or .py file to import first (your own ops or passes)",
    )
    runner_args(a, "runs/ablation")
    a.add_argument("--plot", help="also draw accuracy against training time (png, svg or pdf)")
    a.set_defaults(run=run)


def run(args) -> None:
    from netgraph.runs.ablate import ablate, markdown

    for plugin in args.imports:
        import_plugin(plugin)

    def report(recipe, seed, record):
        print(
            f"{recipe} seed {seed}: test accuracy {record['test_acc']:.2%}, training "
            f"{record['train_time_s']:.2f} s",
            flush=True,
        )

    rows = ablate(
        args.recipes,
        runs_value(args),
        overrides=args.set,
        first_seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        out_dir=args.out,
        resume=not args.fresh,
        workers=args.workers,
        on_run=report,
        ray=args.ray,
        tensorboard=args.tensorboard,
    )
    print("\n" + markdown(rows))
    print(f"\nwrote {args.out}/table.md, table.csv and runs.jsonl")
    if args.plot:
        from netgraph.runs.show import show_ablation

        print(f"wrote {show_ablation(rows, args.plot).path}")

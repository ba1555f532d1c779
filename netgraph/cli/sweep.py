"""netgraph sweep: one recipe trained over a grid of values, tabulated and drawn."""

from __future__ import annotations

from netgraph.cli.common import import_plugins, recipe_args, runner_args, runs_args, runs_value


def add_parser(sub) -> None:
    s = sub.add_parser(
        "sweep",
        help="train a recipe over every combination of --grid values, several seeds each, "
        "and tabulate and draw them (the best marked, tested against the runner-up)",
    )
    recipe_args(s)
    s.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="PATH=V1,V2,...",
        help="values to sweep a recipe setting over (YAML values, as --set takes), or "
        "PATH=range(start,stop[,step]) for numbers, stop excluded; repeatable: the cartesian product",
    )
    runs_args(s, "combination")
    runner_args(s, "runs/sweep")
    s.add_argument(
        "--plot",
        help="also draw accuracy against the swept value with its 95%% band (one --grid) "
        "or a heat map of the means (two) (png, svg or pdf)",
    )
    s.set_defaults(run=run)


def run(args) -> None:
    import_plugins(args)
    from netgraph.runs.sweep import markdown, parse_grids, sweep

    runs = runs_value(args)
    if args.plot:  # the picture's mistakes before any training too
        from netgraph.runs.show import check_sweep_picture

        check_sweep_picture([g.path for g in parse_grids(args.grid)], args.plot)

    def report(recipe, seed, record):
        setting = " ".join(record["overrides"][len(args.set) :])
        print(
            f"{setting} seed {seed}: test accuracy {record['test_acc']:.2%}, training "
            f"{record['train_time_s']:.2f} s",
            flush=True,
        )

    rows = sweep(
        args.recipe,
        args.grid,
        runs,
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
        from netgraph.runs.show import show_sweep

        print(f"wrote {show_sweep(rows, args.plot).path}")

"""netgraph train: a recipe trained for each seed, with its per-epoch table, logs and results."""

from __future__ import annotations

import sys

from netgraph.cli.common import command_line, import_plugin, recipe_args, tensorboard_arg
from netgraph.recipe.load import load_recipe


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a recipe: per-epoch table, logs, results")
    recipe_args(t)
    t.add_argument(
        "--data-dir",
        help="the data set: a folder in an official CIFAR layout, a "
        "folder of class folders (data.dataset: folder) or a .npz "
        "(arrays); default: the recipe's data.dir, else the download cache",
    )
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    t.add_argument("--runs", type=int, default=1, help="train N times with seeds SEED..SEED+N-1")
    t.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    _output_args(t)
    _file_args(t)
    tensorboard_arg(t)
    t.set_defaults(run=run)


def _output_args(t) -> None:
    """Where the epochs and the result go, and what is printed."""
    # --log-file first: under torchrun, --log is taken for an abbreviation of torchrun's --log-dir
    t.add_argument(
        "--log-file",
        "--log",
        dest="log",
        metavar="FILE",
        help="JSON-lines log of every epoch instead of log.jsonl in a new run folder "
        "runs/RECIPE/DATE-TIME/; under torchrun spell it --log-file",
    )
    t.add_argument("--json-out", help="write the final result as one JSON object")
    t.add_argument(
        "--save",
        nargs="?",
        const=True,
        metavar="FILE",
        help="write the trained weights and the recipe: to FILE, or without one to "
        "model.pt in the run folder (model-seedN.pt for several runs)",
    )
    t.add_argument(
        "--quiet",
        action="store_true",
        help="no header, per-epoch table or progress: one line per finished run",
    )
    t.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="off a terminal (a log file, a job), a progress line on stderr at most "
        "every SECONDS within an epoch (default 10)",
    )


def _file_args(t) -> None:
    """The checkpoint and the run folder: resuming an interrupted run."""
    t.add_argument(
        "--checkpoint",
        help="training state for --resume, written every epoch and on "
        "Ctrl-C or SIGTERM (default: train.ckpt in the run folder, "
        "or the --log path with .ckpt)",
    )
    t.add_argument("--name", help="a word added to the new run folder's name: runs/RECIPE/DATE-TIME-NAME/")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="let an explicit --log or --checkpoint replace an existing file",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="N",
        help="write the checkpoint every N epochs (0: only when interrupted; default 1)",
    )
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="DIR",
        help="continue an interrupted run to the same result: the latest of this recipe "
        "and options under runs/RECIPE/, or the run folder DIR (with --log or "
        "--checkpoint: that checkpoint)",
    )


def run(args) -> None:
    from netgraph.runs.options import TrainOptions  # no torch: a typo is refused at once

    options = TrainOptions(
        args.recipe,
        args.set,
        args.seed,
        args.runs,
        args.log,
        args.checkpoint,
        args.resume,
        args.overwrite,
        args.name,
        args.save,
        args.checkpoint_every,
        args.json_out,
        command_line(),
        args.tensorboard,
    )
    options.check()  # before anything is read or touched
    for plugin in args.imports:
        import_plugin(plugin)
    recipe = load_recipe(args.recipe, args.set)
    from netgraph.runs.plan import prepare
    from netgraph.runs.session import TrainSession
    from netgraph.train.ranks import launched_by_torchrun

    ranks, device = None, args.device
    if launched_by_torchrun():  # only then the process group and its machinery
        from netgraph.train import distributed

        ranks, device = distributed.from_environment(args.device)
    main = ranks is None or ranks.main  # only rank 0 prints
    if main and not args.quiet:
        print(f"recipe: {args.recipe}" + "".join(f" --set {a}" for a in args.set), flush=True)
    if main:  # a read-only folder for --save or --json-out: refused before the data is loaded
        options.check_outputs()
    plan = prepare(recipe, data_dir=args.data_dir, device=device, ranks=ranks)
    session = TrainSession(plan, options)
    try:
        with session:
            _train_runs(args, session)
        if ranks is not None:  # not after an error: a rank that failed would never reach the barrier
            distributed.leave()
    finally:
        if session.discarded:
            print(
                f"netgraph: nothing was trained: removed the new run folder {session.discarded}",
                file=sys.stderr,
            )


def _train_runs(args, session) -> None:
    """Print what is trained, train each seed with its table, print the results."""
    from netgraph.train.engine import TrainingInterrupted

    plan, runs, paths, main = session.plan, session.runs, session.paths, session.main
    if main and not args.quiet:
        _print_start(plan)
    if paths.folder and main:
        print(f"run folder: {paths.folder}", flush=True)
    if args.resume:
        seed, where = runs.resume()
        print(f"resuming seed {seed} {where}, from {paths.checkpoint}")
    for seed in list(runs.seeds):
        if args.runs > 1 and main and not args.quiet:
            print(runs.which(seed), flush=True)
        table = EpochTable(
            quiet=args.quiet or not main,
            progress_every=args.progress_every,
            caption=test_columns(plan.config),
        )
        try:
            run, model = runs.train(seed, on_epoch=table.row, on_step=table.progress)
        except TrainingInterrupted as stop:
            table.clear()
            _interrupted(stop, paths)
        if main:
            print(
                (f"{runs.which(seed)}: " if args.quiet and args.runs > 1 else "") + _result_line(run),
                flush=True,
            )
            saved = session.save(model, run)
            if saved:
                print(f"saved {saved}")
    if main:
        _print_end(session.finish(), paths, args.json_out)


def _interrupted(stop, paths) -> None:
    """Say what was saved and the command that continues; exit 130 (SIGINT) or 143 (SIGTERM)."""
    again = f" --resume {paths.folder}" if paths.folder else " --resume"
    print(
        f"netgraph: {stop}: saved {paths.checkpoint} and the log {paths.log}; continue with:\n"
        f"  {command_line(drop_resume=paths.folder is not None)}{again}",
        file=sys.stderr,
    )
    raise SystemExit(130 if stop.signal_name == "SIGINT" else 143) from None


def _print_end(result, paths, json_out) -> None:
    from netgraph.runs.timing import time_line

    if len(result.get("runs", [])) > 1:
        print("\n" + _runs_line(result))
    print(time_line(result["time_s"]))
    print(f"epoch log: {paths.log}")
    if json_out:
        print(f"result: {json_out}")


def _print_start(plan) -> None:
    """What is about to be trained: data, device, length, the tested model, the normalisation,
    where the training set is, the parameter groups."""
    from netgraph.runs.plan import choose_placement, group_lines, normalisation_line
    from netgraph.train.engine import input_dtype

    dataset, dconfig, config = plan.dataset, plan.dconfig, plan.config
    print(header(plan), flush=True)
    print(
        f"{dataset.name}: {len(dataset.train_labels):,} training and {len(dataset.test_labels):,} "
        f"test images of {' x '.join(map(str, dataset.image_shape))}, {dataset.num_classes} "
        f"classes ({_classes_line(dataset.classes)}); {normalisation_line(dataset, dconfig)}"
    )
    if dconfig.placement != "device":
        print(choose_placement(dconfig, dataset, plan.device, input_dtype(config.precision))[1])
    groups = group_lines(plan.recipe, config)
    print("parameter groups:\n" + "\n".join("  " + line for line in groups), flush=True)


def _result_line(run) -> str:
    """One run's result in one line."""
    extra = "".join(
        [
            f" | compile {run.compile_time_s:.1f} s" if run.compile_time_s else "",
            f" | peak memory {run.peak_memory_gib:.2f} GiB" if run.peak_memory_gib else "",
            f" | {run.world_size} processes" if run.world_size > 1 else "",
        ]
    )
    return (
        f"test accuracy {run.test_acc:.2%} | training {run.train_time_s:.2f} s (set-up "
        f"{run.setup_time_s:.2f} s) | per-epoch evaluation {run.epoch_eval_time_s:.2f} s | final "
        f"evaluation {run.eval_time_s:.2f} s{extra} | {run.device}"
    )


def _runs_line(r) -> str:
    """Several runs' combined result in one line."""
    return (
        f"{len(r['runs'])} runs (seeds {r['seeds'][0]}..{r['seeds'][-1]}): test accuracy mean "
        f"{r['test_acc']:.2%}, std {r['test_acc_std']:.2%}, min {r['test_acc_min']:.2%}, max "
        f"{r['test_acc_max']:.2%}; training time mean {r['train_time_s']:.2f} s, std "
        f"{r['train_time_s_std']:.2f} s, min {r['train_time_s_min']:.2f} s, max {r['train_time_s_max']:.2f} s"
    )


def _classes_line(classes, most: int = 10) -> str:
    """The class names, the first `most` of them for a long list."""
    shown = ", ".join(classes[:most])
    return shown + (f", ... ({len(classes) - most} more)" if len(classes) > most else "")


def header(plan) -> str:
    """What is about to be trained, before any of it: data, device, schedule, the tested model."""
    dataset, dconfig, config, device, ranks = plan.dataset, plan.dconfig, plan.config, plan.device, plan.ranks
    from netgraph.data.dataset import default_cache_dir
    from netgraph.runs.plan import device_name

    source = (
        "generated"
        if dconfig.dataset == "synthetic"
        else f"from {plan.data_dir or dconfig.dir or default_cache_dir()}"
    )
    from netgraph.train.engine import total_steps

    steps = len(dataset.train_labels) // config.batch_size
    total = total_steps(config, max(steps, 1))
    length = (
        f"{config.epochs} epochs x {steps} steps"
        if total == config.epochs * steps
        else f"{total} steps ({total / max(steps, 1):.4g} epochs of {steps} steps)"
    )
    processes = f", {ranks.world} processes" if ranks and ranks.world > 1 else ""
    from netgraph.runs.run import tested_model

    tested = tested_model(config)
    if config.tta:
        from netgraph.train.views import describe_tta

        tested += "; test-time views averaged: " + describe_tta(config.tta)
    return "\n".join(
        [
            f"data: {dconfig.label or dataset.name}, {len(dataset.train_labels):,} training and "
            f"{len(dataset.test_labels):,} test images, {dataset.num_classes} classes, {source}",
            f"device: {device_name(device)}{processes}, {config.precision}",
            f"training: {length} of {config.batch_size} images",
            f"test: {tested}",
        ]
    )


def test_columns(config) -> str:
    """The table's caption: which view its test columns show, how often, and what the final
    evaluation (the run's test accuracy) sees."""
    if not config.tta:
        view = "the image (no train.tta)"
    elif config.eval_view == "tta":
        view = "train.tta's views (train.eval_view: tta)"
    else:
        view = "the plain image (train.eval_view: plain); the test accuracy after the table averages train.tta's views"
    every = config.eval_every
    when = (
        "every epoch"
        if every == 1
        else f"every {every} epochs and the last"
        if every > 1
        else "the last epoch only, if its view is the final evaluation's (train.eval_every: 0)"
    )
    return f"test columns: {when}, {view}"


class EpochTable:
    """The original code's per-epoch table on stdout, and progress on stderr within each epoch: a bar
    on a terminal, else a line every ``progress_every`` seconds (a job log sees work going on)."""

    COLUMNS = (
        "epoch",
        "lr",
        "train loss",
        "train acc %",
        "test loss",
        "test acc %",
        "epoch time",
        "total time",
    )

    def __init__(self, quiet: bool = False, progress_every: float = 10.0, caption: str = ""):
        import time

        self.quiet, self.caption = quiet, caption
        self.live = sys.stderr.isatty() and not quiet
        self.started = False
        self.every, self.clock = progress_every, time.monotonic
        self.last = self.clock()

    def row(self, e) -> None:
        if self.quiet:
            return
        if self.live:
            sys.stderr.write("\r\033[K")
        if not self.started:
            if self.caption:
                print(self.caption)
            print("".join(f"{c:>12}" for c in self.COLUMNS))
            self.started = True
        test_loss = f"{e.test_loss:>12.4f}" if e.test_loss is not None else f"{'-':>12}"
        test = f"{100 * e.test_acc:>12.2f}" if e.test_acc is not None else f"{'-':>12}"
        print(
            f"{e.epoch:>12}{e.lr:>12.4f}{e.train_loss:>12.4f}{100 * e.train_acc:>12.2f}{test_loss}"
            f"{test}{e.epoch_time:>12.2f}{e.total_time:>12.2f}",
            flush=True,
        )
        self.last = self.clock()

    def clear(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")

    def progress(self, step: int, steps: int) -> None:
        if self.live:
            done = 30 * step // steps
            sys.stderr.write(f"\r  [{'#' * done}{'.' * (30 - done)}] step {step}/{steps}")
            sys.stderr.flush()
        elif not self.quiet and step < steps and self.clock() - self.last >= self.every:
            self.last = self.clock()
            print(f"  step {step}/{steps} of the epoch ({step / steps:.0%})", file=sys.stderr, flush=True)

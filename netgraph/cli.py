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

# Only what parsing needs is imported here: each command imports the torch side itself, after
# the recipe is read, so --help, --version and a recipe's YAML errors take no torch import (2 s).
from . import __version__
from .errors import RecipeError
from .recipe import load_recipe


def _graph(args, stage=None):
    """The recipe's graph after its transforms (the first ``stage`` of them if given)."""
    for plugin in args.imports:
        import_plugin(plugin)
    recipe = load_recipe(args.recipe, args.set)
    from .config import data_config, train_config
    from .graph import build_graph
    from .passes import apply_transforms
    from .run import context_without_data

    dconfig = data_config(recipe)  # summary and render flag a typo in data: or train: too
    train_config(recipe)
    if getattr(args, "data_dir", None):  # the data's image shape, for a recipe that sets none
        import torch

        from .run import fit_to_data, load_data, preflight

        dataset = load_data(dconfig, args.data_dir)
        recipe, dconfig = fit_to_data(recipe, dataset)
        preflight(
            recipe, build_graph(recipe), dataset, dconfig, torch.device("cpu")
        )  # what train would refuse
    graph, reports = apply_transforms(build_graph(recipe), recipe, context_without_data(recipe), stop=stage)
    return graph, reports, recipe


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
        raise RecipeError(
            f"importing plugin '{name}' failed: {type(e).__name__}: {e}", file="--import"
        ) from None


def cmd_summary(args) -> None:
    from .config import train_config
    from .summary import format_summary, memory_warnings, summarize

    graph, reports, recipe = _graph(args)
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
        from .run import group_lines

        print("\nparameter groups:\n" + "\n".join("  " + line for line in group_lines(recipe, graph)))


def cmd_render(args) -> None:
    from .render import render

    if args.diff and args.depth is not None:
        raise RecipeError("--diff and --depth cannot be combined", hint="drop one of them")
    graph, reports, _ = _graph(args, stage=args.stage)
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


def cmd_train(args) -> None:
    if args.runs < 1:  # before anything is read or touched
        raise RecipeError(f"--runs {args.runs}: train at least once", hint="--runs 1 or more")
    for plugin in args.imports:
        import_plugin(plugin)
    recipe = load_recipe(args.recipe, args.set)
    from . import distributed, files, run_folder
    from .config import data_config, train_config
    from .run import resolve_device

    ranks, device = (
        distributed.from_environment(args.device)
        if distributed.launched_by_torchrun()
        else (None, resolve_device(args.device))
    )
    main = ranks is None or ranks.main  # only rank 0 prints and writes files
    config = train_config(recipe, device.type)  # a typo in train: before minutes of loading data
    dconfig = data_config(recipe)
    if main and not args.quiet:
        print(f"recipe: {args.recipe}" + "".join(f" --set {a}" for a in args.set), flush=True)
    if args.save is True and (args.log or args.checkpoint):
        raise RecipeError(
            "--save without a file saves into the run folder, and --log/--checkpoint "
            "name files instead of one",
            hint="give a file: --save model.pt",
        )
    opts = run_folder.options(args.recipe, args.set, args.seed, args.runs)
    paths = (
        run_folder.choose(args, opts)
        if main
        else run_folder.RunFiles(None, Path(os.devnull), Path(os.devnull), None)
    )
    try:
        if main:  # refused at once while another netgraph writes either; released when main() ends
            files.lock(paths.checkpoint, "the checkpoint"), files.lock(paths.log, "the log")
        for path, what in ((args.save, "model file"), (args.json_out, "result")):
            if main and isinstance(path, str):  # a read-only folder: refused before training
                files.check_writable(path, what)
        _train_runs(args, recipe, config, dconfig, device, ranks, main, opts, paths)
    except BaseException:  # SystemExit (an interrupt, exit 130/143) keeps its checkpoint
        if main and not args.resume and run_folder.discard_if_unused(paths.folder):
            print(
                f"netgraph: nothing was trained: removed the new run folder {paths.folder}", file=sys.stderr
            )
        raise


def _train_runs(args, recipe, config, dconfig, device, ranks, main, opts, paths) -> None:
    """cmd_train from loading the data on: print, train each seed, print the results."""
    from . import run_folder
    from .engine import TrainingInterrupted
    from .graph import build_graph
    from .run import SeedRuns, fit_to_data, load_data, preflight

    dataset = load_data(dconfig, args.data_dir)
    recipe, dconfig = fit_to_data(recipe, dataset)  # input.shape from the data, checked before training
    preflight(recipe, build_graph(recipe), dataset, dconfig, device)  # what training would fail on
    if main and not args.quiet:
        _print_start(recipe, dataset, dconfig, args.data_dir, config, device, ranks)
    if paths.folder and not args.resume:
        run_folder.write_manifest(paths.folder, opts, _command_line(), recipe.sections)
    if paths.folder and main:
        print(f"run folder: {paths.folder}", flush=True)
    runs = SeedRuns(
        recipe,
        dataset,
        [args.seed + i for i in range(args.runs)],
        device,
        paths.log,
        paths.checkpoint,
        args.checkpoint_every,
        ranks,
        dconfig.label,
        main,
    )
    if args.resume:
        seed, where = runs.resume()
        print(f"resuming seed {seed} {where}, from {paths.checkpoint}")
    for seed in list(runs.seeds):
        if args.runs > 1 and main and not args.quiet:
            print(runs.which(seed), flush=True)
        table = EpochTable(quiet=args.quiet or not main, progress_every=args.progress_every)
        try:
            run, model = runs.train(seed, on_epoch=table.row, on_step=table.progress)
        except TrainingInterrupted as stop:
            table.clear()
            again = f" --resume {paths.folder}" if paths.folder else " --resume"
            print(
                f"netgraph: {stop}: saved {paths.checkpoint} and the log {paths.log}; continue with:\n"
                f"  {_command_line(drop_resume=paths.folder is not None)}{again}",
                file=sys.stderr,
            )
            raise SystemExit(130 if stop.signal_name == "SIGINT" else 143) from None
        if main:
            print(
                (f"{runs.which(seed)}: " if args.quiet and args.runs > 1 else "") + _result_line(run),
                flush=True,
            )
            if args.save:
                path = paths.folder / "model.pt" if args.save is True else args.save
                print(f"saved {runs.save(model, run, path)}")
    if not main:
        return
    result = runs.finish(_command_line(), [paths.result, args.json_out])
    run_folder.mark_finished(paths.folder)  # once the result is written: else --resume goes on
    if len(runs.finished) > 1:
        print("\n" + _runs_line(result))
    print(f"epoch log: {paths.log}")
    if args.json_out:
        print(f"result: {args.json_out}")


def _print_start(recipe, dataset, dconfig, data_dir, config, device, ranks) -> None:
    """What is about to be trained: data, device, length, the tested model, the normalisation,
    where the training set is, the parameter groups."""
    from .engine import input_dtype
    from .run import choose_placement, group_lines, normalisation_line

    print(header(dataset, dconfig, data_dir, config, device, ranks), flush=True)
    print(
        f"{dataset.name}: {len(dataset.train_labels):,} training and {len(dataset.test_labels):,} "
        f"test images of {' x '.join(map(str, dataset.image_shape))}, {dataset.num_classes} "
        f"classes ({_classes_line(dataset.classes)}); {normalisation_line(dataset, dconfig)}"
    )
    if dconfig.placement != "device":
        print(choose_placement(dconfig, dataset, device, input_dtype(config.precision))[1])
    print("parameter groups:\n" + "\n".join("  " + line for line in group_lines(recipe)), flush=True)


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
        f"{run.setup_time_s:.2f} s) | final evaluation {run.eval_time_s:.2f} s{extra} | {run.device}"
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


def _command_line(drop_resume: bool = False) -> str:
    """This command as typed, quoted for a shell (without its --resume [DIR] if asked)."""
    import shlex

    argv = sys.argv[1:]
    if drop_resume and "--resume" in argv:
        i = argv.index("--resume")
        argv = argv[:i] + argv[i + 1 + (i + 1 < len(argv) and not argv[i + 1].startswith("-")) :]
    return " ".join(["netgraph"] + [shlex.quote(a) for a in argv])


def header(dataset, dconfig, data_dir, config, device, ranks) -> str:
    """What is about to be trained, before any of it: data, device, schedule, the tested model."""
    from .data import default_cache_dir
    from .run import device_name

    source = (
        "generated"
        if dconfig.dataset == "synthetic"
        else f"from {data_dir or dconfig.dir or default_cache_dir()}"
    )
    from .engine import total_steps

    steps = len(dataset.train_labels) // config.batch_size
    total = total_steps(config, max(steps, 1))
    length = (
        f"{config.epochs} epochs x {steps} steps"
        if total == config.epochs * steps
        else f"{total} steps ({total / max(steps, 1):.4g} epochs of {steps} steps)"
    )
    processes = f", {ranks.world} processes" if ranks and ranks.world > 1 else ""
    from .run import tested_model

    tested = tested_model(config)
    if config.tta:
        from .views import describe_tta

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


class EpochTable:
    """The seed's per-epoch table on stdout, and progress on stderr within each epoch: a bar
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

    def __init__(self, quiet: bool = False, progress_every: float = 10.0):
        import time

        self.quiet = quiet
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


def cmd_eval(args) -> None:
    from .config import data_config, train_config
    from .engine import evaluate, input_dtype, to_device
    from .run import load_data, load_model, normalisation, resolve_device

    device = resolve_device(args.device)
    recipe, graph, model, saved = load_model(args.model, device)
    config = train_config(recipe, device.type)
    if device.type == "cpu":
        model.float()  # half-precision convolutions are slow on a CPU
        config.precision = "float32"
    dconfig = data_config(recipe)
    dataset = load_data(dconfig, args.data_dir)
    mean, std = normalisation(dataset, dconfig)
    data = to_device(
        dataset,
        device,
        mean,
        std,
        0,
        next(model.parameters()).dtype if config.precision == "float16" else input_dtype(config.precision),
    )
    acc, loss = evaluate(model, data.test_images, data.test_labels, config)
    print(
        f"test accuracy {acc:.2%} (loss {loss:.4f}) on {len(dataset.test_labels)} {dataset.name} "
        f"test images" + (f"; at training: {saved['test_acc']:.2%}" if "test_acc" in saved else "")
    )


def cmd_ablate(args) -> None:
    from .ablate import ablate, markdown

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
        args.runs,
        overrides=args.set,
        first_seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        out_dir=args.out,
        resume=not args.fresh,
        workers=args.workers,
        on_run=report,
    )
    print("\n" + markdown(rows))
    print(f"\nwrote {args.out}/table.md, table.csv and runs.jsonl")
    if args.plot:
        from .show import show_ablation

        print(f"wrote {show_ablation(rows, args.plot).path}")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set train.epochs=12 or "
        "--set network.layer1.conv_bn.c=96 (values are YAML); repeatable",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="Python module or .py file to import first, e.g. one that registers "
        "your own ops with netgraph.register_op; repeatable",
    )


DATA_DIR_SHAPE_HELP = (
    "read the data set (as for train) to take input.shape from its images when the recipe sets none"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netgraph", description="Networks as recipes of named nodes.")
    p.add_argument("--version", action="version", version=f"netgraph {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("summary", help="table of nodes: shapes, parameters, multiply-accumulates")
    _recipe_args(s)
    s.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    s.add_argument("--data-dir", help=DATA_DIR_SHAPE_HELP)
    s.add_argument(
        "--groups",
        action="store_true",
        help="also the parameter groups training resolves (optimizer, rates, spans)",
    )
    s.set_defaults(run=cmd_summary)

    r = sub.add_parser("render", help="draw the network (svg, png, pdf or dot, by extension)")
    _recipe_args(r)
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
    r.set_defaults(run=cmd_render)

    t = sub.add_parser("train", help="train a recipe: per-epoch table, logs, results")
    _recipe_args(t)
    t.add_argument(
        "--data-dir",
        help="the data set: a folder in an official CIFAR layout, a "
        "folder of class folders (data.dataset: folder) or a .npz "
        "(arrays); default: the recipe's data.dir, else the download cache",
    )
    t.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    t.add_argument("--runs", type=int, default=1, help="train N times with seeds SEED..SEED+N-1")
    t.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
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
    t.set_defaults(run=cmd_train)

    a = sub.add_parser(
        "ablate",
        help="train recipes several times each and tabulate them with "
        "statistics (mean, spread, confidence, Welch's t-test)",
    )
    a.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe files, in table order")
    a.add_argument("--runs", type=int, default=5, help="runs per recipe (seeds SEED..SEED+N-1)")
    a.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
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
    a.add_argument("--data-dir", help="folder with the data set in an official layout")
    a.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    a.add_argument(
        "--out",
        default="runs/ablation",
        help="folder for runs.jsonl, table.md and table.csv (default runs/ablation); "
        "runs already in its runs.jsonl are not trained again",
    )
    a.add_argument("--fresh", action="store_true", help="forget the runs already in --out")
    a.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at a time in N processes, one GPU each on CUDA "
        "(0: one per visible GPU; default 1)",
    )
    a.add_argument("--plot", help="also draw accuracy against training time (png, svg or pdf)")
    a.set_defaults(run=cmd_ablate)

    e = sub.add_parser("eval", help="evaluate a model saved by train --save on the test set")
    e.add_argument("model", help="file written by netgraph train --save")
    e.add_argument("--data-dir", help="folder with the data set (as for train)")
    e.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    e.set_defaults(run=cmd_eval)

    ps = sub.add_parser("passes", help="list the registered graph rewrite passes")
    ps.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="Python module or .py file to import first (your own passes)",
    )
    ps.set_defaults(run=cmd_passes)

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
    ls.set_defaults(run=cmd_list)

    sh = sub.add_parser(
        "show",
        help="the seed's pictures: augmentations, whitening filters, "
        "batch-norm parameters, training curves (needs matplotlib)",
    )
    what = sh.add_subparsers(dest="what", metavar="PICTURE", required=True)
    sa = what.add_parser("augment", help="training images and draws of the recipe's augmentation")
    sw = what.add_parser("whitening", help="leading eigen-patches of the whitening stem's patches")
    for q in (sa, sw):
        _recipe_args(q)
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
        q.set_defaults(run=cmd_show)
    return p


def cmd_passes(args) -> None:
    import yaml

    from .ops import REQUIRED
    from .passes import PASSES  # the registry needs ops, and ops build torch modules

    for plugin in args.imports:
        import_plugin(plugin)
    print("Every pass also takes strict: true, which turns 'found nothing to change' into an error.\n")
    for name, spec in sorted(PASSES.items()):
        params = ", ".join(
            k
            if p.default is REQUIRED
            else f"{k}: {yaml.safe_dump(p.default, default_flow_style=True).splitlines()[0]}"
            for k, p in spec.params.items()
        )
        kind = "exact" if spec.exact else "changes the function"
        print(f"{name:22} {spec.summary} [{kind}]" + (f"\n{'':22} parameters: {params}" if params else ""))


def cmd_list(args) -> None:
    from . import config, passes  # noqa: F401  (their imports create every registry)
    from .registry import listing

    for plugin in args.imports:
        import_plugin(plugin)
    print(listing(args.kind or ""))


def cmd_show(args) -> None:
    from . import show

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


def _command_parser(p: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The sub-command's parser (``show curves``'s for show), whose usage an error should print."""
    for name in (args.command, getattr(args, "what", None)):
        actions = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or name not in actions[0].choices:
            break
        p = actions[0].choices[name]
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = parser()
    args, unknown = p.parse_known_args(argv)
    if unknown:  # e.g. `passes --set ...`: the sub-command's usage, not the top-level one
        _command_parser(p, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    # Warnings about a recipe (e.g. nodes that never reach the output) read as one line each.
    warnings.formatwarning = lambda message, category, *a, **k: f"netgraph: warning: {message}\n"
    try:
        args.run(args)
    except RecipeError as err:
        print(f"netgraph: error: {err}", file=sys.stderr)
        return err.exit_code  # 2, or 1 for a file that could not be written (WriteFailed)
    except KeyboardInterrupt:
        print("netgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `netgraph passes | head`: the reader has gone, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if "netgraph.files" in sys.modules:  # imported by `train` only: --help takes no torch
            sys.modules["netgraph.files"].unlock_all()  # the checkpoint and log locks of `train`
    return 0

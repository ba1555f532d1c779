"""A bounded fuzzing run: generated recipes, files and --sets through everything `train`
does before its first step, each case in its own forked process under 10 s and 1 GiB.

    python tools/fuzz.py --cases 2000 [--seed 0] [--json-out FILE]

Cases come from four hypothesis strategies: tests/test_fuzz.py's valid recipes, broken
recipes (keys deleted, values swapped for junk, nodes and passes made up) and broken files
(lines deleted, doubled, cut, replaced by tricky YAML), and the hostile classes issue 18
found (blocks that use blocks twice, YAML alias bombs and deep nesting in --set, NUL and
control bytes, keys such as 0x10: and 1:30:, integers of thousands of digits, names ending
in a newline, label_smoothing above 1, a float parameter beyond float32, widths read as
base-60 numbers, fewer outputs than classes, crops the network cannot take, whitening
kernels larger than the image). Each case loads the recipe (and its --sets), reads its
train: and data: sections, builds and rewrites the graph, runs train's preflight against a
synthetic data set of the recipe's input shape, compiles the module and runs it on 2 images
where that fits in the case's memory (and the graph has at most 2,000 nodes). An outcome is expected when the case succeeds or
fails with one RecipeError naming the recipe in one line; anything else (another exception,
a traceback, a crash, over 10 s, over 1 GiB) is unexpected and printed with its case.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pickle
import resource
import shutil
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SECONDS = 10
MEMORY = 2**30  # bytes a case may add to the heap (RLIMIT_DATA over the parent's)
FILE = "fuzz.yaml"
CLASSES = 10
COMPILED = 2000


def pipeline(text: str, sets, classes=None) -> None:
    """What `netgraph train` does before its first step, on a recipe file's text and --sets."""
    import torch

    from netgraph import apply_transforms, build_graph, compile_graph, load_recipe
    from netgraph.data.synthetic import synthetic
    from netgraph.graph.passes import PassContext
    from netgraph.runs.plan import fit_to_data, preflight
    from netgraph.train.config import data_config, train_config

    folder = tempfile.mkdtemp(prefix=f"fuzz_{os.getpid()}_")  # the forked child's: the parent removes it
    path = Path(folder) / FILE
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    recipe = load_recipe(path, list(sets))
    config = train_config(recipe)
    data_config(recipe)
    graph = build_graph(recipe)
    shape = tuple(graph.nodes["input"]["params"]["shape"])
    outputs = graph.nodes[graph.graph["output"]]["shape"]
    # data of the recipe's shape, with as many classes as it has outputs (or the case's)
    classes = classes or (outputs[0] if len(outputs) == 1 and 2 <= outputs[0] <= 1000 else CLASSES)
    # every data set is channels x height x width: another input.shape is fit_to_data's to refuse
    images = shape if len(shape) == 3 and math.prod(shape) <= 3 * 64 * 64 else (3, 32, 32)
    dataset = synthetic(8, 8, shape=images, classes=classes, seed=0)
    recipe, dconfig = fit_to_data(recipe, dataset)
    graph = build_graph(recipe)
    preflight(recipe, graph, dataset, dconfig, torch.device("cpu"))
    context = PassContext(
        train_images=lambda n: torch.randn(min(n, 16), *shape), batch_size=config.batch_size
    )
    graph, _ = apply_transforms(graph, recipe, context)
    # the harness's own bounds: compile and run only modules whose weights and 2 images'
    # activations fit in the case, of at most COMPILED nodes (compiling is linear in the nodes:
    # 8,192 convs take 4.3 s, their forward 2 s, which says nothing about netgraph's checks)
    widest = max(math.prod(d["shape"]) for _, d in graph.nodes(data=True))
    from netgraph.graph.summary import summarize

    counts = summarize(graph)
    if (
        4 * (counts["params"] + counts["frozen_params"] + 4 * widest) > MEMORY // 4
        or graph.number_of_nodes() > COMPILED
    ):
        return
    module = compile_graph(graph).eval()
    with torch.no_grad():
        module(torch.randn(2, *shape))


def run_case(text, sets, classes=None) -> dict:
    """One case in a forked child under the time and memory bounds: its outcome."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: bounded, quiet, one thread
        os.close(read)
        outcome = {"kind": "ok"}
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
            used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (used + MEMORY, hard))
            signal.alarm(SECONDS)
            import torch

            torch.set_num_threads(1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipeline(text, sets, classes)
        except BaseException as err:  # noqa: B902 (classified below)
            from netgraph import RecipeError

            message = str(err)
            where = err.file or "" if isinstance(err, RecipeError) else ""
            if isinstance(err, RecipeError) and "\n" not in message and (FILE in where or "--set" in where):
                outcome = {"kind": "recipe_error"}  # one line naming the recipe or the --set
            else:
                outcome = {"kind": "unexpected", "error": f"{type(err).__name__}: {message[:300]}"}
        os.write(write, pickle.dumps(outcome))
        os._exit(0)
    os.close(write)
    start = time.monotonic()
    _, status = os.waitpid(pid, 0)
    data = b""
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read)
    seconds = time.monotonic() - start
    for folder in Path(tempfile.gettempdir()).glob(f"fuzz_{pid}_*"):
        shutil.rmtree(folder, ignore_errors=True)
    if os.WIFSIGNALED(status):
        why = (
            f"over {SECONDS} s"
            if os.WTERMSIG(status) == signal.SIGALRM
            else f"killed by signal {os.WTERMSIG(status)}"
        )
        return {"kind": "unexpected", "error": why, "seconds": seconds}
    outcome = pickle.loads(data) if data else {"kind": "unexpected", "error": "no outcome (crashed)"}
    if "MemoryError" in outcome.get("error", ""):
        outcome["error"] = "over 1 GiB: " + outcome["error"]
    return {**outcome, "seconds": seconds}


# --- the hostile classes --------------------------------------------------------------------

NET = "network:\n  conv: {op: conv2d, out: 8}\n  pool: {op: global_avg_pool}\n  flat: {op: flatten}\n  fc: {op: linear, out: 10}\n"


def hostile_cases(st):
    """A strategy of (text, sets) for each class issue 18 found."""

    def blocks_twice(depth):
        lines = ["blocks:", "  b0: {conv: {op: conv2d, out: 4}}"]
        lines += [f"  b{i}: {{x: {{block: b{i - 1}}}, y: {{block: b{i - 1}}}}}" for i in range(1, depth + 1)]
        return (
            "\n".join(lines) + f"\nnetwork:\n  top: {{block: b{depth}}}\n  pool: {{op: global_avg_pool}}\n"
            "  flat: {op: flatten}\n  fc: {op: linear, out: 10}\n"
        )

    def alias_bomb(levels):
        parts = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        parts += [
            f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
            f"*a{i - 1}, *a{i - 1}, *a{i - 1}]"
            for i in range(1, levels)
        ]
        return "{" + ", ".join(parts) + "}"

    nested = st.integers(10, 2000).map(lambda n: ("[" * n) + ("]" * n))
    return st.one_of(
        st.integers(1, 40).map(lambda d: (blocks_twice(d), [])),
        st.integers(2, 9).map(lambda n: (NET, [f"train.tta={alias_bomb(n)}"])),
        nested.map(lambda v: (NET, [f"train.param_groups={v}"])),
        st.sampled_from(["\0", "\x01", "\x1b", "\x7f", "\ufeff"]).flatmap(
            lambda c: st.integers(0, len(NET)).map(lambda i: (NET[:i] + c + NET[i:], []))
        ),
        st.sampled_from(["0x10: 1", "1:30: 2", "0o17: 3", "1_000: 4", ".inf: 5"]).map(
            lambda k: (NET + "train:\n  " + k + "\n", [])
        ),
        st.integers(4300, 20000).map(lambda n: (NET.replace("out: 8", "out: " + "9" * n), [])),
        st.sampled_from(["conv\n", "conv\r", "conv ", "con/v", "..", "0"]).map(
            lambda name: (NET.replace("  conv:", f"  {json.dumps(name)}:"), [])
        ),
        st.floats(1.0001, 1e6).map(lambda s: (NET, [f"train.label_smoothing={s}"])),
        st.sampled_from(["1.0e+39", "-3.5e+38", "1e+300"]).map(
            lambda a: (NET.replace("  pool:", f"  act: {{op: celu, alpha: {a}}}\n  pool:"), [])
        ),
        st.sampled_from(["190:20:30", "99:59:59", "2000000000"]).map(
            lambda c: (NET.replace("out: 8", f"out: {c}"), [])
        ),
        st.integers(1, CLASSES - 1).map(lambda k: (NET.replace("out: 10", f"out: {k}"), [], CLASSES)),
        st.integers(1, 31).map(
            lambda c: (NET.replace("  pool: {op: global_avg_pool}\n", ""), [f"data.augment=[{{crop: {c}}}]"])
        ),
        st.integers(33, 200).map(lambda k: (NET + "transforms:\n  - whiten_stem: {kernel: %d}\n" % k, [])),
        st.integers(2**31 - 10, 2**40).map(lambda b: (NET, [f"train.batch_size={b}"])),
        st.text(max_size=40).map(lambda v: (NET, [f"train.epochs={v}"])),
    )


def strategies():
    import test_fuzz
    import yaml
    from hypothesis import strategies as st

    return st.one_of(
        test_fuzz.valid_recipe().map(lambda s: (yaml.safe_dump(s, sort_keys=False), [])),
        test_fuzz.broken_recipe().map(lambda s: (yaml.safe_dump(s, sort_keys=False), [])),
        test_fuzz.broken_file().map(lambda text: (text, [])),
        hostile_cases(st),
        hostile_cases(st),
    )  # the hostile classes: about 2 in 5 cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    import torch  # noqa: F401  (imported once, before the children fork)
    from hypothesis import HealthCheck, given, seed, settings

    import netgraph.runs.run  # noqa: F401

    counts, unexpected, slowest = {}, [], 0.0

    @seed(args.seed)
    @settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategies())
    def one(case):
        nonlocal slowest
        text, sets, classes = case if len(case) == 3 else (*case, None)
        outcome = run_case(text, sets, classes)
        counts[outcome["kind"]] = counts.get(outcome["kind"], 0) + 1
        slowest = max(slowest, outcome["seconds"])
        if outcome["kind"] == "unexpected":
            unexpected.append(
                {"text": text[:2000], "sets": [s[:300] for s in sets], "error": outcome["error"]}
            )
            print(f"UNEXPECTED {outcome['error']}\n  sets {sets!r:.200}\n  text {text!r:.400}", flush=True)
        done = sum(counts.values())
        if done % 200 == 0:
            print(f"{done} cases: {counts}", flush=True)

    start = time.time()
    one()
    total = sum(counts.values())
    print(
        f"{total} cases in {time.time() - start:.0f} s: {counts}; slowest case {slowest:.1f} s; "
        f"unexpected {len(unexpected)}"
    )
    if args.json_out:
        import torch as t

        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(
            json.dumps(
                {
                    "command": "python tools/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "torch": t.__version__,
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "bounds": {"seconds": SECONDS, "memory_bytes": MEMORY},
                    "cases": total,
                    "outcomes": counts,
                    "slowest_case_s": slowest,
                    "unexpected": unexpected,
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())

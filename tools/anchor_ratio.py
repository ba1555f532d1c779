"""What a run costs against the anchor's own script: whole-process wall time, side by side.

    python tools/anchor_ratio.py --airbench /path/to/airbench94_muon.py \\
        --data-dir ../shared/data/cifar10-subset --device cpu --widths 32 64 64 --pairs 5 \\
        --out bench/results/anchor_ratio_cpu_DATE.json

Given a copy of Keller Jordan's ``airbench94_muon.py`` that the user fetched (github.com/
KellerJordan/cifar10-airbench; nothing of it is in this repository), each pair runs that
script's own loop in a process of its own, patched at run time (every patch asserted to
apply, ``PATCHES``) to the device, widths, batch, epochs and data asked, then netgraph's
``recipes/airbench/airbench94_muon.yaml`` at the same settings; the two alternate (netgraph,
airbench, netgraph, ...) so that a shared machine's load falls on both. Each side's time is
the process's, measured from outside: start-up, data, training, evaluation, exit. The
medians and their ratio (netgraph / airbench) go to ``--out`` with the command, machine,
torch version, date, every figure and the load average before and after.

``--ops N`` then runs each side once more under torch.profiler and records its N heaviest
operators (self CPU seconds, calls): two runs of the same network that differ in an operator's
calls do different work (issue 33's last 10% was 10 convolution backward calls airbench skips).

Without ``--airbench`` it says so and times the plain-PyTorch reference loop of this
repository (``tools/reference_train.py``) against ``recipes/tiny.yaml`` at its settings
(the fidelity study's: widths 16/32/64/128, batch 128), the only anchor it has then.

On the CPU the patches also take out what only a GPU has (half precision, torch.compile and
its warm-up run, CUDA timers); on a GPU the script runs as written (compiled, with its
warm-up run) and the recipe with its own train.compile. torchvision, which the script
imports for ``T.Normalize`` alone once the data patch applies, is stubbed with the same
arithmetic when it is not installed (the JSON says which).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"
SAMPLE = ROOT / "samples" / "cifar10"

# (what, the text in airbench94_muon.py, its replacement, devices it applies on: "cpu" or "any")
Patch = Tuple[str, str, str, str]
PATCHES: List[Patch] = [
    ("data read from the CIFAR binary layout, on the device", r"DATA", "", "any"),
    ("data folder", 'CifarLoader("cifar10"', "CifarLoader(_ANCHOR_DATA", "any"),
    ("widths", "widths = dict(block1=64, block2=256, block3=256)", "widths = dict({widths})", "any"),
    ("batch size", "    batch_size = 2000\n", "    batch_size = {batch}\n", "any"),
    (
        "epochs",
        "total_train_steps = ceil(8 * len(train_loader))",
        "total_train_steps = ceil({epochs} * len(train_loader))",
        "any",
    ),
    ("device", "model = CifarNet().cuda()", "model = CifarNet().to(_ANCHOR_DEVICE)", "any"),
    ("one run", "for run in range(200)", "for run in range(1)", "any"),
    ("no log folder", "LOGS", "", "any"),
    ("float32 images", "self.images.half() / 255", "self.images.float() / 255", "cpu"),
    ("float32 model", "                mod.half()", "                mod.float()", "cpu"),
    ("no torch.compile of Newton-Schulz", "@torch.compile\ndef zeropower", "def zeropower", "cpu"),
    ("no torch.compile of the model", '    model.compile(mode="max-autotune")\n', "", "cpu"),
    ("no compiler warm-up run", '    main("warmup", model)\n', "", "cpu"),
    (
        "CPU timers",
        "starter = torch.cuda.Event(enable_timing=True)\n    ender = torch.cuda.Event(enable_timing=True)",
        "starter = _AnchorTimer()\n    ender = _AnchorTimer()",
        "cpu",
    ),
    ("no CUDA synchronisation", "torch.cuda.synchronize()", "pass", "cpu"),
]
# the two patches that cut a block: CifarLoader's file reading (torch.load of train.pt, made by
# torchvision's download) and the log folder written at the end
BLOCKS = {
    "DATA": (
        re.compile(r"        data_path = os\.path\.join\(path.*?data\[\"classes\"\]\n", re.S),
        "        self.images, self.labels, self.classes = _anchor_load(path, train)\n",
    ),
    "LOGS": (re.compile(r"    log_dir = os\.path\.join\(\"logs\".*\Z", re.S), ""),
}


def patch_source(source: str, device: str, widths: Sequence[int], batch: int, epochs: float) -> str:
    """airbench94_muon.py patched: every patch of PATCHES for ``device`` must find its text
    (SystemExit naming the one that did not: the script changed, the patch must follow)."""
    names = {"widths": f"block1={widths[0]}, block2={widths[1]}, block3={widths[2]}"}
    for what, old, new, where in PATCHES:
        if where == "cpu" and device != "cpu":
            continue
        if old in BLOCKS:
            pattern, block = BLOCKS[old]
            source, found = pattern.subn(lambda _, text=block: text, source)
        else:
            found = source.count(old)
            source = source.replace(old, new.format(widths=names["widths"], batch=batch, epochs=epochs))
        if found == 0:
            raise SystemExit(f"anchor_ratio: the patch '{what}' found nothing to patch in the script")
    return source


def read_cifar(folder: Path, train: bool):
    """(NHWC uint8 images, labels, class names) of the official binary layout."""
    folder = folder / "cifar-10-batches-bin" if (folder / "cifar-10-batches-bin").is_dir() else folder
    paths = sorted(folder.glob("data_batch_*.bin")) if train else [folder / "test_batch.bin"]
    raw = np.concatenate([np.fromfile(p, np.uint8).reshape(-1, 3073) for p in paths])
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    names = (
        (folder / "batches.meta.txt").read_text().split() if (folder / "batches.meta.txt").exists() else []
    )
    return np.ascontiguousarray(images), raw[:, 0].astype(np.int64), names or [str(i) for i in range(10)]


def torchvision_stub() -> types.ModuleType:
    """torchvision with what the patched script uses: transforms.Normalize, as torchvision
    computes it ((x - mean) / std per channel)."""
    import torch

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.as_tensor(mean), torch.as_tensor(std)

        def __call__(self, x):
            return (x - self.mean.to(x).view(-1, 1, 1)) / self.std.to(x).view(-1, 1, 1)

    module, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    transforms.Normalize = Normalize  # type: ignore[attr-defined]
    module.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": module, "torchvision.transforms": transforms})
    return module


def run_airbench(args) -> None:
    """The child process: the script patched, then run as __main__ with what the patches name."""
    import torch

    torch.set_num_threads(args.threads)
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or built for another torch
        torchvision_stub()
    device = torch.device(args.device)

    def load(path, train):
        images, labels, classes = read_cifar(Path(path), train)
        return torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device), classes

    class Timer:
        def record(self):
            self.at = time.perf_counter()

        def elapsed_time(self, end):
            return 1e3 * (end.at - self.at)

    path = Path(args.child)
    source = patch_source(path.read_text(), device.type, args.widths, args.batch, args.epochs)
    sys.argv = [str(path)]  # the script reads its own source from sys.argv[0]
    scope = {"__name__": "__main__", "__file__": str(path), "_anchor_load": load, "_AnchorTimer": Timer}
    scope.update(_ANCHOR_DATA=str(args.data_dir), _ANCHOR_DEVICE=device)
    exec(compile(source, str(path), "exec"), scope)


def profiled(cmd: List[str], out: Path, top: int) -> None:
    """The child of ``--ops``: ``cmd`` (``python -m MODULE ...`` or ``python SCRIPT ...``) run in
    this process under torch.profiler; its ``top`` operators by self CPU time go to ``out``."""
    import runpy

    from torch.profiler import ProfilerActivity, profile

    _, first, *rest = cmd
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        try:
            if first == "-m":
                sys.argv = rest
                runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
            else:
                sys.argv = [first, *rest]
                runpy.run_path(first, run_name="__main__")
        except SystemExit as e:
            if e.code:
                raise
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    ops = [{"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in rows]
    out.write_text(json.dumps(ops))


def op_profiles(args, commands: Dict[str, List[str]], env: Dict[str, str], cwd: Path) -> Dict:
    """Each side once more, under torch.profiler in a process of its own (``profiled``): its
    ``args.ops`` heaviest operators, self CPU seconds and calls. Where two runs of the same
    network differ in an operator's calls, one side does work the other does not."""
    ops = {}
    for side, cmd in commands.items():
        out = cwd / f"ops-{side}.json"
        child = [sys.executable, str(Path(__file__).resolve()), "--profiled", json.dumps(cmd)]
        timed([*child, "--ops", str(args.ops), "--ops-out", str(out)], env, cwd)
        ops[side] = json.loads(out.read_text())
    return ops


def netgraph_command(args, out: Path) -> List[str]:
    """netgraph's side: airbench94_muon.yaml at the widths, batch and epochs asked (the head's
    scale 1 / the last width, as the script's x / x.size(-1)); tiny.yaml without a script."""
    cmd = [sys.executable, "-m", "netgraph", "train"]
    if args.airbench:
        w1, w2, w3 = args.widths
        sets = [f"network.group1.c={w1}", f"network.group2.c={w2}", f"network.group3.c={w3}"]
        sets += [f"network.head.scale.by={1 / w3!r}", f"train.batch_size={args.batch}"]
        sets += [f"train.epochs={args.epochs:g}"]
        if args.device == "cpu":
            sets += ["train.precision=float32", "train.compile=none"]
        cmd.append(str(ROOT / "recipes" / "airbench" / "airbench94_muon.yaml"))
    else:
        sets = [f"train.batch_size={args.batch}", f"train.epochs={args.epochs:g}"]
        cmd.append(str(ROOT / "recipes" / "tiny.yaml"))
    cmd += ["--data-dir", str(args.data_dir), "--device", args.device, "--quiet"]
    cmd += ["--log", str(out / "log.jsonl"), "--json-out", str(out / "result.json"), "--overwrite"]
    return cmd + [x for s in sets for x in ("--set", s)]


def anchor_command(args) -> List[str]:
    """The anchor's side: the patched script in a child process of this tool, or reference_train.py."""
    if args.airbench:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(args.airbench)]
        cmd += [
            "--widths",
            *map(str, args.widths),
            "--batch",
            str(args.batch),
            "--epochs",
            f"{args.epochs:g}",
        ]
        return cmd + [
            "--data-dir",
            str(args.data_dir),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
        ]
    cmd = [sys.executable, str(ROOT / "tools" / "reference_train.py"), "--width", *map(str, args.widths)]
    return cmd + [
        "--batch",
        str(args.batch),
        "--epochs",
        f"{args.epochs:g}",
        "--data-dir",
        str(args.data_dir),
    ]


def timed(cmd: List[str], env: Dict[str, str], cwd: Path) -> Tuple[float, float, str]:
    """(the process's wall time from outside, its CPU time (user + system: what a shared
    machine's load changes least), its stdout)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"anchor_ratio: {' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.stdout


def pairs(args) -> Tuple[List[Dict], Dict[str, List[str]], Dict]:
    """``args.pairs`` alternating pairs, netgraph first: each side's wall time and netgraph's own
    account of its time (its --json-out time_s); then, with ``--ops``, each side's operators."""
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
    runs: List[Dict] = []
    commands: Dict[str, List[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        commands = {"netgraph": netgraph_command(args, out), "anchor": anchor_command(args)}
        for i in range(args.pairs):
            ours, ours_cpu, _ = timed(commands["netgraph"], env, out)
            result = json.loads((out / "result.json").read_text())
            theirs, theirs_cpu, printed = timed(commands["anchor"], env, out)
            runs.append(
                {
                    "pair": i,
                    "netgraph_s": ours,
                    "anchor_s": theirs,
                    "netgraph_cpu_s": ours_cpu,
                    "anchor_cpu_s": theirs_cpu,
                    "netgraph_test_acc": result["test_acc"],
                    "netgraph_time_s": result.get("time_s"),
                    "anchor_last_line": printed.strip().splitlines()[-1] if printed.strip() else "",
                }
            )
            print(f"pair {i}: netgraph {ours:.2f} s, anchor {theirs:.2f} s", flush=True)
        ops = op_profiles(args, commands, env, out) if args.ops else {}
    return runs, commands, ops


def load_average() -> Optional[List[float]]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def report(args, runs: List[Dict], commands: Dict[str, List[str]], ops: Dict, load_before) -> Dict:
    import torch

    ours = statistics.median(r["netgraph_s"] for r in runs)
    theirs = statistics.median(r["anchor_s"] for r in runs)
    accounted = [r["netgraph_time_s"] for r in runs if r["netgraph_time_s"]]
    parts = {k: statistics.median(a[k] for a in accounted) for k in accounted[0]} if accounted else {}
    try:
        import torchvision  # noqa: F401

        vision = getattr(torchvision, "__version__", "?")
    except Exception:
        vision = "stub (not importable here): transforms.Normalize with torchvision's arithmetic"
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "anchor": str(args.airbench)
        if args.airbench
        else "tools/reference_train.py (no airbench script given)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}",
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "torchvision": vision,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "widths": args.widths,
            "batch": args.batch,
            "epochs": args.epochs,
            "data": str(args.data_dir),
        },
        "commands": {k: " ".join(v) for k, v in commands.items()},
        "patches": [what for what, _, _, where in PATCHES if where == "any" or args.device == "cpu"],
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "runs": runs,
        "median_netgraph_s": ours,
        "median_anchor_s": theirs,
        "ratio": ours / theirs,
        "cpu_ratio": statistics.median(r["netgraph_cpu_s"] for r in runs)
        / statistics.median(r["anchor_cpu_s"] for r in runs),
        "netgraph_time_s_median_parts": parts,
        **({"ops": ops, "ops_note": OPS_NOTE} if ops else {}),
    }


OPS_NOTE = (
    "torch.profiler, one more run of each side after the pairs, each in a process of its own: "
    "the heaviest operators by self CPU seconds (the profiler's own cost included) and calls"
)


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--airbench", type=Path, help="a copy of airbench94_muon.py (without: the reference loop)")
    p.add_argument("--data-dir", type=Path, default=None, help="default: the shared subset, or the sample")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--widths", type=int, nargs="+", default=None, help="default 32 64 64 (reference: 16 32 64 128)"
    )
    p.add_argument("--batch", type=int, default=None, help="default 2000 (reference: 128)")
    p.add_argument("--epochs", type=float, default=None, help="default 8 (reference: 10)")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--tiny", action="store_true", help="the repository's sample at a tiny size (a smoke test)"
    )
    p.add_argument("--ops", type=int, default=0, help="then profile each side once: its N heaviest operators")
    p.add_argument("--child", help=argparse.SUPPRESS)  # the patched script's own process
    p.add_argument("--profiled", help=argparse.SUPPRESS)  # --ops's child: a command (JSON) to profile
    p.add_argument("--ops-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    ref = not (args.airbench or args.child)
    args.widths = args.widths or ([16, 32, 64, 128] if ref else [32, 64, 64])
    args.batch = args.batch or (128 if ref else 2000)
    args.epochs = args.epochs or (10 if ref else 8)
    if args.tiny:
        # the reference keeps tiny.yaml's widths: the recipe's side sets none of them
        args.widths, args.batch, args.epochs = ([16, 32, 64, 128] if ref else [8, 16, 16]), 256, 3
    if args.data_dir is None:
        args.data_dir = SAMPLE if args.tiny or not SUBSET.is_dir() else SUBSET
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    if args.child:
        run_airbench(args)
        return 0
    if args.profiled:
        profiled(json.loads(args.profiled), args.ops_out, args.ops)
        return 0
    if not args.airbench:
        print("anchor_ratio: no --airbench script given: timing tools/reference_train.py against tiny.yaml")
    load_before = load_average()
    runs, commands, ops = pairs(args)
    result = report(args, runs, commands, ops, load_before)
    print(
        f"median netgraph {result['median_netgraph_s']:.2f} s, anchor {result['median_anchor_s']:.2f} s: "
        f"ratio {result['ratio']:.3f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

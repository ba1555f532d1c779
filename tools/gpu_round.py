"""One GPU round: every pending GPU measurement in one command, inside a wall-clock budget.

A task that is lent a GPU has 15 minutes of device time in all, the machine's start
included, so the measurements are prepared here and made in one call there:

    python tools/gpu_round.py --prepare               # here: copies the data into data/ (ignored)
    python tools/gpu_round.py --out $OUT              # there: one `run`, carry ["data"], timeout_s 600
    python tools/gpu_round.py --dry-run --out /tmp/r  # on a CPU: every stage at tiny sizes (CI does this)

Stages run in order of value; one that would not fit in what is left of ``--budget``
(default 540 s) is skipped, and one still running at the budget is stopped, so the round
ends cleanly before the device call's 600 s. Each stage is a subprocess of its own (a
crash or a hang ends only that stage) and writes its record as JSON (command, GPU, torch,
date, figures) into ``--out``: at most 8 files in one folder, which is what a device call
brings back. ``round.json`` lists every stage with its status and seconds, and a short
table is printed at the end. Commit what comes back under bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "samples" / "cifar10"  # the real sample the repository carries: a dry run needs no ../shared
CARRIED = ROOT / "data"  # ignored by git; `--prepare` fills it and the device call carries it
JPEG_LABEL = "CIFAR-10 (JPEG copy)"
MAX_FILES = 8  # what one device call brings back from $OUT
FINAL_RESERVE_S = 15  # for round.json and the table after the last stage
RECIPE = "recipes/bag_of_tricks.yaml"
# a dry run trains tiny.yaml on 256 synthetic images for 3 epochs (its schedule's fewest)
DRY_SETS = ["data.dataset=synthetic", "data.synthetic={train: 256, test: 128, classes: 10}", "train.epochs=3"]
# what recipes/airbench/*.yaml said while their training could not yet be written (issue 16)
WAITING = "Waiting for the open training engine"
# a dry run trains the records on DRY_SETS' 256 images: batches that fit, small widths, float32
RECORD_DRY_SETS = [
    "train.batch_size=64",
    "train.precision=float32",
    "train.channels_last=false",
    "train.compile=none",
    "network.group1.c=8",
    "network.group2.c=16",
    "network.group3.c=16",
]
LADDER_RECORD = ROOT / "bench/results/ladder_h100_jpeg_1seed/runs.jsonl"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def environment() -> Dict:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"gpu": gpu, "torch": torch.__version__, "date": now()}


def train_options() -> Dict:
    """The recipe options this checkout has, so the round measures what exists and says
    what does not (CUDA graphs and host placement come with other issues)."""
    from netgraph.train.config import DATA_PARAMS, TRAIN_PARAMS

    return {
        "compile_modes": tuple(TRAIN_PARAMS["compile"].choices or ()),
        "cuda_graphs": "cuda_graphs" in TRAIN_PARAMS,
        "placement": "placement" in DATA_PARAMS,
    }


class Round:
    """The budget, the output folder and the record of every stage."""

    def __init__(self, out: Path, budget_s: float, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.stages: List[Dict] = []
        self.env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            PYTHONUNBUFFERED="1",
        )
        self.data_dir = str(CARRIED / "jpeg")
        self.options = train_options()

    def left(self) -> float:
        return self.deadline - time.monotonic() - FINAL_RESERVE_S

    def run(self, command: List[str], timeout: Optional[float] = None) -> Dict:
        """A subprocess in the repository, stopped at the budget; its output is passed through."""
        limit = self.left() if timeout is None else min(timeout, self.left())
        started = time.monotonic()
        print("$ " + shlex.join(command), flush=True)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: List[str] = []
        try:
            out, _ = process.communicate(timeout=max(limit, 1))
            lines = out.splitlines()
            stopped = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the whole group: ablate's workers, compile workers
            out, _ = process.communicate()
            lines, stopped = out.splitlines(), True
        for line in lines[-40:]:
            print("  " + line, flush=True)
        return {
            "command": shlex.join(command),
            "rc": process.returncode,
            "stopped_at_budget": stopped,
            "seconds": round(time.monotonic() - started, 1),
            "tail": lines[-15:],
        }

    def recipe_and_data(self, *recipes: str) -> List[str]:
        """The recipes (tiny.yaml for the bag of tricks in a dry run), the device and the data."""
        if self.dry_run:
            recipes = tuple("recipes/tiny.yaml" if p == RECIPE else p for p in recipes)
            return [*recipes, "--device", "cpu", *[a for s in DRY_SETS for a in ("--set", s)]]
        return [
            *recipes,
            "--device",
            "cuda",
            "--data-dir",
            self.data_dir,
            "--set",
            f"data.label={JPEG_LABEL}",
        ]

    def file(self, name: str) -> Path:
        return self.out / name

    def write(self, name: str, record: Dict) -> None:
        self.file(name).write_text(
            json.dumps({"tool": "tools/gpu_round.py", **environment(), **record}, indent=2) + "\n"
        )


# --- the stages, in order of value ---------------------------------------------------------------


# A dry run's decode, on the sample: netgraph reads it in the layout to_batches.py writes, and 64
# of its images go through Pillow's JPEG codec as to_batches.decode opens them (quality 75, the
# copy's); where the JPEG copy is beside the repository, 64 of its own images are decoded too.
DRY_DECODE = """
import io, sys
from pathlib import Path
import numpy as np
from PIL import Image
from netgraph.data.cifar import read_cifar

def decode(blobs):
    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).transpose(2, 0, 1) for b in blobs])

images = read_cifar("cifar10", sys.argv[1]).test_images[:64].numpy()
blobs = []
for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buffer, "JPEG", quality=75)
    blobs.append(buffer.getvalue())
error = np.abs(decode(blobs).astype(float) - images).mean()
assert error < 10, error  # a JPEG at quality 75 is within a few levels of the pixels
print("sample: decoded", images.shape, f"mean error {error:.1f} levels")
if len(sys.argv) > 2:  # the copy's own converter, as the real round runs it
    sys.path.insert(0, str(Path(sys.argv[2]).parent))
    import to_batches
    z = np.load(sys.argv[2])
    print("JPEG copy: decoded", to_batches.decode(z["test_jpeg"], z["test_offsets"][:65]).shape)
"""


def stage_decode(r: Round) -> Dict:
    """The JPEG copy decoded into the official binary layout (skipped when already there)."""
    script = CARRIED / "cifar10-jpeg" / "to_batches.py"
    if r.dry_run:  # a few images only, to check the reader and Pillow (and the archive, if here)
        archive = SHARED / "cifar10-jpeg" / "cifar10_jpeg.npz"
        return r.run(
            [sys.executable, "-c", DRY_DECODE, str(SAMPLE), *([str(archive)] if archive.is_file() else [])]
        )
    if (Path(r.data_dir) / "cifar-10-batches-bin" / "test_batch.bin").exists():
        return {"status": "already decoded"}
    return r.run([sys.executable, str(script), r.data_dir], timeout=180)


def stage_cuda_tests(r: Round) -> Dict:
    result = r.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"], timeout=150
    )
    r.write("cuda_tests.json", {"stage": "cuda_tests", **result})
    return result


def speed_variants(r: Round, modes: List[str]) -> List[str]:
    """bench.py variants: float16 eager first (the ratios' baseline), then each speed-up alone
    and combined where they compose; only those this checkout has."""
    if r.dry_run:  # eager float32 only: a CPU compile would take minutes; the plumbing is the same
        return [
            "float32=train.precision=float32",
            "channels_last=train.precision=float32,train.channels_last=true",
        ][: 1 if "max-autotune" in modes else 2]
    half = "train.precision=float16"
    variants = [f"float16={half}"]
    for mode in modes:
        if mode in r.options["compile_modes"]:
            name = "compile" if mode == "default" else mode.replace("-", "_")
            variants.append(f"{name}={half},train.compile={mode}")
    if "default" in modes:
        variants.append(f"channels_last_compile={half},train.channels_last=true,train.compile=default")
        if r.options["cuda_graphs"]:
            variants += [
                f"cuda_graphs={half},train.cuda_graphs=true",
                f"compile_cuda_graphs={half},train.compile=default,train.cuda_graphs=true",
            ]
    return variants


def _bench(r: Round, name: str, modes: List[str], reps: int, timeout: float) -> Dict:
    command = [
        sys.executable,
        "tools/bench.py",
        *r.recipe_and_data(RECIPE),
        "--parts",
        "train",
        "--train-reps",
        str(reps),
        "--json-out",
        str(r.file(name)),
    ]
    for variant in speed_variants(r, modes):
        command += ["--variant", variant]
    result = r.run(command, timeout=timeout)
    if r.file(name).exists():
        variants = json.loads(r.file(name).read_text())["train"]["variants"]
        result["figures"] = {
            k: {
                "train_time_s": round(v["train_time_s"], 3),
                "compile_time_s": round(v["compile_time_s"], 1),
                "test_acc_mean": v["test_acc_mean"],
            }
            for k, v in variants.items()
        }
    return result


def stage_speed(r: Round) -> Dict:
    return _bench(r, "speed.json", ["default"], reps=1 if r.dry_run else 3, timeout=300)


def stage_max_autotune(r: Round) -> Dict:
    """Apart from the others: its first compile alone can take minutes."""
    return _bench(
        r, "max_autotune.json", ["default", "max-autotune"], reps=1 if r.dry_run else 2, timeout=300
    )


def fastest(r: Round) -> List[str]:
    """The --sets of the fastest variant measured this round (float16 + compile if none)."""
    best, overrides = None, ["train.precision=float16", "train.compile=default"]
    for name in ("speed.json", "max_autotune.json"):
        if r.file(name).exists():
            for v in json.loads(r.file(name).read_text())["train"]["variants"].values():
                if best is None or v["train_time_s"] < best:
                    best, overrides = v["train_time_s"], v["overrides"]
    return ["train.precision=float32"] if r.dry_run else overrides


def _ablate(
    r: Round,
    recipes: List[str],
    runs: int,
    sets: List[str],
    seeds_file: Optional[Path],
    out_name: str,
    timeout: Optional[float] = None,
) -> Dict:
    """netgraph ablate into a scratch folder (it keeps every finished run at once, so a stage
    stopped at the budget keeps what it trained); its runs.jsonl is the record."""
    scratch = Path(tempfile.mkdtemp(prefix="gpu_round_"))
    if seeds_file is not None and seeds_file.exists():
        shutil.copy(seeds_file, scratch / "runs.jsonl")
    before = sum(1 for _ in open(scratch / "runs.jsonl")) if (scratch / "runs.jsonl").exists() else 0
    command = [
        sys.executable,
        "-m",
        "netgraph",
        "ablate",
        *r.recipe_and_data(*recipes),
        "--runs",
        str(runs),
        "--out",
        str(scratch),
    ]
    for s in sets:
        command += ["--set", s]
    result = r.run(command, timeout=timeout)
    if (scratch / "runs.jsonl").exists():
        shutil.copy(scratch / "runs.jsonl", r.file(out_name))
        lines = [json.loads(line) for line in open(scratch / "runs.jsonl") if line.strip()]
        result["runs_before"], result["runs_after"] = before, len(lines)
        result["figures"] = summarise_runs(lines)
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def summarise_runs(runs: List[Dict]) -> Dict:
    """Per recipe: runs, mean and standard deviation of the test accuracy, median train time."""
    by: Dict[str, List[Dict]] = {}
    for run in runs:
        by.setdefault(run["recipe"], []).append(run)
    return {
        name: {
            "runs": len(rs),
            "test_acc_mean": statistics.mean(x["test_acc"] for x in rs),
            "test_acc_std": statistics.stdev(x["test_acc"] for x in rs) if len(rs) > 1 else None,
            "train_time_s_median": statistics.median(x["train_time_s"] for x in rs),
        }
        for name, rs in by.items()
    }


def stage_accuracy(r: Round) -> Dict:
    """The bag of tricks with the round's fastest settings, 5 seeds (2 in a dry run)."""
    return _ablate(r, [RECIPE], 2 if r.dry_run else 5, fastest(r), None, "accuracy_runs.jsonl", timeout=200)


def stage_records(r: Round) -> Dict:
    """The records' recipes (issue 17), 5 seeds each, when this checkout has them."""
    recipes = sorted(glob.glob(str(ROOT / "recipes/airbench/*.yaml")))
    if not recipes:
        return {"status": "unavailable: no recipes/airbench/*.yaml in this checkout"}
    waiting = [p for p in recipes if WAITING in Path(p).read_text()]
    if waiting:  # timing a record's network under another training would not be the record
        return {
            "status": f"unavailable: {', '.join(os.path.relpath(p, ROOT) for p in waiting)} "
            f"say their training is {WAITING.lower()}"
        }
    return _ablate(
        r,
        [os.path.relpath(p, ROOT) for p in recipes],
        2 if r.dry_run else 5,
        RECORD_DRY_SETS if r.dry_run else [],
        None,
        "records_runs.jsonl",
        timeout=240,
    )


def stage_ladder(r: Round) -> Dict:
    """One more seed of every ladder step, continuing the existing record (ablate never
    trains a (recipe, seed, overrides) already in it). A dry run continues a record of
    tiny.yaml's seed 0 with seed 1."""
    if r.dry_run:
        seeds = Path(tempfile.mkdtemp(prefix="gpu_round_")) / "seed0.jsonl"
        _ablate(r, [RECIPE], 1, [], None, "ladder_runs.jsonl")
        shutil.move(r.file("ladder_runs.jsonl"), seeds)
        return _ablate(r, [RECIPE], 2, [], seeds, "ladder_runs.jsonl")
    existing = [json.loads(line) for line in open(LADDER_RECORD) if line.strip()]
    seeds = 1 + max(run["seed"] for run in existing)
    ladder = sorted(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / "recipes/ladder/*.yaml")))
    return _ablate(r, ladder, seeds + 1, [], LADDER_RECORD, "ladder_runs.jsonl")


def stage_placement(r: Round) -> Dict:
    """Host-resident data against device-resident (issue 19), when this checkout has it."""
    if not r.options["placement"]:
        return {"status": "unavailable: no data.placement in this checkout"}
    name = "placement.json"
    half = "train.precision=float32" if r.dry_run else "train.precision=float16,train.compile=default"
    command = [
        sys.executable,
        "tools/bench.py",
        *r.recipe_and_data(RECIPE),
        "--parts",
        "train",
        "--train-reps",
        "1" if r.dry_run else "3",
        "--json-out",
        str(r.file(name)),
        "--variant",
        f"device={half},data.placement=device",
        "--variant",
        f"host={half},data.placement=host",
    ]
    return r.run(command, timeout=200)


# a copy of airbench94_muon.py the user fetched, carried in the ignored data/ (--prepare copies it
# from ../airbench/ when it is there): nothing of it is committed
AIRBENCH_COPY = CARRIED / "airbench" / "airbench94_muon.py"


def stage_anchor(r: Round) -> Dict:
    """The whole process against airbench's own script at full size (issue 33), alternating;
    a dry run, or a round without the copy, times the reference loop at a tiny size instead."""
    # its record goes into round.json: the folder brings back 8 files, and the other stages fill them
    scratch = Path(tempfile.mkdtemp()) / "anchor_ratio.json"
    command = [sys.executable, "tools/anchor_ratio.py", "--out", str(scratch)]
    if r.dry_run or not AIRBENCH_COPY.exists():
        command += ["--tiny", "--pairs", "1"]
    else:
        full = ["--widths", "64", "256", "256", "--batch", "2000", "--epochs", "8"]
        command += ["--airbench", str(AIRBENCH_COPY), "--device", "cuda", *full, "--pairs", "3"]
        command += ["--data-dir", r.data_dir]  # the JPEG copy in the binary layout (stage decode)
    result = r.run(command, timeout=300)
    if scratch.exists():
        result["record"] = json.loads(scratch.read_text())
    return result


STAGES: List[tuple] = [  # (name, seconds it needs at least to be worth starting, function)
    ("decode", 20, stage_decode),
    ("cuda_tests", 30, stage_cuda_tests),
    ("speed", 90, stage_speed),
    ("accuracy", 60, stage_accuracy),
    ("records", 60, stage_records),
    ("max_autotune", 90, stage_max_autotune),
    ("placement", 60, stage_placement),
    ("ladder", 60, stage_ladder),
    ("anchor", 60, stage_anchor),
]


def run_round(
    out: Path,
    budget_s: float,
    dry_run: bool,
    only: Optional[List[str]] = None,
    command: str = "python tools/gpu_round.py",
) -> Dict:
    out.mkdir(parents=True, exist_ok=True)
    r = Round(out, budget_s, dry_run)
    for name, needs, function in STAGES:
        if only and name not in only:
            continue
        if r.left() < needs:
            r.stages.append({"stage": name, "status": f"skipped: {r.left():.0f} s left, needs {needs} s"})
            continue
        print(f"--- {name} ({r.left():.0f} s left)", flush=True)
        started = time.monotonic()
        try:
            result = function(r)
        except Exception as e:  # a broken stage must not cost the others their minutes
            result = {"status": f"error: {type(e).__name__}: {e}"}
        result.setdefault(
            "status",
            "stopped at budget"
            if result.get("stopped_at_budget")
            else "ok"
            if result.get("rc") == 0
            else f"failed (exit {result.get('rc')})",
        )
        r.stages.append({"stage": name, "seconds": round(time.monotonic() - started, 1), **result})
    record = {
        "command": command,
        "budget_s": budget_s,
        "dry_run": dry_run,
        "options": r.options,
        "seconds": round(time.monotonic() - r.start, 1),
        "stages": r.stages,
    }
    r.write("round.json", record)
    files = sorted(p.name for p in out.iterdir())
    if len(files) > MAX_FILES:
        raise SystemExit(f"gpu_round: {len(files)} files in {out}, a device call brings back {MAX_FILES}")
    print_table(r.stages)
    return record


def print_table(stages: List[Dict]) -> None:
    print(f"\n{'stage':<13} {'seconds':>8}  status / figures")
    for s in stages:
        print(f"{s['stage']:<13} {s.get('seconds', 0):8.1f}  {s['status']}")
        for name, figures in (s.get("figures") or {}).items():
            print(
                f"{'':<23} {name}: "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
                )
            )


def prepare() -> None:
    """Here, before the device call: the JPEG copy and the pixel-exact subset into data/,
    the ignored folder the call carries (33 MiB of the 64 MiB a call may carry)."""
    CARRIED.mkdir(exist_ok=True)
    for name in ("cifar10-jpeg", "cifar10-subset"):
        if not (CARRIED / name).exists():
            shutil.copytree(SHARED / name, CARRIED / name, ignore=shutil.ignore_patterns("__pycache__"))
    fetched = ROOT.parent / "airbench" / "airbench94_muon.py"  # the user's copy, outside the repository
    if fetched.exists():
        AIRBENCH_COPY.parent.mkdir(exist_ok=True)
        shutil.copyfile(fetched, AIRBENCH_COPY)
    print(
        f"data ready in {CARRIED}; now make one device call:\n"
        '  run(command="python3 tools/gpu_round.py --out $OUT", carry=["data"], timeout_s=600)\n'
        "then give_back, and commit what comes back under bench/results/."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT", "gpu_round_out")),
        help="folder for the records (default: $OUT, as on the device machine)",
    )
    parser.add_argument("--budget", type=float, default=540, help="wall-clock seconds for the whole round")
    parser.add_argument("--dry-run", action="store_true", help="on a CPU: every stage at tiny sizes")
    parser.add_argument("--prepare", action="store_true", help="copy the data the device call carries")
    parser.add_argument(
        "--only", action="append", choices=[s[0] for s in STAGES], help="run these stages only"
    )
    args = parser.parse_args(argv)
    if args.prepare:
        prepare()
        return 0
    argv = sys.argv[1:] if argv is None else argv
    record = run_round(
        args.out,
        args.budget,
        args.dry_run,
        args.only,
        command=shlex.join(["python", "tools/gpu_round.py", *argv]),
    )
    return 0 if all(s["status"].startswith(("ok", "already", "unavailable")) for s in record["stages"]) else 1


if __name__ == "__main__":
    sys.exit(main())

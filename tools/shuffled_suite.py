"""The full test suite in shuffled orders: one pytest run per seed (modules shuffled, each
module's tests shuffled within it: tests/conftest.py's --shuffle), each timed on this
machine, with its counts, failures and slowest tests written as one JSON record.

    python tools/shuffled_suite.py --seeds 1 2 3 --out bench/results/suite_shuffled_cpu.json

The suite must pass in any order and leave nothing behind (conftest's guard fails a test
that leaks its thread count, signal handlers, folder or environment); a failure here is a
test-order dependence to fix, reproducible with ``python -m pytest --shuffle SEED``.

``--root DIR --plain`` times another checkout's suite in its own order (an older main, for a
before-and-after of the suite's wall time): its code first on PYTHONPATH, an editable
install of netgraph switched off as tools/fails_before.py does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

from fails_before import checkout_env

ROOT = Path(__file__).resolve().parents[1]


def run_suite(seed: Optional[int], extra: List[str], root: Path) -> Dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        env = dict(os.environ) if root == ROOT else checkout_env(root, Path(tmp))
        order = [] if seed is None else ["--shuffle", str(seed)]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                *order,
                f"--junitxml={report}",
                *extra,
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        cases = list(ET.parse(report).getroot().iter("testcase")) if report.exists() else []
    outcome: Dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}
    failures, times = [], []
    for case in cases:
        node = f"{case.get('classname')}::{case.get('name')}"
        found = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        kind = "passed" if found is None else found.tag
        kind = "failed" if kind in ("failure", "error") else kind
        outcome[kind] += 1
        if found is not None and kind == "failed":
            # the report's own words, kept: the temporary folder goes with the run
            failures.append({"test": node, "report": (found.text or found.get("message") or "")[-4000:]})
        times.append((float(case.get("time", 0)), node))
    times.sort(reverse=True)
    return {
        "seed": seed,
        "exit_code": done.returncode,
        "wall_s": round(wall, 1),
        "load_at_start": round(load, 2),
        **outcome,
        "failures": failures,
        "summary": done.stdout.strip().splitlines()[-1:] or [""],
        "slowest": [{"test": n, "s": round(t, 1)} for t, n in times[:25]],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--plain", action="store_true", help="one run in the suite's own order")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose suite runs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    record = {
        "tool": "tools/shuffled_suite.py",
        "command": " ".join(["tools/shuffled_suite.py", *(argv or sys.argv[1:])]),
        "commit": commit,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": [],
    }
    for seed in [None] if args.plain else args.seeds:
        run = run_suite(seed, args.pytest_args, root)
        record["runs"].append(run)
        print(
            f"seed {'none (own order)' if seed is None else seed}: {run['passed']} passed, {run['failed']} failed, {run['skipped']} skipped, "
            f"{run['wall_s']:.0f} s (exit {run['exit_code']})",
            flush=True,
        )
        for failure in run["failures"]:
            print(f"  failed: {failure['test']}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in record["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())

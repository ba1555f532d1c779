"""How long netgraph's commands that train nothing take to start, and whether they import torch.

    python tools/cli_startup.py --json-out bench/results/cli_startup_LABEL.json --label LABEL

Each command runs ``--repeats`` times in a fresh ``python -X importtime`` process; the record keeps
the median wall time, the median cumulative import time of the ``netgraph`` package and of ``torch`` as
``-X importtime`` reports them (0 when not imported), and the child's peak resident memory.
The machine is shared, so compare medians taken back to back, not single runs.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "passes": ["passes"],
    "recipe typo (train)": ["train", "RECIPE_WITH_TYPO"],
}


def _import_us(stderr: str, module: str) -> int:
    """Cumulative microseconds ``-X importtime`` gives the top-level import of ``module``."""
    pattern = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|\s?(\s*)" + re.escape(module) + r"$")
    best = 0
    for line in stderr.splitlines():
        m = pattern.match(line)
        if m:
            best = max(best, int(m.group(1)))
    return best


def _run(argv) -> tuple:
    """(wall seconds, stderr, peak resident MiB) of one child process."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        _, _, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
        wall = time.perf_counter() - start
        child.returncode = 0
        err.seek(0)
        return wall, err.read(), usage.ru_maxrss / 1024


def measure(args, repeats: int, typo: Path) -> dict:
    args = [str(typo) if a == "RECIPE_WITH_TYPO" else a for a in args]
    walls, pkg_us, torch_us, rss = [], [], [], []
    for _ in range(repeats):
        wall, stderr, peak = _run([sys.executable, "-X", "importtime", "-m", "netgraph", *args])
        walls.append(wall)
        pkg_us.append(_import_us(stderr, "netgraph"))
        torch_us.append(_import_us(stderr, "torch"))
        rss.append(peak)
    return {
        "argv": args,
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s_all": [round(w, 3) for w in walls],
        "import_netgraph_ms_median": round(statistics.median(pkg_us) / 1000, 1),
        "import_torch_ms_median": round(statistics.median(torch_us) / 1000, 1),
        "imports_torch": any(t > 0 for t in torch_us),
        "peak_rss_mib_median": round(statistics.median(rss), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--label", default="now", help="e.g. before or after")
    p.add_argument("--json-out")
    args = p.parse_args()
    typo = Path(os.environ.get("TMPDIR", "/tmp")) / "netgraph_cli_startup_typo.yaml"
    typo.write_text("netwrok:\n  fc: {op: linear, out: 10}\n")  # a section name misspelt
    record = {
        "tool": "tools/cli_startup.py",
        "label": args.label,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "note": "shared machine (2 cores, other developers' jobs running): medians are noisy",
        "commands": {name: measure(a, args.repeats, typo) for name, a in COMMANDS.items()},
    }
    text = json.dumps(record, indent=2) + "\n"
    print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text)


if __name__ == "__main__":
    main()

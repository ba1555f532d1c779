"""Which tests fail before a fix and pass after it: for each commit, the test functions it
added, as they are now (HEAD's tests/ folder), are run on an older base and on HEAD.

    python tools/fails_before.py --base 16a59c4 209fa3c 813b75e --out bench/results/fails_before.json

The base is the main an issue was filed against; a test that fails there and passes now
can fail, and fails for want of the fix. Each run is a fresh git worktree (removed
afterwards) with its own code first on PYTHONPATH and an editable install of netgraph
switched off (its finder would fill a module the base lacks from the installed checkout).
Each test function runs in a pytest process of its own, bounded in time and memory: the
base may hang or blow up on exactly what the fix was about. The record gives per commit
and test function the outcome at the base and now, and the first line of the base's
failure (an import of a name the base lacks reads as "collection failure").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def added_tests(commit: str) -> List[str]:
    """Node ids (file::function) of the test functions a commit adds under tests/."""
    ids, path = [], None
    for line in git("show", "--format=", "--unified=0", commit, "--", "tests").splitlines():
        if line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else None
        elif path and path.endswith(".py"):
            m = re.match(r"\+\s*def (test_\w+)\(", line)
            if m:
                ids.append(f"{path}::{m.group(1)}")
    return ids


def exists_at_head(node: str) -> bool:
    path, _, name = node.partition("::")
    try:
        return f"def {name}(" in git("show", f"HEAD:{path}")
    except subprocess.CalledProcessError:
        return False


def run_tests(code: str, tests_from: str, ids: List[str], timeout: int, memory_gib: float) -> Dict[str, Dict]:
    """Outcome of each test function: the code of commit `code`, the tests/ folder of
    `tests_from`, each case's outcome folded per function (failed if any case failed). Each
    function runs in a pytest process of its own, bounded in time and memory: the base may
    hang or blow up on exactly what the fix was about."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), code)
        try:
            subprocess.run(["rm", "-rf", str(tree / "tests")], check=True)
            archive = subprocess.run(
                ["git", "archive", tests_from, "tests"], cwd=ROOT, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            env = checkout_env(tree, Path(tmp))
            results = {}
            for i in ids:
                report = Path(tmp) / "report.xml"
                report.unlink(missing_ok=True)
                try:
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "pytest",
                            "-q",
                            "-p",
                            "no:cacheprovider",
                            f"--junitxml={report}",
                            i,
                        ],
                        cwd=tree,
                        env=env,
                        timeout=timeout,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        preexec_fn=lambda: limit_memory(memory_gib),
                    )
                    results.update(fold(report, [i]))
                except subprocess.TimeoutExpired:
                    results[i] = {"outcome": "timeout", "message": f"over {timeout} s"}
            return results
        finally:
            git("worktree", "remove", "--force", str(tree))


# Run at start-up after the .pth files: drops an editable install's import hooks, so that
# only the worktree's netgraph can be imported.
NO_EDITABLE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path_importer_cache.clear()
"""


def checkout_env(tree: Path, tmp: Path) -> Dict[str, str]:
    """The environment that imports netgraph from ``tree`` only, subprocesses included."""
    shim = tmp / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(NO_EDITABLE)
    return {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{shim}"}


def limit_memory(gib: float) -> None:
    limit = int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def fold(report: Path, ids: List[str]) -> Dict[str, Dict]:
    results = {i: {"outcome": "not run", "message": "not collected"} for i in ids}
    if not report.exists():
        return results
    by_function: Dict[str, Dict] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name, module = case.get("name", "").split("[")[0], case.get("classname", "")
        if not module:  # a collection error: the module's dotted name, no function
            module, name = name, ""
        module = module.replace(".", "/") + ".py"
        node = f"{module}::{name}"
        problem = next((c for c in case if c.tag in ("failure", "error")), None)
        skipped = next((c for c in case if c.tag == "skipped"), None)
        outcome = "failed" if problem is not None else "skipped" if skipped is not None else "passed"
        message = (
            (problem.get("message") or problem.text or "").strip().splitlines()[0][:300]
            if problem is not None
            else ""
        )
        old = by_function.get(node)
        if old is None or old["outcome"] == "passed" or (old["outcome"] == "skipped" and outcome == "failed"):
            by_function[node] = {"outcome": outcome, "message": message}
    for node, result in by_function.items():
        if node in results:
            results[node] = result
        elif not node.split("::")[1]:  # a collection error names the module only
            for i in ids:
                if i.startswith(node.split("::")[0]):
                    results[i] = result
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit the tests should fail on")
    parser.add_argument("commits", nargs="+", help="commits whose added tests are checked")
    parser.add_argument("--timeout", type=int, default=120, help="seconds for one test function")
    parser.add_argument("--memory-gib", type=float, default=6.0, help="memory for one test function")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    record = {
        "tool": "tools/fails_before.py",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "base": git("rev-parse", "--short", args.base).strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commits": [],
    }
    head = git("rev-parse", "--short", "HEAD").strip()
    record["head"] = head
    for commit in args.commits:
        ids = [i for i in added_tests(commit) if exists_at_head(i)]
        before = run_tests(args.base, head, ids, args.timeout, args.memory_gib) if ids else {}
        after = run_tests(head, head, ids, args.timeout, args.memory_gib) if ids else {}
        tests = [
            {
                "test": i,
                "at_base": before[i]["outcome"],
                "at_head": after[i]["outcome"],
                "base_failure": before[i]["message"],
            }
            for i in ids
        ]
        subject = git("log", "-1", "--format=%s", commit).strip()
        record["commits"].append(
            {"commit": git("rev-parse", "--short", commit).strip(), "subject": subject[:160], "tests": tests}
        )
        shown = sum(t["at_base"] != "passed" and t["at_head"] == "passed" for t in tests)
        print(f"{commit}: {len(tests)} added tests, {shown} fail at the base and pass now", flush=True)
        for t in tests:
            print(f"  {t['at_base']:>8} -> {t['at_head']:<8} {t['test']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

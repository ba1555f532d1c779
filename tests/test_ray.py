"""Ray as the launcher (--ray): a real two-node cluster on this machine (ray.cluster_utils.Cluster,
a head and a second node, on 127.0.0.1), `netgraph ablate --ray ADDRESS` on it in a subprocess
(with timeouts), the runs spread over both nodes and bit-identical to the same seeds trained
locally; a worker node killed mid-ablation (its runs retried on the head, the table complete);
SIGINT to the driver (the rest cancelled, --resume finishes them). Without --ray, Ray is not
imported; without Ray installed, --ray is refused in one line."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_ablate import RECIPE

from netgraph.cli import main
from netgraph.runs.log import read_records

ROOT = Path(__file__).resolve().parent.parent
# Ray takes this machine's outside address for its nodes unless told it is a one-machine
# cluster: every process of these tests binds to 127.0.0.1 only.
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
HEAD = {
    **NODE,
    "include_dashboard": False,
    # a dead node is noticed in about a second, not the default tens of seconds
    "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 2},
}


@pytest.fixture
def recipes(tmp_path):
    paths = []
    for name, width in (("narrow", 2), ("wide", 8)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(RECIPE).replace("WIDTH", str(width)))
        paths.append(str(path))
    return paths


@pytest.fixture
def cluster():
    """A head and a second node, each one CPU, started here and always shut down."""
    client_mode = os.environ.get("RAY_CLIENT_MODE")  # importing Ray sets it: put back on leaving
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        for key, value in LOCAL_ONLY.items():
            patch.setenv(key, value)
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}  # Ray sets SIGTERM's
        started = Cluster(initialize_head=True, head_node_args=HEAD)
        try:
            second = started.add_node(**NODE)
            started.wait_for_nodes()
            yield started, second
        finally:
            ray.shutdown()
            started.shutdown()
            for number, handler in handlers.items():
                signal.signal(number, handler)
            if client_mode is None:
                os.environ.pop("RAY_CLIENT_MODE", None)


# `netgraph` as a terminal starts it: SIGINT raises KeyboardInterrupt. A test process started in
# the background (`nohup pytest &`) ignores SIGINT, and a child inherits that; the SIGINT test's
# driver then ran to the end (exit 0): how it failed in the shuffled suite runs started so.
AS_FROM_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from netgraph.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _ablate(args, timeout=240, threads=None, wait=True):
    env = {**os.environ, **LOCAL_ONLY, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = [sys.executable, "-c", AS_FROM_A_TERMINAL, "ablate", *args, "--device", "cpu"]
    if not wait:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@contextlib.contextmanager
def _driver(args):
    """`netgraph ablate ARGS` running in the background, killed and reaped on leaving."""
    driver = _ablate(args, wait=False)
    try:
        yield driver
    finally:
        driver.kill()
        driver.wait()


def _without_time(table: str) -> list:
    """The table's cells but the training time's (column 7), which differs run to run."""
    return [[c for i, c in enumerate(line.split("|")) if i != 7] for line in table.splitlines()]


@pytest.mark.slow
def test_ablation_on_two_nodes_equals_the_local_one(cluster, recipes, tmp_path):
    head, second = cluster
    _ablate([*recipes, "--runs", "3", "--ray", head.address, "--out", str(tmp_path / "ray")])
    # the same seeds trained locally, with the one thread a one-CPU Ray task trains with
    _ablate([*recipes, "--runs", "3", "--out", str(tmp_path / "local")], threads=1)
    on_ray = read_records(tmp_path / "ray" / "runs.jsonl")
    local = {(r["recipe"], r["seed"]): r for r in read_records(tmp_path / "local" / "runs.jsonl")}
    assert len(on_ray) == 6 and {r["node"] for r in on_ray} == {head.head_node.node_id, second.node_id}
    for r in on_ray:
        twin = local[r["recipe"], r["seed"]]
        assert r["weights_sha256"] == twin["weights_sha256"]  # bit-identical weights
        assert (r["test_acc"], r["test_loss"], r["attempts"]) == (twin["test_acc"], twin["test_loss"], 1)
    ray_table, local_table = ((tmp_path / d / "table.md").read_text() for d in ("ray", "local"))
    assert _without_time(ray_table) == _without_time(local_table)
    assert (tmp_path / "ray" / "tensorboard").is_dir()  # written here, by the driver


def _wait_for(condition, timeout=180.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _records(out):
    return read_records(out / "runs.jsonl") if (out / "runs.jsonl").exists() else []


@pytest.mark.slow
def test_a_node_killed_mid_ablation_loses_nothing(cluster, recipes, tmp_path):
    head, second = cluster
    out = tmp_path / "ablation"
    # runs of a few seconds each, so that the second node is in the middle of one when it dies
    args = [*recipes, "--runs", "3", "--set", "train.epochs=60", "--ray", head.address, "--out", str(out)]
    with _driver(args) as driver:
        _wait_for(lambda: any(r["node"] == second.node_id for r in _records(out)))
        head.remove_node(second, allow_graceful=False)  # it has started its next run by now
        stdout, stderr = driver.communicate(timeout=240)
    assert driver.returncode == 0, stderr[-3000:]
    records = _records(out)
    assert sorted((r["recipe"], r["seed"]) for r in records) == [(p, s) for p in recipes for s in range(3)]
    retried = [r for r in records if r["attempts"] > 1]
    order = [(r["recipe"][-9:], r["seed"], r["node"][:6], r["attempts"], r["date"]) for r in records]
    assert retried and all(r["node"] == head.head_node.node_id for r in retried), (order, second.node_id[:6])
    table = (out / "table.md").read_text()
    assert f"{len(retried)} of the runs were retried on another node after theirs died (Ray)." in table
    assert "| narrow | 60 | 3 |" in table and "| wide | 60 | 3 |" in table


@pytest.mark.slow
def test_sigint_cancels_the_rest_and_resume_finishes(cluster, recipes, tmp_path):
    head, _ = cluster
    out = tmp_path / "ablation"
    args = [*recipes, "--runs", "3", "--set", "train.epochs=30", "--ray", head.address, "--out", str(out)]
    with _driver(args) as driver:
        _wait_for(lambda: len(_records(out)) >= 1)
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=180)  # room for a loaded machine
    assert driver.returncode == 130, stderr[-3000:]
    kept = _records(out)
    assert 1 <= len(kept) < 6 and not (out / "table.md").exists()
    resumed = _ablate(args, timeout=480).stdout  # resuming is the default: the same command
    assert resumed.count("test accuracy") == 6 - len(kept)  # only the runs not recorded
    records = _records(out)
    assert records[: len(kept)] == kept and len({(r["recipe"], r["seed"]) for r in records}) == 6
    assert "| wide | 30 | 3 |" in (out / "table.md").read_text()


def test_without_ray_flag_ray_is_not_imported(recipes, tmp_path):
    argv = ["ablate", recipes[0], "--runs", "1", "--device", "cpu", "--out", str(tmp_path / "a")]
    code = f"import sys; from netgraph.cli import main; assert main({argv!r}) == 0; assert 'ray' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ray_not_installed_is_refused_in_one_line(recipes, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` then raises ImportError
    out = tmp_path / "a"
    assert main(["ablate", recipes[0], "--runs", "1", "--device", "cpu", "--ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[ray]'" in err
    assert not (out / "runs.jsonl").exists()


def test_sweep_takes_ray_too(tmp_path, monkeypatch):
    """`sweep --ray` goes through the same Runner: here with a stand-in for the Launcher that
    trains in this process, so no cluster is needed to see the address and the runs reach it."""
    from netgraph.runs import ray_launcher
    from netgraph.runs.trial import one_run

    seen = []

    class Local:
        def __init__(self, device, data_dir, address):
            seen.append(address)

        def train(self, todo, finished):
            for path, o, seed in todo:
                finished(path, o, seed, {**one_run(path, o, seed, "cpu", None), "attempts": 1 + (seed == 1)})

        def close(self):
            seen.append("closed")

    monkeypatch.setattr(ray_launcher, "Launcher", Local)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(RECIPE).replace("WIDTH", "2").replace("epochs: 2", "epochs: 1"))
    out = tmp_path / "sweep"
    argv = ["sweep", str(recipe), "--grid", "train.label_smoothing=0,0.2", "--runs", "2", "--device", "cpu"]
    assert main([*argv, "--ray", "head:6379", "--out", str(out), "--no-tensorboard"]) == 0
    assert seen == ["head:6379", "closed"] and len(read_records(out / "runs.jsonl")) == 4
    assert (
        "2 of the runs were retried on another node after theirs died (Ray)."
        in (out / "table.md").read_text()
    )
    assert not (out / "tensorboard").exists()

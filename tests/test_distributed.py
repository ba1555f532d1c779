"""Data-parallel training on torch.distributed (gloo, 2 CPU processes) equals one process
with the same global batch, batch norm per rank or synchronised; only rank 0 writes files."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp
from conftest import ROOT

from netgraph import load_recipe
from netgraph.runs import board
from netgraph.runs.run import run_recipe

# One epoch of 8 steps of a global batch of 64 (32 a rank), plain batch norm.
RECIPE = """
    data:
      dataset: synthetic
      synthetic: {train: 512, test: 96, classes: 4}
      augment: [crop, flip, {cutout: 4}]
    train:
      epochs: 1
      batch_size: 64
      lr: {knots: [0, 0.5, epochs], values: [0, 0.4, 0]}
      label_smoothing: 0.2
    network:
      conv: {op: conv2d, out: 8, bias: false}
      bn: {op: batch_norm}
      act: {op: relu}
      conv2: {op: conv2d, out: 8, bias: false}
      bn2: {op: batch_norm}
      act2: {op: relu}
      pool: {op: global_avg_pool}
      flat: {op: flatten}
      fc: {op: linear, out: 4}
"""
# The same on one process: ghost batch norm with 2 splits normalises each rank's images apart.
GHOST = (
    RECIPE
    + """
    transforms:
      - ghost_batch_norm: {splits: 2}
"""
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, recipe_path: str, out: str) -> None:
    """Train the recipe with per-rank batch norm, then with train.sync_batch_norm."""
    import torch.distributed as dist

    from netgraph.train.distributed import Ranks

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for name, overrides in (("per_rank", []), ("synced", ["train.sync_batch_norm=true"])):
            result, model, _ = run_recipe(
                load_recipe(recipe_path, overrides), device="cpu", ranks=Ranks(rank, world)
            )
            torch.save(
                {
                    "state": model.state_dict(),
                    "test_acc": result.test_acc,
                    "train_loss": result.log[-1]["train_loss"],
                },
                f"{out}/{name}{rank}.pt",
            )
    finally:
        dist.destroy_process_group()


def _assert_ranks_equal_single(ranks, expected, single, splits=1):
    for name, value in ranks[0]["state"].items():
        if name.endswith("num_batches_tracked"):
            continue
        # ghost BN keeps running statistics per split; the ranks average theirs
        value_single = (
            expected[name].view(splits, -1).mean(0)
            if name.endswith(("running_mean", "running_var"))
            else expected[name]
        )
        if not name.endswith(("running_mean", "running_var")) or splits == 1:
            assert torch.equal(value, ranks[1]["state"][name]), name  # identical on both ranks
        # 1e-3: float32 sums in another order, grown over 8 steps of a summed loss at lr 0.4 (up
        # to 5e-5 on conv weights of 0.26 since step 1 trains too); per-rank statistics where
        # global ones are due differ by far more (checked by dropping the all-reduce)
        torch.testing.assert_close(value, value_single, rtol=1e-3, atol=1e-4, msg=name)
    assert ranks[0]["test_acc"] == ranks[1]["test_acc"] == pytest.approx(single.test_acc)
    assert ranks[0]["train_loss"] == pytest.approx(single.log[-1]["train_loss"], rel=1e-5)


@pytest.fixture
def one_thread():
    """One thread, as each rank has, for the one-process comparison; put back afterwards (a
    thread count left behind changes later tests' bit-identical results)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_ghost_or_plain_batch_norm(tmp_path, one_thread):
    """Per-rank batch norm on 2 ranks = ghost batch norm of 2 splits on one process;
    train.sync_batch_norm on 2 ranks = plain batch norm on one process."""
    (tmp_path / "ddp.yaml").write_text(textwrap.dedent(RECIPE))
    (tmp_path / "ghost.yaml").write_text(textwrap.dedent(GHOST))
    mp.start_processes(
        _rank,
        args=(2, free_port(), str(tmp_path / "ddp.yaml"), str(tmp_path)),
        nprocs=2,
        start_method="spawn",
    )
    load = lambda name: [torch.load(tmp_path / f"{name}{r}.pt", weights_only=True) for r in (0, 1)]  # noqa: E731
    per_rank, synced = load("per_rank"), load("synced")
    ghost, ghost_model, _ = run_recipe(load_recipe(tmp_path / "ghost.yaml"), device="cpu")
    _assert_ranks_equal_single(per_rank, ghost_model.state_dict(), ghost, splits=2)
    plain, plain_model, _ = run_recipe(load_recipe(tmp_path / "ddp.yaml"), device="cpu")
    _assert_ranks_equal_single(synced, plain_model.state_dict(), plain)
    # not vacuous: the two kinds of batch norm train to different weights, and training moved them
    assert not torch.allclose(
        per_rank[0]["state"]["conv.weight"], synced[0]["state"]["conv.weight"], rtol=1e-3, atol=1e-4
    )
    assert not torch.allclose(
        ghost_model.state_dict()["conv.weight"],
        run_recipe(load_recipe(tmp_path / "ghost.yaml", ["train.lr.values=[0, 0, 0]"]), device="cpu")[
            1
        ].state_dict()["conv.weight"],
    )


@pytest.mark.slow
def test_torchrun_style_launch_writes_files_from_rank_0_only(tmp_path, capsys):
    """`netgraph train` in two processes with torchrun's environment variables: logs, the result
    and the saved model come from rank 0 alone (each rank runs in its own folder here). The
    model loads in `netgraph eval`: ghost batch norm of 16-image splits resolved 2 splits from
    each rank's 32 images, not 4 from the global 64 (running_mean [16] vs [32] before)."""
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent(
            RECIPE
            + """
    transforms:
      - ghost_batch_norm: {split_size: 16}
    """
        )
    )
    port = free_port()
    processes = []
    for rank in (0, 1):
        folder = tmp_path / f"rank{rank}"
        folder.mkdir()
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT),
        }
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "netgraph",
                    "train",
                    str(tmp_path / "r.yaml"),
                    "--device",
                    "cpu",
                    "--json-out",
                    "result.json",
                    "--save",
                    "model.pt",
                ],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (_out, err) in zip(processes, outputs):
        assert p.returncode == 0, err
    written = sorted(str(f.relative_to(tmp_path / "rank0")) for f in (tmp_path / "rank0").rglob("*"))
    events = [w for w in written if "/tensorboard" in w]  # rank 0's alone, when tensorboard is installed
    assert len(events) == (3 if board.available() else 0)  # tensorboard/, seed0/, the event file
    written = [w for w in written if w not in events]
    folder = written[4]  # runs/r/DATE-TIME: the run's own folder (netgraph/runs/folder.py)
    assert written == ["model.pt", "result.json", "runs", "runs/r", folder] + [
        f"{folder}/{name}" for name in ("log.jsonl", "recipe.yaml", "result.json", "run.json")
    ]
    assert list((tmp_path / "rank1").iterdir()) == []
    assert "2 processes" in outputs[0][0] and outputs[1][0] == ""
    from netgraph.cli import main

    capsys.readouterr()
    assert main(["eval", str(tmp_path / "rank0" / "model.pt"), "--device", "cpu"]) == 0, (
        capsys.readouterr().err
    )
    import re

    evaluated, at_training = re.findall(r"([\d.]+)%", capsys.readouterr().out)
    assert evaluated == at_training  # the same network: the test accuracy training measured
    saved = torch.load(tmp_path / "rank0" / "model.pt", weights_only=True)
    assert saved["state_dict"]["bn.running_mean"].shape == (2 * 8,)  # 2 splits of 8 channels


def test_the_global_batch_must_divide_over_the_ranks(tmp_path):
    from netgraph import RecipeError
    from netgraph.train.distributed import Ranks, rank_batch

    with pytest.raises(
        RecipeError,
        match="batch_size 100 is the global batch and must divide evenly "
        "over 3 ranks.*multiple of 3, e.g. 99",
    ):
        rank_batch(100, Ranks(0, 3))
    assert rank_batch(96, Ranks(1, 3)) == 32


def test_sync_batch_norm_refuses_ghost_batch_norm(tmp_path):
    from netgraph import RecipeError

    path = tmp_path / "both.yaml"
    path.write_text(
        textwrap.dedent(GHOST).replace(
            "label_smoothing: 0.2", "label_smoothing: 0.2\n  sync_batch_norm: true"
        )
    )
    line = path.read_text().splitlines().index("  sync_batch_norm: true") + 1
    with pytest.raises(RecipeError) as err:
        run_recipe(load_recipe(path), device="cpu")
    assert f"{path}:{line}" in str(err.value) and "bn" in str(err.value)
    assert "2 batch-norm node(s) are ghost batch norm" in str(err.value)
    assert "drop one of the two" in str(err.value)


@pytest.mark.slow
def test_two_nodes_by_torchrun_rendezvous(tmp_path):
    """docs/several-gpus.md's multi-node command on one machine: two torchrun launchers, one process each,
    meet through the c10d rendezvous and train together; one of them is rank 0 and writes."""
    (tmp_path / "r.yaml").write_text(textwrap.dedent(RECIPE))
    endpoint = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launchers = []
    for node in ("a", "b"):
        (tmp_path / node).mkdir()
        launchers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--nnodes",
                    "2",
                    "--nproc-per-node",
                    "1",
                    "--rdzv-backend",
                    "c10d",
                    "--rdzv-endpoint",
                    endpoint,
                    "-m",
                    "netgraph",
                    "train",
                    str(tmp_path / "r.yaml"),
                    "--device",
                    "cpu",
                    "--json-out",
                    "result.json",
                ],
                cwd=tmp_path / node,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300) for p in launchers]
    for p, (_out, err) in zip(launchers, outputs):
        assert p.returncode == 0, err
    writers = [node for node in ("a", "b") if (tmp_path / node / "result.json").exists()]
    assert len(writers) == 1
    silent = "b" if writers == ["a"] else "a"
    assert list((tmp_path / silent).iterdir()) == []
    printed = dict(zip("ab", (out for out, _ in outputs)))
    assert "2 processes" in printed[writers[0]] and printed[silent] == ""


def test_synchronised_batch_norm_keeps_names_parameters_and_outputs():
    """Converted in place: the same parameter objects under the same names; without a process
    group (or with one rank) it computes plain batch norm."""
    from netgraph import build_graph, compile_graph
    from netgraph.train.distributed import SyncBatchNorm, synchronise_batch_norm

    module = compile_graph(build_graph(load_recipe_text(RECIPE)))
    reference = compile_graph(build_graph(load_recipe_text(RECIPE)))
    reference.load_state_dict(module.state_dict())
    parameters = dict(module.named_parameters())
    assert synchronise_batch_norm(module) == 2
    assert isinstance(module.bn, SyncBatchNorm) and isinstance(module.bn2, SyncBatchNorm)
    assert {k: id(v) for k, v in module.named_parameters()} == {k: id(v) for k, v in parameters.items()}
    assert module.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(6, 3, 32, 32)
    for mode in (True, False):
        module.train(mode), reference.train(mode)
        torch.testing.assert_close(module(x), reference(x))
    torch.testing.assert_close(module.bn.running_var, reference.bn.running_var)


@pytest.mark.cuda
def test_on_cuda_synchronised_batch_norm_is_torchs():
    """torch.nn.SyncBatchNorm on CUDA (its variance keeps precision at a large mean), the same
    parameters; with one process it computes plain batch norm, as netgraph's own does."""
    from netgraph import build_graph, compile_graph
    from netgraph.train.distributed import synchronise_batch_norm

    module = compile_graph(build_graph(load_recipe_text(RECIPE))).cuda()
    reference = compile_graph(build_graph(load_recipe_text(RECIPE))).cuda()
    reference.load_state_dict(module.state_dict())
    assert synchronise_batch_norm(module) == 2
    assert type(module.bn) is torch.nn.SyncBatchNorm and type(module.bn2) is torch.nn.SyncBatchNorm
    x = 100 + torch.randn(6, 3, 32, 32, device="cuda")
    for mode in (True, False):
        module.train(mode), reference.train(mode)
        torch.testing.assert_close(module(x), reference(x))


def load_recipe_text(text):
    import yaml

    from netgraph.recipe.load import recipe_from_dict

    return recipe_from_dict(yaml.safe_load(textwrap.dedent(text)))

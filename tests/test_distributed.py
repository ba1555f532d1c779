"""Data-parallel training on torch.distributed (gloo, 2 CPU processes) equals one process
with the same global batch and per-rank batch norm; only rank 0 writes files."""
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
from netgraph.run import run_recipe

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
GHOST = RECIPE + """
    transforms:
      - ghost_batch_norm: {splits: 2}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, recipe_path: str, out: str) -> None:
    import torch.distributed as dist
    from netgraph.distributed import Ranks
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result, model, _ = run_recipe(load_recipe(recipe_path), device="cpu", ranks=Ranks(rank, world))
        torch.save({"state": model.state_dict(), "test_acc": result.test_acc,
                    "train_loss": result.log[-1]["train_loss"]}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process_with_ghost_batch_norm(tmp_path):
    (tmp_path / "ddp.yaml").write_text(textwrap.dedent(RECIPE))
    (tmp_path / "ghost.yaml").write_text(textwrap.dedent(GHOST))
    mp.start_processes(_rank, args=(2, free_port(), str(tmp_path / "ddp.yaml"), str(tmp_path)),
                       nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.set_num_threads(1)
    single, model, _ = run_recipe(load_recipe(tmp_path / "ghost.yaml"), device="cpu")
    expected = model.state_dict()
    for r in ranks:
        for name, value in r["state"].items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith(("running_mean", "running_var")):  # ghost BN keeps one per split
                value_single = expected[name].view(2, -1).mean(0)
            else:
                value_single = expected[name]
                assert torch.equal(value, ranks[0]["state"][name]), name  # identical on both ranks
            torch.testing.assert_close(value, value_single, rtol=1e-4, atol=1e-5, msg=name)
    assert ranks[0]["test_acc"] == ranks[1]["test_acc"] == pytest.approx(single.test_acc)
    assert ranks[0]["train_loss"] == pytest.approx(single.log[-1]["train_loss"], rel=1e-5)
    # not a vacuous comparison: training moved the weights
    assert not torch.allclose(expected["conv.weight"],
                              run_recipe(load_recipe(tmp_path / "ghost.yaml",
                                                     ["train.lr.values=[0, 0, 0]"]), device="cpu")[1]
                              .state_dict()["conv.weight"])


def test_torchrun_style_launch_writes_files_from_rank_0_only(tmp_path):
    """`netgraph train` in two processes with torchrun's environment variables: logs, the result
    and the saved model come from rank 0 alone (each rank runs in its own folder here)."""
    (tmp_path / "r.yaml").write_text(textwrap.dedent(RECIPE))
    port = free_port()
    processes = []
    for rank in (0, 1):
        folder = tmp_path / f"rank{rank}"
        folder.mkdir()
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT)}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "netgraph", "train", str(tmp_path / "r.yaml"), "--device", "cpu",
             "--json-out", "result.json", "--save", "model.pt"],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err
    assert sorted(str(f.relative_to(tmp_path / "rank0")) for f in (tmp_path / "rank0").rglob("*")) == \
        ["model.pt", "result.json", "runs", "runs/r.jsonl"]
    assert list((tmp_path / "rank1").iterdir()) == []
    assert "2 processes" in outputs[0][0] and outputs[1][0] == ""


def test_the_global_batch_must_divide_over_the_ranks(tmp_path):
    from netgraph import RecipeError
    from netgraph.distributed import Ranks, check_batch
    with pytest.raises(RecipeError, match="batch_size 100 is the global batch and must divide evenly "
                                          "over 3 ranks.*multiple of 3, e.g. 99"):
        check_batch(100, Ranks(0, 3))
    assert check_batch(96, Ranks(1, 3)) == 32

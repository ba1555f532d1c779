"""Checkpoints and saved models: a checksum of everything in them and a schema, checked on
load, with one-line refusals; unique temporary files that never follow a symlink; a lock
so a second process on one checkpoint, log or ablation folder is refused with the PID."""

import os
import secrets
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest
import torch
from conftest import ROOT, SMALL

from netgraph import RecipeError, load_recipe
from netgraph.cli import main
from netgraph.runs.checkpoints import checkpoint_writer, load_checkpoint, load_model, save_model
from netgraph.runs.run import run_recipe

RECIPE = SMALL.replace("epochs: 3", "epochs: 2").replace("test: 256", "test: 64")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint (after epoch 1 of 2) and a saved model of a small recipe."""
    folder = tmp_path_factory.mktemp("saved")
    path = folder / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    recipe = load_recipe(path)
    states = []
    run, model, _ = run_recipe(recipe, device="cpu", checkpoint=states.append)
    writer = checkpoint_writer(folder / "r.ckpt", recipe, 0, [])
    writer(states[0])
    save_model(folder / "r.pt", model, recipe, run)
    return recipe, folder


def tensor_data_ranges(path):
    """(start, end) of each stored tensor's bytes in a torch zip file."""
    ranges = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                raw.seek(info.header_offset + 26)
                name_length, extra_length = (int.from_bytes(raw.read(2), "little") for _ in range(2))
                start = info.header_offset + 30 + name_length + extra_length
                ranges.append((start, start + info.file_size))
    return ranges


def flipped(path, target, position):
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    target.write_bytes(bytes(data))
    return target


def test_a_flipped_byte_in_any_tensor_is_refused_on_resume_and_eval(saved, tmp_path):
    recipe, folder = saved
    for source, load in (
        (folder / "r.ckpt", lambda p: load_checkpoint(p, recipe)),
        (folder / "r.pt", lambda p: load_model(p, torch.device("cpu"))),
    ):
        ranges = tensor_data_ranges(source)
        assert len(ranges) >= 5
        for start, end in ranges:
            for position in (start, (start + end) // 2, end - 1):
                bad = flipped(source, tmp_path / source.name, position)
                with pytest.raises(RecipeError, match="do not match its checksum") as err:
                    load(bad)
                assert str(err.value).startswith(f"{bad}: ")


def resaved(source, target, change, checksum=True):
    payload = torch.load(source, weights_only=True)
    change(payload)
    if checksum:
        from netgraph.runs import files

        payload["checksum"] = files.checksum(payload)
    torch.save(payload, target)
    return target


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda p: p.pop("seed"), "'seed' is missing"),
        (lambda p: p.update(finished="none"), "'finished' is str"),
        (lambda p: p["state"].pop("epoch"), "'state.epoch' is missing"),
        (lambda p: p["state"].update(epoch=-5), "epoch is -5"),
        (lambda p: p["state"].update(skip=10**9), "skip is 1000000000"),
    ],
)
def test_a_checkpoint_of_the_wrong_shape_is_refused_in_one_line(saved, tmp_path, change, says):
    recipe, folder = saved
    with pytest.raises(RecipeError, match="do not match its checksum"):  # changed, not re-summed
        load_checkpoint(resaved(folder / "r.ckpt", tmp_path / "a.ckpt", change, checksum=False), recipe)
    with pytest.raises(RecipeError, match=says) as err:  # re-summed: made by hand
        load_checkpoint(resaved(folder / "r.ckpt", tmp_path / "b.ckpt", change), recipe)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda p: p.pop("state_dict"), "'state_dict' is missing"),
        (lambda p: p.update(recipe=[1]), "'recipe' is list"),
        (lambda p: p.pop("checksum"), "has no checksum"),
    ],
)
def test_a_model_file_of_the_wrong_shape_is_refused_in_one_line(saved, tmp_path, change, says):
    _, folder = saved
    with pytest.raises(RecipeError, match=says):
        load_model(
            resaved(folder / "r.pt", tmp_path / "m.pt", change, checksum=says != "has no checksum"),
            torch.device("cpu"),
        )


class Carrier:
    pass


def test_a_file_carrying_code_is_refused_without_torchs_advice(saved, tmp_path):
    recipe, _ = saved
    path = tmp_path / "evil.ckpt"
    torch.save({"format": "netgraph-checkpoint-1", "x": Carrier()}, path)
    with pytest.raises(RecipeError, match="holds more than tensors and plain data") as err:
        load_checkpoint(path, recipe)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_temporary_files_are_unique_and_never_follow_a_symlink(saved, tmp_path, monkeypatch):
    """A checkpoint written the way netgraph train writes it, with a symlink planted at the
    temporary name the issue's main used and at the first unique name tried now."""
    recipe, folder = saved
    state = torch.load(folder / "r.ckpt", weights_only=True)["state"]
    target = tmp_path / "victim"
    target.write_text("keep me")
    path = tmp_path / "r.ckpt"
    os.symlink(target, tmp_path / "r.ckpt.tmp")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(names))
    os.symlink(target, tmp_path / f".r.ckpt.{os.getpid()}.planted.tmp")
    checkpoint_writer(path, recipe, 0, [])(state)
    assert target.read_text() == "keep me"
    assert load_checkpoint(path, recipe)["state"]["epoch"] == state["epoch"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim", "r.ckpt", "r.ckpt.tmp", f".r.ckpt.{os.getpid()}.planted.tmp"]
    )


HOLD = """
import sys, time
from netgraph.runs import files
files.lock(sys.argv[1], "it")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_train_on_one_checkpoint_is_refused_with_the_pid(saved, tmp_path, capsys):
    _, folder = saved
    checkpoint = tmp_path / "r.ckpt"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(checkpoint)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        assert (
            main(
                [
                    "train",
                    str(folder / "r.yaml"),
                    "--device",
                    "cpu",
                    "--quiet",
                    "--log",
                    str(tmp_path / "r.jsonl"),
                    "--checkpoint",
                    str(checkpoint),
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert f"the checkpoint is in use by another netgraph process (PID {holder.pid})" in err, err
        assert time.perf_counter() - start < 10  # at start, before any data or training
    finally:
        holder.kill()
        holder.wait()
    # the holder gone (killed, not unlocked), the path is free again
    assert (
        main(
            [
                "train",
                str(folder / "r.yaml"),
                "--device",
                "cpu",
                "--quiet",
                "--set",
                "train.epochs=1",
                "--log",
                str(tmp_path / "r.jsonl"),
                "--checkpoint",
                str(checkpoint),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # no lock left behind


def test_a_second_ablation_on_one_folder_is_refused_with_the_pid(saved, tmp_path):
    from netgraph.runs.ablate import ablate

    _, folder = saved
    out = tmp_path / "ablation"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            RecipeError,
            match=f"the ablation folder is in use by another netgraph process \\(PID {holder.pid}\\)",
        ):
            ablate([str(folder / "r.yaml")], 1, device="cpu", out_dir=out)
    finally:
        holder.kill()
        holder.wait()


def test_resume_skips_log_lines_that_are_not_runs(tmp_path):
    """A log line without "seed" (or not a mapping) crashed --resume with a KeyError."""
    from netgraph.runs.log import read_records

    log = tmp_path / "r.jsonl"
    log.write_text(
        '{"recipe": "r.yaml", "seed": 0, "epoch": 1}\n{"recipe": "r.yaml"}\n[1, 2]\n'
        '{"recipe": "r.yaml", "seed": "0"}\n{"recipe": "r.yaml", "seed": 1, "epoch": 1}\n'
    )
    with pytest.warns(UserWarning, match="r.jsonl:2: skipping a line that is not a run's record"):
        runs = read_records(log)
    assert [r["seed"] for r in runs] == [0, 1]


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers stop with their parent on Linux")
def test_ablation_workers_stop_with_their_parent(saved, tmp_path):
    _, folder = saved
    slow = tmp_path / "slow.yaml"  # long enough to be interrupted while the workers train
    slow.write_text((folder / "r.yaml").read_text().replace("epochs: 2", "epochs: 200"))
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netgraph",
            "ablate",
            str(slow),
            "--runs",
            "2",
            "--workers",
            "2",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "a"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [
                p for p in children_of(parent.pid) if "multiprocessing" in open(f"/proc/{p}/cmdline").read()
            ]
        assert len(workers) >= 2, children_of(parent.pid)
        time.sleep(1)
        children = children_of(parent.pid)
        parent.terminate()
        parent.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and any(alive(p) for p in children):
            time.sleep(0.2)
        assert not [p for p in children if alive(p)]
    finally:
        parent.kill()
        for p in [p for p in locals().get("children", []) if alive(p)]:
            os.kill(p, 9)  # only the workers this test started, should it fail

"""A full or read-only disk is one line, and nothing is lost (issue 31): any OSError while
writing a checkpoint, a model, the epoch log, a run folder, an ablation's runs.jsonl or table
ends the command with one line naming the file, the system's reason and what is kept, exit
status 1, no traceback and no temporary file; `--resume` on a disk with room then finishes
bit-identical to an uninterrupted run.

The disk fills on cue here (a write that takes some bytes, then fails with ENOSPC as the
kernel's does); the last tests mount a real tmpfs of a few MB where this process may
(root, as CI runs), and are skipped with their reason elsewhere."""

import errno
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import SMALL

from netgraph.cli import main
from netgraph.core.errors import RecipeError, WriteFailed
from netgraph.runs import files
from netgraph.runs.ablate import ablate

RECIPE = SMALL.replace("epochs: 3", "epochs: 2").replace("test: 256", "test: 64")
FULL = "no space left on device"


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    return path


class FillsUp:
    """A file being written that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, file, room):
        self.file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            self.file.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def disk_fills_at(monkeypatch, name, call, room=1000):
    """The ``call``-th atomic write of a file called ``name`` finds the disk full."""
    real, calls = files.temporary_beside, {"n": 0}

    def temporary_beside(path):
        tmp, out = real(path)
        if Path(path).name == name:
            calls["n"] += 1
            if calls["n"] == call:
                return tmp, FillsUp(out, room)
        return tmp, out

    monkeypatch.setattr(files, "temporary_beside", temporary_beside)


def appends_fill_at(monkeypatch, name, call):
    """The ``call``-th append to a file called ``name`` writes half its line, then the disk is
    full (os.write as the kernel does it: a short count, then ENOSPC)."""
    real, calls = os.write, {"n": 0}

    def write(fd, data):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name:
            calls["n"] += 1
            if calls["n"] >= call:
                if calls["n"] == call:
                    return real(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def train(recipe, folder, *more):
    return main(
        ["train", str(recipe), "--device", "cpu", "--quiet", "--checkpoint", str(folder / "r.ckpt")]
        + ["--log", str(folder / "r.jsonl"), *more]
    )


def one_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("netgraph: warning")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def no_temporaries(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")] == []


def intact(path):
    """The checkpoint at ``path``, its checksum checked."""
    payload = torch.load(path, weights_only=True)
    files.check_checksum(payload, path, "checkpoint", "netgraph train")
    return payload


def same_weights(a, b):
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The model of the recipe trained in one go, to compare resumed runs with."""
    folder = tmp_path_factory.mktemp("whole")
    path = folder / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE))
    assert train(path, folder, "--save", str(folder / "m.pt")) == 0
    return folder / "m.pt"


def test_a_full_disk_while_checkpointing_is_one_line_and_resumes(
    recipe, tmp_path, monkeypatch, capsys, uninterrupted
):
    """A 20-line traceback (OSError, then torch's 'unexpected pos') said nothing of the
    checkpoint before, which was intact."""
    disk_fills_at(monkeypatch, "r.ckpt", call=2)  # the checkpoint after epoch 2
    assert train(recipe, tmp_path, "--save", str(tmp_path / "m.pt")) == 1
    assert one_line(capsys) == (
        f"netgraph: error: {tmp_path / 'r.ckpt'}: cannot write the checkpoint: {FULL} (the "
        "checkpoint of seed 0 after epoch 1 is intact: free space and run the same command with --resume)"
    )
    assert no_temporaries(tmp_path) and not (tmp_path / "m.pt").exists()
    assert intact(tmp_path / "r.ckpt")["state"]["epoch"] == 2  # after epoch 1
    monkeypatch.undo()  # room again
    assert train(recipe, tmp_path, "--save", str(tmp_path / "m.pt"), "--resume") == 0
    assert same_weights(tmp_path / "m.pt", uninterrupted)


def test_a_full_disk_while_saving_the_model_keeps_the_finished_checkpoint(
    recipe, tmp_path, monkeypatch, capsys, uninterrupted
):
    disk_fills_at(monkeypatch, "m.pt", call=2)  # 1: the check before training
    assert train(recipe, tmp_path, "--save", str(tmp_path / "m.pt")) == 1
    line = one_line(capsys)
    assert (
        f"m.pt: cannot write the model file: {FULL} (the checkpoint of seed 0 after epoch 2 is intact" in line
    )
    assert no_temporaries(tmp_path) and not (tmp_path / "m.pt").exists()
    monkeypatch.undo()
    # the run is resumed at its end: the model is saved without training again
    assert train(recipe, tmp_path, "--save", str(tmp_path / "m.pt"), "--resume") == 0
    assert same_weights(tmp_path / "m.pt", uninterrupted)
    assert not (tmp_path / "r.ckpt").exists()  # finished: nothing is left to resume


def test_a_full_disk_while_writing_the_epoch_log_leaves_no_half_line(recipe, tmp_path, monkeypatch, capsys):
    appends_fill_at(monkeypatch, "r.jsonl", call=2)  # epoch 2's line
    assert train(recipe, tmp_path) == 1
    assert (
        f"r.jsonl: cannot write the epoch log: {FULL} (the checkpoint of seed 0 after epoch 1 is intact"
        in (one_line(capsys))
    )
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]  # epoch 2's half line taken back
    monkeypatch.undo()
    assert train(recipe, tmp_path, "--resume") == 0
    assert [json.loads(line)["epoch"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [1, 2]


def test_a_full_disk_while_rewriting_the_log_on_resume_keeps_it(recipe, tmp_path, monkeypatch, capsys):
    """--resume rewrites the log (the lines of what it resumes): write_text emptied it first."""
    disk_fills_at(monkeypatch, "r.ckpt", call=2)
    assert train(recipe, tmp_path) == 1
    capsys.readouterr()
    before = (tmp_path / "r.jsonl").read_text()
    monkeypatch.undo()
    disk_fills_at(monkeypatch, "r.jsonl", call=1, room=10)
    assert train(recipe, tmp_path, "--resume") == 1
    assert (
        f"cannot write the epoch log: {FULL} (the checkpoint of seed 0 after epoch 1 is intact"
        in one_line(capsys)
    )
    assert (tmp_path / "r.jsonl").read_text() == before and no_temporaries(tmp_path)


def test_a_read_only_output_folder_is_refused_before_training(recipe, tmp_path, monkeypatch, capsys):
    """--save into a folder that cannot be written was found only after training."""
    import netgraph.runs.plan as run

    real = files.temporary_beside

    def read_only(path):
        if Path(path).parent.name == "ro":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path)

    monkeypatch.setattr(files, "temporary_beside", read_only)
    monkeypatch.setattr(run, "load_data", lambda *a, **k: pytest.fail("loaded data: training went on"))
    (tmp_path / "ro").mkdir()
    assert train(recipe, tmp_path, "--save", str(tmp_path / "ro" / "m.pt")) == 1
    assert one_line(capsys) == (
        f"netgraph: error: {tmp_path / 'ro' / 'm.pt'}: cannot write the model file: read-only file "
        "system (nothing was trained: free space on its disk, or name a file elsewhere)"
    )


def test_a_run_folder_that_cannot_be_made_is_one_line(recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    real = Path.mkdir

    def mkdir(self, *a, **k):
        if "runs" in self.parts:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(["train", str(recipe), "--device", "cpu", "--quiet"]) == 1
    assert one_line(capsys) == (
        f"netgraph: error: runs/r: cannot write the run folder: {FULL} (nothing was trained: free space "
        "on its disk, or train elsewhere (--log, --checkpoint))"
    )


def test_a_lock_that_cannot_be_written_leaves_no_run_folder(recipe, tmp_path, monkeypatch, capsys):
    """The session locks its files as it starts (runs.session.TrainSession.__enter__): a lock
    file the disk refuses ends in one line and the new, empty run folder is removed."""
    monkeypatch.chdir(tmp_path)
    real = files._lock

    def full(path, lock_path, what):
        if Path(path).name == "log.jsonl":  # the checkpoint's lock is taken, the log's is not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(lock_path))
        return real(path, lock_path, what)

    monkeypatch.setattr(files, "_lock", full)
    assert main(["train", str(recipe), "--device", "cpu", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the lock file of the log: {FULL}" in err and "Traceback" not in err
    removed = Path(err.split("removed the new run folder ")[1].split()[0])
    assert removed.parent == Path("runs/r") and not removed.exists() and files.held() == []


def test_a_full_disk_in_an_ablation_keeps_every_run_recorded(recipe, tmp_path, monkeypatch):
    out = tmp_path / "ablation"
    trained = []
    appends_fill_at(monkeypatch, "runs.jsonl", call=2)
    with pytest.raises(WriteFailed) as err:
        ablate([str(recipe)], 3, device="cpu", out_dir=out, on_run=lambda *a: trained.append(a))
    assert str(err.value) == (
        f"{out / 'runs.jsonl'}: cannot write the ablation's runs.jsonl: {FULL} (the 1 runs recorded "
        "before are kept in it: free space and run the same command, which trains only the runs not recorded)"
    )
    assert [json.loads(line)["seed"] for line in (out / "runs.jsonl").read_text().splitlines()] == [0]
    monkeypatch.undo()
    trained.clear()
    rows = ablate([str(recipe)], 3, device="cpu", out_dir=out, on_run=lambda *a: trained.append(a))
    assert [a[1] for a in trained] == [1, 2] and rows[0]["runs"] == 3


def test_a_full_disk_while_writing_the_table_trains_nothing_again(recipe, tmp_path, monkeypatch):
    out = tmp_path / "ablation"
    disk_fills_at(monkeypatch, "table.md", call=1, room=10)
    with pytest.raises(
        WriteFailed, match=f"table.md: cannot write the table: {FULL} \\(every run is recorded"
    ):
        ablate([str(recipe)], 1, device="cpu", out_dir=out)
    assert no_temporaries(out) and not (out / "table.md").exists()
    monkeypatch.undo()
    trained = []
    ablate([str(recipe)], 1, device="cpu", out_dir=out, on_run=lambda *a: trained.append(a))
    assert trained == [] and (out / "table.md").exists()


def test_a_write_failure_is_a_recipe_error_of_exit_status_1():
    """The Python API's one error type; the command line tells a full disk (1) from a mistake (2)."""
    assert issubclass(WriteFailed, RecipeError)
    assert (WriteFailed.exit_code, RecipeError.exit_code) == (1, 2)


# --- a real file system of a few MB ---------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 16 MB at tmp_path/disk, as root (CI); skipped with the reason elsewhere."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or 'not root'}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def resize(disk, size, *options):
    subprocess.run(["mount", "-o", ",".join(["remount", f"size={size}", *options]), str(disk)], check=True)


# a checkpoint of 9.4 MB (weights, optimizer state and average of 790,000 parameters): a 16 MB
# disk holds one, not the second beside it that an atomic write needs
WIDE = """\
data: {dataset: synthetic, synthetic: {train: 256, test: 64, classes: 4}}
train:
  epochs: 3
  batch_size: 64
  lr: {knots: [0, 1, epochs], values: [0, 0.4, 0]}
  ema: {momentum: 0.9, every: 2}
network:
  flat: {op: flatten}
  wide: {op: linear, out: 256}
  act: {op: relu}
  fc: {op: linear, out: 4}
"""


def fill(disk, leave):
    """A ballast file that leaves ``leave`` bytes of the disk free (tmpfs counts 4 KiB pages)."""
    stat = os.statvfs(disk)
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - leave))
    return ballast


def test_a_real_full_disk_during_training_then_resume_with_room(small_disk, tmp_path, capsys):
    path = tmp_path / "wide.yaml"
    path.write_text(WIDE)
    assert train(path, tmp_path, "--save", str(tmp_path / "whole.pt"), "--checkpoint-every", "0") == 0
    capsys.readouterr()
    # room for one checkpoint, not two: the write after epoch 2 fails
    assert train(path, small_disk, "--save", str(small_disk / "m.pt")) == 1
    assert (
        f"r.ckpt: cannot write the checkpoint: {FULL} (the checkpoint of seed 0 after epoch 1 is intact"
        in (one_line(capsys))
    )
    assert no_temporaries(small_disk) and intact(small_disk / "r.ckpt")["state"]["epoch"] == 2
    resize(small_disk, "64m")  # room again
    assert train(path, small_disk, "--save", str(small_disk / "m.pt"), "--resume") == 0
    assert same_weights(small_disk / "m.pt", tmp_path / "whole.pt")


def test_a_real_full_disk_while_saving_the_model(small_disk, tmp_path, capsys, recipe, uninterrupted):
    ballast = fill(small_disk, leave=4096)  # the model of the small recipe takes 5 pages
    assert train(recipe, tmp_path, "--save", str(small_disk / "m.pt")) == 1
    assert f"m.pt: cannot write the model file: {FULL} (the checkpoint of seed 0 after epoch 2 is intact" in (
        one_line(capsys)
    )
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast"]
    ballast.unlink()
    assert train(recipe, tmp_path, "--save", str(small_disk / "m.pt"), "--resume") == 0
    assert same_weights(small_disk / "m.pt", uninterrupted)


def test_a_real_full_disk_in_an_ablation(small_disk, recipe):
    out = small_disk / "ablation"
    out.mkdir()
    # a record of another recipe that leaves less of its page than a run's record takes
    other = {"recipe": "other.yaml", "seed": 0, "note": ""}
    other["note"] = "x" * (4096 - 300 - len(json.dumps(other)))
    (out / "runs.jsonl").write_text(json.dumps(other) + "\n")
    ballast = fill(small_disk, leave=4096)  # one page: the ablation's lock file takes it
    with pytest.raises(WriteFailed, match=f"cannot write the ablation's runs.jsonl: {FULL} \\(the 1 runs"):
        ablate([str(recipe)], 1, device="cpu", out_dir=out)
    assert (out / "runs.jsonl").read_text() == json.dumps(other) + "\n"  # no half line
    ballast.unlink()
    trained = []
    ablate([str(recipe)], 1, device="cpu", out_dir=out, on_run=lambda *a: trained.append(a))
    assert len(trained) == 1 and (out / "table.md").exists()


def test_a_real_read_only_disk_is_refused_before_training(small_disk, recipe, capsys):
    resize(small_disk, "16m", "ro")
    assert train(recipe, small_disk) == 1
    assert "cannot write the lock file of the checkpoint: read-only file system" in one_line(capsys)

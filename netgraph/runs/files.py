"""Files netgraph writes and reads back: checkpoints, saved models, logs, ablation folders.

- Written atomically through a temporary file of a unique name beside the target, created
  with O_EXCL and O_NOFOLLOW (a name planted in a shared folder, or a symlink at it, is never
  written through), then renamed into place.
- A checkpoint or model carries the SHA-256 of its tensors, checked on load: a flipped byte
  is refused naming the file, never trained on or evaluated.
- A path in use by a live netgraph process (a checkpoint, a log, an ablation folder) is
  locked (flock on ``<path>.lock``, holding the PID): a second process is refused at start
  with the first one's PID. The lock goes with the process, even when it is killed.
- Any OSError while writing (a full or read-only disk) ends as one ``WriteFailed`` naming
  the file, the system's reason and what is kept; no temporary file and no half line is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

from netgraph.core.errors import RecipeError, WriteFailed

TEXT_MODE = 0o644  # logs, results and tables are for reading, as write_text left them
# what a failed write leaves, in words (or a function that says it, asked only on failure)
Kept = Union[str, Callable[[], str], None]

# --- checksums ----------------------------------------------------------------------------


def _walk(value: Any) -> Iterator[Tuple[str, Any]]:
    """(path, leaf) for every leaf of nested dicts and lists, in order; iterative, so no
    nesting depth is too deep for it."""
    stack = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            yield where, f"dict:{len(item)}"
            stack.extend(reversed([(f"{where}/{k!r}", v) for k, v in item.items()]))
        elif isinstance(item, (list, tuple)):
            yield where, f"{type(item).__name__}:{len(item)}"
            stack.extend(reversed([(f"{where}/{i}", v) for i, v in enumerate(item)]))
        else:
            yield where, item


def checksum(payload: Dict) -> str:
    """SHA-256 of everything in the payload but its "checksum" key: every key, plain value,
    and tensor's dtype, shape and bytes, so no key can go missing or change unnoticed."""
    digest = hashlib.sha256()
    for where, leaf in _walk({k: v for k, v in payload.items() if k != "checksum"}):
        if isinstance(leaf, torch.Tensor):
            data = leaf.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{where}|tensor|{data.dtype}|{tuple(leaf.shape)}|".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        else:
            digest.update(f"{where}|{type(leaf).__name__}|{leaf!r}|".encode())
    return digest.hexdigest()


def check_checksum(payload: Dict, path, what: str, writer: str) -> None:
    saved = payload.get("checksum")
    if not isinstance(saved, str):
        raise RecipeError(
            f"the {what} has no checksum of its tensors",
            file=str(path),
            hint=f"it was not written by this netgraph's {writer}",
        )
    if checksum(payload) != saved:
        raise RecipeError(
            f"the {what}'s tensors do not match its checksum: the file is corrupt or was changed",
            file=str(path),
            hint="use another copy, or start afresh"
            if "checkpoint" in what
            else "use another copy, or train it again",
        )


# --- writing ------------------------------------------------------------------------------


def temporary_beside(path: Path):
    """(name, open binary file) of a new file beside ``path``: a unique name, created with
    O_EXCL (never an existing file) and O_NOFOLLOW (never through a symlink), mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.fdopen(os.open(tmp, flags, 0o600), "wb")
        except FileExistsError:
            continue
    raise RecipeError(
        "cannot create a temporary file: 100 unique names were all taken", file=str(path.parent)
    )


def save_atomically(payload: Dict, path, what: str = "file", kept: Kept = None) -> None:
    """torch.save to a new temporary file beside ``path``, then rename it into place: a crash
    while writing leaves the previous file whole, and two writers never share a temporary. A
    full disk ends as WriteFailed naming the ``what`` (and saying what is ``kept``)."""
    path = Path(path)
    with writing(path, what, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, out = temporary_beside(path)
        try:
            with out:
                torch.save(payload, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)  # replaces a symlink at path itself, never its target
        finally:
            tmp.unlink(missing_ok=True)


def write_text_atomically(path, text: str, what: str = "file", kept: Kept = None) -> None:
    """``text`` to ``path`` through a temporary beside it, as save_atomically: a full disk
    leaves the previous file whole (write_text had emptied it first)."""
    path = Path(path)
    with writing(path, what, kept):
        if path.exists() and not path.is_file():  # a FIFO or device (--log /dev/stdout): in place
            path.write_text(text)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, out = temporary_beside(path)
        try:
            with out:
                os.fchmod(out.fileno(), TEXT_MODE)  # a log or table, as write_text made it; not 0600
                out.write(text.encode())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def append_line(path, line: str, what: str = "file", kept: Kept = None) -> None:
    """One line appended to ``path``: whole, or (on a full disk) not at all, the part written
    taken back, so a reader never meets half a line."""
    with writing(path, what, kept):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size, data = os.fstat(fd).st_size, (line + "\n").encode()
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def check_writable(path, what: str) -> None:
    """Refuse now, before any training, a file that could not be written at the end (a
    read-only or full disk): its folder made, and a temporary created there and removed."""
    path = Path(path)
    with writing(path, what, "nothing was trained: free space on its disk, or name a file elsewhere"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, out = temporary_beside(path)
        out.close()
        tmp.unlink()


@contextlib.contextmanager
def writing(path, what: str, kept: Kept = None) -> Iterator[None]:
    """Any OSError in the block, or torch.save's RuntimeError raised while handling one ('unexpected
    pos ...'), ends as one WriteFailed: 'cannot write the checkpoint: no space left on device'."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        cause = _os_error(e)
        if cause is None:
            raise
        reason = cause.strerror or str(cause)
        raise WriteFailed(
            f"cannot write the {what}: {reason[:1].lower() + reason[1:]}",
            file=str(path),
            hint=(kept() if callable(kept) else kept)
            or "free space on its disk, or write it elsewhere, and run the command again",
        ) from None


def _os_error(error: Optional[BaseException]) -> Optional[OSError]:
    """The OSError behind a failed write: the error itself or one it was raised while handling."""
    for _ in range(10):
        if error is None or isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


# --- locks --------------------------------------------------------------------------------

_HELD: Dict[Path, Any] = {}  # lock path -> its open file, while this process holds it


def lock(path, what: str) -> Path:
    """Lock ``path`` (a checkpoint, a log, an ablation folder) for this process, or refuse
    with the PID of the live process holding it. Released by ``unlock`` or at exit."""
    lock_path = Path(str(path) + ".lock")
    if lock_path in _HELD:
        return lock_path
    with writing(lock_path, f"lock file of {what}"):
        return _lock(path, lock_path, what)


def _lock(path, lock_path: Path, what: str) -> Path:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RecipeError(
                f"{what} is in use by another netgraph process (PID {pid})",
                file=str(path),
                hint=f"wait for it to finish, stop it (kill {pid}), or use another path",
            ) from None
        # the holder before us may have removed the file between our open and our lock
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: no lock file is left behind
            lock_path.unlink(missing_ok=True)
            os.close(fd)
            raise
        _HELD[lock_path] = fd
        return lock_path
    raise RecipeError(f"cannot lock {what}: its lock file keeps changing", file=str(path))


def unlock(lock_path: Path) -> None:
    fd = _HELD.pop(lock_path, None)
    if fd is not None:
        lock_path.unlink(missing_ok=True)  # while still locked: a waiter re-checks the inode
        os.close(fd)


def unlock_all() -> None:
    for lock_path in list(_HELD):
        unlock(lock_path)


def held() -> List[Path]:
    return list(_HELD)

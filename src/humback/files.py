"""The one rule for everything humback puts on disk: it writes only files it creates.

- A file is written under a temporary name created exclusively in the target's folder (`mkstemp`:
  O_CREAT | O_EXCL, never through an existing path) and renamed over the target when whole.
- A file that is appended to across runs (a stage's `.partial`, a lock) is opened with O_NOFOLLOW.
- A symbolic link at a path humback would write (the target, its temp, a folder it writes into) is
  refused with an `UnsafePath` error: a link planted in a run folder someone sent you must not make
  humback overwrite a file outside it.
- A folder is removed only if it carries humback's marker (`.humback-owned`, written when humback made
  it), so an `--out` naming a folder of your own is refused, never emptied.
- A full disk is a `DiskFull` (exit 3) naming the path; the temporary file goes with it.
- A folder being written is held by a lock (`folder_lock`); a second writer gets `Busy` naming the holder.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from humback.errors import EnvironmentFault, HumbackError

OWNED = ".humback-owned"  # marker in every folder humback made and may remove or replace
_UMASK = os.umask(0o022)  # read once (the only way to read it), and put back at once
os.umask(_UMASK)


class UnsafePath(HumbackError):
    """A path humback would write through a link, or a folder it would remove that it did not make."""


class DiskFull(EnvironmentFault):
    """No space (or quota) left while writing; what finished is kept."""


class Busy(EnvironmentFault):
    """Another process holds the lock on a folder or cache entry."""


def refuse_link(path: str | Path) -> None:
    if os.path.islink(path):
        raise UnsafePath(
            f"{path} is a symbolic link: humback never writes through a link (it could overwrite a"
            " file outside this folder); remove the link, or give another output path"
        )


def ensure_dir(path: str | Path) -> Path:
    """`path` as a folder to write into: created if missing; a link there is refused (its ancestors are the
    user's to choose)."""
    path = Path(path)
    refuse_link(path)
    if path.exists() and not path.is_dir():
        raise UnsafePath(f"{path} is a file, not a folder: move it away or give another output path")
    with disk_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """A full disk or quota while writing `path` becomes DiskFull naming it (exit 3, rerun resumes)."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(
                f"no space left on the device while writing {path}: free some space and rerun the same"
                " command"
            ) from None
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a link
            refuse_link(path)
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a crash right after it cannot bring the old name back)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_append(path: str | Path, binary: bool = False):
    """A file humback keeps appending to (a `.partial`, a lock): created if missing, never through a link."""
    path = Path(path)
    ensure_dir(path.parent)
    with disk_errors(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "ab" if binary else "a", **({} if binary else {"encoding": "utf-8"}))


def temp_path(target: Path, folder: bool = False) -> Path:
    """A new, exclusively created temporary file (or folder, with the marker) beside `target`."""
    ensure_dir(target.parent)
    refuse_link(target)
    with disk_errors(target.parent):
        if folder:
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
            tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; outputs get the usual permissions
            mark_owned(tmp)
            return tmp
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would have made it
    finally:
        os.close(fd)
    return Path(name)


def is_temp_of(name: str, target_name: str) -> bool:
    """Whether `name` is one of temp_path's names for a target called `target_name`
    (`.<target_name>.<8 random characters>.tmp`)."""
    return re.fullmatch(rf"\.{re.escape(target_name)}\.[A-Za-z0-9_]{{8}}\.tmp", name) is not None


def sweep_temps(target: Path) -> int:
    """Remove the temporary files and folders an earlier, killed writer of `target` left beside it (the
    names temp_path makes: `.<name>.<8 random characters>.tmp`; folders only with humback's marker), so a
    killed 10 GB segment pass does not stay on disk. Call it holding the output's lock. Returns the count."""
    removed = 0
    if not target.parent.is_dir():
        return 0
    for p in target.parent.iterdir():
        if not is_temp_of(p.name, target.name) or p.is_symlink():
            continue
        if p.is_file():
            p.unlink(missing_ok=True)
        elif p.is_dir() and is_owned(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            continue
        removed += 1
    return removed


def discard(tmp: Path) -> None:
    """Remove a temporary file or folder this process created (a failure leaves no half output)."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, target: Path, also: tuple[str, ...] = ()) -> None:
    """Rename a finished temporary file or folder to `target`. A folder replaces only a folder humback made
    (see is_owned); a link at `target` is refused, never followed."""
    refuse_link(target)
    if tmp.is_dir() and target.exists():
        remove_owned(target, also)
    with disk_errors(target):
        os.replace(tmp, target)
        fsync_dir(target.parent)


def write_via(target: str | Path, write: Callable[[Path], None]) -> None:
    """Let `write(path)` (matplotlib's savefig, pyarrow, a library's save) fill a fresh temporary file, then
    publish it as `target`; on any failure the temporary file is removed."""
    target = Path(target)
    tmp = temp_path(target)
    try:
        with disk_errors(target):
            write(tmp)
        publish(tmp, target)
    except BaseException:
        discard(tmp)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write a final file whole or not at all: a fresh temp file beside it, fsync, rename, fsync the dir."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())

    write_via(path, write)


def mark_owned(folder: Path) -> None:
    (folder / OWNED).write_text("made by humback: it may remove or replace this folder\n", encoding="utf-8")


def is_owned(folder: Path, also: tuple[str, ...] = ()) -> bool:
    """Whether humback made `folder`: its marker, or one of the files named in `also` (what older humback
    versions left as their sign, e.g. a checkpoint's humback_train.json)."""
    return any((folder / name).is_file() for name in (OWNED, *also))


def make_owned_dir(folder: str | Path, also: tuple[str, ...] = ()) -> Path:
    """A folder humback may later remove: created with the marker, or an existing one that is humback's
    (or empty). Someone else's folder is an UnsafePath error."""
    folder = ensure_dir(folder)
    if not is_owned(folder, also):
        if any(folder.iterdir()):
            raise UnsafePath(
                f"{folder} is a folder humback did not make (it has no {OWNED} marker and is not"
                " empty): give a new or empty folder, or move this one away"
            )
        mark_owned(folder)
    return folder


def check_replaceable(folder: str | Path, also: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, a `folder` humback would later replace that is not its own: a link, a file,
    or a non-empty folder without its marker (see is_owned). A missing folder is fine."""
    folder = Path(folder)
    refuse_link(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UnsafePath(
            f"{folder} is a file humback did not write where it would put a folder: move it away or"
            " give another output path"
        )
    if not is_owned(folder, also) and any(folder.iterdir()):
        raise UnsafePath(
            f"{folder} is a folder humback did not make (no {OWNED} marker, not empty): humback would"
            " replace it; give a new or empty folder, or move this one away"
        )


def remove_owned(folder: str | Path, also: tuple[str, ...] = ()) -> None:
    """Remove a folder humback made (see is_owned); an empty folder goes too. Missing: nothing to do."""
    check_replaceable(folder, also)
    if Path(folder).exists():
        shutil.rmtree(folder)


@contextmanager
def folder_lock(path: str | Path, wait: bool = True, what: str = "it") -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for the `with` block: two runs on one run folder,
    or two conversions of one model, never delete each other's temporary files. With `wait=False` a held
    lock is a Busy error naming `what` and the holder (its pid and command). Released when the process
    dies, however it dies."""
    import fcntl

    path = Path(path)
    with open_append(path, binary=True) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(path)
            raise Busy(
                f"another humback process{holder} is writing {what} (lock {path}); wait for it to finish"
                " or stop it"
            ) from None
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
        try:
            os.ftruncate(f.fileno(), 0)
            f.write(
                f"pid {os.getpid()}: {command[:300]} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(
                    "utf-8", "replace"
                )
            )
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read(400).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

"""Owning a run folder: one writing process at a time, claimed before anything is written.

A process that trains a run (a new one or ``--resume``) holds an exclusive ``flock`` on the
folder's ``.mnistkit.lock`` for as long as it writes there. The kernel drops the lock when
the process ends in any way (exit, exception, ``SIGKILL``), so a crashed run never stays
locked: the lock is the ``flock``, not the file's existence, and a lock file a killed
process left behind is simply locked again. The file holds the owner's pid and start time,
for the message another process gets. On release the owner deletes the file, and a
process that locked a file which was deleted meanwhile tries again, so the lock is never
held twice.

A new folder is claimed with ``os.mkdir`` (atomic: of two processes asking for the same
name exactly one creates it) and then locked; an existing empty folder may be claimed
too, but only under the lock, so two processes can never both find it empty.

This is the standard library's ``fcntl.flock`` rather than a package such as
``filelock``: on POSIX that package makes the same call, and mnistkit also needs the
owner's pid in the message and the mkdir-then-lock order, which are a few lines here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from pathlib import Path

from mnistkit.errors import RunError, setting

LOCK_NAME = ".mnistkit.lock"
_MAX_OWNER_BYTES = 200  # the lock file holds one short line; never read more


class RunBusyError(RunError):
    """Another live process is training (writing) this run folder."""


class RunLock:
    """An exclusive lock on a run folder, held by this process until :meth:`release`."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder, self._fd = folder, fd

    @property
    def held(self) -> bool:
        """True until :meth:`release` is called."""
        return self._fd is not None

    def release(self) -> None:
        """Give the folder up (idempotent): delete the lock file, then close it, which
        drops the ``flock``."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.unlink(self.folder / LOCK_NAME)
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a dropped Run must not keep its folder locked
        self.release()


def lock_run_folder(folder: str | Path) -> RunLock:
    """Lock the existing run folder ``folder`` for this process.

    Raises :class:`RunBusyError` naming the owner when another live process holds it, and
    :class:`RunError` when the lock file cannot be created (a read-only folder).
    """
    folder = Path(folder)
    for _ in range(100):  # another try only when the owner deleted the file meanwhile
        fd = _open_lock_file(folder / LOCK_NAME)
        if _try_lock(fd, folder) and _still_in_place(fd, folder / LOCK_NAME):
            _write_owner(fd)
            return RunLock(folder, fd)
        os.close(fd)
    raise RunBusyError(f"{folder} is being claimed by other processes; try again")


def _open_lock_file(lock_path: Path) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise RunError(f"cannot write {lock_path}: {exc.strerror or exc}") from None


def _try_lock(fd: int, folder: Path) -> bool:
    """Take the ``flock`` on ``fd``; :class:`RunBusyError` if a live process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _wait_for_owner(fd)
        os.close(fd)
        raise RunBusyError(f"{folder} is being trained by another mnistkit process{owner}; "
                           "wait for it to finish or stop it") from None
    except OSError as exc:
        os.close(fd)
        raise RunError(f"cannot lock {folder / LOCK_NAME}: {exc.strerror or exc}") from None
    return True


def _still_in_place(fd: int, lock_path: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock_path`` (its owner may have released
    and deleted it between our open and our lock)."""
    try:
        return os.fstat(fd).st_ino == os.stat(lock_path, follow_symlinks=False).st_ino
    except OSError:
        return False


def claim_new_run_folder(path: str | Path, *, pick_free_name: bool = False) -> RunLock:
    """Create the run folder ``path`` (or take it if it exists and is empty) and lock it.

    With ``pick_free_name`` (default names such as ``runs/<time>-<model>``), an existing
    ``path`` is never reused: ``path-2``, ``path-3``... are created instead, each with an
    atomic ``os.mkdir``, so two processes started in the same second get two folders.
    Raises :class:`RunError` (one line, naming the folder) when the folder cannot be
    created, is a file, is not empty, or is being trained by another process.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a parent folder should be
        raise RunError(f"cannot write {path}: Not a directory (a file is in the way)") from None
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None
    if pick_free_name:
        return _claim_free_name(path)
    if _make_folder(path):
        return lock_run_folder(path)
    if not path.is_dir():
        raise RunError(f"{path} exists and is not a folder; choose another {setting('out')}")
    lock = lock_run_folder(path)
    if _has_content(path):
        lock.release()
        raise RunError(f"output folder {path} is not empty; choose another {setting('out')} "
                       f"or resume with {setting('resume')} {path}")
    return lock


def _claim_free_name(base: Path) -> RunLock:
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if _make_folder(candidate):
            try:
                return lock_run_folder(candidate)
            except RunBusyError:  # another process took the fresh folder first: next name
                continue
    raise RunError(f"cannot find a free run folder name next to {base}")


def _make_folder(path: Path) -> bool:
    """``os.mkdir(path)``: True if this call created it, False if it already existed."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None
    return True


def _has_content(folder: Path) -> bool:
    return any(item.name != LOCK_NAME for item in folder.iterdir())


def _write_owner(fd: int) -> None:
    started = dt.datetime.now().isoformat(timespec="seconds")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {started}\n".encode(), 0)


def _wait_for_owner(fd: int, seconds: float = 0.5) -> str:
    """The owner line of a lock just taken by another process, which writes it right
    after its ``flock``: read again for up to ``seconds`` while the file is still empty."""
    deadline = time.monotonic() + seconds
    owner = _read_owner(fd)
    while not owner and time.monotonic() < deadline:
        time.sleep(0.01)
        owner = _read_owner(fd)
    return owner


def _read_owner(fd: int) -> str:
    """`` (pid 123 since ...)`` from the lock file, or ``""`` when it says nothing usable."""
    try:
        text = os.pread(fd, _MAX_OWNER_BYTES, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text.startswith("pid ") and text.isprintable() else ""

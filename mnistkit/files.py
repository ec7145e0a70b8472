"""File-system helpers shared by the library: the user cache folder, atomic writes, and
reads of files that come from elsewhere (regular files only, bounded in size)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from mnistkit.errors import DataError, MnistkitError

CACHE_DIR_ENV = "MNISTKIT_CACHE_DIR"


def cache_dir() -> Path:
    """The user cache folder: ``$MNISTKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mnistkit``
    (an absolute path), else ``$HOME/.cache/mnistkit``. Not created here.

    Raises :class:`mnistkit.errors.DataError` when none applies because ``HOME`` is
    unset, empty, relative or not an existing folder: a cache is never created under a
    home that is not there (callers that can do without a cache, do).
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "mnistkit"
    home = os.environ.get("HOME", "")
    if not home or not os.path.isabs(home) or not os.path.isdir(home):
        shown = f"{home!r} is not an existing folder" if home else "is not set"
        raise DataError(f"no cache folder: HOME {shown}; set {CACHE_DIR_ENV} (or "
                        "XDG_CACHE_HOME) to a folder, or pass --data-dir")
    return Path(home) / ".cache" / "mnistkit"


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    Readers see either the old complete file or the new complete one, never a partial
    write, even if the process is killed. On any exception (or KeyboardInterrupt) the
    temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; use what open() would
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_SPECIAL_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                  (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"))


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, as words: ``a FIFO (named pipe)``, ``a folder``..."""
    for test, name in _SPECIAL_KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def require_regular_file(path: str | Path, what: str = "file", *, max_bytes: int | None = None,
                         error: type[MnistkitError] = DataError) -> os.stat_result:
    """``os.stat(path)`` (following symlinks), refusing anything but a regular file of at
    most ``max_bytes`` with ``error`` naming the file, before anything opens it.

    A FIFO, socket or device given where a file is expected would block or never end;
    here it is one clear error. A missing file raises ``FileNotFoundError`` (other
    ``OSError`` too) for the caller to word.
    """
    info = os.stat(path)
    _check_stat(path, info, what, max_bytes, error)
    return info


def _check_stat(path: str | Path, info: os.stat_result, what: str, max_bytes: int | None,
                error: type[MnistkitError]) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is {file_kind(info.st_mode)}, not a regular file ({what} "
                    "expected)")
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{path}: {info.st_size} bytes is too large for {what} (at most "
                    f"{max_bytes}); refused unread")


def open_regular_file(path: str | Path, what: str = "file", *, max_bytes: int | None = None,
                      error: type[MnistkitError] = DataError) -> BinaryIO:
    """Open ``path`` for binary reading after :func:`require_regular_file`.

    The file is opened non-blocking and checked again with ``fstat``, so a FIFO swapped
    in between the two checks cannot make the open hang either.
    """
    require_regular_file(path, what, max_bytes=max_bytes, error=error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_stat(path, os.fstat(fd), what, max_bytes, error)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | Path, max_bytes: int, what: str = "file", *,
                 error: type[MnistkitError] = DataError) -> bytes:
    """The bytes of the regular file ``path``, refusing more than ``max_bytes``.

    The size is checked with ``stat`` before reading, and the read stops one byte past
    the limit, so a file that grows (or a ``/proc`` file that reports size 0) cannot
    make it read more.
    """
    with open_regular_file(path, what, max_bytes=max_bytes, error=error) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path}: more than {max_bytes} bytes is too large for {what}; refused")
    return data

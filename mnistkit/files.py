"""File-system helpers shared by the library: the user cache folder and atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mnistkit.errors import DataError

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

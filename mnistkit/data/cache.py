"""A decompressed cache of IDX files, so repeat loads skip gzip.

Each source file read through :func:`read_idx_cached` is kept as a ``.npy`` array plus
a small ``.json`` record in ``mnistkit.files.cache_dir() / "idx-v1"``. An entry is
keyed by the source's resolved path and its ``stat`` (size, mtime, ctime, inode), so a
changed source is never served stale; the record also holds the MD5 of the source's
uncompressed content (so loads need not re-hash) and a CRC-32 of the array, checked
on every read, so a damaged cache file is noticed, ignored and rewritten.

The cache is best effort: a missing or read-only home, a full disk or any damaged
entry falls back to reading the source. Set ``MNISTKIT_NO_CACHE=1`` to turn it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnistkit.data.idx import read_idx_with_md5
from mnistkit.files import atomic_write, cache_dir

NO_CACHE_ENV = "MNISTKIT_NO_CACHE"
CACHE_SUBDIR = "idx-v1"
_FORMAT = 1
_FRESH: ContextVar[bool] = ContextVar("mnistkit_fresh_reads", default=False)


class IdxRead(NamedTuple):
    """An array read from an IDX file, the MD5 of its uncompressed content, and whether
    it came from the cache."""

    array: np.ndarray
    md5: str
    cached: bool


def cache_enabled() -> bool:
    """False when ``MNISTKIT_NO_CACHE`` is set to anything but ``0``/``false``/``no``/empty."""
    value = os.environ.get(NO_CACHE_ENV, "").strip().lower()
    return value in ("", "0", "false", "no", "off")


@contextlib.contextmanager
def fresh_reads() -> Iterator[None]:
    """Within this block cached arrays are not used: sources are re-read and re-hashed
    (and the cache refreshed). ``inspect --verify`` loads through this."""
    token = _FRESH.set(True)
    try:
        yield
    finally:
        _FRESH.reset(token)


def idx_cache_dir() -> Path:
    """Where cached arrays live (may not exist yet)."""
    return cache_dir() / CACHE_SUBDIR


def read_idx_cached(path: str | Path, *, ndim: int | None = None,
                    dtype: np.dtype | type | None = None,
                    use_cache: bool | None = None) -> IdxRead:
    """Read an IDX file like :func:`mnistkit.data.idx.read_idx`, through the cache.

    ``use_cache`` None follows ``MNISTKIT_NO_CACHE``. Errors in the source file raise
    :class:`mnistkit.errors.DataError` exactly as an uncached read does; problems with
    the cache itself never do.
    """
    path = Path(path)
    if use_cache is None:
        use_cache = cache_enabled()
    entry = _entry_paths(path) if use_cache else None
    if entry is not None and not _FRESH.get():
        hit = _load(*entry, ndim=ndim, dtype=dtype)
        if hit is not None:
            return hit
    array, md5 = read_idx_with_md5(path, ndim=ndim, dtype=dtype, md5=True)
    if entry is not None:
        _store(*entry, array=array, md5=md5)
    return IdxRead(array, md5, False)


def clear_cache() -> int:
    """Delete every cached array; returns how many files were removed."""
    removed = 0
    with contextlib.suppress(OSError, RuntimeError):
        for item in idx_cache_dir().iterdir():
            if item.suffix in (".npy", ".json", ".tmp"):
                with contextlib.suppress(OSError):
                    item.unlink()
                    removed += 1
    return removed


class _Entry(NamedTuple):
    folder: Path
    prefix: str  # identifies the source path
    stem: str  # identifies the source path and its current state
    stat: list[int]
    source: str


def _entry_paths(path: Path) -> _Entry | None:
    try:
        resolved = path.resolve()
        info = resolved.stat()
        folder = idx_cache_dir()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: no home folder
        return None
    stat = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]
    prefix = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    state = hashlib.sha256(json.dumps([_FORMAT, stat]).encode()).hexdigest()[:20]
    return _Entry(folder, prefix, f"{prefix}-{state}", stat, str(resolved))


def _load(folder: Path, prefix: str, stem: str, stat: list[int], source: str, *,
          ndim: int | None, dtype: Any) -> IdxRead | None:
    try:
        meta = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        if (meta.get("format") != _FORMAT or meta.get("stat") != stat
                or meta.get("source") != source):
            return None
        array = np.load(folder / f"{stem}.npy", allow_pickle=False)
        if (array.shape != tuple(meta["shape"]) or array.dtype.str != meta["dtype"]
                or _crc(array) != meta["crc32"] or not isinstance(meta.get("md5"), str)):
            return None
        if ndim is not None and array.ndim != ndim:
            return None
        if dtype is not None and array.dtype != np.dtype(dtype):
            return None
        return IdxRead(array, meta["md5"], True)
    except Exception:  # any damaged or foreign entry is a miss, never a crash
        return None


def _store(folder: Path, prefix: str, stem: str, stat: list[int], source: str, *,
           array: np.ndarray, md5: str) -> None:
    meta = {"format": _FORMAT, "source": source, "stat": stat, "md5": md5,
            "shape": list(array.shape), "dtype": array.dtype.str, "crc32": _crc(array)}
    try:
        with atomic_write(folder / f"{stem}.npy") as handle:
            np.save(handle, array, allow_pickle=False)
        with atomic_write(folder / f"{stem}.json", "w") as handle:
            json.dump(meta, handle)
        for old in folder.glob(f"{prefix}-*"):  # earlier states of the same source
            if old.stem != stem and old.suffix in (".npy", ".json"):
                with contextlib.suppress(OSError):
                    old.unlink()
    except (OSError, RuntimeError, ValueError):  # read-only home, full disk: no cache
        return


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))

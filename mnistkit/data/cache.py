"""A decompressed cache of IDX files, so repeat loads skip gzip.

Each source file read through :func:`read_idx_cached` is kept as a ``.npy`` array plus
a small ``.json`` record in ``mnistkit.files.cache_dir() / "idx-v1"``. An entry is
keyed by the source's resolved path and its ``stat`` (size, mtime, ctime, inode), so a
changed source is never served stale.

Nothing an entry says about itself is trusted: anyone who can write the cache folder
can rewrite an array and its record to match. So every cached array is hashed again
in this process when it is served: the SHA-256 of the IDX content it stands for
(the header, which follows from its dtype and shape, plus its big-endian bytes) is
compared with the record (a damaged entry is a miss and is rewritten) and, when the
caller gives the published MD5 of the source, the content is proven to have that MD5:
either its SHA-256 equals a SHA-256 mnistkit ships for that very content
(``known_sha256``; 0.04 s for MNIST's 55 MB) or its MD5 is recomputed from the array.
A cached array that does not match the published sum is not served: the source is
read again (and decides). No MD5 is read from a record.

The cache is best effort: a missing, read-only or unknown home, a full disk or any
damaged entry falls back to reading the source. Set ``MNISTKIT_NO_CACHE=1`` to turn it
off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnistkit.data.idx import IDX_DTYPES, read_idx_with_md5
from mnistkit.errors import MnistkitError
from mnistkit.files import atomic_write, cache_dir

NO_CACHE_ENV = "MNISTKIT_NO_CACHE"
CACHE_SUBDIR = "idx-v1"
_FORMAT = 2  # 2: SHA-256 of the content instead of a CRC-32 and a trusted MD5
_FRESH: ContextVar[bool] = ContextVar("mnistkit_fresh_reads", default=False)
_SERVED: ContextVar[list[tuple[Path, bool]] | None] = ContextVar("mnistkit_served",
                                                                 default=None)


class IdxRead(NamedTuple):
    """An array read from an IDX file, the MD5 of its uncompressed content, and whether
    it came from the cache.

    ``md5`` is always established in this process: computed while reading the source,
    or, for a cached array, proven as described in :mod:`mnistkit.data.cache`. It is
    ``""`` for a cached array when no published MD5 was given to check it against
    (nothing was hashed with MD5 then).
    """

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


@contextlib.contextmanager
def track_reads() -> Iterator[list[tuple[Path, bool]]]:
    """Collect ``(source path, served from the cache)`` for every
    :func:`read_idx_cached` call made within this block, in order."""
    reads: list[tuple[Path, bool]] = []
    token = _SERVED.set(reads)
    try:
        yield reads
    finally:
        _SERVED.reset(token)


def idx_cache_dir() -> Path:
    """Where cached arrays live (may not exist yet). Raises
    :class:`mnistkit.errors.DataError` when there is no usable cache folder."""
    return cache_dir() / CACHE_SUBDIR


def idx_content_digest(array: np.ndarray, algorithm: str = "sha256") -> str:
    """Hex digest (``hashlib`` ``algorithm``) of the IDX file content that holds
    ``array``: header plus big-endian elements, the bytes whose MD5 datasets publish.
    Raises ``ValueError`` for an array IDX cannot hold."""
    header = _idx_header(array)
    body = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    hasher = hashlib.new(algorithm, header, usedforsecurity=False)
    hasher.update(body.reshape(-1).view(np.uint8).data)
    return hasher.hexdigest()


def read_idx_cached(path: str | Path, *, ndim: int | None = None,
                    dtype: np.dtype | type | None = None,
                    use_cache: bool | None = None, expected_md5: str | None = None,
                    known_sha256: str | None = None) -> IdxRead:
    """Read an IDX file like :func:`mnistkit.data.idx.read_idx`, through the cache.

    ``use_cache`` None follows ``MNISTKIT_NO_CACHE``. ``expected_md5`` is the published
    MD5 of the uncompressed file: a cached array is served only if its content is proven
    to have it (else the source is re-read); ``known_sha256``, the SHA-256 of that same
    content shipped with mnistkit, makes the proof cheaper. Errors in the source file
    raise :class:`mnistkit.errors.DataError` exactly as an uncached read does; problems
    with the cache itself never do.
    """
    path = Path(path)
    if use_cache is None:
        use_cache = cache_enabled()
    entry = _entry_paths(path) if use_cache else None
    cached_sha = None
    if entry is not None and not _FRESH.get():
        hit = _load(*entry, ndim=ndim, dtype=dtype)
        if hit is not None:
            array, cached_sha = hit
            md5 = _proven_md5(array, cached_sha, expected_md5, known_sha256)
            if md5 is not None:
                return _served(path, IdxRead(array, md5, True))
            # the cached content is not what was published: the source decides
    array, md5 = read_idx_with_md5(path, ndim=ndim, dtype=dtype, md5=True)
    if entry is not None:
        _store(*entry, array=array, known=cached_sha)
    return _served(path, IdxRead(array, md5, False))


def clear_cache() -> int:
    """Delete every cached array; returns how many files were removed."""
    removed = 0
    with contextlib.suppress(OSError, RuntimeError, MnistkitError):
        for item in idx_cache_dir().iterdir():
            if item.suffix in (".npy", ".json", ".tmp"):
                with contextlib.suppress(OSError):
                    item.unlink()
                    removed += 1
    return removed


def _served(path: Path, read: IdxRead) -> IdxRead:
    reads = _SERVED.get()
    if reads is not None:
        reads.append((path, read.cached))
    return read


def _proven_md5(array: np.ndarray, sha256: str, expected_md5: str | None,
                known_sha256: str | None) -> str | None:
    """The MD5 of a cached array's content when it may be served, else None."""
    if expected_md5 is None:
        return ""  # nothing to check against; no MD5 claimed
    if known_sha256 is not None:
        return expected_md5 if sha256 == known_sha256 else None
    md5 = idx_content_digest(array, "md5")
    return md5 if md5 == expected_md5 else None


def _idx_header(array: np.ndarray) -> bytes:
    native = array.dtype.newbyteorder("=")
    codes = [code for code, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == native]
    if not codes or not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX cannot hold a {array.dtype} array of shape {array.shape}")
    return bytes([0, 0, codes[0], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()


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
    except (OSError, RuntimeError, ValueError, MnistkitError):  # no usable home: no cache
        return None
    stat = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]
    prefix = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    state = hashlib.sha256(json.dumps([_FORMAT, stat]).encode()).hexdigest()[:20]
    return _Entry(folder, prefix, f"{prefix}-{state}", stat, str(resolved))


def _load(folder: Path, prefix: str, stem: str, stat: list[int], source: str, *,
          ndim: int | None, dtype: Any) -> tuple[np.ndarray, str] | None:
    """A cached array and the SHA-256 of its content, hashed now, or None for a miss."""
    try:
        meta = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        if (meta.get("format") != _FORMAT or meta.get("stat") != stat
                or meta.get("source") != source):
            return None
        array = np.load(folder / f"{stem}.npy", allow_pickle=False)
        if array.shape != tuple(meta["shape"]) or array.dtype.str != meta["dtype"]:
            return None
        if ndim is not None and array.ndim != ndim:
            return None
        if dtype is not None and array.dtype != np.dtype(dtype):
            return None
        sha256 = idx_content_digest(array)
        if sha256 != meta["sha256"]:  # damaged (or changed without fixing the record)
            return None
        return array, sha256
    except Exception:  # any damaged or foreign entry is a miss, never a crash
        return None


def _store(folder: Path, prefix: str, stem: str, stat: list[int], source: str, *,
           array: np.ndarray, known: str | None = None) -> None:
    """Write ``array`` as the entry; skipped when ``known`` (the SHA-256 of the entry just
    refused) is already its content: the source itself differs from the published."""
    try:
        sha256 = idx_content_digest(array)
        if sha256 == known:
            return
        meta = {"format": _FORMAT, "source": source, "stat": stat,
                "shape": list(array.shape), "dtype": array.dtype.str, "sha256": sha256}
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

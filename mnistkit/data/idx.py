"""The IDX file format (as used by MNIST): a validating NumPy reader and an atomic writer.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type, ``NN``
the number of dimensions), ``NN`` big-endian uint32 sizes, then the elements in C
order, big-endian. MNIST labels are ``0x00000801`` (2049: ubyte, 1 dimension) and
images ``0x00000803`` (2051: ubyte, 3 dimensions). Files may be gzip-compressed;
compression is recognised by the gzip magic bytes ``1f 8b``, whatever the file name.

Everything that can be wrong with a file raises :class:`mnistkit.errors.DataError`
naming the file: not a regular file (a FIFO or device would block or never end; refused
from ``stat`` before opening), an unknown magic, an unexpected number of dimensions, a body shorter
or longer than the header declares (checked before anything big is allocated), a
corrupt or truncated gzip stream.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from mnistkit.errors import DataError
from mnistkit.files import atomic_write, open_regular_file

#: IDX element type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

LABELS_MAGIC = 0x00000801  # 2049: ubyte, 1 dimension
IMAGES_MAGIC = 0x00000803  # 2051: ubyte, 3 dimensions

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22  # decompress in 4 MiB steps: bounded memory for lying headers
_FIRST_ALLOC = 1 << 26  # gzip bodies: allocate at most 64 MiB before data is seen
_MAX_DEFLATE_RATIO = 1032  # deflate cannot expand a byte into more than ~1032 bytes


def is_gzip(path: str | Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (its name does not matter)."""
    try:
        with open_regular_file(path, "an IDX file") as handle:
            return handle.read(2) == _GZIP_MAGIC
    except OSError as exc:
        raise DataError(_os_message(path, exc)) from None


def read_idx(path: str | Path, *, ndim: int | None = None,
             dtype: np.dtype | type | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip) into an array of the native byte order.

    ``ndim`` and ``dtype``, when given, are what the file must contain; anything else
    raises :class:`DataError`. The result is a fresh, writable array.
    """
    return read_idx_with_md5(path, ndim=ndim, dtype=dtype, md5=False)[0]


def read_idx_with_md5(path: str | Path, *, ndim: int | None = None,
                      dtype: np.dtype | type | None = None,
                      md5: bool = True) -> tuple[np.ndarray, str]:
    """Like :func:`read_idx`, also returning the MD5 of the uncompressed file content
    (header included, as published sums are), computed while reading; ``""`` when
    ``md5`` is false."""
    path = Path(path)
    hasher = hashlib.md5(usedforsecurity=False) if md5 else None
    try:
        with open_regular_file(path, "an IDX file") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            size = os.fstat(raw.fileno()).st_size
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    array = _read_stream(stream, path, None, ndim, dtype, hasher,
                                         compressed_size=size)
            else:
                array = _read_stream(raw, path, size, ndim, dtype, hasher)
    except DataError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({_reason(exc)})") from None
    except OSError as exc:
        raise DataError(_os_message(path, exc)) from None
    return array, hasher.hexdigest() if hasher is not None else ""


def _read_stream(stream: IO[bytes], path: Path, file_size: int | None, ndim: int | None,
                 dtype: Any, hasher: Any, compressed_size: int | None = None) -> np.ndarray:
    """Parse the header, check the body size, read the body; ``file_size`` None for gzip
    (``compressed_size`` then bounds the first allocation)."""
    head = _read_exactly(stream, 4)
    if len(head) < 4:
        raise DataError(f"{path}: only {len(head)} bytes, too short for an IDX header")
    magic = int.from_bytes(head, "big")
    code, n_dims = head[2], head[3]
    if head[:2] != b"\0\0" or code not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (magic number 0x{magic:08x}; expected "
                        f"0x{LABELS_MAGIC:08x}={LABELS_MAGIC} for labels or "
                        f"0x{IMAGES_MAGIC:08x}={IMAGES_MAGIC} for images)")
    file_dtype = IDX_DTYPES[code]
    if dtype is not None and file_dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise DataError(f"{path}: holds {file_dtype.name} values (magic 0x{magic:08x}); "
                        f"expected {np.dtype(dtype).name}")
    if ndim is not None and n_dims != ndim:
        raise DataError(f"{path}: has {n_dims} dimensions (magic 0x{magic:08x}={magic}); "
                        f"expected {ndim}")
    if n_dims == 0:
        raise DataError(f"{path}: an IDX file with 0 dimensions holds no array")
    dims_raw = _read_exactly(stream, 4 * n_dims)
    if len(dims_raw) < 4 * n_dims:
        raise DataError(f"{path}: header ends early: {n_dims} sizes declared, "
                        f"{len(dims_raw) // 4} present")
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    header_size = 4 + 4 * n_dims
    n_items = 1
    for d in shape:
        n_items *= d
    body_size = n_items * file_dtype.itemsize
    what = f"{'x'.join(map(str, shape))} {file_dtype.name}"
    if file_size is not None and file_size - header_size != body_size:
        present = file_size - header_size
        problem = "truncated" if present < body_size else "trailing bytes after the data"
        raise DataError(f"{path}: header declares {what} ({body_size} bytes of data) but the "
                        f"file has {present} ({problem})")
    if hasher is not None:
        hasher.update(head)
        hasher.update(dims_raw)
    first = _FIRST_ALLOC
    if compressed_size is not None:  # a short .gz cannot inflate to much: allocate little
        first = min(first, max(1 << 16, _MAX_DEFLATE_RATIO * compressed_size))
    body = _read_body(stream, body_size, hasher, first)
    if body.size < body_size:
        raise DataError(f"{path}: header declares {what} ({body_size} bytes of data) but the "
                        f"file has {body.size} (truncated)")
    if file_size is None and _read_exactly(stream, 1):
        raise DataError(f"{path}: more data than the header declares ({what}, {body_size} "
                        "bytes): trailing bytes after the data")
    try:
        array = body.view(file_dtype).reshape(shape)
    except ValueError as exc:  # more dimensions than NumPy allows, or a size it cannot index
        raise DataError(f"{path}: header declares a {n_dims}-dimensional {file_dtype.name} "
                        f"array that NumPy cannot hold ({_reason(exc)})") from None
    if file_dtype.itemsize > 1:
        array = array.astype(file_dtype.newbyteorder("="))
    return array


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of the stream."""
    parts = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_body(stream: IO[bytes], size: int, hasher: Any,
               first: int = _FIRST_ALLOC) -> np.ndarray:
    """Read up to ``size`` bytes into a uint8 array, growing it only as data arrives.

    A header may lie about the size of a compressed body, so the buffer starts at most
    ``first`` bytes (64 MiB, less for a small .gz file) and doubles (capped at ``size``)
    only while the stream keeps delivering.
    """
    buffer = np.empty(min(size, first), dtype=np.uint8)
    filled = 0
    while filled < size:
        if filled == buffer.size:
            grown = np.empty(min(size, 2 * buffer.size), dtype=np.uint8)
            grown[:filled] = buffer[:filled]
            buffer = grown
        view = memoryview(buffer)[filled:min(buffer.size, filled + _CHUNK)]
        count = stream.readinto(view)  # type: ignore[attr-defined]
        if not count:
            break
        if hasher is not None:
            hasher.update(view[:count])
        filled += count
    return buffer[:filled] if filled < buffer.size else buffer


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, atomically; gzip-compressed if ``path`` ends in ``.gz``.

    Supported element types: uint8, int8, int16, int32, float32, float64.
    """
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(f"{path}: IDX cannot hold {array.dtype} values")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise DataError(f"{path}: IDX cannot hold an array of shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).reshape(-1).view(np.uint8)
    path = Path(path)
    with atomic_write(path) as handle:
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, filename="") as gz:
                gz.write(header)
                gz.write(body.data)
        else:
            handle.write(header)
            handle.write(body.data)


def read_idx_pair(images_path: str | Path, labels_path: str | Path,
                  n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Read uint8 images ``(N, rows, cols)`` and uint8 labels ``(N,)`` and check they agree:
    the same count, every label below ``n_classes``."""
    images = read_idx(images_path, ndim=3, dtype=np.uint8)
    labels = read_idx(labels_path, ndim=1, dtype=np.uint8)
    check_pair(images, labels, images_path, labels_path, n_classes)
    return images, labels


def check_pair(images: np.ndarray, labels: np.ndarray, images_path: str | Path,
               labels_path: str | Path, n_classes: int) -> None:
    """Raise :class:`DataError` unless the counts agree and labels are in ``0..n_classes-1``."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                        f"{labels.shape[0]} labels")
    if 0 in images.shape[1:]:
        raise DataError(f"{images_path}: images of {images.shape[1]}x{images.shape[2]} pixels "
                        "hold nothing")
    if labels.size and int(labels.max()) >= n_classes:
        bad = int(np.argmax(labels >= n_classes))
        raise DataError(f"{labels_path}: label {int(labels[bad])} at index {bad} is outside "
                        f"0..{n_classes - 1}")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _os_message(path: str | Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a folder, not an IDX file"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied"
    return f"{path}: cannot read ({exc.strerror or exc})"

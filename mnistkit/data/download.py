"""Download dataset files safely: checksums, mirrors tried in order, no partial files.

Any dataset plugin can declare its files and mirrors and call :func:`fetch_files`::

    from mnistkit.data.download import RemoteFile, fetch_files

    FILES = (RemoteFile("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
             ...)
    MIRRORS = ("https://example.org/fashion/", "https://mirror.example.net/fashion/")

    folder = fetch_files("fashion-mnist", FILES, MIRRORS)   # ~/.cache/mnistkit/fashion-mnist

For each file, in order:

- a file already present in the folder with the right checksum is used as is: no
  request is made; a present file with a wrong checksum is deleted and fetched again;
- otherwise each mirror ``<base>/<name>`` is tried in turn. The body is streamed into a
  temporary file in the destination folder, hashed on the way, then renamed into place
  only when it is complete (its ``Content-Length`` is met) and its checksum matches. On
  any error, or KeyboardInterrupt, the temporary file is removed: a partial file is never
  left behind. A wrong checksum says so (the file was deleted) and the next mirror is
  tried;
- ``timeout`` bounds the wait to connect and for each read; ``max_seconds`` bounds a
  whole file;
- when every mirror fails, :class:`mnistkit.errors.DownloadError` lists what each mirror
  did and says how to use ``--data-dir`` instead.

Only ``http`` and ``https`` URLs are accepted. The standard library's ``urllib`` is used
(its proxy settings from the environment apply). Nothing is printed; progress goes to an
optional callback and to the ``mnistkit.download`` logger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnistkit.errors import DownloadError
from mnistkit.files import cache_dir

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_SECONDS = 1800.0
DEFAULT_MAX_BYTES = 1 << 30
CHUNK = 1 << 16
_HEX = {"md5": 32, "sha256": 64}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

log = logging.getLogger("mnistkit.download")

#: ``progress(file_name, bytes_received, total_bytes_or_None)``
ProgressCallback = Callable[[str, int, int | None], None]


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A file to download: its name (also its name on the mirrors) and its checksum.

    Give ``md5`` or ``sha256`` (hex digest of the file exactly as downloaded, e.g. of the
    ``.gz``); ``max_bytes`` refuses anything larger.
    """

    name: str
    md5: str | None = None
    sha256: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not _SAFE_NAME.match(self.name) or ".." in self.name:
            raise ValueError(f"file name {self.name!r} must be a plain file name")
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"{self.name}: give an md5 or a sha256 checksum")
        for algorithm in ("md5", "sha256"):
            value = getattr(self, algorithm)
            if value is not None and not re.fullmatch(f"[0-9a-f]{{{_HEX[algorithm]}}}", value):
                raise ValueError(f"{self.name}: {algorithm} must be {_HEX[algorithm]} lower-case"
                                 f" hex digits; got {value!r}")

    @property
    def algorithm(self) -> str:
        """``sha256`` when given, else ``md5``."""
        return "sha256" if self.sha256 else "md5"

    @property
    def expected(self) -> str:
        """The expected hex digest."""
        return self.sha256 or self.md5 or ""

    def hasher(self) -> Any:
        """A fresh hash object of :attr:`algorithm`."""
        return hashlib.new(self.algorithm)


class _MirrorFailed(Exception):
    """One mirror failed for one file; the message goes into the final error."""


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of the file at ``path``, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: str | Path, remote: RemoteFile) -> bool:
    """Whether ``path`` is a regular file whose checksum is the expected one."""
    path = Path(path)
    return path.is_file() and file_digest(path, remote.algorithm) == remote.expected


def dataset_folder(dataset: str) -> Path:
    """Where ``dataset``'s files are downloaded: ``mnistkit.files.cache_dir()/<dataset>``."""
    if not _SAFE_NAME.match(dataset):
        raise ValueError(f"dataset name {dataset!r} cannot be used as a folder name")
    return cache_dir() / dataset


def fetch_files(dataset: str, files: Sequence[RemoteFile], mirrors: Sequence[str], *,
                folder: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                max_seconds: float = DEFAULT_MAX_SECONDS,
                progress: ProgressCallback | None = None) -> Path:
    """Make sure every file of ``files`` is in ``folder`` with its checksum; return ``folder``.

    ``folder`` defaults to :func:`dataset_folder` ``(dataset)``; ``mirrors`` are base URLs
    tried in order (the file name is appended). Raises
    :class:`mnistkit.errors.DownloadError` when a file cannot be obtained from any mirror.
    """
    target = Path(folder) if folder is not None else dataset_folder(dataset)
    for base in mirrors:
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ValueError(f"mirror {base!r} is not an http(s) URL")
    for remote in files:
        path = target / remote.name
        if path.exists():
            if is_valid(path, remote):
                log.debug("%s: %s present and valid", dataset, path)
                continue
            log.info("%s: %s has the wrong checksum; deleting it and downloading again",
                     dataset, path)
            path.unlink()
        _fetch_one(dataset, remote, mirrors, target, files, timeout, max_seconds, progress)
    return target


def _fetch_one(dataset: str, remote: RemoteFile, mirrors: Sequence[str], target: Path,
               files: Sequence[RemoteFile], timeout: float, max_seconds: float,
               progress: ProgressCallback | None) -> None:
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + remote.name
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadError(f"cannot create the download folder {str(target)!r}: "
                                f"{exc.strerror or exc}") from None
        log.info("%s: downloading %s", dataset, url)
        try:
            _download(url, remote, target / remote.name, timeout, max_seconds, progress)
            return
        except _MirrorFailed as exc:
            log.info("%s: %s failed: %s", dataset, url, exc)
            failures.append(f"{url}: {exc}")
    with contextlib.suppress(OSError):
        target.rmdir()  # only if empty: leave nothing behind for a failed first download
    names = " ".join(f.name for f in files)
    tried = "; ".join(failures) if failures else "no mirrors are configured"
    raise DownloadError(
        f"could not download {dataset} file {remote.name} ({tried}). Without network, "
        f"download {names} by other means into a folder and pass it with --data-dir FOLDER "
        f"(or copy them into {str(target)!r})")


def _download(url: str, remote: RemoteFile, path: Path, timeout: float, max_seconds: float,
              progress: ProgressCallback | None) -> None:
    """Stream ``url`` into a temporary file beside ``path``, check it, rename it into place."""
    from mnistkit import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"mnistkit/{__version__}"})
    deadline = time.monotonic() + max_seconds
    tmp_name: str | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response)
            if total is not None and total > remote.max_bytes:
                raise _MirrorFailed(f"the file is {total} bytes, more than the "
                                    f"{remote.max_bytes} allowed")
            fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part",
                                            dir=path.parent)
            digest = remote.hasher()
            received = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read1(CHUNK):  # what has arrived: the deadline holds
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if received > remote.max_bytes:
                        raise _MirrorFailed(f"more than {remote.max_bytes} bytes received")
                    if time.monotonic() > deadline:
                        raise _MirrorFailed(f"the download took longer than {max_seconds:g} s")
                    if progress is not None:
                        progress(remote.name, received, total)
                out.flush()
                os.fsync(out.fileno())
        if total is not None and received != total:
            raise _MirrorFailed(f"the connection dropped after {received} of {total} bytes; "
                                "the partial file was deleted")
        got = digest.hexdigest()
        if got != remote.expected:
            raise _MirrorFailed(f"wrong checksum ({remote.algorithm} {got}, expected "
                                f"{remote.expected}); the downloaded file was deleted")
        os.replace(tmp_name, path)
        tmp_name = None
    except urllib.error.HTTPError as exc:
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _MirrorFailed(f"timed out after {timeout:g} s") from None
        raise _MirrorFailed(f"cannot connect: {getattr(reason, 'strerror', None) or reason}"
                            ) from None
    except TimeoutError:
        raise _MirrorFailed(f"timed out after {timeout:g} s (no data)") from None
    except http.client.HTTPException as exc:
        raise _MirrorFailed(f"bad HTTP response: {type(exc).__name__} {exc}") from None
    except OSError as exc:
        raise _MirrorFailed(f"{exc.strerror or exc}") from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None

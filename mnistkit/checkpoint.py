"""Save and load arrays as ``.npz`` without pickle, atomically, with validation.

A checkpoint is a flat ``.npz`` of numeric (or unicode) arrays whose names are
``group/key`` (``params/W1``, ``optimizer/velocity.W1``, ``trainer/meta``). It is written
to a temporary file and renamed into place, so a crash while saving leaves the
previous checkpoint intact; it is read with ``allow_pickle=False``, so a file holding
object arrays or a pickle is refused instead of executed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mnistkit.errors import RunError
from mnistkit.files import atomic_write

Groups = dict[str, dict[str, np.ndarray]]


def save_checkpoint(path: str | Path, groups: Groups) -> None:
    """Write ``{group: {key: array}}`` to ``path`` atomically as an uncompressed ``.npz``."""
    flat: dict[str, np.ndarray] = {}
    for group, arrays in groups.items():
        for key, value in arrays.items():
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise TypeError(f"{group}/{key} is an object array; checkpoints hold numbers only")
            flat[f"{group}/{key}"] = array
    with atomic_write(path) as handle:
        np.savez(handle, **flat)


def load_checkpoint(path: str | Path) -> Groups:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles.

    Raises :class:`RunError` naming the file for anything that is not a valid
    checkpoint: missing, not a zip, object arrays or pickles, damaged members.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint file not found")
    groups: Groups = {}
    try:
        if not zipfile.is_zipfile(path):
            raise RunError(f"{path}: not a valid checkpoint (not an .npz archive)")
        _check_members(path)
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                group, sep, key = name.partition("/")
                if not sep:
                    raise RunError(f"{path}: unexpected array {name!r} (not group/key)")
                groups.setdefault(group, {})[key] = archive[name]
    except RunError:
        raise
    except ValueError as exc:  # object arrays refused by allow_pickle=False
        raise RunError(f"{path}: refused: {exc} (only numeric arrays are allowed)") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise RunError(f"{path}: not a valid checkpoint ({type(exc).__name__}: {exc})") from None
    return groups


_MAX_DEFLATE_RATIO = 1032  # deflate cannot expand a byte into more than ~1032 bytes


def _check_members(path: Path) -> None:
    """Read every member's ``.npy`` header (never its data) and refuse anything that is
    not a plain numeric array whose declared size is exactly what the member holds, so a
    pickle is never handed to NumPy and a lying header never allocates."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else (
                _MAX_DEFLATE_RATIO * info.compress_size + 1024)
            if info.file_size > limit:
                raise RunError(f"{path}: refused: member {name!r} claims {info.file_size} bytes "
                               f"stored in {info.compress_size}")
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                except ValueError:
                    raise RunError(f"{path}: refused: member {name!r} is not a NumPy array "
                                   "(a pickle or other data; only numeric arrays are allowed)"
                                   ) from None
                if dtype.hasobject:
                    raise RunError(f"{path}: refused: member {name!r} holds Python objects "
                                   "(only numeric arrays are allowed)")
                declared = dtype.itemsize
                for size in shape:
                    declared *= size
                if member.tell() + declared != info.file_size:
                    raise RunError(f"{path}: member {name!r} declares {declared} bytes of "
                                   f"{dtype} {shape} but holds "
                                   f"{info.file_size - member.tell()} (damaged)")


def check_params(path: Path | str, saved: dict[str, np.ndarray],
                 expected: dict[str, np.ndarray]) -> None:
    """Raise :class:`RunError` unless ``saved`` has exactly the keys, shapes and dtypes of
    ``expected`` (the parameters of a freshly built model) and only finite values."""
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        raise RunError(f"{path}: parameters do not match the model (missing: "
                       f"{', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'})")
    for key, ref in expected.items():
        got = saved[key]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise RunError(f"{path}: parameter {key!r} is {got.dtype} {got.shape}, the model "
                           f"expects {ref.dtype} {ref.shape}")
        if not np.all(np.isfinite(got)):
            raise RunError(f"{path}: parameter {key!r} holds NaN or infinite values")

"""Save and load arrays as ``.npz`` without pickle, atomically, with validation.

A checkpoint is a flat ``.npz`` of numeric (or unicode) arrays whose names are
``group/key`` (``params/W1``, ``optimizer/velocity.W1``, ``trainer/meta``). It is written
to a temporary file and renamed into place, so a crash while saving leaves the
previous checkpoint intact; it is read with ``allow_pickle=False``, so a file holding
object arrays or a pickle is refused instead of executed, and only after every member's
header was checked (against the model, when given), so a huge or unexpected member is
refused before any of its data is read.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.errors import RunError
from mnistkit.files import atomic_write, open_regular_file
from mnistkit.memory import available_bytes, format_bytes

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


#: Bytes that the optimizer and trainer groups may declare beyond a multiple of the
#: parameters' (step losses and the batch order of long runs).
EXTRA_ALLOWANCE = 256 << 20
#: Optimizer and trainer arrays may declare this many times the parameters' bytes.
EXTRA_PER_PARAM_BYTE = 8

Member = tuple[str, tuple[int, ...], np.dtype, int]  # name, shape, dtype, declared bytes


def load_checkpoint(path: str | Path, expected_params: Mapping[str, Any] | None = None
                    ) -> Groups:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles.

    Every member's ``.npy`` header is read first and nothing else is read unless all of
    them pass: numeric arrays only, declared sizes equal to what the members hold and,
    together, within the memory available. With ``expected_params`` (the parameters of
    the model, or anything with ``shape`` and ``dtype`` per name) the ``params/`` members
    must declare exactly those names, shapes and dtypes, and the other groups at most
    :data:`EXTRA_PER_PARAM_BYTE` times the parameters' bytes plus
    :data:`EXTRA_ALLOWANCE`: an extra, wrong or huge member is refused unread.

    Raises :class:`RunError` naming the file for anything that is not a valid
    checkpoint: missing, not a regular file, not a zip, object arrays or pickles,
    damaged members, members that do not match the model.
    """
    path = Path(path)
    try:
        handle = open_regular_file(path, "a checkpoint (.npz)", error=RunError)
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    with handle:
        return _load_groups(path, handle, expected_params)


def _load_groups(path: Path, handle: Any, expected_params: Mapping[str, Any] | None) -> Groups:
    groups: Groups = {}
    try:
        if not zipfile.is_zipfile(handle):
            raise RunError(f"{path}: not a valid checkpoint (not an .npz archive)")
        handle.seek(0)
        members = _check_members(path, handle)
        _check_declared(path, members, expected_params)
        handle.seek(0)
        with np.load(handle, allow_pickle=False) as archive:
            for name in archive.files:
                group, _, key = name.partition("/")
                groups.setdefault(group, {})[key] = archive[name]
    except RunError:
        raise
    except ValueError as exc:  # object arrays refused by allow_pickle=False
        raise RunError(f"{path}: refused: {exc} (only numeric arrays are allowed)") from None
    except MemoryError as exc:
        raise RunError(f"{path}: not enough memory to read the checkpoint ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise RunError(f"{path}: not a valid checkpoint ({type(exc).__name__}: {exc})") from None
    return groups


_MAX_DEFLATE_RATIO = 1032  # deflate cannot expand a byte into more than ~1032 bytes


def _check_members(path: Path, handle: Any) -> list[Member]:
    """Read every member's ``.npy`` header (never its data) and refuse anything that is
    not a plain numeric array whose declared size is exactly what the member holds, so a
    pickle is never handed to NumPy and a lying header never allocates."""
    members: list[Member] = []
    with zipfile.ZipFile(handle) as archive:
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
            members.append((name, tuple(shape), dtype, declared))
    return members


def _check_declared(path: Path, members: list[Member],
                    expected_params: Mapping[str, Any] | None) -> None:
    """Compare the headers with the model (when known) and bound what they declare."""
    for name, *_ in members:
        if "/" not in _key(name):
            raise RunError(f"{path}: unexpected array {_key(name)!r} (not group/key)")
    total = sum(declared for *_, declared in members)
    if expected_params is not None:
        params = {_key(name)[len("params/"):]: (shape, dtype)
                  for name, shape, dtype, _ in members if name.startswith("params/")}
        _compare_params(path, params, expected_params)
        params_bytes = sum(int(np.prod(a.shape, dtype=object)) * a.dtype.itemsize
                           for a in expected_params.values())
        limit = EXTRA_PER_PARAM_BYTE * params_bytes + EXTRA_ALLOWANCE
        extra = total - sum(d for name, *_, d in members if name.startswith("params/"))
        if extra > limit:
            raise RunError(f"{path}: refused: its optimizer and trainer arrays declare {extra} "
                           f"bytes, more than this model's checkpoint can need ({limit}); "
                           "nothing was read")
    available = available_bytes()
    if available is not None and total > available:
        raise RunError(f"{path}: refused: its arrays declare {format_bytes(total)}, more than "
                       f"the {format_bytes(available)} of memory available; nothing was read")


def _key(member_name: str) -> str:
    """The array name NumPy gives a member: its file name without ``.npy``."""
    return member_name[:-4] if member_name.endswith(".npy") else member_name


def _compare_params(path: Path, saved: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                    expected: Mapping[str, Any]) -> None:
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        raise RunError(f"{path}: parameters do not match the model (missing: "
                       f"{', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'})")
    for key, ref in expected.items():
        shape, dtype = saved[key]
        if shape != tuple(ref.shape) or dtype != ref.dtype:
            raise RunError(f"{path}: parameter {key!r} is {dtype} {shape}, the model "
                           f"expects {ref.dtype} {tuple(ref.shape)}")


def check_params(path: Path | str, saved: dict[str, np.ndarray],
                 expected: dict[str, np.ndarray]) -> None:
    """Raise :class:`RunError` unless ``saved`` has exactly the keys, shapes and dtypes of
    ``expected`` (the parameters of a freshly built model) and only finite values."""
    _compare_params(Path(path), {k: (tuple(v.shape), v.dtype) for k, v in saved.items()},
                    expected)
    for key, got in saved.items():
        if not np.all(np.isfinite(got)):
            raise RunError(f"{path}: parameter {key!r} holds NaN or infinite values")

"""Finding run folders again: every run under a folder (sweeps included), in one row each.

A folder is a run when it holds ``run.json``. A damaged record is listed as ``damaged``
with its one-line reason, never an exception. A run whose record says it is being trained
is ``running`` only while a live process holds its lock (:mod:`mnistkit.run_lock`);
otherwise that process was killed and the run is ``stopped`` (resumable).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from mnistkit.errors import MnistkitError, RunError
from mnistkit.run_lock import LOCK_NAME
from mnistkit.runs.folder import RUN_JSON, read_record

MAX_DEPTH = 8  # runs/SWEEP/trials/t0001 is 3 deep; never walk a whole disk
REMOVABLE = ("interrupted", "diverged", "failed", "stopped", "created", "damaged")


@dataclasses.dataclass(frozen=True)
class RunRow:
    """One run folder as listed by ``mnistkit runs``."""

    path: str
    created: str
    model: str
    optimizer: str
    options: dict[str, Any]
    dataset: str
    status: str
    epochs_done: int
    epochs: int | None
    val_accuracy: float | None
    test_accuracy: float | None
    seconds: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def find_run_folders(root: str | Path) -> list[Path]:
    """Folders under ``root`` (``root`` itself included) that hold ``run.json``, sorted;
    hidden folders and symbolic links are not entered, nor anything deeper than
    :data:`MAX_DEPTH`."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: no such folder")
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")
                               and depth < MAX_DEPTH)
        if RUN_JSON in files:
            found.append(Path(folder))
    return sorted(found)


def is_being_trained(folder: Path) -> bool:
    """Whether a live process holds the run folder's lock (read-only: creates nothing)."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def describe_run(folder: Path) -> RunRow:
    """The row of one run folder; ``damaged`` (with the reason) when it cannot be read."""
    try:
        record = read_record(folder)
    except MnistkitError as exc:
        return RunRow(str(folder), "", "", "", {}, "", "damaged", 0, None, None, None, None,
                      str(exc))
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    status = str(record.get("status", "?"))
    if status in ("running", "created"):
        status = "running" if is_being_trained(folder) else "stopped"
    options = {**record["model_options"], **record["optimizer_options"]}
    history = record["history"]
    best = [h["val_accuracy"] for h in history if h["val_accuracy"] == h["val_accuracy"]]
    return RunRow(
        str(folder), str(record.get("created", "")), record["model"], record["optimizer"],
        options, str(record["dataset"].get("name", "")), status, len(history),
        record["training"].get("epochs"),
        _number(metrics.get("val_accuracy")) if metrics else (max(best) if best else None),
        _number(metrics.get("test_accuracy")), _number(record.get("wall_seconds")),
        record.get("error") if isinstance(record.get("error"), str) else None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(
        value, bool) and value == value else None


def list_runs(root: str | Path) -> list[RunRow]:
    """Every run under ``root``, one :class:`RunRow` each."""
    return [describe_run(folder) for folder in find_run_folders(root)]


def matches(row: RunRow, filters: dict[str, str]) -> bool:
    """Whether ``row`` has every ``key=value`` of ``filters`` (model, optimizer, status,
    dataset, or any model/optimizer option, compared as text)."""
    for key, wanted in filters.items():
        if key in ("model", "optimizer", "status", "dataset"):
            value = getattr(row, key)
        elif key in row.options:
            value = row.options[key]
        else:
            return False
        if str(value) != wanted and not _same_number(value, wanted):
            return False
    return True


def _same_number(value: Any, text: str) -> bool:
    """``0.1`` and ``"0.10"`` are the same number; text that is not a number never is."""
    a, b = _text_number(value), _text_number(text)
    return a is not None and a == b


def _text_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


SORT_KEYS = ("path", "date", "model", "status", "val", "test", "time")


def sort_rows(rows: list[RunRow], key: str) -> list[RunRow]:
    """Rows sorted by ``key`` (one of :data:`SORT_KEYS`); accuracies best first."""
    if key == "val":
        return sorted(rows, key=lambda r: -(r.val_accuracy if r.val_accuracy is not None
                                            else -1.0))
    if key == "test":
        return sorted(rows, key=lambda r: -(r.test_accuracy if r.test_accuracy is not None
                                            else -1.0))
    if key == "time":
        return sorted(rows, key=lambda r: r.seconds if r.seconds is not None else 0.0)
    attribute = {"date": "created"}.get(key, key)
    return sorted(rows, key=lambda r: (str(getattr(r, attribute)), r.path))


def remove_run(row: RunRow) -> None:
    """Delete a run folder that is not finished and not being trained.

    Raises :class:`RunError` for a finished or running run, or a folder that does not
    look like a run folder any more."""
    folder = Path(row.path)
    if row.status not in REMOVABLE:
        raise RunError(f"{folder} is {row.status}; only runs that are not finished are removed")
    if is_being_trained(folder):
        raise RunError(f"{folder} is being trained right now; not removed")
    if not (folder / RUN_JSON).is_file() or folder.is_symlink():
        raise RunError(f"{folder} is not a run folder any more; not removed")
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise RunError(f"cannot remove {folder}: {exc.strerror or exc}") from None

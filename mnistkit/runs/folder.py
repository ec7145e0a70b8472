"""A run folder on disk: the only code that knows its file names and reads or writes them.

A run folder holds everything about one training::

    run.json      the record (:mod:`mnistkit.runs.record`): what was trained and how,
                  versions, dataset checksum, history, metrics
    history.csv   one row per epoch
    steps.csv     the training loss of every step
    last.npz      parameters, optimizer state and trainer position (to resume)
    best.npz      the parameters with the best validation accuracy (to test)
    history.png   loss and accuracy curves (drawn by :mod:`mnistkit.plots`)

Every file is written atomically (:func:`mnistkit.files.atomic_write`), so a crash
leaves the previous complete version. One process at a time writes a run: it claims
the folder (:mod:`mnistkit.run_lock`) before writing anything and holds it until done.
Reading never trusts the folder: ``run.json`` is bounded in size and validated,
``steps.csv`` too, and ``.npz`` files are read with ``allow_pickle=False`` and checked
against the model (:mod:`mnistkit.checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.checkpoint import Groups, load_checkpoint, save_checkpoint
from mnistkit.errors import RunError
from mnistkit.files import atomic_write, file_kind, read_bounded
from mnistkit.run_lock import RunLock, claim_new_run_folder, lock_run_folder
from mnistkit.runs.record import EPOCH_FIELDS, EpochRecord, RunRecord, decode_record

RUN_JSON, HISTORY_CSV, STEPS_CSV = "run.json", "history.csv", "steps.csv"
LAST_NPZ, BEST_NPZ = "last.npz", "best.npz"
#: The checkpoints of a run by the name callers choose them with.
CHECKPOINTS = {"last": LAST_NPZ, "best": BEST_NPZ}
#: ``run.json`` is kilobytes; anything larger is refused before it is read.
MAX_RECORD_BYTES = 64 << 20
#: About 25 million steps; a larger ``steps.csv`` is refused before it is read.
MAX_STEPS_CSV_BYTES = 1 << 30
STEPS_HEADER = "step,epoch,loss"


class RunFolder:
    """The run folder at ``path``; :meth:`create` or :meth:`claim` it to write there."""

    def __init__(self, path: str | Path, lock: RunLock | None = None) -> None:
        self.path = Path(path)
        self._lock = lock

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- owning it ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, pick_free_name: bool = False) -> RunFolder:
        """Create the folder ``path`` (or take it if it is empty) and claim it; with
        ``pick_free_name`` a taken ``path`` becomes ``path-2``, ``path-3``... (see
        :attr:`path`). See :func:`mnistkit.run_lock.claim_new_run_folder`."""
        lock = claim_new_run_folder(path, pick_free_name=pick_free_name)
        return cls(lock.folder, lock)

    def claim(self) -> RunFolder:
        """Claim this existing folder for this process (refused while another process
        trains it: :class:`mnistkit.run_lock.RunBusyError`)."""
        if not self.owned:
            self._lock = lock_run_folder(self.path)
        return self

    @property
    def owned(self) -> bool:
        """Whether this process holds the folder (until :meth:`release`)."""
        return self._lock is not None and self._lock.held

    def release(self) -> None:
        """Give the folder up so another process may write it (idempotent)."""
        if self._lock is not None:
            self._lock.release()

    # -- the record ---------------------------------------------------------------------
    def read_json(self) -> dict[str, Any]:
        """``run.json`` as validated JSON (see :mod:`mnistkit.runs.record`).

        The file must be a regular file of at most :data:`MAX_RECORD_BYTES`; a folder
        that is missing, is a file, or has no ``run.json`` is a :class:`RunError`.
        """
        path = self.path
        if not path.is_dir():
            kind = f" (it is {file_kind(os.stat(path).st_mode)})" if path.exists() else ""
            raise RunError(f"{path}: no such run folder{kind}")
        file = path / RUN_JSON
        try:
            text = read_bounded(file, MAX_RECORD_BYTES, "a run record (run.json)",
                                error=RunError)
        except FileNotFoundError:
            raise RunError(f"{path}: not a run folder (no {RUN_JSON})") from None
        except RecursionError:
            raise RunError(f"{file}: unreadable (nested too deeply)") from None
        except (OSError, ValueError) as exc:
            raise RunError(f"{file}: unreadable ({exc})") from None
        return decode_record(text, file)

    def read(self) -> RunRecord:
        """``run.json`` as a :class:`RunRecord` (validated like :meth:`read_json`)."""
        return RunRecord.from_json(self.read_json(), self.path / RUN_JSON)

    def write(self, record: RunRecord, step_losses: list[float], steps_per_epoch: int) -> None:
        """Write ``run.json``, ``history.csv`` and ``steps.csv``, each atomically; a full
        disk or read-only folder is a :class:`RunError`."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path / RUN_JSON, "w") as handle:
                handle.write(record.to_text())
            with atomic_write(self.path / HISTORY_CSV, "w") as handle:
                handle.write(history_csv(record.history))
            with atomic_write(self.path / STEPS_CSV, "w") as handle:
                handle.write(steps_csv(step_losses, steps_per_epoch))
        except OSError as exc:
            reason = exc.strerror or exc
            raise RunError(f"cannot write the run folder {self.path}: {reason}") from None

    def read_step_losses(self) -> np.ndarray:
        """The loss of every step from ``steps.csv`` (validated)."""
        path = self.path / STEPS_CSV
        try:
            lines = read_bounded(path, MAX_STEPS_CSV_BYTES, "a step log (steps.csv)",
                                 error=RunError).decode().splitlines()
        except FileNotFoundError:
            raise RunError(f"{self.path}: no {STEPS_CSV} (not a run folder, or not trained "
                           "yet)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(f"{path}: unreadable ({exc})") from None
        if not lines or lines[0].strip() != STEPS_HEADER:
            raise RunError(f"{path}: expected the header '{STEPS_HEADER}'")
        try:
            table = np.array([[float(v) for v in line.split(",")] for line in lines[1:] if line],
                             np.float64).reshape(-1, 3)
        except ValueError:
            raise RunError(f"{path}: every row must be three numbers: {STEPS_HEADER}") from None
        if not np.array_equal(table[:, 0], np.arange(1, len(table) + 1)):
            raise RunError(f"{path}: steps must be numbered 1, 2, 3... without gaps")
        return table[:, 2]

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_path(self, which: str) -> Path:
        """The file of checkpoint ``which``: ``last`` or ``best``."""
        return self.path / CHECKPOINTS[which]

    def has_checkpoint(self, which: str) -> bool:
        return self.checkpoint_path(which).exists()

    def save_checkpoint(self, which: str, groups: Groups) -> None:
        """Save checkpoint ``which`` atomically; a full disk or read-only folder is a
        :class:`RunError`."""
        file = self.checkpoint_path(which)
        try:
            save_checkpoint(file, groups)
        except OSError as exc:
            reason = exc.strerror or exc
            raise RunError(f"cannot write {file}: {reason}") from None

    def load_checkpoint(self, which: str, expected_params: Any = None) -> Groups:
        """Checkpoint ``which``, checked against ``expected_params`` when given (see
        :func:`mnistkit.checkpoint.load_checkpoint`)."""
        return load_checkpoint(self.checkpoint_path(which), expected_params=expected_params)

    def remove_stale_temporaries(self) -> list[str]:
        """Delete the ``.NAME.*.tmp`` files a killed writer left here (see
        :func:`remove_stale_temporaries`)."""
        return remove_stale_temporaries(self.path)


def read_record(path: str | Path) -> dict[str, Any]:
    """``run.json`` of the run at ``path`` as validated JSON: :meth:`RunFolder.read_json`.

    The file must be a regular file of at most :data:`MAX_RECORD_BYTES`; ``NaN``,
    ``Infinity`` and numbers out of the float range are refused (except a ``NaN``
    validation accuracy, which runs without a validation set record), and so is
    nesting deeper than the parser handles.
    """
    return RunFolder(path).read_json()


def remove_stale_temporaries(path: str | Path) -> list[str]:
    """Delete the ``.NAME.*.tmp`` files a killed writer left in the run folder ``path``.

    :func:`mnistkit.files.atomic_write` writes to such a file and renames it into place;
    a process killed mid-write leaves it behind. Only the process that owns a run folder
    (resuming it) calls this; loading never deletes anything. Returns the names removed.
    """
    removed = []
    for item in Path(path).glob(".*.tmp"):
        if item.is_file():
            try:
                item.unlink()
                removed.append(item.name)
            except OSError:
                pass
    return removed


def history_csv(history: list[EpochRecord]) -> str:
    """``history.csv``'s text: a header and one row per epoch."""
    lines = [",".join(EPOCH_FIELDS)]
    for epoch in history:
        row = epoch.to_json()
        lines.append(",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c])
                              for c in EPOCH_FIELDS))
    return "\n".join(lines) + "\n"


def steps_csv(losses: list[float], steps_per_epoch: int) -> str:
    """``steps.csv``'s text: the loss of every step, numbered from 1, with its epoch."""
    lines = [STEPS_HEADER]
    lines += [f"{i + 1},{i // steps_per_epoch + 1},{loss!r}" for i, loss in enumerate(losses)]
    return "\n".join(lines) + "\n"

"""Runs: a trained model's folder, its record, training it and loading it back.

==========================  ============================================================
:mod:`mnistkit.runs.record`  the record (``run.json``) as typed data and its one schema:
                             :class:`RunRecord`, :class:`EpochRecord`, validation
:mod:`mnistkit.runs.folder`  the folder on disk: file names, atomic reads and writes,
                             claiming it (:class:`RunFolder`)
:mod:`mnistkit.runs.build`   a run's model, optimizer, augmentation and train/val split,
                             built from the registry
:mod:`mnistkit.runs.session` training a run: :meth:`Run.start`, :meth:`Run.resume`,
                             :meth:`Run.train`
:mod:`mnistkit.runs.loaded`  a finished run read back: :func:`load_run`,
                             :meth:`LoadedRun.split`
==========================  ============================================================

Every name below is importable from here (``from mnistkit.runs import Run``). They are
imported on first use: :mod:`mnistkit.training` uses the record, and the session uses
the trainer.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each name this package exports, and the module that defines it.
_EXPORTS = {
    **dict.fromkeys(("RUN_FORMAT_VERSION", "AugmentationRecord", "EpochRecord", "RunRecord",
                     "TrainingRecord", "augmentation_record", "check_record",
                     "decode_record"), "record"),
    **dict.fromkeys(("RunFolder", "read_record", "remove_stale_temporaries", "RUN_JSON",
                     "HISTORY_CSV", "STEPS_CSV", "LAST_NPZ", "BEST_NPZ", "MAX_RECORD_BYTES"),
                    "folder"),
    **dict.fromkeys(("build_model", "build_optimizer", "build_augmentation", "call_plugin",
                     "split_train_val", "val_size_for", "DEFAULT_VAL_SIZE"), "build"),
    **dict.fromkeys(("Run", "RunSpec", "RunFinishedError", "default_run_dir",
                     "resume_conflicts"), "session"),
    **dict.fromkeys(("LoadedRun", "load_run", "check_split", "SPLITS"), "loaded"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

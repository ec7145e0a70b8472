"""Where the run folder's names were first: now :mod:`mnistkit.runs` (the folder is
:mod:`mnistkit.runs.folder`, the record :mod:`mnistkit.runs.record`, loading a run
:mod:`mnistkit.runs.loaded`). Every name importable from here before still is."""

from __future__ import annotations

from mnistkit.runs.build import build_model, call_plugin
from mnistkit.runs.folder import (
    BEST_NPZ,
    HISTORY_CSV,
    LAST_NPZ,
    MAX_RECORD_BYTES,
    RUN_JSON,
    STEPS_CSV,
    read_record,
    remove_stale_temporaries,
)
from mnistkit.runs.loaded import LoadedRun, load_run
from mnistkit.runs.record import RUN_FORMAT_VERSION

__all__ = ["BEST_NPZ", "HISTORY_CSV", "LAST_NPZ", "MAX_RECORD_BYTES", "RUN_FORMAT_VERSION",
           "RUN_JSON", "STEPS_CSV", "LoadedRun", "build_model", "call_plugin", "load_run",
           "read_record", "remove_stale_temporaries"]

"""A run folder on disk: its files, reading ``run.json`` back, rebuilding a trained model.

A run folder holds everything about one training::

    run.json      what was trained and how, versions, dataset checksum, history, metrics
    history.csv   one row per epoch
    steps.csv     the training loss of every step
    last.npz      parameters, optimizer state and trainer position (for --resume)
    best.npz      the parameters with the best validation accuracy (used by `test`)
    history.png   loss and accuracy curves

Reading never trusts the folder: ``run.json`` is validated (format version, types) and
``.npz`` files are read with ``allow_pickle=False`` and checked against the model.
Writing a run is :mod:`mnistkit.runs`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit import __version__
from mnistkit.checkpoint import check_params, load_checkpoint
from mnistkit.data.dataset import Dataset
from mnistkit.errors import MemoryLimitError, MnistkitError, OptionsError, PluginError, RunError
from mnistkit.evaluation import EVAL_BATCH
from mnistkit.files import file_kind, read_bounded
from mnistkit.memory import check_model_fits
from mnistkit.registry import Registry

RUN_FORMAT_VERSION = 1
RUN_JSON, HISTORY_CSV, STEPS_CSV = "run.json", "history.csv", "steps.csv"
LAST_NPZ, BEST_NPZ = "last.npz", "best.npz"


def call_plugin(entry: Any, failure: str, call: Callable[[], Any]) -> Any:
    """Run a plugin's factory; an unexpected exception names the plugin (one line)."""
    try:
        return call()
    except MnistkitError:
        raise
    except MemoryError as exc:  # NumPy's allocation error too: one line, not a traceback
        text = (str(exc).splitlines() or [""])[0] or "out of memory"
        raise MemoryLimitError(f"{entry.kind} {entry.name!r} from plugin {entry.plugin!r} "
                               f"{failure}: not enough memory ({text})") from None
    except Exception as exc:
        text = (str(exc).splitlines() or [""])[0]
        raise PluginError(f"{entry.kind} {entry.name!r} from plugin {entry.plugin!r} {failure}: "
                          f"{type(exc).__name__}: {text}") from exc


def build_model(entry: Any, options: dict[str, Any], rng: np.random.Generator,
                dataset: Dataset, batch_size: int = EVAL_BATCH) -> Any:
    """Call a model factory with validated options and the dataset's input/class sizes.

    A model whose memory estimate (``estimate_memory``, optional: see
    :mod:`mnistkit.memory`) for batches of ``batch_size`` (and of the evaluation's) does
    not fit in the available memory is refused before anything is allocated; a model
    without one that runs out of memory while being built is the same one-line error.
    """
    n_inputs = int(np.prod(dataset.train.images.shape[1:]))
    made = entry.make_options(options)
    check_model_fits(entry, made, n_inputs, dataset.n_classes, max(batch_size, EVAL_BATCH))
    model = call_plugin(entry, "could not be built", lambda: entry.factory(
        made, rng, n_inputs=n_inputs, n_classes=dataset.n_classes))
    # Two images through scores(): a plugin returning the wrong shape fails here, named,
    # not later inside evaluation.
    probe = dataset.train.images[:2].reshape(-1, n_inputs).astype(np.float32) / 255.0
    scores = call_plugin(entry, "failed in scores()", lambda: model.scores(probe))
    expected = (len(probe), dataset.n_classes)
    if getattr(scores, "shape", None) != expected or getattr(scores, "dtype", np.dtype(object)
                                                                ).kind != "f":
        got = f"{getattr(scores, 'dtype', type(scores).__name__)} {getattr(scores, 'shape', '')}"
        raise PluginError(f"model {entry.name!r} from plugin {entry.plugin!r}: scores() returned "
                          f"{got}; expected floats of shape {expected} (images, classes)")
    return model


def remove_stale_temporaries(path: Path) -> list[str]:
    """Delete the ``.NAME.*.tmp`` files a killed writer left in the run folder ``path``.

    :func:`mnistkit.files.atomic_write` writes to such a file and renames it into place;
    a process killed mid-write leaves it behind. Only the process that owns a run folder
    (resuming it) calls this; loading never deletes anything. Returns the names removed.
    """
    removed = []
    for item in path.glob(".*.tmp"):
        if item.is_file():
            try:
                item.unlink()
                removed.append(item.name)
            except OSError:
                pass
    return removed


#: ``run.json`` is kilobytes; anything larger is refused before it is read.
MAX_RECORD_BYTES = 64 << 20
#: Where ``NaN`` is written legitimately: the validation accuracy of runs without one.
_NAN_ALLOWED = {("history", "*", "val_accuracy"), ("metrics", "val_accuracy")}


class _NonFinite:
    """A ``NaN``/``Infinity`` literal or an overflowing number, kept for validation."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def read_record(path: str | Path) -> dict[str, Any]:
    """``run.json`` of the run at ``path``, validated enough to rebuild the run.

    The file must be a regular file of at most :data:`MAX_RECORD_BYTES`; ``NaN``,
    ``Infinity`` and numbers out of the float range are refused (except a ``NaN``
    validation accuracy, which runs without a validation set record), and so is
    nesting deeper than the parser handles.
    """
    path = Path(path)
    if not path.is_dir():
        kind = f" (it is {file_kind(os.stat(path).st_mode)})" if path.exists() else ""
        raise RunError(f"{path}: no such run folder{kind}")
    file = path / RUN_JSON
    try:
        text = read_bounded(file, MAX_RECORD_BYTES, "a run record (run.json)", error=RunError)
        record = json.loads(text, parse_constant=_NonFinite, parse_float=_parse_float)
    except FileNotFoundError:
        raise RunError(f"{path}: not a run folder (no {RUN_JSON})") from None
    except RecursionError:
        raise RunError(f"{file}: unreadable (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{file}: unreadable ({exc})") from None
    try:
        return _checked_record(file, record)
    except RecursionError:  # deep, but not too deep for the parser: too deep to check
        raise RunError(f"{file}: unreadable (nested too deeply)") from None


def _checked_record(file: Path, record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RunError(f"{file}: expected a JSON object")
    problem = _number_problem(record, ())
    if problem:
        raise RunError(f"{file}: {problem} (the file was changed or damaged)")
    version = record.get("format_version")
    if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
        raise RunError(f"{file}: run format {_short(version)} is not supported by mnistkit "
                       f"{__version__} (knows {RUN_FORMAT_VERSION}); upgrade mnistkit")
    for key in ("model", "optimizer", "model_options", "optimizer_options", "training",
                "dataset", "history"):
        if key not in record:
            raise RunError(f"{file}: missing {key!r}")
    problem = _record_problem(record)
    if problem:
        raise RunError(f"{file}: {problem} (the file was changed or damaged)")
    return record


def _number_problem(value: Any, where: tuple[str, ...]) -> str:
    """Replace the allowed ``NaN`` markers in ``value`` (in place) by ``nan``; describe the
    first non-finite or out-of-range number elsewhere, or return ``""``."""
    items = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        here = (*where, key if isinstance(key, str) else "*")
        if isinstance(item, _NonFinite):
            if item.text != "NaN" or here not in _NAN_ALLOWED:
                return f"{'.'.join(map(str, (*where, key)))} is {item.text}, not a finite number"
            value[key] = math.nan
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 2**1023:
            return f"{'.'.join(map(str, (*where, key)))} is a number too large to use"
        elif isinstance(item, (dict, list)):
            problem = _number_problem(item, here)
            if problem:
                return problem
    return ""


_NUMBER = (int, float)
_RECORD_TYPES: dict[str, Any] = {"model": str, "optimizer": str, "model_options": dict,
                                 "optimizer_options": dict, "training": dict, "dataset": dict,
                                 "history": list}
_TRAINING_TYPES: dict[str, Any] = {
    "epochs": int, "batch_size": int, "seed": int, "sampling": str,
    "steps_per_epoch": (int, type(None)), "pixel_scale": _NUMBER, "val_size": int,
    "limit": (int, type(None))}
_HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


def _record_problem(record: dict[str, Any]) -> str:
    """What is wrong with the types in a ``run.json`` record, or ``""``."""
    def bad(value: Any, types: Any) -> bool:
        return isinstance(value, bool) or not isinstance(value, types)

    for key, types in _RECORD_TYPES.items():
        if bad(record[key], types):
            return f"{key!r} must be a {types.__name__}; got {_short(record[key])}"
    for key, types in _TRAINING_TYPES.items():
        value = record["training"].get(key)
        if bad(value, types):
            return f"training {key!r} is missing or of the wrong type (got {_short(value)})"
    for key in ("name", "fingerprint"):
        if not isinstance(record["dataset"].get(key), str):
            return f"dataset {key!r} must be a string; got {_short(record['dataset'].get(key))}"
    for number, row in enumerate(record["history"], start=1):
        if not isinstance(row, dict) or any(bad(row.get(k), _NUMBER) for k in _HISTORY_KEYS):
            return f"history row {number} is not a record of {', '.join(_HISTORY_KEYS)}"
    augmentation = record.get("augmentation")  # absent in runs made before it existed
    if augmentation is not None and not (
            isinstance(augmentation, dict) and isinstance(augmentation.get("name"), str)
            and isinstance(augmentation.get("options"), dict)):
        return f"'augmentation' must be {{'name': ..., 'options': {{...}}}}; got " \
               f"{_short(augmentation)}"
    best = record.get("best_epoch")
    if best is not None and (bad(best, int)
                             or not 1 <= best <= len(record["history"])):
        return f"best_epoch {_short(best)} is not one of the recorded epochs"
    return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclasses.dataclass
class LoadedRun:
    """A trained run read back: its record and the model with the chosen parameters."""

    path: Path
    record: dict[str, Any]
    model: Any

    @property
    def pixel_scale(self) -> float:
        return float(self.record["training"]["pixel_scale"])


def load_run(path: str | Path, registry: Registry, dataset: Dataset,
             which: str = "best") -> LoadedRun:
    """Rebuild the model of the run at ``path`` with its ``best`` or ``last`` parameters."""
    path = Path(path)
    record = read_record(path)
    if which not in ("best", "last"):
        raise OptionsError(f"choose best or last parameters; got {which!r}")
    file = path / (BEST_NPZ if which == "best" else LAST_NPZ)
    entry = registry.get("model", record["model"])
    try:
        model = build_model(entry, record["model_options"], np.random.default_rng(0), dataset)
    except MnistkitError:
        raise
    except Exception as exc:
        raise RunError(f"{path}: cannot rebuild model {record['model']!r} from run.json "
                       f"({type(exc).__name__}: {exc})") from None
    saved = load_checkpoint(file, expected_params=model.params).get("params", {})
    check_params(file, saved, model.params)
    for key, value in saved.items():
        model.params[key][...] = value
    return LoadedRun(path, record, model)

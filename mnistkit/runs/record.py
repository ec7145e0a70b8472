"""The run record: what a run's ``run.json`` holds, as typed data, and its one schema.

:class:`RunRecord` is the whole record (what was trained and how, its history, its
result); :class:`EpochRecord` one row of its history, which is also what the trainer
yields at the end of an epoch (:class:`mnistkit.training.EpochFinished`).
``to_json``/``from_json`` convert to and from the plain JSON form; ``from_json``
validates first (:func:`check_record`), and so does :func:`decode_record`, which parses
the text of a ``run.json``. Where the file lives and how it is written is
:mod:`mnistkit.runs.folder`.

Every ``run.json`` written so far reads: runs made before augmentation existed have no
``augmentation`` (they trained on plain images: ``none``) and no ``recipe``.

Validation refuses what could not rebuild the run or would mislead: the wrong types in
the fields needed to rebuild it (model, optimizer, their options, training settings,
the dataset's name and checksum, history rows, the augmentation, the best epoch),
``NaN``/``Infinity`` and numbers out of the float range (except a ``NaN`` validation
accuracy, which runs without a validation set record), a newer format, and nesting
deeper than the parser handles. The other fields (``status``, ``created``,
``plugins``, ``versions``, ``metrics``, ``wall_seconds``, the dataset's other keys)
hold what the file says. This module imports only the standard library.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistkit import __version__
from mnistkit.errors import RunError

if TYPE_CHECKING:
    from mnistkit.training import TrainConfig

RUN_FORMAT_VERSION = 1
#: Where ``NaN`` is written legitimately: the validation accuracy of runs without one.
_NAN_ALLOWED = {("history", "*", "val_accuracy"), ("metrics", "val_accuracy")}


# -- the typed record ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run's history: ``epoch`` is 1-based, as shown to users;
    ``val_accuracy`` is ``NaN`` when the run holds out no validation images."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    lr: float
    seconds: float

    @property
    def score(self) -> float:
        """What picks the best epoch: validation accuracy, or training accuracy when there
        is no validation set."""
        val = self.val_accuracy
        return self.train_accuracy if val != val else val  # NaN: no validation set

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EPOCH_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """The same as :meth:`to_json` (the name :class:`EpochFinished` had first)."""
        return self.to_json()

    @classmethod
    def from_json(cls, row: Any) -> EpochRecord:
        """An epoch from its JSON row; :class:`TypeError` unless every field is a number."""
        if not isinstance(row, dict) or any(_bad(row.get(k), _NUMBER) for k in EPOCH_FIELDS):
            raise TypeError(f"a history row must be a record of {', '.join(EPOCH_FIELDS)}")
        return cls(**{name: row[name] for name in EPOCH_FIELDS})


EPOCH_FIELDS = tuple(f.name for f in dataclasses.fields(EpochRecord))


@dataclasses.dataclass(frozen=True)
class AugmentationRecord:
    """The distortion of the training images: a registered augmentation and its options."""

    name: str = "none"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_json(cls, found: Any) -> AugmentationRecord:
        """The record's ``augmentation``; runs made before augmentation existed (no such
        key, or not a record with a name) trained on plain images: ``none``."""
        if not isinstance(found, dict) or not isinstance(found.get("name"), str):
            return cls()
        options = found.get("options")
        return cls(found["name"], dict(options) if isinstance(options, dict) else {})


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """How the run trains: the :class:`~mnistkit.training.TrainConfig` fields, and which
    of the dataset's training images it uses (``val_size`` held out at the end, the first
    ``limit`` of the rest)."""

    epochs: int
    batch_size: int
    seed: int
    sampling: str
    steps_per_epoch: int | None
    pixel_scale: float
    val_size: int
    limit: int | None

    def config(self) -> TrainConfig:
        from mnistkit.training import TrainConfig

        return TrainConfig(**{f.name: getattr(self, f.name)
                              for f in dataclasses.fields(TrainConfig)})

    @classmethod
    def of(cls, config: TrainConfig, val_size: int, limit: int | None) -> TrainingRecord:
        return cls(**dataclasses.asdict(config), val_size=val_size, limit=limit)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> TrainingRecord:
        return cls(**{f.name: found.get(f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(kw_only=True)
class RunRecord:
    """Everything ``run.json`` says about a run, in the order the file has it.

    ``status`` goes ``created`` → ``running`` → ``finished``, or ends ``interrupted``
    (resumable), ``diverged`` or ``failed`` (with ``error``). ``best_epoch`` (1-based)
    is the epoch whose parameters ``best.npz`` holds; ``metrics`` are set when the run
    finishes. Keys this version does not know are kept in ``extra`` and written back.
    """

    format_version: int = RUN_FORMAT_VERSION
    status: str = "created"
    created: str = ""
    model: str
    model_options: dict[str, Any]
    optimizer: str
    optimizer_options: dict[str, Any]
    augmentation: AugmentationRecord = dataclasses.field(default_factory=AugmentationRecord)
    recipe: str | None = None
    plugins: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: dict[str, Any]
    training: TrainingRecord
    seed: int | None = None
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[EpochRecord] = dataclasses.field(default_factory=list)
    best_epoch: int | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    wall_seconds: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def best(self) -> EpochRecord | None:
        """The history row of :attr:`best_epoch`."""
        return self.history[self.best_epoch - 1] if self.best_epoch else None

    @property
    def best_score(self) -> float:
        """The best :attr:`EpochRecord.score` so far; -1 before the first epoch."""
        return max((epoch.score for epoch in self.history), default=-1.0)

    def to_json(self) -> dict[str, Any]:
        """The plain JSON form, as ``run.json`` holds it (``error`` only when set): a copy,
        which changes nothing in the record."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "extra" or (field.name == "error" and value is None):
                continue
            if isinstance(value, (EpochRecord, AugmentationRecord, TrainingRecord)):
                value = value.to_json()
            elif field.name == "history":
                value = [epoch.to_json() for epoch in value]
            out[field.name] = value
        return copy.deepcopy({**out, **{k: v for k, v in self.extra.items() if k not in out}})

    def to_text(self) -> str:
        """``run.json``'s text."""
        return json.dumps(self.to_json(), indent=2)

    @classmethod
    def from_json(cls, data: Any, where: str | Path = "run record") -> RunRecord:
        """The record of ``data`` (a JSON object), validated by :func:`check_record`
        (a :class:`~mnistkit.errors.RunError` naming ``where`` otherwise)."""
        data = check_record(where, data)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        given = {k: data[k] for k in known if k in data}
        given.update(
            augmentation=AugmentationRecord.from_json(data.get("augmentation")),
            training=TrainingRecord.from_json(data["training"]),
            history=[EpochRecord.from_json(row) for row in data["history"]])
        return cls(**given, extra={k: v for k, v in data.items() if k not in known})


def augmentation_record(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON record's ``augmentation`` (``{"name", "options"}``); runs made before
    augmentation existed trained on plain images: ``none``."""
    return AugmentationRecord.from_json(record.get("augmentation")).to_json()


# -- the schema -------------------------------------------------------------------------
class _NonFinite:
    """A ``NaN``/``Infinity`` literal or an overflowing number, kept for validation."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def decode_record(text: str | bytes, where: str | Path) -> dict[str, Any]:
    """The JSON object of a ``run.json`` text, validated (:func:`check_record`); errors are
    :class:`~mnistkit.errors.RunError` naming ``where``."""
    try:
        record = json.loads(text, parse_constant=_NonFinite, parse_float=_parse_float)
    except RecursionError:
        raise RunError(f"{where}: unreadable (nested too deeply)") from None
    except ValueError as exc:
        raise RunError(f"{where}: unreadable ({exc})") from None
    return check_record(where, record)


def check_record(where: str | Path, record: Any) -> dict[str, Any]:
    """``record`` if it is a run record this version can use, else a
    :class:`~mnistkit.errors.RunError` naming ``where`` and the first problem. The
    ``NaN`` markers :func:`decode_record` leaves where ``NaN`` is allowed become ``nan``
    (in place)."""
    try:
        return _checked_record(where, record)
    except RecursionError:  # deep, but not too deep for the parser: too deep to check
        raise RunError(f"{where}: unreadable (nested too deeply)") from None


def _checked_record(file: str | Path, record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RunError(f"{file}: expected a JSON object")
    problem = _number_problem(record, ())
    if problem:
        raise RunError(f"{file}: {problem} (the file was changed or damaged)")
    version = record.get("format_version")
    if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
        raise RunError(f"{file}: run format {_short(version)} is not supported by mnistkit "
                       f"{__version__} (knows {RUN_FORMAT_VERSION}); upgrade mnistkit")
    for key in _RECORD_TYPES:
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
        if isinstance(item, _NonFinite) or (isinstance(item, float) and not math.isfinite(item)):
            text = item.text if isinstance(item, _NonFinite) else json.dumps(item)
            if text != "NaN" or here not in _NAN_ALLOWED:
                return f"{'.'.join(map(str, (*where, key)))} is {text}, not a finite number"
            value[key] = math.nan
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 2**1023:
            return f"{'.'.join(map(str, (*where, key)))} is a number too large to use"
        elif isinstance(item, (dict, list)):
            problem = _number_problem(item, here)
            if problem:
                return problem
    return ""


_NUMBER = (int, float)
#: The fields a record must have, in the order they are checked, and their types.
_RECORD_TYPES: dict[str, Any] = {"model": str, "optimizer": str, "model_options": dict,
                                 "optimizer_options": dict, "training": dict, "dataset": dict,
                                 "history": list}
#: The types of :class:`TrainingRecord`'s fields, in its order.
_TRAINING_TYPES: dict[str, Any] = {
    "epochs": int, "batch_size": int, "seed": int, "sampling": str,
    "steps_per_epoch": (int, type(None)), "pixel_scale": _NUMBER, "val_size": int,
    "limit": (int, type(None))}


def _bad(value: Any, types: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, types)


def _record_problem(record: dict[str, Any]) -> str:
    """What is wrong with the types in a ``run.json`` record, or ``""``."""
    for key, types in _RECORD_TYPES.items():
        if _bad(record[key], types):
            return f"{key!r} must be a {types.__name__}; got {_short(record[key])}"
    for key, types in _TRAINING_TYPES.items():
        value = record["training"].get(key)
        if _bad(value, types):
            return f"training {key!r} is missing or of the wrong type (got {_short(value)})"
    for key in ("name", "fingerprint"):
        if not isinstance(record["dataset"].get(key), str):
            return f"dataset {key!r} must be a string; got {_short(record['dataset'].get(key))}"
    for number, row in enumerate(record["history"], start=1):
        if not isinstance(row, dict) or any(_bad(row.get(k), _NUMBER) for k in EPOCH_FIELDS):
            return f"history row {number} is not a record of {', '.join(EPOCH_FIELDS)}"
    augmentation = record.get("augmentation")  # absent in runs made before it existed
    if augmentation is not None and not (
            isinstance(augmentation, dict) and isinstance(augmentation.get("name"), str)
            and isinstance(augmentation.get("options"), dict)):
        return f"'augmentation' must be {{'name': ..., 'options': {{...}}}}; got " \
               f"{_short(augmentation)}"
    best = record.get("best_epoch")
    if best is not None and (_bad(best, int)
                             or not 1 <= best <= len(record["history"])):
        return f"best_epoch {_short(best)} is not one of the recorded epochs"
    return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

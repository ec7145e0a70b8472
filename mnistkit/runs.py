"""Train a run: start, resume and finish it, writing its folder as it goes.

What a run folder holds and how it is read back is :mod:`mnistkit.run_folder`. Every
file is written atomically, so a crash leaves the previous complete version. A run is
trained by one process at a time: the folder is claimed (:mod:`mnistkit.run_lock`) before
anything is written and stays locked until training ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit import __version__
from mnistkit.checkpoint import check_params, load_checkpoint, save_checkpoint
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import DataError, OptionsError, PluginError, RunError, TrainingError
from mnistkit.evaluation import evaluate
from mnistkit.files import atomic_write
from mnistkit.options import options_to_dict
from mnistkit.registry import Registry
from mnistkit.run_folder import (
    BEST_NPZ,
    HISTORY_CSV,
    LAST_NPZ,
    RUN_FORMAT_VERSION,
    RUN_JSON,
    STEPS_CSV,
    build_model,
    call_plugin,
    read_record,
    remove_stale_temporaries,
)
from mnistkit.run_lock import RunLock, claim_new_run_folder, lock_run_folder
from mnistkit.training import EpochFinished, Event, TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What to train: names and options as the user gave them, and how to train."""

    model: str = "twolayer"
    optimizer: str = "sgd"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    optimizer_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "mnist"
    val_size: int = 10_000
    limit: int | None = None
    config: TrainConfig = TrainConfig()
    augment: str = "none"
    augment_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    recipe: str | None = None  # the recipe these settings came from, if any


def default_run_dir(root: str | Path, model: str) -> Path:
    """``root/<YYYYmmdd-HHMMSS>-<model>``: the default name of a new run folder. Pass it to
    :meth:`Run.start` with ``pick_free_name=True``, which adds ``-2``, ``-3``... when that
    name is taken (atomically, so runs started in the same second never share a folder)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{model}"


class RunFinishedError(RunError):
    """:meth:`Run.resume` of a finished run with no more epochs asked: nothing to do.
    ``record`` is the run's record."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


#: What ``resume_conflicts`` compares: the record's place of each setting a resume could be
#: asked to change. Only ``epochs`` (and, outside the run, the BLAS threads) may change.
_FIXED_SETTINGS: dict[str, tuple[str, ...]] = {
    "model": ("model",), "optimizer": ("optimizer",), "dataset": ("dataset", "name"),
    "val_size": ("training", "val_size"), "limit": ("training", "limit"),
    "batch_size": ("training", "batch_size"), "seed": ("training", "seed"),
    "sampling": ("training", "sampling"), "steps_per_epoch": ("training", "steps_per_epoch"),
    "pixel_scale": ("training", "pixel_scale"), "augment": ("augmentation", "name"),
}


def resume_conflicts(record: dict[str, Any], registry: Registry,
                     requested: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The settings in ``requested`` that differ from the run's ``record``, as
    ``(setting, requested value, the run's value)``; ``[]`` when a resume may go ahead.

    ``requested`` holds only what the user asked for explicitly: keys of
    ``_FIXED_SETTINGS``, and ``model_options``/``optimizer_options``/``augment_options`` as
    ``{name: value}`` (compared after conversion, so ``-m hidden_size=100`` matches a run
    of 100). A value equal to the run's is no conflict.
    """
    conflicts = []
    record = {**record, "augmentation": augmentation_record(record)}
    for setting, where in _FIXED_SETTINGS.items():
        if setting in requested:
            recorded = record
            for key in where:
                recorded = recorded.get(key) if isinstance(recorded, dict) else None
            if requested[setting] != recorded:
                conflicts.append((setting, requested[setting], recorded))
    for kind in ("model", "optimizer", "augment"):
        given = requested.get(f"{kind}_options") or {}
        if not given:
            continue
        if kind == "augment":
            recorded = record["augmentation"]["options"]
            entry = registry.get("augmentation", record["augmentation"]["name"])
        else:
            recorded = record[f"{kind}_options"]
            entry = registry.get(kind, record[kind])
        merged = options_to_dict(entry.make_options({**recorded, **given}))
        conflicts += [(f"{kind}_options.{name}", merged.get(name), recorded.get(name))
                      for name in given if merged.get(name) != recorded.get(name)]
    return conflicts


def augmentation_record(record: dict[str, Any]) -> dict[str, Any]:
    """The run's ``augmentation`` record (``{"name", "options"}``); runs made before
    augmentation existed trained on plain images: ``none``."""
    found = record.get("augmentation")
    if not isinstance(found, dict) or not isinstance(found.get("name"), str):
        return {"name": "none", "options": {}}
    options = found.get("options")
    return {"name": found["name"], "options": options if isinstance(options, dict) else {}}


def split_train_val(train: Split, val_size: int, limit: int | None) -> tuple[Split, Split]:
    """Hold out the last ``val_size`` training images for validation; keep the first
    ``limit`` of the rest for training. The test split is never touched."""
    n = len(train)
    if n == 0:
        raise DataError("the dataset has no training images: nothing to train on")
    if val_size < 0 or val_size >= n:
        raise OptionsError(f"--val-size must be between 0 and {n - 1}; got {val_size}")
    rest = n - val_size
    if limit is not None and not 0 < limit <= rest:
        raise OptionsError(f"--limit must be between 1 and {rest} (the training images left "
                           f"after holding out --val-size {val_size}); got {limit}")
    return train.subset(slice(0, limit or rest)), train.subset(slice(rest, n))


class Run:
    """A run being trained: model, optimizer, trainer and the folder it writes to."""

    def __init__(self, path: Path, record: dict[str, Any], model: Any, optimizer: Any,
                 trainer: Trainer, dataset: Dataset) -> None:
        self.path, self.record, self.model, self.optimizer = path, record, model, optimizer
        self.trainer, self.dataset = trainer, dataset
        self._lock: RunLock | None = None
        self.best_score = max((_score(h) for h in record["history"]), default=-1.0)
        self._clock = time.perf_counter() - record.get("wall_seconds", 0.0)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def start(cls, spec: RunSpec, dataset: Dataset, registry: Registry, path: Path, *,
              pick_free_name: bool = False) -> Run:
        """Validate ``spec``, build everything, then claim and write the run folder (nothing
        trained yet). ``path`` must not exist or be an empty folder; with
        ``pick_free_name`` a taken ``path`` becomes ``path-2``, ``path-3``... (see
        :attr:`path` for the one used). The folder stays locked for this process until
        :meth:`train` ends or :meth:`close` is called."""
        model_entry = registry.get("model", spec.model)
        opt_entry = registry.get("optimizer", spec.optimizer)
        model_opts = model_entry.make_options(spec.model_options)
        opt_opts = opt_entry.make_options(spec.optimizer_options)
        aug_entry = registry.get("augmentation", spec.augment)
        aug_opts = aug_entry.make_options(spec.augment_options)
        train, val = split_train_val(dataset.train, spec.val_size, spec.limit)
        _check_config(spec.config, len(train))
        record = {
            "format_version": RUN_FORMAT_VERSION,
            "status": "created",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": spec.model, "model_options": options_to_dict(model_opts),
            "optimizer": spec.optimizer, "optimizer_options": options_to_dict(opt_opts),
            "augmentation": {"name": spec.augment, "options": options_to_dict(aug_opts)},
            "recipe": spec.recipe,
            "plugins": {"model": model_entry.plugin, "optimizer": opt_entry.plugin,
                        "augmentation": aug_entry.plugin},
            "dataset": _dataset_record(dataset, len(train), len(val)),
            "training": {**dataclasses.asdict(spec.config), "val_size": spec.val_size,
                         "limit": spec.limit},
            "seed": spec.config.seed,
            "versions": {"mnistkit": __version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "history": [], "best_epoch": None, "metrics": {}, "wall_seconds": 0.0,
        }
        run = cls._build(path, record, dataset, registry, train, val)
        # Claimed only now that everything is built, so a bad option leaves no folder; from
        # here the folder is resumable. A read-only or full disk fails here, before training.
        run._lock = claim_new_run_folder(path, pick_free_name=pick_free_name)
        run.path = run._lock.folder
        with run._released_on_error():
            run._save_last()
            run._write_record()
        return run

    @classmethod
    def resume(cls, path: Path, dataset: Dataset, registry: Registry,
               epochs: int | None = None) -> Run:
        """Reopen an interrupted run to continue training from ``last.npz`` (or a finished
        one, to train it for more ``epochs``). The folder is locked for this process: a run
        that another process is training right now is refused."""
        path = Path(path)
        read_record(path)  # a clear error for what is not a run folder, before locking it
        lock = lock_run_folder(path)
        try:
            record = read_record(path)  # again: now no other process can be changing it
            if dataset.name != record["dataset"]["name"] or (
                    dataset.fingerprint() != record["dataset"]["fingerprint"]):
                raise RunError(f"{path}: the dataset differs from the one this run was trained"
                               f" on ({record['dataset']['name']}, {record['dataset']['source']})")
            _check_resume_epochs(path, record, epochs)
            if epochs is not None:
                record["training"]["epochs"] = epochs
            t = record["training"]
            train, val = split_train_val(dataset.train, t["val_size"], t["limit"])
            run = cls._build(path, record, dataset, registry, train, val)
            run._lock = lock
            run._restore(path)
        except BaseException:
            lock.release()
            raise
        return run

    def _restore(self, path: Path) -> None:
        """Load ``last.npz`` into the model, optimizer and trainer (under the lock)."""
        remove_stale_temporaries(path)
        groups = load_checkpoint(path / LAST_NPZ, expected_params=self.model.params)
        for group in ("params", "optimizer", "trainer"):
            groups.setdefault(group, {})
        check_params(path / LAST_NPZ, groups["params"], self.model.params)
        for key, value in groups["params"].items():
            self.model.params[key][...] = value
        try:
            self.optimizer.load_state_dict(groups["optimizer"])
        except (KeyError, ValueError, TypeError) as exc:
            raise RunError(f"{path / LAST_NPZ}: optimizer state is damaged ({exc})") from None
        try:
            self.trainer.restore(groups["trainer"])
            _check_position(self.trainer)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise RunError(f"{path / LAST_NPZ}: trainer state is damaged ({exc})") from None

    @classmethod
    def _build(cls, path: Path, record: dict[str, Any], dataset: Dataset, registry: Registry,
               train: Split, val: Split) -> Run:
        model_entry = registry.get("model", record["model"])
        opt_entry = registry.get("optimizer", record["optimizer"])
        t = record["training"]
        config = TrainConfig(**{f.name: t[f.name] for f in dataclasses.fields(TrainConfig)})
        _check_config(config, len(train))
        rng = np.random.default_rng(config.seed)
        model = build_model(model_entry, record["model_options"], rng, dataset,
                            batch_size=config.batch_size)
        opt_options = opt_entry.make_options(record["optimizer_options"])
        optimizer = call_plugin(opt_entry, "could not be built",
                                 lambda: opt_entry.factory(model.params, opt_options))
        trainer = Trainer(model, optimizer, train, val, config, rng, model_name=record["model"],
                          **_augmentation_for(record, registry))
        return cls(path, record, model, optimizer, trainer, dataset)

    # -- owning the folder --------------------------------------------------------------
    def close(self) -> None:
        """Release the run folder so another process may resume it (idempotent)."""
        if self._lock is not None:
            self._lock.release()

    @contextlib.contextmanager
    def _released_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.close()
            raise

    # -- training ---------------------------------------------------------------------
    def train(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        """Train, saving ``last.npz`` (and ``best.npz`` when validation improves) after each
        epoch. Ends with status ``finished`` and test metrics, ``interrupted`` when
        ``should_stop()`` became true (resumable), or raises :class:`TrainingError` after
        recording status ``diverged`` (the last good checkpoint is kept). However it ends,
        the folder is released (:meth:`close`)."""
        try:
            yield from self._train(should_stop)
        finally:
            self.close()

    def _train(self, should_stop: Callable[[], bool]) -> Iterator[Event]:
        if self._lock is None or not self._lock.held:
            raise RunError(f"{self.path}: this run was closed; resume it with Run.resume")
        self.record["status"] = "running"
        try:
            for event in self.trainer.run(should_stop):
                if isinstance(event, EpochFinished):
                    self._save_epoch(event)
                yield event
        except TrainingError as exc:
            self.record["status"] = "diverged"
            self.record["error"] = str(exc)
            self._write_record()
            raise
        except PluginError as exc:  # a model or augmentation breaking its contract
            kind = "augmentation" if str(exc).startswith("augmentation") else "model"
            name = augmentation_record(self.record)["name"] if kind == "augmentation" else (
                self.record["model"])
            plugin = self.record.get("plugins", {}).get(kind, "?")
            message = f"{exc}; {kind} {name!r} comes from plugin {plugin!r}"
            self.record["status"] = "failed"
            self.record["error"] = message
            self._write_record()
            raise PluginError(message) from None
        except KeyboardInterrupt:
            # A second Ctrl-C can land in the middle of a step (parameters half updated):
            # keep the last consistent checkpoint rather than saving this state.
            self.record["status"] = "interrupted"
            self._write_record()
            raise
        if self.trainer.epoch < self.trainer.config.epochs:
            self._save_interrupted()
            return
        self._finish()

    def _save_epoch(self, event: EpochFinished) -> None:
        self._save_last()
        score = _score(event.to_dict())
        if score > self.best_score or not (self.path / BEST_NPZ).exists():
            self.best_score = score
            self.record["best_epoch"] = event.epoch
            self._save(BEST_NPZ, {"params": self.model.params})
        self.record["history"] = self.trainer.history
        self._write_record()

    def _save_last(self) -> None:
        self._save(LAST_NPZ, {
            "params": self.model.params,
            "optimizer": self.optimizer.state_dict(),
            "trainer": self.trainer.state(),
        })

    def _save(self, name: str, groups: dict[str, dict[str, np.ndarray]]) -> None:
        """Save a checkpoint; a full disk or read-only folder is a :class:`RunError`."""
        try:
            save_checkpoint(self.path / name, groups)
        except OSError as exc:
            reason = exc.strerror or exc
            raise RunError(f"cannot write {self.path / name}: {reason}") from None

    def _save_interrupted(self) -> None:
        self._save_last()
        self.record["status"] = "interrupted"
        self._write_record()

    def _finish(self) -> None:
        best = load_checkpoint(self.path / BEST_NPZ)["params"]
        for key, value in best.items():
            self.model.params[key][...] = value
        test = evaluate(self.model, self.dataset.test.images, self.dataset.test.labels,
                        self.dataset.n_classes, self.trainer.config.pixel_scale)
        best_record = self.record["history"][self.record["best_epoch"] - 1]
        self.record["metrics"] = {
            "test_accuracy": test.accuracy, "test_loss": test.loss,
            "val_accuracy": best_record["val_accuracy"],
            "train_loss": self.record["history"][-1]["train_loss"],
        }
        self.record["status"] = "finished"
        self._write_record()

    def _write_record(self) -> None:
        self.record["wall_seconds"] = round(time.perf_counter() - self._clock, 3)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path / RUN_JSON, "w") as handle:
                json.dump(self.record, handle, indent=2)
            with atomic_write(self.path / HISTORY_CSV, "w") as handle:
                handle.write(_history_csv(self.record["history"]))
            with atomic_write(self.path / STEPS_CSV, "w") as handle:
                handle.write(_steps_csv(self.trainer.losses, self.trainer.steps))
        except OSError as exc:
            reason = exc.strerror or exc
            raise RunError(f"cannot write the run folder {self.path}: {reason}") from None


def _augmentation_for(record: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """The Trainer arguments of the run's augmentation: none for ``none``."""
    found = augmentation_record(record)
    if found["name"] == "none":
        return {}
    entry = registry.get("augmentation", found["name"])
    options = entry.make_options(found["options"])
    augmentation = call_plugin(entry, "could not be built", lambda: entry.factory(options))
    if not callable(getattr(augmentation, "distort", None)):
        raise PluginError(f"augmentation {found['name']!r} of plugin {entry.plugin!r}: its "
                          "factory must return an object with distort(images, rng)")
    return {"augmentation": augmentation, "augmentation_name": found["name"]}


def _check_config(config: TrainConfig, n_train: int) -> None:
    if config.seed < 0:
        raise OptionsError(f"--seed must be 0 or more; got {config.seed}")
    if config.epochs < 1:
        raise OptionsError(f"--epochs must be at least 1; got {config.epochs}")
    if not 1 <= config.batch_size <= n_train:
        raise OptionsError(f"--batch-size must be between 1 and {n_train} (the training images); "
                           f"got {config.batch_size}")
    if config.steps_per_epoch is not None and config.steps_per_epoch < 1:
        raise OptionsError(f"--steps-per-epoch must be at least 1; got {config.steps_per_epoch}")


def _check_resume_epochs(path: Path, record: dict[str, Any], epochs: int | None) -> None:
    """Refuse a resume that has nothing to do, or asks for fewer epochs than are done."""
    done = len(record["history"])
    if record.get("status") == "finished" and (epochs is None or epochs <= done):
        accuracy = record.get("metrics", {}).get("test_accuracy")
        result = f", test accuracy {accuracy:.2%}" if isinstance(accuracy, float) else ""
        raise RunFinishedError(f"{path} is already finished ({done} of {done} epochs{result});"
                               f" nothing to resume. To train it further give --epochs N with N"
                               f" greater than {done}", record)
    if epochs is not None and epochs < done:
        raise OptionsError(f"--epochs {epochs} is fewer than the {done} epochs {path} has "
                           "already trained")


def _check_position(trainer: Trainer) -> None:
    """Raise ``ValueError`` unless a restored trainer position is self-consistent."""
    epoch, step, steps = trainer.epoch, trainer.step, trainer.steps
    if not (_is_int(epoch) and _is_int(step) and epoch >= 0 and 0 <= step < steps):
        raise ValueError(f"position epoch {epoch!r}, step {step!r} is impossible with {steps} "
                         "steps per epoch")
    if not isinstance(trainer.history, list) or len(trainer.history) != epoch:
        raise ValueError(f"{epoch} epochs done but the history has a different length")
    if len(trainer.losses) != epoch * steps + step:
        raise ValueError(f"{len(trainer.losses)} step losses for {epoch * steps + step} steps")
    order = trainer.order
    if order is not None:
        need = steps * trainer.config.batch_size
        if order.ndim != 1 or len(order) < need or (
                order.size and not 0 <= int(order.min()) <= int(order.max()) < len(trainer.train)):
            raise ValueError("the batch order does not fit the training images")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _score(history_row: dict[str, Any]) -> float:
    """Validation accuracy, or training accuracy when there is no validation set."""
    val = history_row["val_accuracy"]
    return history_row["train_accuracy"] if val != val else val  # NaN: no validation set


def _dataset_record(dataset: Dataset, n_train: int, n_val: int) -> dict[str, Any]:
    return {"name": dataset.name, "source": dataset.source, "fingerprint": dataset.fingerprint(),
            "files": dataset.files, "n_train": n_train, "n_val": n_val,
            "n_test": len(dataset.test), "class_names": list(dataset.class_names)}


def _history_csv(history: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    columns = ["epoch", "train_loss", "train_accuracy", "val_accuracy", "lr", "seconds"]
    out.write(",".join(columns) + "\n")
    for row in history:
        out.write(",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c])
                           for c in columns) + "\n")
    return out.getvalue()


def _steps_csv(losses: list[float], steps_per_epoch: int) -> str:
    lines = ["step,epoch,loss"]
    lines += [f"{i + 1},{i // steps_per_epoch + 1},{loss!r}" for i, loss in enumerate(losses)]
    return "\n".join(lines) + "\n"



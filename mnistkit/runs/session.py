"""Training a run: start it, resume it, train it, writing its folder as it goes.

:meth:`Run.start` checks a :class:`RunSpec`, builds everything and claims a new run
folder; :meth:`Run.resume` claims an existing one and restores ``last.npz``;
:meth:`Run.train` trains, saving the checkpoints and the record after every epoch, and
ends the run: its status, the best epoch, the final test. The record is
:mod:`mnistkit.runs.record`, the files :mod:`mnistkit.runs.folder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit import __version__
from mnistkit.checkpoint import check_params
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import OptionsError, PluginError, RunError, TrainingError, setting
from mnistkit.evaluation import evaluate
from mnistkit.options import options_to_dict
from mnistkit.registry import Registry
from mnistkit.runs.build import (
    build_augmentation,
    build_model,
    build_optimizer,
    split_train_val,
    val_size_for,
)
from mnistkit.runs.folder import RunFolder
from mnistkit.runs.record import (
    AugmentationRecord,
    EpochRecord,
    RunRecord,
    TrainingRecord,
    augmentation_record,
)
from mnistkit.training import EpochFinished, Event, TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What to train: names and options as the user gave them, and how to train."""

    model: str = "twolayer"
    optimizer: str = "sgd"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    optimizer_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "mnist"
    val_size: int | None = None  # None: the dataset's default (see val_size_for)
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
    ``record`` is the run's record (its JSON form)."""

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
    """The settings in ``requested`` that differ from the run's ``record`` (its JSON
    form), as ``(setting, requested value, the run's value)``; ``[]`` when a resume may
    go ahead.

    ``requested`` holds only what the user asked for explicitly: keys of
    ``_FIXED_SETTINGS``, and ``model_options``/``optimizer_options``/``augment_options`` as
    ``{name: value}`` (compared after conversion, so ``-m hidden_size=100`` matches a run
    of 100). A value equal to the run's is no conflict.
    """
    conflicts = []
    record = {**record, "augmentation": augmentation_record(record)}
    for name, where in _FIXED_SETTINGS.items():
        if name in requested:
            recorded = record
            for key in where:
                recorded = recorded.get(key) if isinstance(recorded, dict) else None
            if requested[name] != recorded:
                conflicts.append((name, requested[name], recorded))
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


class Run:
    """A run being trained: its record, model, optimizer, trainer and the folder it
    writes to."""

    def __init__(self, folder: RunFolder, info: RunRecord, model: Any, optimizer: Any,
                 trainer: Trainer, dataset: Dataset) -> None:
        self.folder, self.info, self.model, self.optimizer = folder, info, model, optimizer
        self.trainer, self.dataset = trainer, dataset
        self.best_score = info.best_score
        self._clock = time.perf_counter() - (info.wall_seconds or 0.0)

    @property
    def path(self) -> Path:
        """The run folder."""
        return self.folder.path

    @property
    def record(self) -> dict[str, Any]:
        """The run's record as ``run.json`` has it (a copy: see :attr:`info`)."""
        return self.info.to_json()

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
        val_size = val_size_for(dataset, spec.val_size)
        train, val = split_train_val(dataset.train, val_size, spec.limit)
        _check_config(spec.config, len(train))
        info = RunRecord(
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            model=spec.model, model_options=options_to_dict(model_opts),
            optimizer=spec.optimizer, optimizer_options=options_to_dict(opt_opts),
            augmentation=AugmentationRecord(spec.augment, options_to_dict(aug_opts)),
            recipe=spec.recipe,
            plugins={"model": model_entry.plugin, "optimizer": opt_entry.plugin,
                     "augmentation": aug_entry.plugin},
            dataset=_dataset_record(dataset, len(train), len(val)),
            training=TrainingRecord.of(spec.config, val_size, spec.limit),
            seed=spec.config.seed,
            versions={"mnistkit": __version__, "numpy": np.__version__,
                      "python": platform.python_version()})
        run = cls._build(RunFolder(path), info, dataset, registry, train, val)
        # Claimed only now that everything is built, so a bad option leaves no folder; from
        # here the folder is resumable. A read-only or full disk fails here, before training.
        run.folder = RunFolder.create(path, pick_free_name=pick_free_name)
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
        folder = RunFolder(path)
        folder.read_json()  # a clear error for what is not a run folder, before locking it
        folder.claim()
        try:
            info = folder.read()  # again: now no other process can be changing it
            if dataset.name != info.dataset["name"] or (
                    dataset.fingerprint() != info.dataset["fingerprint"]):
                raise RunError(f"{folder.path}: the dataset differs from the one this run was "
                               f"trained on ({info.dataset['name']}, "
                               f"{info.dataset.get('source')})")
            _check_resume_epochs(folder.path, info, epochs)
            if epochs is not None:
                info.training = dataclasses.replace(info.training, epochs=epochs)
            t = info.training
            train, val = split_train_val(dataset.train, t.val_size, t.limit)
            run = cls._build(folder, info, dataset, registry, train, val)
            run._restore()
        except BaseException:
            folder.release()
            raise
        return run

    def _restore(self) -> None:
        """Load ``last.npz`` into the model, optimizer and trainer (under the lock)."""
        folder = self.folder
        file = folder.checkpoint_path("last")
        folder.remove_stale_temporaries()
        groups = folder.load_checkpoint("last", expected_params=self.model.params)
        for group in ("params", "optimizer", "trainer"):
            groups.setdefault(group, {})
        check_params(file, groups["params"], self.model.params)
        for key, value in groups["params"].items():
            self.model.params[key][...] = value
        try:
            self.optimizer.load_state_dict(groups["optimizer"])
        except (KeyError, ValueError, TypeError) as exc:
            raise RunError(f"{file}: optimizer state is damaged ({exc})") from None
        try:
            self.trainer.restore(groups["trainer"])
            _check_position(self.trainer)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise RunError(f"{file}: trainer state is damaged ({exc})") from None

    @classmethod
    def _build(cls, folder: RunFolder, info: RunRecord, dataset: Dataset, registry: Registry,
               train: Split, val: Split) -> Run:
        model_entry = registry.get("model", info.model)
        opt_entry = registry.get("optimizer", info.optimizer)
        config = info.training.config()
        _check_config(config, len(train))
        rng = np.random.default_rng(config.seed)
        model = build_model(model_entry, info.model_options, rng, dataset,
                            batch_size=config.batch_size)
        optimizer = build_optimizer(opt_entry, info.optimizer_options, model.params)
        trainer = Trainer(model, optimizer, train, val, config, rng, model_name=info.model,
                          **build_augmentation(info.augmentation, registry))
        return cls(folder, info, model, optimizer, trainer, dataset)

    # -- owning the folder --------------------------------------------------------------
    def close(self) -> None:
        """Release the run folder so another process may resume it (idempotent)."""
        self.folder.release()

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
        if not self.folder.owned:
            raise RunError(f"{self.path}: this run was closed; resume it with Run.resume")
        info = self.info
        info.status = "running"
        try:
            for event in self.trainer.run(should_stop):
                if isinstance(event, EpochFinished):
                    self._save_epoch(event)
                yield event
        except TrainingError as exc:
            info.status, info.error = "diverged", str(exc)
            self._write_record()
            raise
        except PluginError as exc:  # a model or augmentation breaking its contract
            kind = "augmentation" if str(exc).startswith("augmentation") else "model"
            name = info.augmentation.name if kind == "augmentation" else info.model
            plugins = info.plugins if isinstance(info.plugins, dict) else {}
            message = f"{exc}; {kind} {name!r} comes from plugin {plugins.get(kind, '?')!r}"
            info.status, info.error = "failed", message
            self._write_record()
            raise PluginError(message) from None
        except KeyboardInterrupt:
            # A second Ctrl-C can land in the middle of a step (parameters half updated):
            # keep the last consistent checkpoint rather than saving this state.
            info.status = "interrupted"
            self._write_record()
            raise
        if self.trainer.epoch < self.trainer.config.epochs:
            self._save_interrupted()
            return
        self._finish()

    def _save_epoch(self, event: EpochRecord) -> None:
        self._save_last()
        if event.score > self.best_score or not self.folder.has_checkpoint("best"):
            self.best_score = event.score
            self.info.best_epoch = event.epoch
            self.folder.save_checkpoint("best", {"params": self.model.params})
        self.info.history = [EpochRecord.from_json(row) for row in self.trainer.history]
        self._write_record()

    def _save_last(self) -> None:
        self.folder.save_checkpoint("last", {
            "params": self.model.params,
            "optimizer": self.optimizer.state_dict(),
            "trainer": self.trainer.state(),
        })

    def _save_interrupted(self) -> None:
        self._save_last()
        self.info.status = "interrupted"
        self._write_record()

    def _finish(self) -> None:
        """The final test, on the best epoch's parameters."""
        best = self.folder.load_checkpoint("best")["params"]
        for key, value in best.items():
            self.model.params[key][...] = value
        test = evaluate(self.model, self.dataset.test.images, self.dataset.test.labels,
                        self.dataset.n_classes, self.trainer.config.pixel_scale)
        info = self.info
        info.metrics = {
            "test_accuracy": test.accuracy, "test_loss": test.loss,
            "val_accuracy": info.best.val_accuracy,
            "train_loss": info.history[-1].train_loss,
        }
        info.status = "finished"
        self._write_record()

    def _write_record(self) -> None:
        self.info.wall_seconds = round(time.perf_counter() - self._clock, 3)
        self.folder.write(self.info, self.trainer.losses, self.trainer.steps)


def _check_config(config: TrainConfig, n_train: int) -> None:
    if config.seed < 0:
        raise OptionsError(f"{setting('seed')} must be 0 or more; got {config.seed}")
    if config.epochs < 1:
        raise OptionsError(f"{setting('epochs')} must be at least 1; got {config.epochs}")
    if not 1 <= config.batch_size <= n_train:
        raise OptionsError(f"{setting('batch_size')} must be between 1 and {n_train} (the "
                           f"training images); got {config.batch_size}")
    if config.steps_per_epoch is not None and config.steps_per_epoch < 1:
        raise OptionsError(f"{setting('steps_per_epoch')} must be at least 1; "
                           f"got {config.steps_per_epoch}")


def _check_resume_epochs(path: Path, info: RunRecord, epochs: int | None) -> None:
    """Refuse a resume that has nothing to do, or asks for fewer epochs than are done."""
    done = len(info.history)
    if info.status == "finished" and (epochs is None or epochs <= done):
        accuracy = info.metrics.get("test_accuracy") if isinstance(info.metrics, dict) else None
        result = f", test accuracy {accuracy:.2%}" if isinstance(accuracy, float) else ""
        raise RunFinishedError(f"{path} is already finished ({done} of {done} epochs{result});"
                               f" nothing to resume. To train it further give "
                               f"{setting('epochs')} N with N greater than {done}",
                               info.to_json())
    if epochs is not None and epochs < done:
        raise OptionsError(f"{setting('epochs')} {epochs} is fewer than the {done} epochs "
                           f"{path} has already trained")


def _check_position(trainer: Trainer) -> None:
    """Raise ``ValueError`` unless a restored trainer position is self-consistent."""
    epoch, step, steps = trainer.epoch, trainer.step, trainer.steps
    if not (_is_int(epoch) and _is_int(step) and epoch >= 0 and 0 <= step < steps):
        raise ValueError(f"position epoch {epoch!r}, step {step!r} is impossible with {steps} "
                         "steps per epoch")
    if not isinstance(trainer.history, list) or len(trainer.history) != epoch:
        raise ValueError(f"{epoch} epochs done but the history has a different length")
    for row in trainer.history:  # each a record of numbers: it becomes run.json's history
        EpochRecord.from_json(row)
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


def _dataset_record(dataset: Dataset, n_train: int, n_val: int) -> dict[str, Any]:
    return {"name": dataset.name, "source": dataset.source, "fingerprint": dataset.fingerprint(),
            "files": dataset.files, "n_train": n_train, "n_val": n_val,
            "n_test": len(dataset.test), "class_names": list(dataset.class_names)}


"""The training loop: pure computation, no printing, no files.

:class:`Trainer` runs minibatch training of a model with an optimizer and yields
progress events that the caller renders (the CLI) or ignores (a notebook). Its
complete position (epoch, step, this epoch's order, the random generator, the
per-step losses) is exported by :meth:`Trainer.state` and restored by
:meth:`Trainer.restore`, so an interrupted run resumes to bit-identical results.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

from mnistkit.batches import DEFAULT_PIXEL_SCALE, BatchMaker
from mnistkit.contracts import exception_line, step_problems
from mnistkit.data.dataset import Split
from mnistkit.errors import MnistkitError, OptionsError, PluginError, TrainingError, setting
from mnistkit.evaluation import accuracy
from mnistkit.memory import check_fits
from mnistkit.prefetch import AugmentedBatches
from mnistkit.runs.record import EpochRecord

TRAIN_ACCURACY_SAMPLE = 10_000


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: epochs, batches, sampling and input scaling."""

    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    sampling: Literal["shuffle", "replacement"] = "shuffle"
    steps_per_epoch: int | None = None
    pixel_scale: float = DEFAULT_PIXEL_SCALE

    def steps_for(self, n_train: int) -> int:
        """Steps per epoch: given, or one pass over ``n_train`` images."""
        if self.steps_per_epoch:
            return self.steps_per_epoch
        return -(-n_train // self.batch_size)


@dataclasses.dataclass(frozen=True)
class EpochStarted:
    epoch: int
    epochs: int
    steps: int
    lr: float


@dataclasses.dataclass(frozen=True)
class StepFinished:
    epoch: int
    step: int
    steps: int
    loss: float


@dataclasses.dataclass(frozen=True)
class EpochFinished(EpochRecord):
    """An epoch ended; the event is the epoch's record, as the run's history keeps it
    (:class:`mnistkit.runs.record.EpochRecord`: ``epoch`` is 1-based, as shown to users)."""


Event = EpochStarted | StepFinished | EpochFinished


class Trainer:
    """Trains ``model`` with ``optimizer`` on ``train``, measuring accuracy on ``val``."""

    def __init__(self, model: Any, optimizer: Any, train: Split, val: Split,
                 config: TrainConfig, rng: np.random.Generator, model_name: str = "model",
                 augmentation: Any = None, augmentation_name: str = "augmentation") -> None:
        """``augmentation`` (an object with ``distort(images, rng)``, see
        :mod:`mnistkit.augment`) distorts each training batch, ahead of the step in a
        background thread; ``None`` trains on the images as they are."""
        if len(train) == 0:
            raise TrainingError(f"there are no training images (check {setting('limit')} and "
                                f"{setting('val_size')})")
        self.model, self.optimizer, self.config = model, optimizer, config
        self.train, self.val, self.rng = train, val, rng
        self.model_name = model_name
        self.batches = BatchMaker(train.images, train.labels, config.batch_size,
                                  config.pixel_scale)
        self.augmented: AugmentedBatches | None = None
        if augmentation is not None:
            self.augmented = AugmentedBatches(train.images, train.labels, augmentation,
                                              config.batch_size, config.pixel_scale,
                                              config.seed, name=augmentation_name)
        self.steps = config.steps_for(len(train))
        _check_sizes(config, self.steps, len(train))
        self.epoch = 0          # epochs completed
        self.step = 0           # steps completed in the current epoch
        self.order: np.ndarray | None = None
        self._order_rng: dict[str, Any] | None = None  # the rng state it was drawn from
        self.losses: list[float] = []
        self.history: list[dict[str, Any]] = []
        self._checked = False
        # Plain SGD (no momentum) with a model that can apply it while computing its
        # gradients. Fixed for the whole run, so a resumed run takes the same path.
        self._fused = (getattr(optimizer, "plain_lr", None) is not None
                       and callable(getattr(model, "sgd_step", None)))

    # -- the loop ---------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        """Train until ``config.epochs`` are done or ``should_stop()`` is true between steps.

        Raises :class:`TrainingError` when the loss or a gradient is not finite, so keep
        the last checkpoint: the parameters may then be those after the failing update.

        The guard costs nothing per step beyond the loss: a non-finite gradient makes the
        parameters non-finite, which makes the next loss non-finite (blamed on the step
        before), and the parameters are checked whenever the caller may save them.
        """
        try:
            yield from self._run(should_stop)
        finally:  # also when the caller closes the generator or a step raises
            if self.augmented is not None:
                self.augmented.close()

    def _run(self, should_stop: Callable[[], bool]) -> Iterator[Event]:
        cfg = self.config
        while self.epoch < cfg.epochs:
            # Also when resuming mid-epoch: the schedule depends only on (epoch, epochs).
            self.optimizer.start_epoch(self.epoch, cfg.epochs)
            if self.order is None:  # not when resuming a run stopped before this epoch's
                # first step: its order is already drawn. The generator's state before
                # the draw is what checkpoints keep: the order is drawn again from it.
                self._order_rng = self.rng.bit_generator.state
                self.order = self._epoch_order()
            if self.augmented is not None:  # from this step: the same batches on a resume
                self.augmented.start(self.epoch, self.order, self.step, self.steps)
            self._epoch_started = time.perf_counter()
            yield EpochStarted(self.epoch, cfg.epochs, self.steps, float(self.optimizer.lr))
            while self.step < self.steps:
                if should_stop():
                    self._check_params()  # the caller saves this state: it must be sound
                    return
                loss = self._one_step()
                yield StepFinished(self.epoch, self.step, self.steps, loss)
            yield self._finish_epoch()
            if should_stop():
                return

    def _epoch_order(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """This epoch's batch order drawn from ``rng`` (the trainer's by default): the
        images ``need`` at a time with replacement, or as many whole shuffled passes as
        the steps need, each drawn straight into its slice (linear in the steps)."""
        rng = self.rng if rng is None else rng
        n, need = len(self.train), self.steps * self.config.batch_size
        if self.config.sampling == "replacement":
            return rng.integers(0, n, size=need, dtype=np.int64)
        first = rng.permutation(n)
        if len(first) >= need:
            return first
        order = np.empty(-(-need // n) * n, np.int64)  # more steps than one pass
        order[:n] = first
        for start in range(n, len(order), n):
            order[start:start + n] = rng.permutation(n)
        return order

    def _one_step(self) -> float:
        if self.augmented is not None:
            x, y = self.augmented.take()
        else:
            b = self.config.batch_size
            x, y = self.batches.take(self.order[self.step * b:(self.step + 1) * b])
        if self._fused:
            return self._fused_step(x, y)
        try:
            loss, grads = self.model.loss_and_grads(x, y)
        except Exception as exc:  # a broken plugin model: say so on the first step
            if self._checked or isinstance(exc, MnistkitError):
                raise
            raise self._broken("loss_and_grads", exc) from exc
        if not self._checked:
            check_step_output(self.model_name, self.model.params, loss, grads)
            self._checked = True
        loss = float(loss)
        if not math.isfinite(loss):
            if _all_finite(self.model.params):
                raise self._diverged(self.step + 1, f"the loss or a gradient is {loss}")
            # Finite parameters gave a finite loss last step: that step's update broke them.
            raise self._diverged(max(self.step, 1), "the loss or a gradient is not finite")
        self.optimizer.step(grads)
        self.step += 1
        self.losses.append(loss)
        return loss

    def _fused_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """Plain SGD applied by the model itself (``sgd_step``): the same step as
        ``loss_and_grads`` + ``optimizer.step`` up to rounding, without gradient buffers.
        A non-finite loss is blamed on this step: the parameters are past it already."""
        try:
            loss = float(self.model.sgd_step(x, y, self.optimizer.plain_lr))
        except Exception as exc:
            if self._checked or isinstance(exc, MnistkitError):
                raise
            raise self._broken("sgd_step", exc) from exc
        self._checked = True
        if not math.isfinite(loss):
            raise self._diverged(self.step + 1, f"the loss or a gradient is {loss}")
        self.step += 1
        self.losses.append(loss)
        return loss

    def _broken(self, method: str, exc: Exception) -> PluginError:
        return PluginError(f"model {self.model_name!r}: {method} failed on the first step "
                           f"({exception_line(exc)})")

    def _check_params(self) -> None:
        """Raise :class:`TrainingError` when the last update made a parameter non-finite."""
        if not _all_finite(self.model.params):
            raise self._diverged(max(self.step, 1), "the loss or a gradient is not finite")

    def _diverged(self, step: int, what: str) -> TrainingError:
        return TrainingError(
            f"training diverged at epoch {self.epoch + 1}, step {step}: {what}. The learning "
            f"rate ({self.optimizer.lr:g}) is probably too high: try a smaller one "
            "(e.g. -o lr=0.01)")

    def _finish_epoch(self) -> EpochFinished:
        self._check_params()
        cfg = self.config
        epoch_losses = self.losses[-self.steps:]
        sample = self.train.subset(slice(0, TRAIN_ACCURACY_SAMPLE))
        record = EpochFinished(
            epoch=self.epoch + 1,
            train_loss=float(np.mean(epoch_losses)),
            train_accuracy=accuracy(self.model, sample.images, sample.labels, cfg.pixel_scale),
            val_accuracy=accuracy(self.model, self.val.images, self.val.labels, cfg.pixel_scale),
            lr=float(self.optimizer.lr),
            seconds=time.perf_counter() - self._epoch_started,
        )
        self.history.append(record.to_json())  # the run's history rows, as JSON
        self.epoch += 1
        self.step = 0
        self.order = None
        return record

    # -- resumable state ----------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The trainer's position as arrays (JSON text in a 0-d str array, no pickle).

        This epoch's batch order is kept as the generator state it was drawn from
        (``order_rng``), a few bytes whatever ``--steps-per-epoch`` is; an order restored
        from an older checkpoint, which holds the order itself, is saved as it came.
        """
        meta = {"epoch": self.epoch, "step": self.step, "history": self.history,
                "rng": self.rng.bit_generator.state}
        arrays = {"losses": np.asarray(self.losses, np.float64)}
        if self.order is not None and self._order_rng is not None:
            meta["order_rng"] = self._order_rng
        elif self.order is not None:
            arrays["order"] = self.order
        arrays["meta"] = np.array(json.dumps(meta))
        return arrays

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`state` export (or an older one holding the order)."""
        try:
            meta = json.loads(str(arrays["meta"]))
        except RecursionError:
            raise ValueError("the trainer record is nested too deeply") from None
        self.epoch, self.step, self.history = meta["epoch"], meta["step"], meta["history"]
        self.rng.bit_generator.state = meta["rng"]
        self.losses = [float(v) for v in arrays["losses"]]
        self.order, self._order_rng = None, None
        if "order" in arrays:
            self.order = arrays["order"].astype(np.int64)
        elif meta.get("order_rng") is not None:
            drawn_from = np.random.Generator(type(self.rng.bit_generator)())
            drawn_from.bit_generator.state = meta["order_rng"]
            self._order_rng = meta["order_rng"]
            self.order = self._epoch_order(drawn_from)
        if self.step and self.order is None:
            raise TrainingError("checkpoint is mid-epoch but has no batch order")


#: Bytes held per index of the batch order, and per step loss (a float in a list).
_ORDER_BYTES, _LOSS_BYTES = 8, 32


def _check_sizes(config: TrainConfig, steps: int, n_train: int) -> None:
    """Refuse, before anything is drawn, a pixel scale that is not a positive finite
    number and steps whose batch order and step losses cannot fit in memory."""
    scale = config.pixel_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
            math.isfinite(scale) and scale > 0):
        raise OptionsError(f"the pixel scale must be a positive finite number; got {scale!r}")
    indices = steps * config.batch_size
    if config.sampling == "shuffle":
        indices = max(indices, n_train)
    needed = indices * _ORDER_BYTES + config.epochs * steps * _LOSS_BYTES
    check_fits(needed, f"{setting('epochs')} {config.epochs} x {setting('steps_per_epoch')} "
               f"{steps} x {setting('batch_size')} {config.batch_size} (a batch order of "
               f"{indices} images and "
               f"{config.epochs * steps} step losses)", "; ask for fewer steps or epochs")


def _all_finite(arrays: dict[str, np.ndarray]) -> bool:
    return all(np.isfinite(a).all() for a in arrays.values())


def check_step_output(model_name: str, params: dict[str, np.ndarray], loss: Any,
                      grads: Any) -> None:
    """Raise :class:`PluginError` when a model's ``loss_and_grads`` breaks the contract
    (the first of :func:`mnistkit.contracts.step_problems`, naming the model)."""
    problems = step_problems(params, loss, grads)
    if problems:
        raise PluginError(f"model {model_name!r}: {problems[0]}")

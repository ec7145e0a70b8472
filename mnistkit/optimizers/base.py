"""The optimizer contract.

An optimizer is built by ``factory(params, options)`` with the model's ``params``
dict, which it updates in place. It has:

- ``step(grads)``: apply one update from a dict with the keys of ``params``. It may
  overwrite the gradient arrays (the trainer does not use them after the step).
- ``state_dict() -> dict[str, np.ndarray]``: everything needed to resume (momentum
  buffers, step counters as 0-d arrays). Keys are plain strings; values numeric arrays.
- ``load_state_dict(state)``: restore what ``state_dict`` returned.
- ``start_epoch(epoch, epochs)``: called by the trainer before each epoch
  (0-based), and again when a run resumes in the middle of an epoch, so a
  learning-rate schedule can act. It must depend only on its arguments (and the
  options), not on how often it was called; it may do nothing.
- ``lr``: the learning rate in use now (for progress display).

:class:`BaseOptimizer` provides the bookkeeping; subclasses write ``step``.
:class:`ScheduledOptimizer` adds a learning rate that follows a per-epoch schedule,
configured by options that extend :class:`LearningRateOptions`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from mnistkit.options import check_declared, option


@runtime_checkable
class Optimizer(Protocol):
    """What the trainer and checkpoints need from an optimizer."""

    lr: float

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Update the parameters in place from their gradients."""
        ...

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state as numeric arrays, for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        ...

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Hook called before each epoch (0-based) of ``epochs``."""
        ...


def scheduled_lr(base_lr: float, schedule: str, epoch: int, epochs: int,
                 step_size: int = 1, gamma: float = 0.5) -> float:
    """Learning rate for ``epoch`` (0-based) of ``epochs`` under ``schedule``.

    - ``constant``: ``base_lr``.
    - ``step``: ``base_lr * gamma ** (epoch // step_size)``.
    - ``cosine``: ``base_lr * (1 + cos(pi * epoch / epochs)) / 2``.

    Raises ``ValueError`` for an unknown schedule, ``epoch < 0`` or ``epochs < 1``, and
    (whatever the schedule, so a bad setting never waits for its first use)
    ``step_size < 1`` or ``gamma`` outside ``(0, 1]``.
    """
    if epoch < 0 or epochs < 1:
        raise ValueError(f"epoch {epoch} of {epochs}: need epoch >= 0 and epochs >= 1")
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1; got {step_size}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1]; got {gamma}")
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    raise ValueError(f"unknown schedule {schedule!r}")


class BaseOptimizer:
    """Shared bookkeeping: the params, a learning rate and per-parameter state buffers."""

    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        self.params = params
        self.lr = float(lr)
        self.state: dict[str, np.ndarray] = {}

    def step(self, grads: dict[str, np.ndarray]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """No schedule by default."""

    def buffer(self, key: str, like: np.ndarray) -> np.ndarray:
        """The state array ``key``, created as zeros shaped like ``like`` on first use."""
        buf = self.state.get(key)
        if buf is None:
            buf = self.state[key] = np.zeros_like(like)
        return buf

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state arrays."""
        return {k: np.array(v, copy=True) for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state with copies of ``state``.

        Raises ``ValueError`` for non-numeric or non-finite arrays, and for a buffer named
        ``<anything>.<parameter>`` whose shape or dtype differs from that parameter's
        (so a damaged checkpoint fails here, not in the middle of a step).
        """
        for key, value in state.items():
            value = np.asarray(value)
            if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
                raise ValueError(f"{key!r} must hold finite numbers")
            param = self.params.get(key.rpartition(".")[2])
            if param is not None and "." in key and (
                    value.shape != param.shape or value.dtype != param.dtype):
                raise ValueError(f"{key!r} is {value.dtype} {value.shape}, its parameter is "
                                 f"{param.dtype} {param.shape}")
        self.state = {k: np.array(v, copy=True) for k, v in state.items()}


@dataclasses.dataclass
class LearningRateOptions:
    """The learning rate and its decay per epoch: extend this dataclass for an optimizer's
    options (override ``lr`` to change its default; call ``super().__post_init__()``)."""

    lr: float = option(0.1, "learning rate", gt=0)
    schedule: Literal["constant", "step", "cosine"] = option(
        "constant", "learning-rate decay per epoch")
    step_size: int = option(1, "epochs per step decay", ge=1)
    gamma: float = option(0.5, "factor per step decay", gt=0, le=1)

    def __post_init__(self) -> None:
        """Check the declared bounds of every field, a subclass's too (see
        :func:`mnistkit.options.check_declared`), and that ``schedule`` is a known one."""
        check_declared(self)
        if self.schedule not in ("constant", "step", "cosine"):
            raise ValueError(f"schedule must be one of constant, step, cosine; got "
                             f"{self.schedule!r}")

    def lr_at(self, epoch: int, epochs: int) -> float:
        """The learning rate for ``epoch`` (0-based) of ``epochs``."""
        return scheduled_lr(self.lr, self.schedule, epoch, epochs, self.step_size, self.gamma)


class ScheduledOptimizer(BaseOptimizer):
    """A :class:`BaseOptimizer` whose ``lr`` follows ``options.lr_at`` each epoch."""

    def __init__(self, params: dict[str, np.ndarray], options: LearningRateOptions) -> None:
        super().__init__(params, options.lr)
        self.options = options

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Set ``lr`` from the schedule."""
        self.lr = self.options.lr_at(epoch, epochs)

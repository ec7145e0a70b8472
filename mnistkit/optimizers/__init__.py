"""Built-in optimizers and the optimizer contract (see :mod:`mnistkit.optimizers.base`)."""

from mnistkit.optimizers.base import (
    BaseOptimizer,
    LearningRateOptions,
    Optimizer,
    ScheduledOptimizer,
    scheduled_lr,
)

__all__ = ["BaseOptimizer", "LearningRateOptions", "Optimizer", "ScheduledOptimizer",
           "scheduled_lr"]

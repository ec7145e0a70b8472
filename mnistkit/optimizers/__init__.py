"""Built-in optimizers and the optimizer contract (see :mod:`mnistkit.optimizers.base`)."""

from mnistkit.optimizers.base import BaseOptimizer, Optimizer, scheduled_lr

__all__ = ["BaseOptimizer", "Optimizer", "scheduled_lr"]

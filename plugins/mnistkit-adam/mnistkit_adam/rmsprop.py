"""RMSprop: divide each step by a running root-mean-square of the gradient.

Per parameter ``p`` with gradient ``g``::

    v <- decay * v + (1 - decay) * g^2
    without momentum:  p <- p - lr * g / (sqrt(v) + eps)
    with momentum mu:  b <- mu * b + g / (sqrt(v) + eps);   p <- p - lr * b

The learning rate follows ``schedule`` per epoch. The state (``v.<name>``, and
``b.<name>`` with momentum) is exported for resuming.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from mnistkit.optimizers.base import BaseOptimizer, scheduled_lr


@dataclasses.dataclass
class RMSpropOptions:
    """Options of ``rmsprop``."""

    lr: float = dataclasses.field(default=1e-3, metadata={"help": "learning rate (> 0)"})
    decay: float = dataclasses.field(
        default=0.99, metadata={"help": "decay of the mean square, [0, 1)"})
    eps: float = dataclasses.field(default=1e-8, metadata={"help": "added to the RMS (> 0)"})
    momentum: float = dataclasses.field(default=0.0, metadata={"help": "momentum in [0, 1)"})
    schedule: Literal["constant", "step", "cosine"] = dataclasses.field(
        default="constant", metadata={"help": "learning-rate decay per epoch"})
    step_size: int = dataclasses.field(default=1, metadata={"help": "epochs per step decay"})
    gamma: float = dataclasses.field(default=0.5, metadata={"help": "factor per step decay"})

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay must be in [0, 1); got {self.decay}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0; got {self.eps}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.step_size < 1:
            raise ValueError(f"step_size must be >= 1; got {self.step_size}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1]; got {self.gamma}")


class RMSprop(BaseOptimizer):
    """RMSprop over a params dict, updated in place (see the module docstring)."""

    def __init__(self, params: dict[str, np.ndarray], options: RMSpropOptions) -> None:
        super().__init__(params, options.lr)
        self.options = options
        self._scratch = {k: np.empty_like(v) for k, v in params.items()}

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Set ``lr`` from the schedule."""
        o = self.options
        self.lr = scheduled_lr(o.lr, o.schedule, epoch, epochs, o.step_size, o.gamma)

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Apply one RMSprop update to every parameter."""
        o = self.options
        for key, p in self.params.items():
            g, tmp = grads[key], self._scratch[key]
            v = self.buffer(f"v.{key}", p)
            v *= o.decay
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - o.decay
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += o.eps
            np.divide(g, tmp, out=tmp)
            if o.momentum:
                b = self.buffer(f"b.{key}", p)
                b *= o.momentum
                b += tmp
                np.multiply(b, self.lr, out=tmp)
            else:
                tmp *= self.lr
            p -= tmp

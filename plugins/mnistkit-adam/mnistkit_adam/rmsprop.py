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

import numpy as np

from mnistkit.optimizers.base import LearningRateOptions, ScheduledOptimizer


@dataclasses.dataclass
class RMSpropOptions(LearningRateOptions):
    """Options of ``rmsprop``: ``lr``, ``schedule``, ``step_size``, ``gamma``, then these."""

    lr: float = dataclasses.field(default=1e-3, metadata={"help": "learning rate (> 0)"})
    decay: float = dataclasses.field(
        default=0.99, metadata={"help": "decay of the mean square, [0, 1)"})
    eps: float = dataclasses.field(default=1e-8, metadata={"help": "added to the RMS (> 0)"})
    momentum: float = dataclasses.field(default=0.0, metadata={"help": "momentum in [0, 1)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay must be in [0, 1); got {self.decay}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0; got {self.eps}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")


class RMSprop(ScheduledOptimizer):
    """RMSprop over a params dict, updated in place (see the module docstring)."""

    def __init__(self, params: dict[str, np.ndarray], options: RMSpropOptions) -> None:
        super().__init__(params, options)
        self._scratch = {k: np.empty_like(v) for k, v in params.items()}

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

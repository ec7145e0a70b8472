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
from mnistkit.options import option


@dataclasses.dataclass
class RMSpropOptions(LearningRateOptions):
    """Options of ``rmsprop``: ``lr``, ``schedule``, ``step_size``, ``gamma``, then these."""

    lr: float = option(1e-3, "learning rate", gt=0)
    decay: float = option(0.99, "decay of the mean square", ge=0, lt=1)
    eps: float = option(1e-8, "added to the RMS", gt=0)
    momentum: float = option(0.0, "momentum", ge=0, lt=1)

    # LearningRateOptions.__post_init__ checks the bounds declared here as well.


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

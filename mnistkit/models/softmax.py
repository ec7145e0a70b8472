"""The linear softmax classifier: 784 -> 10, as in the original blog post.

Shapes (B = batch, D = inputs, C = classes)::

    x (B, D)   W (D, C)   b (C,)
    s  = x @ W + b                                (B, C)
    L  = mean_i -log softmax(s)_i[y_i] + 0.5 * reg * |W|^2
    ds = (softmax(s) - onehot(y)) / B
    dW = x.T @ ds + reg * W        db = sum_i ds

Weights start at ``N(0, init_std^2)``; biases at 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mnistkit.models.base import softmax_cross_entropy
from mnistkit.options import check_declared, option


@dataclasses.dataclass
class SoftmaxOptions:
    """Options of ``softmax``."""

    reg: float = option(1e-5, "L2 strength on W", ge=0)
    init_std: float = option(1e-4, "std of initial W", ge=0)

    def __post_init__(self) -> None:
        check_declared(self)


class SoftmaxClassifier:
    """Linear softmax classifier (see the module docstring for the math)."""

    def __init__(self, options: SoftmaxOptions, rng: np.random.Generator,
                 n_inputs: int = 784, n_classes: int = 10) -> None:
        self.options = options
        self.params = {
            "W": (rng.standard_normal((n_inputs, n_classes)) * options.init_std).astype(np.float32),
            "b": np.zeros(n_classes, np.float32),
        }

    @classmethod
    def estimate_memory(cls, options: SoftmaxOptions, n_inputs: int, n_classes: int,
                        batch_size: int) -> dict[str, int]:
        """Bytes of the float32 parameters, and of the rest: the float64 initial draw, or
        the gradients and the per-batch scores and temporaries of a step."""
        params = 4 * (n_inputs * n_classes + n_classes)
        step = 2 * params + batch_size * n_classes * 16
        return {"params": params, "work": max(16 * n_inputs * n_classes, step)}

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean regularised cross-entropy on ``(x, y)`` and the gradients of ``W`` and ``b``."""
        W, b, reg = self.params["W"], self.params["b"], self.options.reg
        data_loss, ds = softmax_cross_entropy(x @ W + b, y)
        loss = data_loss + 0.5 * reg * float(np.vdot(W, W))
        return loss, {"W": x.T @ ds + reg * W, "b": ds.sum(axis=0)}

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores ``(B, C)``."""
        return x @ self.params["W"] + self.params["b"]

    def first_layer(self) -> np.ndarray:
        """``W`` ``(784, 10)``: one template per class."""
        return self.params["W"]

    def export_layers(self) -> list:
        """``scores`` as one layer for ``mnistkit export``."""
        from mnistkit.export import Dense

        return [Dense(self.params["W"], self.params["b"])]

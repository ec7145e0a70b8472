"""A multi-layer perceptron: 784 -> H1 -> ... -> Hn -> 10, ReLU, optional dropout.

Shapes (B = batch, a_0 = x of shape (B, D), layers i = 1..n, then the output layer o)::

    h_i = relu(a_{i-1} @ W_i + b_i)               (B, H_i)
    a_i = h_i * mask_i / keep   (training, dropout > 0; keep = 1 - dropout)
    s   = a_n @ W_o + b_o                         (B, C)
    L   = mean_j -log softmax(s)_j[y_j] + 0.5 * reg * sum_i |W_i|^2

Backward::

    ds    = (softmax(s) - onehot(y)) / B
    dW_o  = a_n.T @ ds + reg * W_o        db_o = sum_j ds
    da_n  = ds @ W_o.T
    dh_i  = da_i * mask_i / keep * (h_i > 0)
    dW_i  = a_{i-1}.T @ dh_i + reg * W_i  db_i = sum_j dh_i
    da_{i-1} = dh_i @ W_i.T

Parameters are ``W1, b1, ..., Wn, bn`` for the hidden layers and ``W{n+1}, b{n+1}``
for the output layer. Weights start with He initialisation ``N(0, 2 / fan_in)``,
biases at 0. Dropout masks come from the generator the factory receives (kept as
``self.rng``, which the trainer checkpoints), so training is reproducible and the
gradient check can replay them; ``scores`` never drops anything. Intermediate arrays
are buffers reused from batch to batch; everything is computed in the parameters'
dtype (float32 in training, float64 in the gradient check).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mnistkit.models.base import softmax_cross_entropy
from mnistkit.options import check_declared, option


@dataclasses.dataclass
class MLPOptions:
    """Options of ``mlp``."""

    layers: tuple[int, ...] = option((512, 256), "hidden layer sizes, e.g. 512,256", ge=1)
    dropout: float = option(0.3, "probability of dropping a hidden unit while training",
                            ge=0, lt=1)
    reg: float = option(1e-4, "L2 strength on weights", ge=0)
    init_scale: float = option(1.0, "multiplier on the He std sqrt(2/fan_in)", gt=0)

    def __post_init__(self) -> None:
        check_declared(self)  # the bounds declared above
        if not self.layers:
            raise ValueError("layers needs at least one hidden layer size, e.g. 256")


class MLP:
    """Multi-layer ReLU perceptron (see the module docstring for the math)."""

    def __init__(self, options: MLPOptions, rng: np.random.Generator,
                 n_inputs: int = 784, n_classes: int = 10) -> None:
        self.options = options
        self.rng = rng
        sizes = (n_inputs, *options.layers, n_classes)
        self.n_layers = len(sizes) - 1
        self.params: dict[str, np.ndarray] = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            std = np.sqrt(2.0 / fan_in) * options.init_scale
            self.params[f"W{i}"] = (rng.standard_normal((fan_in, fan_out)) * std).astype(
                np.float32)
            self.params[f"b{i}"] = np.zeros(fan_out, np.float32)
        self._buffers: dict[tuple, dict[str, np.ndarray]] = {}

    @classmethod
    def estimate_memory(cls, options: MLPOptions, n_inputs: int, n_classes: int,
                        batch_size: int) -> dict[str, int]:
        """mnistkit's optional memory estimate: bytes of the float32 parameters, and of the
        rest (the largest float64 initial draw, or the gradients and the per-batch
        activations, their gradients and dropout masks of a step)."""
        sizes = (n_inputs, *options.layers, n_classes)
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        params = 4 * sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairs)
        build = 16 * max(fan_in * fan_out for fan_in, fan_out in pairs)
        step = params + 12 * batch_size * sum(sizes[1:])
        return {"params": params, "work": max(build, step)}

    def _work(self, batch: int, dtype: np.dtype) -> dict[str, np.ndarray]:
        """Reusable arrays for a batch size and dtype (one size kept at a time)."""
        key = (batch, np.dtype(dtype))
        work = self._buffers.get(key)
        if work is None:
            work = {f"d{k}": np.empty_like(v, dtype=dtype) for k, v in self.params.items()}
            for i in range(1, self.n_layers + 1):
                width = self.params[f"W{i}"].shape[1]
                work[f"h{i}"] = np.empty((batch, width), dtype)
                work[f"dh{i}"] = np.empty((batch, width), dtype)
                if i < self.n_layers and self.options.dropout:
                    work[f"mask{i}"] = np.empty((batch, width), dtype)
            self._buffers = {key: work}
        return work

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean regularised cross-entropy on ``(x, y)`` (dropout active) and all gradients."""
        p, n, reg = self.params, self.n_layers, self.options.reg
        work = self._work(x.shape[0], p["W1"].dtype)
        keep = 1.0 - self.options.dropout
        # forward: h_i holds the (dropped-out) activations a_i
        a = x
        for i in range(1, n + 1):
            h = work[f"h{i}"]
            np.matmul(a, p[f"W{i}"], out=h)
            h += p[f"b{i}"]
            if i < n:
                np.maximum(h, 0, out=h)
                if self.options.dropout:
                    mask = work[f"mask{i}"]
                    self.rng.random(dtype=mask.dtype, out=mask)
                    np.less(mask, keep, out=mask)
                    mask *= 1.0 / keep
                    h *= mask
            a = h
        data_loss, ds = softmax_cross_entropy(a, y)
        loss = data_loss + 0.5 * reg * sum(
            float(np.vdot(p[f"W{i}"], p[f"W{i}"])) for i in range(1, n + 1))
        # backward
        grads = {k: work[f"d{k}"] for k in p}
        delta = ds
        for i in range(n, 0, -1):
            below = x if i == 1 else work[f"h{i - 1}"]
            np.matmul(below.T, delta, out=grads[f"W{i}"])
            grads[f"W{i}"] += reg * p[f"W{i}"]
            np.sum(delta, axis=0, out=grads[f"b{i}"])
            if i > 1:
                dh = work[f"dh{i - 1}"]
                np.matmul(delta, p[f"W{i}"].T, out=dh)
                if self.options.dropout:
                    dh *= work[f"mask{i - 1}"]
                dh *= below > 0
                delta = dh
        return loss, grads

    def _hidden_layers(self, x: np.ndarray) -> np.ndarray:
        a = x
        for i in range(1, self.n_layers):
            a = np.maximum(a @ self.params[f"W{i}"] + self.params[f"b{i}"], 0)
        return a

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores ``(B, C)`` without dropout (a new array)."""
        n = self.n_layers
        return self._hidden_layers(x) @ self.params[f"W{n}"] + self.params[f"b{n}"]

    def first_layer(self) -> np.ndarray:
        """``W1`` ``(784, H1)``: one 28x28 template per first-layer unit."""
        return self.params["W1"]

    def hidden(self, x: np.ndarray) -> np.ndarray:
        """Activations of the last hidden layer ``(B, Hn)``, without dropout."""
        return self._hidden_layers(x)

    def export_layers(self) -> list:
        """``scores`` as layers for ``mnistkit export`` (no dropout: it is training-only);
        the last hidden layer's ReLU output is ``hidden``, as :meth:`hidden` gives."""
        from mnistkit.export import Dense, ReLU

        p, n = self.params, self.n_layers
        layers: list = []
        for i in range(1, n):
            layers += [Dense(p[f"W{i}"], p[f"b{i}"]),
                       ReLU(output="hidden" if i == n - 1 else None)]
        return [*layers, Dense(p[f"W{n}"], p[f"b{n}"])]

"""The two-layer ReLU network: 784 -> H -> 10, softmax cross-entropy, L2 on the weights.

Shapes (B = batch, D = inputs, H = hidden units, C = classes)::

    x  (B, D)     W1 (D, H)  b1 (H,)     W2 (H, C)  b2 (C,)
    h  = relu(x @ W1 + b1)                       (B, H)
    s  = h @ W2 + b2                             (B, C)
    L  = mean_i -log softmax(s)_i[y_i] + 0.5 * reg * (|W1|^2 + |W2|^2)

Backward::

    ds  = (softmax(s) - onehot(y)) / B           (B, C)
    dW2 = h.T @ ds + reg * W2      db2 = sum_i ds
    dh  = (ds @ W2.T) * (h > 0)                  (B, H)
    dW1 = x.T @ dh + reg * W1      db1 = sum_i dh

:meth:`TwoLayerNet.loss_and_grads` is this, line by line; every optimizer with state
(momentum, Adam) trains through it. With plain SGD (no momentum) the trainer calls
:meth:`TwoLayerNet.sgd_step` instead, the measured fast path of the default run: the same
step with reused buffers, transposed scores and the update of W1 folded into its gradient
product, ``W1 = (1 - lr*reg) W1 - lr x.T @ dh``. The model conformance kit
(:mod:`mnistkit.testing`) checks that it equals ``loss_and_grads`` followed by SGD.

Weights start with He initialisation, ``N(0, 2 / fan_in) * init_scale``; biases at 0.
The parameters, and the buffers of the fast path, start on their own cache lines (see
:mod:`mnistkit.buffers`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mnistkit.blas import gemm_update
from mnistkit.buffers import CACHE_LINE, cache_aligned
from mnistkit.models.base import softmax_cross_entropy
from mnistkit.options import check_declared, option


@dataclasses.dataclass
class TwoLayerOptions:
    """Options of ``twolayer``."""

    hidden_size: int = option(256, "hidden ReLU units", ge=1)
    reg: float = option(1e-5, "L2 strength on W1, W2", ge=0)
    init_scale: float = option(1.0, "multiplier on the He std sqrt(2/fan_in)", gt=0)

    def __post_init__(self) -> None:
        check_declared(self)


def relu(z: np.ndarray) -> np.ndarray:
    """``max(z, 0)`` elementwise (a new array)."""
    return np.maximum(z, 0)


class TwoLayerNet:
    """784 -> H -> 10 ReLU network (see the module docstring for the math)."""

    def __init__(self, options: TwoLayerOptions, rng: np.random.Generator,
                 n_inputs: int = 784, n_classes: int = 10) -> None:
        self.options = options
        hidden = options.hidden_size
        he1 = np.sqrt(2.0 / n_inputs) * options.init_scale
        he2 = np.sqrt(2.0 / hidden) * options.init_scale
        self.params = cache_aligned({
            "W1": (rng.standard_normal((n_inputs, hidden)) * he1).astype(np.float32),
            "b1": np.zeros(hidden, np.float32),
            "W2": (rng.standard_normal((hidden, n_classes)) * he2).astype(np.float32),
            "b2": np.zeros(n_classes, np.float32),
        })
        self._buffers: dict[tuple, dict[str, np.ndarray]] = {}  # of sgd_step, see _work

    @classmethod
    def estimate_memory(cls, options: TwoLayerOptions, n_inputs: int, n_classes: int,
                        batch_size: int) -> dict[str, int]:
        """Bytes of the float32 parameters, and of the rest the model allocates: the
        float64 draws of the initialisation (and the aligned copy), or, when training on
        ``batch_size`` images, the larger of a step of ``loss_and_grads`` and one of
        ``sgd_step``."""
        hidden = options.hidden_size
        weights = n_inputs * hidden + hidden * n_classes
        params = 4 * (weights + hidden + n_classes)
        build = 16 * weights + params
        # NumPy's own buffers (its ufunc loops take up to 8192 elements) and the softmax's
        # temporaries (a few per image)
        temporaries = 65536 + 64 * batch_size
        # loss_and_grads: new gradients, two more (D, H) arrays while dW1 is summed
        # (x.T @ dh and reg * W1), 13 bytes per hidden unit and image (h and dh, and
        # while dh is made, ds @ W2.T and h > 0) and 8 per class (s, s + b2).
        readable = (params + 8 * n_inputs * hidden
                    + batch_size * (13 * hidden + 8 * n_classes) + temporaries)
        # sgd_step: its buffers (see _work), twice while they are copied onto their cache
        # lines. (Without the bundled OpenBLAS, gemm_update adds a (D, H) temporary,
        # which `readable` covers.)
        buffers = batch_size * (9 * hidden + 4 * n_classes + 4) + 4 * (
            hidden * n_classes + hidden + n_classes)
        fused = 2 * buffers + 8 * CACHE_LINE + temporaries
        return {"params": params, "work": max(build, readable, fused)}

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean regularised cross-entropy on ``(x, y)`` and the gradient of every parameter
        (new arrays): the module docstring's math, line by line."""
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        reg = self.options.reg
        h = relu(x @ W1 + b1)
        data_loss, ds = softmax_cross_entropy(h @ W2 + b2, y)  # ds = (softmax(s) - onehot(y)) / B
        loss = data_loss + 0.5 * reg * float(np.vdot(W1, W1) + np.vdot(W2, W2))
        dW2 = h.T @ ds + reg * W2
        db2 = ds.sum(axis=0)
        dh = (ds @ W2.T) * (h > 0)
        dW1 = x.T @ dh + reg * W1
        db1 = dh.sum(axis=0)
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores ``(B, C)`` (a new array)."""
        p = self.params
        return relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    def first_layer(self) -> np.ndarray:
        """``W1`` ``(784, H)``: one 28x28 template per hidden unit."""
        return self.params["W1"]

    def hidden(self, x: np.ndarray) -> np.ndarray:
        """Hidden activations ``(B, H)``."""
        return relu(x @ self.params["W1"] + self.params["b1"])

    def export_layers(self) -> list:
        """``scores`` as layers for ``mnistkit export``; the ReLU output is ``hidden``."""
        from mnistkit.export import Dense, ReLU

        p = self.params
        return [Dense(p["W1"], p["b1"]), ReLU(output="hidden"), Dense(p["W2"], p["b2"])]

    # -- the fast path of plain SGD ---------------------------------------------------
    # What follows is tuned, and kept only where its speed is measured: the default
    # `mnistkit train` run (plain SGD) spends most of its time here (benchmarks/ab.py,
    # README, Performance). It computes what loss_and_grads computes, into reused,
    # cache-aligned buffers, with the scores transposed, and applies the SGD update as it
    # goes. The model conformance kit (mnistkit.testing.models, "extras") proves it equals
    # loss_and_grads followed by SGD.step; read loss_and_grads for the math.

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One plain SGD step ``p -= lr * dL/dp`` on every parameter, in place; returns the
        loss before the step. Equal to ``loss_and_grads`` followed by ``SGD.step`` up to
        rounding, but W1's update is one accumulating product (``W1 = (1 - lr*reg) * W1 -
        lr * x.T @ dh``, see :mod:`mnistkit.blas`): its gradient never goes through memory.
        """
        p, reg = self.params, self.options.reg
        work = self._work(x.shape[0], p["W1"].dtype)
        loss, ds, dh = self._loss_and_deltas(x, y, work)  # dh uses W2 before its update
        decay = 1.0 - lr * reg
        gemm_update(p["W1"], x, dh, alpha=-lr, beta=decay, trans_a=True)
        # The small ones in NumPy: a foreign call costs more than these few operations.
        h, ones, dW2, db2, db1 = (work[k] for k in ("h", "ones", "dW2", "db2", "db1"))
        np.matmul(h.T, ds, out=dW2)
        dW2 *= -lr
        p["W2"] *= decay
        p["W2"] += dW2
        np.matmul(ds.T, ones, out=db2)
        db2 *= -lr
        p["b2"] += db2
        np.matmul(ones, dh, out=db1)
        db1 *= -lr
        p["b1"] += db1
        return loss

    def _work(self, batch: int, dtype: np.dtype) -> dict[str, np.ndarray]:
        """The buffers of ``sgd_step`` for a batch size and dtype (allocated once)."""
        key = (batch, np.dtype(dtype))
        work = self._buffers.get(key)
        if work is None:
            p = self.params
            hidden, classes = p["W2"].shape
            work = cache_aligned({
                "ones": np.ones(batch, dtype),  # ones @ g sums the rows of g (a fast gemv)
                "h": np.empty((batch, hidden), dtype),
                "s_t": np.empty((classes, batch), dtype),  # scores, transposed (see below)
                "dh": np.empty((batch, hidden), dtype),
                "active": np.empty((batch, hidden), bool),  # h > 0
                # -lr times the gradients of W2, b2 and b1 (W1's goes straight into W1)
                **{f"d{k}": np.empty_like(p[k], dtype=dtype) for k in ("W2", "b2", "b1")},
            })
            self._buffers = {key: work}  # keep one size: the last batch of an epoch is rare
        return work

    def _forward(self, x: np.ndarray, work: dict[str, np.ndarray]) -> np.ndarray:
        """The hidden layer into ``work["h"]``; returns the scores transposed, ``(C, B)``:
        the softmax is faster that way round, and BLAS takes the transposes for free."""
        p = self.params
        h, s_t = work["h"], work["s_t"]
        np.matmul(x, p["W1"], out=h)
        h += p["b1"]
        np.maximum(h, 0, out=h)
        np.matmul(p["W2"].T, h.T, out=s_t)
        s_t += p["b2"][:, None]
        return s_t

    def _loss_and_deltas(self, x: np.ndarray, y: np.ndarray,
                         work: dict[str, np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
        """The loss and the gradients of the scores ``ds`` ``(B, C)`` (a transposed view)
        and of the hidden layer ``dh``."""
        p, reg = self.params, self.options.reg
        loss, ds_t = softmax_cross_entropy(self._forward(x, work), y, class_axis=0)
        if reg:
            loss += 0.5 * reg * float(np.vdot(p["W1"], p["W1"]) + np.vdot(p["W2"], p["W2"]))
        h, dh = work["h"], work["dh"]
        np.matmul(ds_t.T, p["W2"].T, out=dh)
        dh *= np.greater(h, 0, out=work["active"])
        return loss, ds_t.T, dh

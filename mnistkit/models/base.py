"""The model contract, and helpers every model gets for free.

A model is any object with:

- ``params``: ``dict[str, np.ndarray]`` of floating-point arrays. The optimizer updates
  them in place, checkpoints save them, so the model must read them from this dict.
- ``loss_and_grads(x, y) -> (loss, grads)``: ``x`` is ``(batch, n_inputs)`` floating
  point (the dtype of the params), ``y`` is ``(batch,)`` integer class indices.
  Returns the mean loss (a Python float) and a dict with exactly the keys of
  ``params``, each gradient the same shape and dtype as its parameter. The returned
  arrays may be buffers the model reuses on the next call, and the optimizer may
  overwrite them (so never return a parameter, or anything the model reads later).
- ``scores(x) -> (batch, n_classes)``: unnormalised class scores (logits), used for
  prediction and evaluation. Must not depend on training-only randomness (dropout).

Optional, used by ``mnistkit visualise``:

- ``first_layer() -> (n_inputs, units)``: the weights that look at the pixels.
- ``hidden(x) -> (batch, units)``: an internal representation (for embeddings).

Models should compute in the dtype of their parameters (float32 for training,
float64 when the gradient check casts them), so the same code is checked and run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Model(Protocol):
    """What the trainer, evaluator and checkpoints need from a model."""

    params: dict[str, np.ndarray]

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss over the batch and the gradient of every parameter."""
        ...

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Class scores ``(batch, n_classes)`` for inputs ``(batch, n_inputs)``."""
        ...


# exp() of very negative numbers produces subnormal floats, which are up to 100x slower
# on x86; below this floor the probability is < 1e-34 anyway, so clip there first.
EXP_FLOOR = -80.0


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities of ``scores`` (a new array, numerically stable)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.maximum(shifted, EXP_FLOOR, out=shifted)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray,
                          class_axis: int = 1) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``scores`` against labels ``y`` and its gradient.

    ``scores`` is ``(batch, classes)``, or ``(classes, batch)`` with ``class_axis=0``
    (faster: NumPy reduces across rows in vectorised passes, but along a row of 10 one
    element at a time). Overwrites ``scores`` with the gradient
    ``(softmax(scores) - onehot(y)) / batch`` and returns ``(loss, scores)``: the fused
    form saves a temporary per batch. With ``z = scores - max(scores)`` per example, the
    loss of an example is ``log(sum(exp(z))) - z[y]``. (The ufunc ``reduce`` calls are
    ``max``/``sum`` without their Python wrappers: this runs on tiny arrays once per
    step, where call overhead is the cost.)
    """
    if class_axis not in (0, 1):
        raise ValueError(f"class_axis must be 0 or 1; got {class_axis}")
    batch = scores.shape[1 - class_axis]
    examples = np.arange(batch)
    true_class_index = (examples, y) if class_axis == 1 else (y, examples)
    scores -= np.maximum.reduce(scores, axis=class_axis, keepdims=True)
    np.maximum(scores, EXP_FLOOR, out=scores)
    true_class = scores[true_class_index]  # z[y], a copy
    np.exp(scores, out=scores)
    sums = np.add.reduce(scores, axis=class_axis, keepdims=True)
    loss = float(np.add.reduce(np.log(sums), axis=None) - np.add.reduce(true_class)) / batch
    scores /= sums
    scores[true_class_index] -= 1.0
    scores *= 1.0 / batch
    return loss, scores

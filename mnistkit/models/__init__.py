"""Built-in models and the model contract (see :mod:`mnistkit.models.base`)."""

from mnistkit.models.base import Model, softmax, softmax_cross_entropy

__all__ = ["Model", "softmax", "softmax_cross_entropy"]

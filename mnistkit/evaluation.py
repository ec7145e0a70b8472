"""Accuracy, confusion matrix and per-class precision/recall of a model on a split."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mnistkit.batches import DEFAULT_PIXEL_SCALE, BatchMaker
from mnistkit.models.base import softmax

EVAL_BATCH = 1000


def predict_scores(model: Any, images: np.ndarray, pixel_scale: float = DEFAULT_PIXEL_SCALE,
                   batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Class scores ``(N, C)`` of ``model`` on uint8 ``images``, computed in chunks."""
    n = images.shape[0]
    labels = np.zeros(n, np.uint8)
    maker = BatchMaker(images, labels, min(batch_size, max(n, 1)), pixel_scale)
    chunks = [np.asarray(model.scores(maker.rows(i, min(i + batch_size, n))[0]), np.float32)
              for i in range(0, n, batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def accuracy(model: Any, images: np.ndarray, labels: np.ndarray,
             pixel_scale: float = DEFAULT_PIXEL_SCALE) -> float:
    """Fraction of ``images`` whose highest score is the true label."""
    if len(labels) == 0:
        return float("nan")
    predictions = predict_scores(model, images, pixel_scale).argmax(axis=1)
    return float(np.mean(predictions == labels))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts: row = true class, column = predicted class."""
    flat = labels.astype(np.int64) * n_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything ``mnistkit test`` reports about a model on one split."""

    accuracy: float
    loss: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray

    def to_dict(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        """JSON-ready summary (no per-image arrays)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": [
                {"class": name, "precision": float(p), "recall": float(r), "support": int(s)}
                for name, p, r, s in zip(class_names, self.precision, self.recall,
                                         self.confusion.sum(axis=1), strict=True)
            ],
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate(model: Any, images: np.ndarray, labels: np.ndarray, n_classes: int,
             pixel_scale: float = DEFAULT_PIXEL_SCALE) -> Evaluation:
    """Accuracy, mean cross-entropy, confusion matrix and per-class precision/recall."""
    scores = softmax(predict_scores(model, images, pixel_scale))
    predictions = scores.argmax(axis=1)
    true_probs = scores[np.arange(len(labels)), labels]
    loss = float(-np.mean(np.log(np.maximum(true_probs, np.finfo(np.float32).tiny))))
    confusion = confusion_matrix(labels, predictions, n_classes)
    diagonal = np.diag(confusion).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(diagonal / confusion.sum(axis=0))
        recall = np.nan_to_num(diagonal / confusion.sum(axis=1))
    return Evaluation(float(np.mean(predictions == labels)), loss, confusion, precision, recall,
                      predictions, scores)

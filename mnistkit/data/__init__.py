"""Data: the IDX format, the dataset value, and the bundled MNIST."""

from mnistkit.data.dataset import DIGIT_NAMES, SPLITS, Dataset, Split

__all__ = ["DIGIT_NAMES", "SPLITS", "Dataset", "Split"]

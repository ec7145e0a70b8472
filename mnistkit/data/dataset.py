"""The dataset value every dataset plugin returns."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from mnistkit.errors import DataError

SPLITS = ("train", "test")
DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray | slice) -> Split:
        """The images and labels at ``indices`` (a slice gives views, no copy)."""
        return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test splits with class names and where the data came from.

    ``source`` is a human-readable location (a folder, "bundled", a URL);
    ``files`` maps each file used to its MD5 (of the uncompressed content) when known;
    ``verified`` tells whether those sums were checked against published ones;
    ``expected_md5`` holds the published sums (file -> MD5) when the dataset has them;
    ``default_val_size`` is how many training images a run holds out for validation when
    the user gives no ``val_size`` (``None``: 10,000, or a sixth of the training images
    when that is fewer).
    """

    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...] = DIGIT_NAMES
    source: str = ""
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    verified: bool = False
    expected_md5: dict[str, str] = dataclasses.field(default_factory=dict)
    default_val_size: int | None = None

    def __post_init__(self) -> None:
        for split_name in SPLITS:
            validate_split(getattr(self, split_name), f"{self.name} {split_name}",
                           len(self.class_names))
        train_shape, test_shape = self.train.images.shape[1:], self.test.images.shape[1:]
        if train_shape != test_shape:
            raise DataError(f"{self.name}: train images are {_size(train_shape)} pixels but test "
                            f"images are {_size(test_shape)}")
        if self.default_val_size is not None and not (
                isinstance(self.default_val_size, int)
                and not isinstance(self.default_val_size, bool)
                and 0 <= self.default_val_size < max(len(self.train), 1)):
            raise DataError(f"{self.name}: default_val_size must be a count of images from 0 "
                            f"to {max(len(self.train) - 1, 0)}; got {self.default_val_size!r}")

    def split(self, name: str) -> Split:
        """The split called ``name`` (``train`` or ``test``)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose train or test")
        return getattr(self, name)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """SHA-256 over all images and labels: identifies the exact data a run used."""
        digest = hashlib.sha256()
        for split_name in SPLITS:
            split = self.split(split_name)
            digest.update(np.ascontiguousarray(split.images).data)
            digest.update(np.ascontiguousarray(split.labels).data)
        return digest.hexdigest()


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def validate_split(split: Split, what: str, n_classes: int) -> None:
    """Raise :class:`DataError` unless ``split`` has the shapes, dtypes and labels expected."""
    images, labels = split.images, split.labels
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{what}: images must be uint8 (N, rows, cols); got {images.dtype} "
                        f"{images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{what}: labels must be uint8 (N,); got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{what}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and int(labels.max()) >= n_classes:
        raise DataError(f"{what}: label {int(labels.max())} is outside 0..{n_classes - 1}")

"""Building a run's parts from the registry: model, optimizer, augmentation, and the
run's train/validation split of the dataset's training images.

Shared by training a run (:mod:`mnistkit.runs.session`) and loading a finished one
(:mod:`mnistkit.runs.loaded`), so both rebuild exactly the same model from a record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistkit import contracts
from mnistkit.contracts import call_plugin  # noqa: F401  (re-exported: mnistkit.runs.call_plugin)
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import DataError, OptionsError, setting
from mnistkit.evaluation import EVAL_BATCH
from mnistkit.registry import Registry
from mnistkit.runs.record import AugmentationRecord


def build_model(entry: Any, options: dict[str, Any], rng: np.random.Generator,
                dataset: Dataset, batch_size: int = EVAL_BATCH) -> Any:
    """Call a model factory with validated options and the dataset's input/class sizes,
    and check what it built (:func:`mnistkit.contracts.build_model`).

    A model whose memory estimate (``estimate_memory``, optional: see
    :mod:`mnistkit.memory`) for batches of ``batch_size`` (and of the evaluation's) does
    not fit in the available memory is refused before anything is allocated; a model
    without one that runs out of memory while being built is the same one-line error.
    Two images go through ``scores()``, so a plugin returning the wrong shape fails here,
    named, not later inside evaluation.
    """
    n_inputs = int(np.prod(dataset.train.images.shape[1:]))
    probe = dataset.train.images[:2].reshape(-1, n_inputs).astype(np.float32) / 255.0
    return contracts.build_model(entry, options, rng, n_inputs, dataset.n_classes,
                                 batch_size=max(batch_size, EVAL_BATCH), probe=probe)


def build_optimizer(entry: Any, options: dict[str, Any], params: dict[str, np.ndarray]) -> Any:
    """Call an optimizer factory with validated options on a model's parameters, and check
    it (:func:`mnistkit.contracts.build_optimizer`)."""
    return contracts.build_optimizer(entry, params, options)


def build_augmentation(found: AugmentationRecord, registry: Registry) -> dict[str, Any]:
    """The :class:`~mnistkit.training.Trainer` arguments of an augmentation: none for
    ``none``."""
    if found.name == "none":
        return {}
    entry = registry.get("augmentation", found.name)
    return {"augmentation": contracts.build_augmentation(entry, found.options),
            "augmentation_name": found.name}


#: Training images held out for validation when neither the user nor the dataset says.
DEFAULT_VAL_SIZE = 10_000


def val_size_for(dataset: Dataset, val_size: int | None) -> int:
    """The validation hold-out of a run: ``val_size`` when given, else the dataset's
    ``default_val_size``, else :data:`DEFAULT_VAL_SIZE` capped at a sixth of its training
    images (so a small dataset trains with no option)."""
    if val_size is not None:
        return val_size
    if dataset.default_val_size is not None:
        return dataset.default_val_size
    return min(DEFAULT_VAL_SIZE, len(dataset.train) // 6)


def split_train_val(train: Split, val_size: int, limit: int | None) -> tuple[Split, Split]:
    """Hold out the last ``val_size`` training images for validation; keep the first
    ``limit`` of the rest for training. The test split is never touched."""
    n = len(train)
    if n == 0:
        raise DataError("the dataset has no training images: nothing to train on")
    if val_size < 0 or val_size >= n:
        fix = (f": give a smaller {setting('val_size')}, or leave it out for the dataset's "
               "default") if val_size >= n else ""
        raise OptionsError(f"{setting('val_size')} must be between 0 and {n - 1} (the dataset "
                           f"has {n} training images); got {val_size}{fix}")
    rest = n - val_size
    if limit is not None and not 0 < limit <= rest:
        raise OptionsError(f"{setting('limit')} must be between 1 and {rest} (the training "
                           f"images left after holding out {setting('val_size')} {val_size}); "
                           f"got {limit}")
    return train.subset(slice(0, limit or rest)), train.subset(slice(rest, n))

"""Building a run's parts from the registry: model, optimizer, augmentation, and the
run's train/validation split of the dataset's training images.

Shared by training a run (:mod:`mnistkit.runs.session`) and loading a finished one
(:mod:`mnistkit.runs.loaded`), so both rebuild exactly the same model from a record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import (
    DataError,
    MemoryLimitError,
    MnistkitError,
    OptionsError,
    PluginError,
    setting,
)
from mnistkit.evaluation import EVAL_BATCH
from mnistkit.memory import check_model_fits
from mnistkit.registry import Registry
from mnistkit.runs.record import AugmentationRecord


def call_plugin(entry: Any, failure: str, call: Callable[[], Any]) -> Any:
    """Run a plugin's factory; an unexpected exception names the plugin (one line)."""
    try:
        return call()
    except MnistkitError:
        raise
    except MemoryError as exc:  # NumPy's allocation error too: one line, not a traceback
        text = (str(exc).splitlines() or [""])[0] or "out of memory"
        raise MemoryLimitError(f"{entry.kind} {entry.name!r} from plugin {entry.plugin!r} "
                               f"{failure}: not enough memory ({text})") from None
    except Exception as exc:
        text = (str(exc).splitlines() or [""])[0]
        raise PluginError(f"{entry.kind} {entry.name!r} from plugin {entry.plugin!r} {failure}: "
                          f"{type(exc).__name__}: {text}") from exc


def build_model(entry: Any, options: dict[str, Any], rng: np.random.Generator,
                dataset: Dataset, batch_size: int = EVAL_BATCH) -> Any:
    """Call a model factory with validated options and the dataset's input/class sizes.

    A model whose memory estimate (``estimate_memory``, optional: see
    :mod:`mnistkit.memory`) for batches of ``batch_size`` (and of the evaluation's) does
    not fit in the available memory is refused before anything is allocated; a model
    without one that runs out of memory while being built is the same one-line error.
    """
    n_inputs = int(np.prod(dataset.train.images.shape[1:]))
    made = entry.make_options(options)
    check_model_fits(entry, made, n_inputs, dataset.n_classes, max(batch_size, EVAL_BATCH))
    model = call_plugin(entry, "could not be built", lambda: entry.factory(
        made, rng, n_inputs=n_inputs, n_classes=dataset.n_classes))
    # Two images through scores(): a plugin returning the wrong shape fails here, named,
    # not later inside evaluation.
    probe = dataset.train.images[:2].reshape(-1, n_inputs).astype(np.float32) / 255.0
    scores = call_plugin(entry, "failed in scores()", lambda: model.scores(probe))
    expected = (len(probe), dataset.n_classes)
    if getattr(scores, "shape", None) != expected or getattr(scores, "dtype", np.dtype(object)
                                                                ).kind != "f":
        got = f"{getattr(scores, 'dtype', type(scores).__name__)} {getattr(scores, 'shape', '')}"
        raise PluginError(f"model {entry.name!r} from plugin {entry.plugin!r}: scores() returned "
                          f"{got}; expected floats of shape {expected} (images, classes)")
    return model


def build_optimizer(entry: Any, options: dict[str, Any], params: dict[str, np.ndarray]) -> Any:
    """Call an optimizer factory with validated options on a model's parameters."""
    made = entry.make_options(options)
    return call_plugin(entry, "could not be built", lambda: entry.factory(params, made))


def build_augmentation(found: AugmentationRecord, registry: Registry) -> dict[str, Any]:
    """The :class:`~mnistkit.training.Trainer` arguments of an augmentation: none for
    ``none``."""
    if found.name == "none":
        return {}
    entry = registry.get("augmentation", found.name)
    options = entry.make_options(found.options)
    augmentation = call_plugin(entry, "could not be built", lambda: entry.factory(options))
    if not callable(getattr(augmentation, "distort", None)):
        raise PluginError(f"augmentation {found.name!r} of plugin {entry.plugin!r}: its "
                          "factory must return an object with distort(images, rng)")
    return {"augmentation": augmentation, "augmentation_name": found.name}


def split_train_val(train: Split, val_size: int, limit: int | None) -> tuple[Split, Split]:
    """Hold out the last ``val_size`` training images for validation; keep the first
    ``limit`` of the rest for training. The test split is never touched."""
    n = len(train)
    if n == 0:
        raise DataError("the dataset has no training images: nothing to train on")
    if val_size < 0 or val_size >= n:
        raise OptionsError(f"{setting('val_size')} must be between 0 and {n - 1}; "
                           f"got {val_size}")
    rest = n - val_size
    if limit is not None and not 0 < limit <= rest:
        raise OptionsError(f"{setting('limit')} must be between 1 and {rest} (the training "
                           f"images left after holding out {setting('val_size')} {val_size}); "
                           f"got {limit}")
    return train.subset(slice(0, limit or rest)), train.subset(slice(rest, n))

"""What every conformance check shares: the check type, its subject, small helpers."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.errors import MnistkitError
from mnistkit.gradcheck import (
    random_batch,
)
from mnistkit.options import build_options, check_options_class, options_to_dict

MODEL_CHECKS = ("options", "construct", "params", "shapes", "deterministic", "gradients",
                "seed", "checkpoint", "overfit", "extras")
OPTIMIZER_CHECKS = ("options", "construct", "start_epoch", "in_place", "quadratic", "state")
DATASET_CHECKS = ("options", "load", "deterministic", "missing")
AUGMENTATION_CHECKS = ("options", "construct", "shapes", "in_place", "deterministic", "order")
RECIPE_CHECKS = ("recipe", "names", "options", "build")

#: Full-batch steps of the built-in ``sgd`` allowed to overfit the tiny batch.
OVERFIT_STEPS = 300
#: Examples in the tiny batch the model must learn perfectly.
OVERFIT_EXAMPLES = 40
#: Steps allowed to halve a quadratic.
QUADRATIC_STEPS = 2000


@dataclasses.dataclass(frozen=True)
class Check:
    """One runnable conformance check; ``check()`` raises ``AssertionError`` on failure."""

    kind: str
    target: str
    name: str
    func: Callable[[], None]

    def __call__(self) -> None:
        self.func()

    @property
    def id(self) -> str:
        """``kind:target:check``, used as the pytest id."""
        return f"{self.kind}:{self.target}:{self.name}"

    def __repr__(self) -> str:
        return f"Check({self.id})"


@dataclasses.dataclass
class Subject:
    kind: str
    name: str
    factory: Callable[..., Any]
    options_class: type | None
    options: Any = None
    n_inputs: int = 784
    n_classes: int = 10
    data_dir: Path | None = None
    overfit_steps: int = OVERFIT_STEPS
    overfit_lr: float = 0.1
    identity: bool = False  # augmentations: the distortion is meant to change nothing
    registry: Any = None  # recipes: where the names they use are looked up

    def fail(self, check: str, what: str, fix: str) -> None:
        raise AssertionError(f"{self.kind} {self.name!r} failed check '{check}': {what}\n"
                             f"  How to fix: {fix}")

    def make_options(self, check: str) -> Any:
        if isinstance(self.options, dict) or self.options is None:
            if self.options_class is None:
                if self.options:
                    self.fail(check, "options were given but no options class",
                              "pass options_class= or register the options dataclass")
                return None
            try:
                return build_options(self.options_class, self.options or {},
                                     f"{self.kind} {self.name!r}")
            except MnistkitError as exc:
                self.fail(check, f"the options cannot be built: {exc}",
                          "give every field a default that passes __post_init__")
        return self.options




def npz_round_trip(subject: Subject, check: str, arrays: dict[str, Any],
                    what: str) -> dict[str, np.ndarray]:
    """Save ``arrays`` with ``np.savez`` and load them back with ``allow_pickle=False``."""
    if not isinstance(arrays, dict):
        subject.fail(check, f"{what} is a {type(arrays).__name__}, not a dict",
                     "return a dict of str -> numpy array")
    for key, value in arrays.items():
        if not isinstance(key, str) or not key or "/" in key:
            subject.fail(check, f"{what} has the key {key!r}",
                         "use non-empty string keys without '/' (they become .npz names)")
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            kind = type(value).__name__ if not isinstance(value, np.ndarray) else value.dtype
            subject.fail(check, f"{what}[{key!r}] is {kind}, not a numeric array",
                         "store every value as a numeric numpy array (a counter as a 0-d "
                         "array, e.g. np.array(step)); no objects, lists or strings")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    try:
        with np.load(buffer, allow_pickle=False) as data:
            loaded = {k: data[k] for k in data.files}
    except ValueError as exc:
        subject.fail(check, f"{what} cannot be loaded without pickle: {exc}",
                     "store only numeric arrays")
    if set(loaded) != set(arrays):
        subject.fail(check, f"{what} keys changed through np.savez: {sorted(arrays)} became "
                     f"{sorted(loaded)}", "use plain string keys")
    return loaded


def tiny_problem(n_inputs: int, n_classes: int, count: int,
                  seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sparse MNIST-like inputs (float32 in [0, 1]) with every class present."""
    x, _ = random_batch(count, n_inputs, n_classes, seed=seed)
    y = np.arange(count) % n_classes
    return x.astype(np.float32), y


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return set(a) == set(b) and all(
        np.asarray(a[k]).shape == np.asarray(b[k]).shape and np.array_equal(a[k], b[k])
        for k in a)




def check_declared_options(s: Subject) -> None:
    if s.options_class is None:
        return
    try:
        check_options_class(s.options_class)
    except TypeError as exc:
        s.fail("options", str(exc), "declare options as a @dataclass whose fields all have a "
               "type (int, float, bool, str, Literal[...], tuple[int, ...]) and a default")
    try:
        default = s.options_class()
    except Exception as exc:
        s.fail("options", f"{s.options_class.__name__}() raised {type(exc).__name__}: {exc}",
               "the defaults must pass your own validation")
    try:
        json.dumps(options_to_dict(default))
    except (TypeError, ValueError) as exc:
        s.fail("options", f"the options are not JSON-serialisable: {exc}",
               "use the supported field types only")



"""What every conformance check shares: the check type, its subject, small helpers."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.contracts import exception_line
from mnistkit.errors import MnistkitError
from mnistkit.gradcheck import (
    random_batch,
)
from mnistkit.options import build_options, check_options_class, options_to_dict

MODEL_CHECKS = ("options", "construct", "params", "shapes", "deterministic", "gradients",
                "option_gradients", "seed", "checkpoint", "overfit", "extras")
OPTIMIZER_CHECKS = ("options", "construct", "start_epoch", "in_place", "lr_scale",
                    "quadratic", "state", "state_changes")
DATASET_CHECKS = ("options", "load", "deterministic", "missing")
AUGMENTATION_CHECKS = ("options", "construct", "shapes", "in_place", "deterministic", "order")
RECIPE_CHECKS = ("recipe", "names", "options", "build")

#: Full-batch steps of the built-in ``sgd`` allowed to overfit the tiny batch.
OVERFIT_STEPS = 300
#: Examples in the tiny batch the model must learn perfectly.
OVERFIT_EXAMPLES = 40
#: Steps allowed to halve a quadratic.
QUADRATIC_STEPS = 2000
#: Steps after which the quadratic must be lower than at the start.
QUADRATIC_EARLY_STEPS = 50

#: Per kind, the checks of the contract itself, in order. They run first, once per
#: object; after the first of them that fails, the object's later checks are not run
#: (skipped under pytest, naming the failed check) rather than failing again on what
#: the contract would have guaranteed (a missing gradient key, a missing method).
CONTRACT_CHECKS = {"model": ("options", "construct", "params", "shapes"),
                   "optimizer": ("options", "construct")}


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
    funcs: dict[str, Callable[[Subject], None]] = dataclasses.field(default_factory=dict)
    skipped: frozenset[str] = frozenset()
    _contract: dict[str, AssertionError | None] | None = None

    def fail(self, check: str, what: str, fix: str) -> None:
        raise AssertionError(f"{self.kind} {self.name!r} failed check '{check}': {what}\n"
                             f"  How to fix: {fix}")

    def contract_outcomes(self) -> dict[str, AssertionError | None]:
        """The outcome of each contract check (:data:`CONTRACT_CHECKS`) not skipped: None
        when it passed, its ``AssertionError`` when it failed. Run once, in order, up to
        the first failure (the checks after it are absent)."""
        if self._contract is None:
            outcomes: dict[str, AssertionError | None] = {}
            for name in CONTRACT_CHECKS.get(self.kind, ()):
                if name in self.skipped or name not in self.funcs:
                    continue
                try:
                    run_guarded(self, name, self.funcs[name])
                except AssertionError as exc:
                    outcomes[name] = exc
                    break
                outcomes[name] = None
            self._contract = outcomes
        return self._contract

    def not_run(self, check: str, failed: str, error: AssertionError) -> None:
        """Report ``check`` as not run because contract check ``failed`` failed: skipped
        under pytest, else an ``AssertionError`` saying so."""
        first = (str(error).splitlines() or [""])[0]
        prefix = f"{self.kind} {self.name!r} failed check '{failed}': "
        text = (f"{self.kind} {self.name!r}: check '{check}' not run: check '{failed}' failed "
                f"first ({first.removeprefix(prefix)}); fix that one")
        if "pytest" in sys.modules:
            import pytest

            pytest.skip(text)
        raise AssertionError(text)


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


def run_guarded(subject: Subject, name: str, func: Callable[[Subject], None]) -> None:
    """Run the check ``func``; an exception other than ``AssertionError`` (the plugin's
    code raising where the contract allows none) fails the check, in one line."""
    try:
        func(subject)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{subject.kind} {subject.name!r} failed check '{name}': the check stopped on "
            f"{exception_line(exc)}\n  How to fix: the traceback (the exception above) shows "
            f"where the {subject.kind}'s code raised; it must not raise here") from exc


def run_check(subject: Subject, name: str, func: Callable[[Subject], None]) -> None:
    """Run check ``name`` of ``subject``: a contract check reports its (memoised)
    outcome; any other check runs only if the contract checks passed."""
    if subject.kind not in CONTRACT_CHECKS:
        run_guarded(subject, name, func)
        return
    outcomes = subject.contract_outcomes()
    if name in outcomes:
        error = outcomes[name]
        if error is not None:
            raise error
        return
    failed = next((n for n, e in outcomes.items() if e is not None), None)
    if failed is not None:
        subject.not_run(name, failed, outcomes[failed])  # type: ignore[arg-type]
    run_guarded(subject, name, func)


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



"""The conformance kit: checks a plugin author runs from their own tests.

What scikit-learn's ``check_estimator`` is for estimators. Each function runs every
check for one model, optimizer or dataset and raises ``AssertionError`` at the first
failure, with a message saying what failed and how to fix it::

    from mnistkit.testing import check_model, check_optimizer, check_dataset

    def test_mymodel_conforms():
        check_model(MyModel, MyOptions)

    def test_myopt_conforms():
        check_optimizer(MyOptimizer, MyOptimizerOptions)

For one pytest test per check, parametrise with :func:`conformance_cases`, which takes a
plugin module (everything it registers), a registered name, a registry entry or a
factory::

    import pytest
    import mnistkit_mymodel
    from mnistkit.testing import conformance_cases

    @pytest.mark.parametrize("check", conformance_cases(mnistkit_mymodel))
    def test_conformance(check):
        check()

Checks (names as used by ``skip=`` and in test ids):

- models: ``options``, ``construct``, ``params``, ``shapes``, ``deterministic``,
  ``gradients``, ``seed``, ``checkpoint``, ``overfit``, ``extras``.
- optimizers: ``options``, ``construct``, ``start_epoch``, ``in_place``, ``quadratic``,
  ``state``.
- datasets: ``options``, ``load``, ``deterministic``, ``missing``.
- plugin modules: ``plugin`` (loads and registers without problems) and ``commands``
  (when it adds commands: each has help text and ``--help`` works).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.data.dataset import Dataset
from mnistkit.errors import MnistkitError
from mnistkit.gradcheck import (
    DEFAULT_THRESHOLD,
    GradientCheckError,
    check_gradients,
    frozen_rng,
    random_batch,
)
from mnistkit.options import build_options, check_options_class, options_to_dict

MODEL_CHECKS = ("options", "construct", "params", "shapes", "deterministic", "gradients",
                "seed", "checkpoint", "overfit", "extras")
OPTIMIZER_CHECKS = ("options", "construct", "start_epoch", "in_place", "quadratic", "state")
DATASET_CHECKS = ("options", "load", "deterministic", "missing")

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
class _Subject:
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


# --------------------------------------------------------------------------- helpers


def _npz_round_trip(subject: _Subject, check: str, arrays: dict[str, Any],
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


def _tiny_problem(n_inputs: int, n_classes: int, count: int,
                  seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sparse MNIST-like inputs (float32 in [0, 1]) with every class present."""
    x, _ = random_batch(count, n_inputs, n_classes, seed=seed)
    y = np.arange(count) % n_classes
    return x.astype(np.float32), y


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return set(a) == set(b) and all(
        np.asarray(a[k]).shape == np.asarray(b[k]).shape and np.array_equal(a[k], b[k])
        for k in a)


# --------------------------------------------------------------------------- models


def _build_model(subject: _Subject, check: str, seed: int = 0) -> Any:
    options = subject.make_options(check)
    try:
        model = subject.factory(options, np.random.default_rng(seed), subject.n_inputs,
                                subject.n_classes)
    except Exception as exc:
        subject.fail(check, f"factory(options, rng, {subject.n_inputs}, {subject.n_classes}) "
                     f"raised {type(exc).__name__}: {exc}",
                     "the factory must accept (options, rng, n_inputs, n_classes)")
    return model


def _model_options(s: _Subject) -> None:
    _check_options(s)


def _model_construct(s: _Subject) -> None:
    model = _build_model(s, "construct")
    params = getattr(model, "params", None)
    if not isinstance(params, dict) or not params:
        s.fail("construct", f"model.params is {type(params).__name__}, not a non-empty dict",
               "set self.params = {'W': ..., 'b': ...} in __init__")
    for method in ("loss_and_grads", "scores"):
        if not callable(getattr(model, method, None)):
            s.fail("construct", f"the model has no method {method}()",
                   "see mnistkit.models.base.Model for the contract")


def _model_params(s: _Subject) -> None:
    model = _build_model(s, "params")
    for key, p in model.params.items():
        if not isinstance(key, str) or not key or "/" in key:
            s.fail("params", f"parameter key {key!r} is not a plain string",
                   "name parameters like 'W1', 'b1' (they become .npz names)")
        if not isinstance(p, np.ndarray) or p.dtype != np.float32:
            kind = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            s.fail("params", f"parameter {key!r} is {kind}, not a float32 array",
                   "create parameters with .astype(np.float32)")
        if not np.all(np.isfinite(p)):
            s.fail("params", f"parameter {key!r} has NaN or infinite values",
                   "check the initialisation")


def _model_shapes(s: _Subject) -> None:
    model = _build_model(s, "shapes")
    before = {k: v.copy() for k, v in model.params.items()}
    x, y = _tiny_problem(s.n_inputs, s.n_classes, 5)
    with frozen_rng(model) as reset:
        result = model.loss_and_grads(x, y)
        if not isinstance(result, tuple) or len(result) != 2:
            s.fail("shapes", f"loss_and_grads returned {type(result).__name__}",
                   "return (loss, grads): a float and a dict")
        loss, grads = result
        try:
            loss = float(loss)
        except (TypeError, ValueError):
            s.fail("shapes", f"the loss is {type(loss).__name__}, not a number",
                   "return the mean loss as a Python float")
        if not np.isfinite(loss) or loss < 0:
            s.fail("shapes", f"the loss is {loss!r}", "return the mean cross-entropy (>= 0)")
        if not isinstance(grads, dict) or set(grads) != set(model.params):
            keys = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            s.fail("shapes", f"gradient keys {keys} differ from the parameter keys "
                   f"{sorted(model.params)}", "return one gradient per parameter, same keys")
        for key, p in model.params.items():
            g = grads[key]
            if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
                got = (g.shape, g.dtype) if isinstance(g, np.ndarray) else type(g).__name__
                s.fail("shapes", f"gradient {key!r} is {got}, its parameter "
                       f"{(p.shape, p.dtype)}",
                       "give each gradient the shape and dtype of its parameter")
            if not np.all(np.isfinite(g)):
                s.fail("shapes", f"gradient {key!r} has NaN or infinite values",
                       "check the backward pass")
        if not _same_arrays(before, model.params):
            s.fail("shapes", "loss_and_grads changed the parameters",
                   "only the optimizer updates params; compute into separate buffers")
        scores = model.scores(x)
        if not isinstance(scores, np.ndarray) or scores.shape != (5, s.n_classes):
            got = scores.shape if isinstance(scores, np.ndarray) else type(scores).__name__
            s.fail("shapes", f"scores(x) for a batch of 5 has shape {got}, expected "
                   f"{(5, s.n_classes)}", "return (batch, n_classes) logits")
        if scores.dtype != np.float32:
            s.fail("shapes", f"scores are {scores.dtype} for float32 parameters",
                   "compute in the dtype of the parameters")
        if not _same_arrays(before, model.params):
            s.fail("shapes", "scores() changed the parameters", "scores must be read-only")
        # Buffers reused across batch sizes must not leak stale values.
        reset()
        first = float(model.loss_and_grads(x[:3], y[:3])[0])
        first_scores = model.scores(x[:3]).copy()
        other, other_y = _tiny_problem(s.n_inputs, s.n_classes, 7, seed=2)
        model.loss_and_grads(other, other_y)
        model.scores(other)
        model.loss_and_grads(other[:1], other_y[:1])
        reset()
        again = float(model.loss_and_grads(x[:3], y[:3])[0])
        if not np.isclose(first, again, rtol=1e-6, atol=0):
            s.fail("shapes", f"the loss of the same batch changed ({first} then {again}) after "
                   "batches of other sizes", "size reused buffers by the current batch")
        if not np.allclose(first_scores, model.scores(x[:3]), rtol=1e-6, atol=1e-7):
            s.fail("shapes", "scores of the same batch changed after other batch sizes",
                   "size reused buffers by the current batch")


def _model_deterministic(s: _Subject) -> None:
    model = _build_model(s, "deterministic")
    x, y = _tiny_problem(s.n_inputs, s.n_classes, 6)
    first = model.scores(x).copy()
    model.loss_and_grads(x, y)  # consumes training randomness (dropout), if any
    second = model.scores(x)
    if not np.array_equal(first, second):
        s.fail("deterministic", "scores(x) differs between two calls with the same parameters",
               "scores is for evaluation: no dropout or other randomness in it")
    rng = getattr(model, "rng", None)
    with frozen_rng(model) as reset:
        reset()
        a = float(model.loss_and_grads(x, y)[0])
        reset()
        b = float(model.loss_and_grads(x, y)[0])
    if a != b:
        where = ("model.rng was reset between the calls" if isinstance(rng, np.random.Generator)
                 else "the model has no 'rng' attribute")
        s.fail("deterministic", f"loss_and_grads gave {a} then {b} on the same batch ({where})",
               "draw training randomness only from the Generator the factory receives, kept "
               "in self.rng (never np.random.* global functions)")


def _model_gradients(s: _Subject) -> None:
    model = _build_model(s, "gradients")
    originals = {k: v for k, v in model.params.items()}
    x, y = random_batch(4, s.n_inputs, s.n_classes, seed=3)
    try:
        results = check_gradients(model, x, y, entries=8)
    except GradientCheckError as exc:
        s.fail("gradients", str(exc), "fix loss_and_grads so the gradient check can run")
    if any(model.params[k] is not v for k, v in originals.items()):
        s.fail("gradients", "the gradient check could not restore the parameter arrays",
               "keep the parameters in model.params only")
    bad = [r for r in results if not r.passed]
    if bad:
        detail = ", ".join(f"{r.name} (relative error {r.relative_error:.2e})" for r in bad)
        noisy = all(1e-9 < r.relative_error < 1e-2 for r in bad)
        fix = ("the errors look like float32 noise: compute in the dtype of model.params, "
               "never a hard-coded float32" if noisy else
               "the backward pass does not match the loss for these parameters; derive the "
               "gradient again and run 'mnistkit gradcheck' while fixing it")
        s.fail("gradients", f"analytic and numerical gradients disagree (threshold "
               f"{DEFAULT_THRESHOLD:g}): {detail}", fix)


def _model_seed(s: _Subject) -> None:
    a, b = _build_model(s, "seed", seed=7), _build_model(s, "seed", seed=7)
    if not _same_arrays(a.params, b.params):
        s.fail("seed", "two models built with the same seed have different parameters",
               "draw every initial value from the rng the factory receives")
    x, y = _tiny_problem(s.n_inputs, s.n_classes, 6)
    la, lb = float(a.loss_and_grads(x, y)[0]), float(b.loss_and_grads(x, y)[0])
    if la != lb:
        s.fail("seed", f"two models built with the same seed give losses {la} and {lb}",
               "draw all randomness from the rng the factory receives")


def _model_checkpoint(s: _Subject) -> None:
    model = _build_model(s, "checkpoint", seed=0)
    loaded = _npz_round_trip(s, "checkpoint", model.params, "model.params")
    fresh = _build_model(s, "checkpoint", seed=1)
    if set(fresh.params) != set(loaded):
        s.fail("checkpoint", "a model built with other seed has other parameter names",
               "parameter names must depend on the options only")
    for key, value in loaded.items():
        if fresh.params[key].shape != value.shape or value.dtype != np.float32:
            s.fail("checkpoint", f"parameter {key!r} comes back as {value.shape} {value.dtype}",
                   "parameter shapes must depend on the options only")
        fresh.params[key][...] = value
    x, _ = _tiny_problem(s.n_inputs, s.n_classes, 4)
    if not np.array_equal(model.scores(x), fresh.scores(x)):
        s.fail("checkpoint", "after loading saved parameters into a fresh model (in place), "
               "its scores differ from the original model's",
               "read the weights from self.params on every call; cache nothing derived "
               "from them")


def _model_overfit(s: _Subject) -> None:
    from mnistkit.optimizers.sgd import SGD, SGDOptions

    model = _build_model(s, "overfit")
    x, y = _tiny_problem(s.n_inputs, s.n_classes, OVERFIT_EXAMPLES)
    optimizer = SGD(model.params, SGDOptions(lr=s.overfit_lr, momentum=0.9))
    accuracy, loss = 0.0, float("nan")
    for step in range(s.overfit_steps):
        loss, grads = model.loss_and_grads(x, y)
        if not np.isfinite(loss):
            s.fail("overfit", f"the loss became {loss} at step {step} (sgd lr={s.overfit_lr}, "
                   "momentum 0.9)", "check the initial scale of the weights, or pass a "
                   "smaller overfit_lr to the check")
        optimizer.step(grads)
        if step % 10 == 9:
            accuracy = float(np.mean(np.argmax(model.scores(x), axis=1) == y))
            if accuracy == 1.0:
                return
    s.fail("overfit", f"after {s.overfit_steps} full-batch sgd steps (lr={s.overfit_lr}, "
           f"momentum 0.9) on {OVERFIT_EXAMPLES} examples the training accuracy is "
           f"{accuracy:.0%} (loss {float(loss):.3g}), not 100%",
           "a correct model memorises a tiny batch; check the gradients' signs and scale, the "
           "initialisation, or pass overfit_lr/overfit_steps suited to the model")


def _model_extras(s: _Subject) -> None:
    model = _build_model(s, "extras")
    x, _ = _tiny_problem(s.n_inputs, s.n_classes, 3)
    if hasattr(model, "first_layer"):
        w = np.asarray(model.first_layer())
        if w.ndim != 2 or w.shape[0] != s.n_inputs:
            s.fail("extras", f"first_layer() has shape {w.shape}, expected ({s.n_inputs}, units)",
                   "return the weights that look at the pixels, one column per unit")
    if hasattr(model, "hidden"):
        h = np.asarray(model.hidden(x))
        if h.ndim != 2 or h.shape[0] != 3:
            s.fail("extras", f"hidden(x) for a batch of 3 has shape {h.shape}",
                   "return (batch, units)")


_MODEL_FUNCS = {"options": _model_options, "construct": _model_construct,
                "params": _model_params, "shapes": _model_shapes,
                "deterministic": _model_deterministic, "gradients": _model_gradients,
                "seed": _model_seed, "checkpoint": _model_checkpoint,
                "overfit": _model_overfit, "extras": _model_extras}


# --------------------------------------------------------------------------- optimizers


def _quadratic_params(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                              dict[str, np.ndarray]]:
    """Params, targets and curvatures of ``f(p) = sum 0.5 * a * (p - t)^2``."""
    rng = np.random.default_rng(seed)
    shapes = {"W": (6, 4), "b": (4,)}
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    targets = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    curv = {k: rng.uniform(0.5, 2.0, s).astype(np.float32) for k, s in shapes.items()}
    return params, targets, curv


def _quadratic(params: dict[str, np.ndarray], targets: dict[str, np.ndarray],
               curv: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    diff = {k: params[k] - targets[k] for k in params}
    loss = float(sum(0.5 * np.sum(curv[k] * d.astype(np.float64) ** 2) for k, d in diff.items()))
    return loss, {k: (curv[k] * d).astype(np.float32) for k, d in diff.items()}


def _build_optimizer(s: _Subject, check: str, params: dict[str, np.ndarray]) -> Any:
    options = s.make_options(check)
    try:
        return s.factory(params, options)
    except Exception as exc:
        s.fail(check, f"factory(params, options) raised {type(exc).__name__}: {exc}",
               "the factory must accept (params, options)")


def _optimizer_options(s: _Subject) -> None:
    _check_options(s)


def _optimizer_construct(s: _Subject) -> None:
    params, _, _ = _quadratic_params()
    opt = _build_optimizer(s, "construct", params)
    for method in ("step", "state_dict", "load_state_dict", "start_epoch"):
        if not callable(getattr(opt, method, None)):
            s.fail("construct", f"the optimizer has no method {method}()",
                   "subclass mnistkit.optimizers.base.BaseOptimizer, which provides the "
                   "bookkeeping")
    lr = getattr(opt, "lr", None)
    if not isinstance(lr, (float, int)) or not np.isfinite(lr) or lr <= 0:
        s.fail("construct", f"optimizer.lr is {lr!r}", "set self.lr to the learning rate "
               "in use (a positive float); the trainer displays it")


def _optimizer_start_epoch(s: _Subject) -> None:
    params, _, _ = _quadratic_params()
    opt = _build_optimizer(s, "start_epoch", params)
    for epoch in range(4):
        opt.start_epoch(epoch, 4)
        lr = getattr(opt, "lr", None)
        if not isinstance(lr, (float, int)) or not np.isfinite(lr) or lr <= 0:
            s.fail("start_epoch", f"after start_epoch({epoch}, 4) lr is {lr!r}",
                   "a schedule must keep lr a positive float")


def _optimizer_in_place(s: _Subject) -> None:
    params, targets, curv = _quadratic_params()
    arrays = dict(params)
    before = {k: v.copy() for k, v in params.items()}
    opt = _build_optimizer(s, "in_place", params)
    opt.start_epoch(0, 1)
    for _ in range(3):
        opt.step(_quadratic(params, targets, curv)[1])
    if set(params) != set(arrays):
        s.fail("in_place", f"step() changed the keys of params to {sorted(params)}",
               "update the existing arrays only")
    for key, arr in arrays.items():
        if params[key] is not arr:
            s.fail("in_place", f"step() replaced params[{key!r}] by a new array",
                   "update in place (p -= update, or np.subtract(p, u, out=p)): the model "
                   "and the trainer hold the same arrays")
        if arr.dtype != np.float32:
            s.fail("in_place", f"params[{key!r}] became {arr.dtype}", "keep float32")
    if _same_arrays(before, params):
        s.fail("in_place", "three steps with non-zero gradients left the params unchanged",
               "apply the update to the arrays in self.params")


def _optimizer_quadratic(s: _Subject) -> None:
    params, targets, curv = _quadratic_params()
    opt = _build_optimizer(s, "quadratic", params)
    opt.start_epoch(0, 1)
    start, _ = _quadratic(params, targets, curv)
    loss = start
    for step in range(QUADRATIC_STEPS):
        loss, grads = _quadratic(params, targets, curv)
        if not np.isfinite(loss) or loss > 10 * start:
            s.fail("quadratic", f"the loss went from {start:.4g} to {loss:.4g} after {step} "
                   "steps on sum 0.5*a*(p-t)^2", "step against the gradient (p -= lr * g), "
                   "and check that the default learning rate is not too large")
        if loss < 0.5 * start:
            return
        opt.step(grads)
    s.fail("quadratic", f"{QUADRATIC_STEPS} steps took sum 0.5*a*(p-t)^2 from {start:.4g} "
           f"only to {loss:.4g} (needed below half)",
           "step against the gradient (p -= lr * g); check the default learning rate")


def _optimizer_state(s: _Subject) -> None:
    params, targets, curv = _quadratic_params()
    opt = _build_optimizer(s, "state", params)
    _npz_round_trip(s, "state", opt.state_dict(), "state_dict() of a new optimizer")
    opt.start_epoch(0, 2)
    for _ in range(5):
        opt.step(_quadratic(params, targets, curv)[1])
    saved_state = _npz_round_trip(s, "state", opt.state_dict(), "state_dict()")
    saved_params = {k: v.copy() for k, v in params.items()}
    resumed_params = {k: v.copy() for k, v in params.items()}
    resumed = _build_optimizer(s, "state", resumed_params)
    resumed.load_state_dict(saved_state)
    for epoch in (1,):
        opt.start_epoch(epoch, 2)
        resumed.start_epoch(epoch, 2)
    for _ in range(5):
        opt.step(_quadratic(params, targets, curv)[1])
        resumed.step(_quadratic(resumed_params, targets, curv)[1])
    if not _same_arrays(params, resumed_params):
        s.fail("state", "an optimizer restored with load_state_dict(state_dict()) takes "
               "different steps from the original",
               "put everything that steps depend on (moment buffers, step counters as 0-d "
               "arrays) in state_dict() and restore it in load_state_dict()")
    again = _npz_round_trip(s, "state", resumed.state_dict(), "state_dict() after loading")
    original = _npz_round_trip(s, "state", opt.state_dict(), "state_dict()")
    if not _same_arrays(again, original):
        s.fail("state", "the restored optimizer's state_dict() differs from the original's",
               "load_state_dict must restore every array state_dict exports")
    del saved_params


_OPTIMIZER_FUNCS = {"options": _optimizer_options, "construct": _optimizer_construct,
                    "start_epoch": _optimizer_start_epoch, "in_place": _optimizer_in_place,
                    "quadratic": _optimizer_quadratic, "state": _optimizer_state}


# --------------------------------------------------------------------------- datasets


def _load(s: _Subject, check: str, data_dir: Path | None) -> Any:
    options = s.make_options(check)
    try:
        return s.factory(options, data_dir)
    except MnistkitError as exc:
        s.fail(check, f"loading from {str(data_dir) if data_dir else 'its default location'} "
               f"failed: {exc}", "give the check a data_dir holding the dataset's files")
    except Exception as exc:
        s.fail(check, f"factory(options, data_dir) raised {type(exc).__name__}: {exc}",
               "raise mnistkit.errors.DataError for missing or invalid data")


def _dataset_options(s: _Subject) -> None:
    _check_options(s)


def _dataset_load(s: _Subject) -> None:
    ds = _load(s, "load", s.data_dir)
    if not isinstance(ds, Dataset):
        s.fail("load", f"the factory returned {type(ds).__name__}",
               "return a mnistkit.data.Dataset")
    for split_name in ("train", "test"):
        split = ds.split(split_name)
        if len(split) == 0:
            s.fail("load", f"the {split_name} split is empty", "load both splits")
        if split.images.shape[1:] != (28, 28):
            s.fail("load", f"{split_name} images are {split.images.shape[1:]}, not 28x28",
                   "models take 784 inputs: resize or pad to 28x28")
    names = ds.class_names
    if (len(names) < 2 or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)):
        s.fail("load", f"class_names {names!r} are not distinct non-empty strings",
               "pass class_names=(...) with one name per label")
    if not ds.source:
        s.fail("load", "Dataset.source is empty", "say where the data came from (a folder "
               "or URL), it is recorded in run.json")


def _dataset_deterministic(s: _Subject) -> None:
    a, b = _load(s, "deterministic", s.data_dir), _load(s, "deterministic", s.data_dir)
    if a.fingerprint() != b.fingerprint():
        s.fail("deterministic", "two loads give different data",
               "do not shuffle or sample when loading; the trainer shuffles")


def _dataset_missing(s: _Subject) -> None:
    options = s.make_options("missing")
    with tempfile.TemporaryDirectory() as empty:
        try:
            s.factory(options, Path(empty))
        except MnistkitError as exc:
            if not str(exc):
                s.fail("missing", "the error for an empty data folder has no message",
                       "say which files are missing and where they were looked for")
            return
        except Exception as exc:
            s.fail("missing", f"an empty data folder raised {type(exc).__name__}: {exc}",
                   "raise mnistkit.errors.DataError naming the folder and the missing files")
    s.fail("missing", "an empty data folder did not raise", "raise mnistkit.errors.DataError "
           "when the files are not there (never download into a folder given with --data-dir)")


_DATASET_FUNCS = {"options": _dataset_options, "load": _dataset_load,
                  "deterministic": _dataset_deterministic, "missing": _dataset_missing}


# --------------------------------------------------------------------------- shared


def _check_options(s: _Subject) -> None:
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


_FUNCS = {"model": _MODEL_FUNCS, "optimizer": _OPTIMIZER_FUNCS, "dataset": _DATASET_FUNCS}


def _checks_for(subject: _Subject, skip: Iterable[str]) -> list[Check]:
    skipped = set(skip)
    funcs = _FUNCS[subject.kind]
    unknown = skipped - set(funcs)
    if unknown:
        raise ValueError(f"unknown {subject.kind} checks to skip: {sorted(unknown)}; "
                         f"known: {', '.join(funcs)}")
    return [Check(subject.kind, subject.name, name, lambda f=f: f(subject))
            for name, f in funcs.items() if name not in skipped]


def model_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                 name: str | None = None, options: Any = None, n_inputs: int = 784,
                 n_classes: int = 10, overfit_lr: float = 0.1,
                 overfit_steps: int = OVERFIT_STEPS, skip: Iterable[str] = ()) -> list[Check]:
    """The checks of a model factory ``factory(options, rng, n_inputs, n_classes)``.

    ``options`` (an instance or a dict of values) defaults to the class defaults.
    ``overfit_lr``/``overfit_steps`` tune the ``overfit`` check (sgd, momentum 0.9).
    """
    subject = _Subject("model", name or _name_of(factory), factory, options_class, options,
                       n_inputs, n_classes, overfit_steps=overfit_steps, overfit_lr=overfit_lr)
    return _checks_for(subject, skip)


def optimizer_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                     name: str | None = None, options: Any = None,
                     skip: Iterable[str] = ()) -> list[Check]:
    """The checks of an optimizer factory ``factory(params, options)``."""
    subject = _Subject("optimizer", name or _name_of(factory), factory, options_class, options)
    return _checks_for(subject, skip)


def dataset_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                   name: str | None = None, options: Any = None,
                   data_dir: str | Path | None = None, skip: Iterable[str] = ()) -> list[Check]:
    """The checks of a dataset factory ``factory(options, data_dir)``.

    ``data_dir`` is passed to the factory for the loading checks (``None``: the dataset's
    default location, which may download). The ``missing`` check always uses an empty
    temporary folder and expects :class:`mnistkit.errors.DataError`.
    """
    folder = Path(data_dir) if data_dir is not None else None
    subject = _Subject("dataset", name or _name_of(factory), factory, options_class, options,
                       data_dir=folder)
    return _checks_for(subject, skip)


def _run(checks: list[Check]) -> None:
    for check in checks:
        check()


def check_model(factory: Callable[..., Any], options_class: type | None = None,
                **kwargs: Any) -> None:
    """Run every model check; ``AssertionError`` at the first failure. See :func:`model_checks`."""
    _run(model_checks(factory, options_class, **kwargs))


def check_optimizer(factory: Callable[..., Any], options_class: type | None = None,
                    **kwargs: Any) -> None:
    """Run every optimizer check. See :func:`optimizer_checks`."""
    _run(optimizer_checks(factory, options_class, **kwargs))


def check_dataset(factory: Callable[..., Any], options_class: type | None = None,
                  **kwargs: Any) -> None:
    """Run every dataset check. See :func:`dataset_checks`."""
    _run(dataset_checks(factory, options_class, **kwargs))


def _name_of(factory: Any) -> str:
    return getattr(factory, "__name__", type(factory).__name__)


# --------------------------------------------------------------------------- plugins


def _entry_checks(entry: Any, data_dirs: dict[str, Any], skip: dict[str, Iterable[str]],
                  settings: dict[str, dict[str, Any]]) -> list[Check]:
    extra = dict(settings.get(entry.name, {}))
    names_to_skip = skip.get(entry.name, ())
    if entry.kind == "model":
        return model_checks(entry.factory, entry.options, name=entry.name, skip=names_to_skip,
                            **extra)
    if entry.kind == "optimizer":
        return optimizer_checks(entry.factory, entry.options, name=entry.name,
                                skip=names_to_skip, **extra)
    return dataset_checks(entry.factory, entry.options, name=entry.name,
                          data_dir=data_dirs.get(entry.name), skip=names_to_skip, **extra)


def plugin_checks(module: Any, *, data_dirs: dict[str, Any] | None = None,
                  skip: dict[str, Iterable[str]] | None = None,
                  settings: dict[str, dict[str, Any]] | None = None) -> list[Check]:
    """The checks of everything the plugin ``module`` registers, plus the plugin itself.

    The module is loaded in-process next to the built-ins only (installed plugins are
    ignored). ``data_dirs`` maps a dataset name to the folder its loading checks use;
    ``skip`` maps a registered name to check names to leave out; ``settings`` maps a
    name to extra keyword arguments of :func:`model_checks` (e.g. ``overfit_lr``).
    """
    from mnistkit import builtins
    from mnistkit.plugins import BUILTIN_NAME, load_plugins

    if module is builtins:  # already registered first, under its own name
        plugins, plugin_name = load_plugins(entry_points=False), BUILTIN_NAME
    else:
        plugins = load_plugins(extra=[module], entry_points=False)
        plugin_name = getattr(module, "__name__", None) or type(module).__name__
    target = plugin_name.rsplit(".", 1)[-1]

    def plugin_loads() -> None:
        mine = [p for p in plugins.problems if p.plugin == plugin_name]
        if mine:
            raise AssertionError(f"plugin {target!r} failed check 'plugin': {mine[0].error}\n"
                                 "  How to fix: run the hooks by hand; registrations must have"
                                 " lower-case names, callable factories and valid options")
        hooks = [h.name for h in plugins.manager.get_hookcallers(module) or []]
        if not hooks:
            raise AssertionError(f"plugin {target!r} failed check 'plugin': it implements no "
                                 "mnistkit hook\n  How to fix: decorate functions named like "
                                 "the hook specifications with @mnistkit.hookimpl")

    checks = [Check("plugin", target, "plugin", plugin_loads)]
    hooks = {h.name for h in plugins.manager.get_hookcallers(module) or []}
    if "mnistkit_register_commands" in hooks:
        checks.append(Check("plugin", target, "commands",
                            lambda: _check_commands(module, target)))
    for kind in ("model", "optimizer", "dataset"):
        for entry in plugins.registry.entries(kind):
            if entry.plugin == plugin_name:
                checks += _entry_checks(entry, data_dirs or {}, skip or {}, settings or {})
    return checks


def _check_commands(module: Any, target: str) -> None:
    from click.testing import CliRunner

    from mnistkit import builtins
    from mnistkit.cli import build_cli
    from mnistkit.plugins import load_plugins

    base = set(build_cli(load_plugins(entry_points=False)).commands)
    extra = [] if module is builtins else [module]
    cli = build_cli(load_plugins(extra=extra, entry_points=False))
    added = sorted(set(cli.commands) - base)
    if not added:
        raise AssertionError(f"plugin {target!r} failed check 'commands': "
                             "mnistkit_register_commands added no command\n  How to fix: call "
                             "cli.add_command(command); names must not clash with built-ins")
    for name in added:
        command = cli.commands[name]
        if not (command.help or "").strip():
            raise AssertionError(f"plugin {target!r} failed check 'commands': command {name!r} "
                                 "has no help text\n  How to fix: give it a docstring with an "
                                 "'Example:' block")
        result = CliRunner().invoke(cli, [name, "--help"])
        if result.exit_code != 0:
            raise AssertionError(f"plugin {target!r} failed check 'commands': "
                                 f"'mnistkit {name} --help' exited {result.exit_code}: "
                                 f"{result.output.strip()[-300:]}")


def check_plugin(module: Any, **kwargs: Any) -> None:
    """Run every check of a plugin module. See :func:`plugin_checks` for the arguments."""
    _run(plugin_checks(module, **kwargs))


def conformance_cases(target: Any, *, kind: str | None = None,
                      options_class: type | None = None, **kwargs: Any) -> list[Any]:
    """``pytest.param`` cases, one per check, for ``pytest.mark.parametrize("check", ...)``.

    ``target`` is a plugin module (see :func:`plugin_checks` for ``data_dirs``, ``skip``,
    ``settings``), a ``mnistkit.registry.Entry``, a registered name (with ``kind``; looked
    up in the installed plugins, or in ``registry=``), or a factory (with ``kind`` and
    ``options_class``; other keyword arguments go to :func:`model_checks` and friends).
    Each case's id is ``kind:name:check``.
    """
    import pytest

    checks = collect_checks(target, kind=kind, options_class=options_class, **kwargs)
    return [pytest.param(c, id=c.id) for c in checks]


def collect_checks(target: Any, *, kind: str | None = None,
                   options_class: type | None = None, **kwargs: Any) -> list[Check]:
    """The :class:`Check` list for ``target`` (see :func:`conformance_cases`)."""
    import inspect

    from mnistkit.registry import Entry

    if inspect.ismodule(target):
        return plugin_checks(target, **kwargs)
    if isinstance(target, str):
        if kind is None:
            raise ValueError("give kind='model', 'optimizer' or 'dataset' with a name")
        registry = kwargs.pop("registry", None)
        if registry is None:
            from mnistkit.plugins import get_registry

            registry = get_registry()
        target = registry.get(kind, target)
    if isinstance(target, Entry):
        kwargs.setdefault("name", target.name)
        kind, options_class, target = target.kind, target.options, target.factory
    builders = {"model": model_checks, "optimizer": optimizer_checks, "dataset": dataset_checks}
    if kind not in builders:
        raise ValueError(f"kind must be one of {', '.join(builders)}; got {kind!r}")
    return builders[kind](target, options_class, **kwargs)


# --------------------------------------------------------------------------- downloads


@dataclasses.dataclass
class LoopbackServer:
    """A running :func:`serve_folder` server: its base ``url`` and the paths requested."""

    url: str
    requests: list[str]


@contextlib.contextmanager
def serve_folder(folder: str | Path) -> Iterator[LoopbackServer]:
    """Serve the files under ``folder`` over HTTP on 127.0.0.1 (a free port), for tests.

    Dataset plugins test their downloads offline with it: point the mirrors at
    ``server.url + "sub/"`` (a missing file is a 404) and check ``server.requests``.
    Nothing leaves the machine.
    """
    import functools
    import http.server

    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet tests
            pass

        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield LoopbackServer(f"http://127.0.0.1:{httpd.server_address[1]}/", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()

"""Numerical gradient check: compare a model's analytic gradients with central differences.

How it works (:func:`check_gradients`):

1. Every array in ``model.params`` is replaced, in the same dict, by a float64 copy.
   Models compute in the dtype of their parameters, so the very code that trains in
   float32 is checked in float64, where finite differences are accurate.
2. ``loss_and_grads(x, y)`` gives the analytic gradients (copied at once: models may
   reuse their gradient buffers).
3. For a bounded sample of entries of each parameter (the entries with the largest
   analytic gradient, plus random ones), the loss is evaluated at ``p + h`` and ``p - h``
   and the numerical gradient is ``(L+ - L-) / 2h``.
4. Per parameter, the relative error is
   ``max_i |a_i - n_i| / max(max_i (|a_i| + |n_i|), tiny)`` over the sampled entries
   ``i`` (``a`` analytic, ``n`` numerical): the worst absolute disagreement measured
   against the size of that parameter's gradient, so entries whose gradient is exactly
   zero (dead ReLU units) do not produce 0/0 noise. It passes below ``threshold``
   (``1e-6`` by default; a correct float64 model typically gives ``1e-9`` or less).
5. The original arrays (the very same objects) are put back into ``model.params``,
   whatever happens.

Randomness (dropout): the loss must be a deterministic function of the parameters for
finite differences to mean anything. A model that draws training-time randomness must
draw it from the ``numpy.random.Generator`` its factory received and keep it in the
attribute ``rng`` (as the hook specification asks, so checkpoints can restore it). The
check saves ``model.rng.bit_generator.state`` first and restores it before *every*
evaluation, so each evaluation sees the same dropout masks; afterwards the generator is
left as it was found. A model whose loss still differs between two identical evaluations
is reported with :class:`NondeterministicLossError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from mnistkit.contracts import build_model, describe, plugin_error, step_problems
from mnistkit.errors import MnistkitError, PluginError

DEFAULT_THRESHOLD = 1e-6
DEFAULT_STEP = 1e-5
DEFAULT_ENTRIES = 12
_TINY = 1e-30


class GradientCheckError(PluginError):
    """The model broke the contract the check relies on (keys, shapes, dtype, NaN)."""


class NondeterministicLossError(GradientCheckError):
    """Two evaluations with the same parameters and rng state gave different losses."""


@dataclasses.dataclass(frozen=True)
class ParamCheck:
    """The result of the check of one parameter."""

    name: str
    shape: tuple[int, ...]
    entries: int
    max_abs_error: float
    relative_error: float
    threshold: float

    @property
    def passed(self) -> bool:
        """Whether the relative error is below the threshold (NaN fails)."""
        return bool(self.relative_error < self.threshold)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record of this result."""
        return {"name": self.name, "shape": list(self.shape), "entries": self.entries,
                "max_abs_error": self.max_abs_error, "relative_error": self.relative_error,
                "threshold": self.threshold, "passed": self.passed}


@contextlib.contextmanager
def float64_params(model: Any) -> Iterator[dict[str, np.ndarray]]:
    """Temporarily replace ``model.params`` values by float64 copies; restore on exit.

    The originals (the same array objects, untouched) are put back even on error.
    Yields the dict of originals.
    """
    originals = dict(model.params)
    try:
        for key, value in originals.items():
            model.params[key] = np.array(value, dtype=np.float64, copy=True)
        yield originals
    finally:
        for key in list(model.params):
            if key not in originals:
                del model.params[key]
        model.params.update(originals)


@contextlib.contextmanager
def frozen_rng(model: Any) -> Iterator[Any]:
    """Yield a ``reset()`` that puts ``model.rng`` back to its state at entry.

    On exit the generator is restored to that state too, so the check consumes no
    randomness. Models without a ``numpy.random.Generator`` in ``rng`` get a no-op.
    """
    rng = getattr(model, "rng", None)
    if not isinstance(rng, np.random.Generator):
        yield lambda: None
        return
    state = rng.bit_generator.state

    def reset() -> None:
        rng.bit_generator.state = state

    try:
        yield reset
    finally:
        reset()


def _sample_entries(analytic: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices: the largest |gradient| entries, then random distinct others."""
    size = analytic.size
    if size <= count:
        return np.arange(size)
    n_top = count // 2
    flat = np.abs(analytic.ravel())
    top = np.argpartition(flat, size - n_top)[size - n_top:] if n_top else np.empty(0, int)
    rest = np.setdiff1d(np.arange(size), top, assume_unique=True)
    extra = rng.choice(rest, size=count - n_top, replace=False)
    return np.sort(np.concatenate([top, extra]))


def _evaluate(model: Any, x: np.ndarray, y: np.ndarray, reset: Any) -> float:
    reset()
    loss, _ = model.loss_and_grads(x, y)
    return float(loss)


def check_gradients(model: Any, x: np.ndarray, y: np.ndarray, *,
                    entries: int = DEFAULT_ENTRIES, step: float = DEFAULT_STEP,
                    threshold: float = DEFAULT_THRESHOLD, seed: int = 0) -> list[ParamCheck]:
    """Check ``model``'s analytic gradients against central differences, in float64.

    ``x`` is ``(batch, n_inputs)`` (converted to float64), ``y`` ``(batch,)`` integer
    labels. ``entries`` bounds how many entries of each parameter are perturbed (two
    loss evaluations each); ``step`` is the finite-difference step ``h``; ``seed``
    chooses the random entries. Returns one :class:`ParamCheck` per parameter, in the
    order of ``model.params``. The model's parameters and rng are left as they were.

    Raises :class:`GradientCheckError` when the model breaks its contract (missing or
    extra gradient keys, wrong shapes, a non-float64 result from float64 parameters,
    a non-finite loss) and :class:`NondeterministicLossError` when the loss is not
    reproducible for fixed parameters.
    """
    if entries < 1:
        raise ValueError("entries must be at least 1")
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    y = np.asarray(y)
    picker = np.random.default_rng(seed)
    results: list[ParamCheck] = []
    with float64_params(model), frozen_rng(model) as reset:
        params = model.params
        reset()
        loss, grads = model.loss_and_grads(x64, y)
        loss = _check_contract(params, grads, loss)
        analytic = {k: np.array(g, dtype=np.float64, copy=True) for k, g in grads.items()}
        again = _evaluate(model, x64, y, reset)
        if again != loss:
            raise NondeterministicLossError(
                f"the loss changed between two evaluations with the same parameters "
                f"({loss!r} then {again!r}); draw training randomness only from the "
                "numpy Generator stored in model.rng, so it can be reset")
        for key, p in params.items():
            flat = p.reshape(-1)  # a view: params are fresh contiguous float64 copies
            idx = _sample_entries(analytic[key], entries, picker)
            numeric = np.empty(idx.size)
            for j, i in enumerate(idx):
                saved = flat[i]
                flat[i] = saved + step
                plus = _evaluate(model, x64, y, reset)
                flat[i] = saved - step
                minus = _evaluate(model, x64, y, reset)
                flat[i] = saved
                numeric[j] = (plus - minus) / (2.0 * step)
            a = analytic[key].reshape(-1)[idx]
            diff = np.abs(a - numeric)
            max_abs = float(diff.max()) if diff.size else 0.0
            scale = float((np.abs(a) + np.abs(numeric)).max()) if diff.size else 0.0
            rel = max_abs / max(scale, _TINY)
            if not np.all(np.isfinite(numeric)):
                rel = max_abs = float("nan")
            results.append(ParamCheck(key, tuple(p.shape), int(idx.size), max_abs, rel,
                                      threshold))
    return results


def _check_contract(params: dict[str, np.ndarray], grads: Any, loss: Any) -> float:
    """The loss as a float, or :class:`GradientCheckError` for the first problem of
    :func:`mnistkit.contracts.step_problems` (with float64 parameters, a float32
    gradient means float32 is hard-coded somewhere) or a non-finite loss."""
    problems = step_problems(params, loss, grads)
    if problems:
        raise GradientCheckError(problems[0])
    loss = float(loss)
    if not np.isfinite(loss):
        raise GradientCheckError(f"the loss is not finite ({loss!r})")
    return loss


def build_for_gradcheck(entry: Any, options: Any, rng: np.random.Generator, n_inputs: int,
                        n_classes: int, batch: int) -> Any:
    """Build the model of the registry ``entry`` for :func:`check_gradients` through
    :func:`mnistkit.contracts.build_model`: ``options`` (an instance or a dict of values)
    validated, the model checked against the contract, and, before anything is
    allocated, refused with :class:`~mnistkit.errors.MemoryLimitError` when its memory
    estimate does not fit: the float32 parameters, their float64 copies and analytic
    gradients, and the model's work buffers in float64. A factory that raises, a model
    that breaks the contract or runs out of memory while being built is one line naming
    it (:class:`~mnistkit.errors.PluginError` or ``MemoryLimitError``).
    """
    return build_model(entry, options, rng, n_inputs, n_classes, batch_size=batch,
                       params_copies=5, work_factor=2, action="checking the gradients of")


def check_entry_gradients(entry: Any, model: Any, x: np.ndarray, y: np.ndarray,
                          **kwargs: Any) -> list[ParamCheck]:
    """:func:`check_gradients` of ``model``, built from the registry ``entry``, for the
    command line: a model that breaks the contract (:class:`GradientCheckError`), raises
    in its own code (:class:`~mnistkit.errors.PluginError`) or runs out of memory
    (:class:`~mnistkit.errors.MemoryLimitError`) is one line naming it and its plugin.
    ``kwargs`` go to :func:`check_gradients`."""
    try:
        return check_gradients(model, x, y, **kwargs)
    except GradientCheckError as exc:
        raise type(exc)(f"{describe(entry)}: {exc}") from None
    except MnistkitError:
        raise
    except Exception as exc:  # the model's own code failed (or ran out of memory)
        error = plugin_error(entry, "failed in the gradient check", exc)
        raise error from (None if isinstance(exc, MemoryError) else exc)


def random_batch(batch: int, n_inputs: int = 784, n_classes: int = 10,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small MNIST-like batch: sparse pixels in [0, 1] (float64) and random labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, n_inputs)) * (rng.random((batch, n_inputs)) < 0.25)
    y = rng.integers(0, n_classes, size=batch)
    return x, y

"""Conformance checks of an optimizer factory."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistkit.testing._core import (
    QUADRATIC_STEPS,
    Subject,
    check_declared_options,
    npz_round_trip,
    same_arrays,
)


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


def _build_optimizer(s: Subject, check: str, params: dict[str, np.ndarray]) -> Any:
    options = s.make_options(check)
    try:
        return s.factory(params, options)
    except Exception as exc:
        s.fail(check, f"factory(params, options) raised {type(exc).__name__}: {exc}",
               "the factory must accept (params, options)")


def _optimizer_options(s: Subject) -> None:
    check_declared_options(s)


def _optimizer_construct(s: Subject) -> None:
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


def _optimizer_start_epoch(s: Subject) -> None:
    params, _, _ = _quadratic_params()
    opt = _build_optimizer(s, "start_epoch", params)
    for epoch in range(4):
        opt.start_epoch(epoch, 4)
        lr = getattr(opt, "lr", None)
        if not isinstance(lr, (float, int)) or not np.isfinite(lr) or lr <= 0:
            s.fail("start_epoch", f"after start_epoch({epoch}, 4) lr is {lr!r}",
                   "a schedule must keep lr a positive float")


def _optimizer_in_place(s: Subject) -> None:
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
    if same_arrays(before, params):
        s.fail("in_place", "three steps with non-zero gradients left the params unchanged",
               "apply the update to the arrays in self.params")


def _optimizer_quadratic(s: Subject) -> None:
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


def _optimizer_state(s: Subject) -> None:
    params, targets, curv = _quadratic_params()
    opt = _build_optimizer(s, "state", params)
    npz_round_trip(s, "state", opt.state_dict(), "state_dict() of a new optimizer")
    opt.start_epoch(0, 2)
    for _ in range(5):
        opt.step(_quadratic(params, targets, curv)[1])
    saved_state = npz_round_trip(s, "state", opt.state_dict(), "state_dict()")
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
    if not same_arrays(params, resumed_params):
        s.fail("state", "an optimizer restored with load_state_dict(state_dict()) takes "
               "different steps from the original",
               "put everything that steps depend on (moment buffers, step counters as 0-d "
               "arrays) in state_dict() and restore it in load_state_dict()")
    again = npz_round_trip(s, "state", resumed.state_dict(), "state_dict() after loading")
    original = npz_round_trip(s, "state", opt.state_dict(), "state_dict()")
    if not same_arrays(again, original):
        s.fail("state", "the restored optimizer's state_dict() differs from the original's",
               "load_state_dict must restore every array state_dict exports")
    del saved_params


OPTIMIZER_FUNCS = {"options": _optimizer_options, "construct": _optimizer_construct,
                    "start_epoch": _optimizer_start_epoch, "in_place": _optimizer_in_place,
                    "quadratic": _optimizer_quadratic, "state": _optimizer_state}



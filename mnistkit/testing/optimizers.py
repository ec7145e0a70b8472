"""Conformance checks of an optimizer factory."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mnistkit.contracts import exception_line, new_optimizer, optimizer_problems
from mnistkit.errors import MnistkitError
from mnistkit.options import build_options, options_to_dict
from mnistkit.testing._core import (
    QUADRATIC_EARLY_STEPS,
    QUADRATIC_STEPS,
    Subject,
    check_declared_options,
    npz_round_trip,
    same_arrays,
)

#: How far the first step's size may be from ``factor`` times the other's (relative).
LR_SCALE_TOLERANCE = 1e-2


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


def _build_optimizer(s: Subject, check: str, params: dict[str, np.ndarray],
                     options: Any = None) -> Any:
    if options is None:
        options = s.make_options(check)
    try:
        return new_optimizer(s.factory, params, options)
    except Exception as exc:
        s.fail(check, f"factory(params, options) raised {exception_line(exc)}",
               "the factory must accept (params, options)")


def _optimizer_options(s: Subject) -> None:
    check_declared_options(s)
    s.make_options("options")  # the options given to the checks build too


def _optimizer_construct(s: Subject) -> None:
    params, _, _ = _quadratic_params()
    problems = optimizer_problems(_build_optimizer(s, "construct", params))
    if problems:
        s.fail("construct", problems[0], problems[0].fix)


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
        if step == QUADRATIC_EARLY_STEPS and not loss < start:
            s.fail("quadratic", f"after {step} steps on sum 0.5*a*(p-t)^2 the loss is "
                   f"{loss:.4g}, not below its start {start:.4g}: no progress",
                   "step against the gradient (p -= lr * g) from the first step on; check "
                   "the default learning rate and the state's initial values")
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


def _lr_options(s: Subject) -> tuple[Any, Any, float] | None:
    """The options the checks use, the same with ``lr`` times ``factor`` (2, or 0.5 when
    the options refuse twice), and ``factor``; None without an ``lr`` option."""
    base = s.make_options("lr_scale")
    if base is None or not dataclasses.is_dataclass(base) or "lr" not in {
            f.name for f in dataclasses.fields(base)}:
        return None
    lr = base.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        return None
    for factor in (2.0, 0.5):
        try:
            other = build_options(type(base), {**options_to_dict(base), "lr": lr * factor},
                                  f"{s.kind} {s.name!r}")
        except MnistkitError:
            continue
        return base, other, factor
    return None


def _optimizer_lr_scale(s: Subject) -> None:
    """With ``lr`` times ``factor``, the first step on the same gradients is ``factor``
    times as large (every update scales with the learning rate), and ``optimizer.lr``
    follows ``options.lr``. Only for options with an ``lr`` field."""
    found = _lr_options(s)
    if found is None:
        return
    base, other, factor = found
    _, targets, curv = _quadratic_params()
    zeros = {k: np.zeros_like(t) for k, t in targets.items()}  # steps exact in float32
    grads = _quadratic(zeros, targets, curv)[1]
    moved = []
    for options in (base, other):
        params = {k: v.copy() for k, v in zeros.items()}
        opt = _build_optimizer(s, "lr_scale", params, options)
        opt.start_epoch(0, 1)
        opt.step({k: g.copy() for k, g in grads.items()})
        moved.append((np.concatenate([params[k].astype(np.float64).ravel() for k in params]),
                      opt.lr))
    (first, lr_a), (second, lr_b) = moved
    if not np.any(first) and not np.any(second):
        return  # a first step that moves nothing (a warm-up): the in_place check covers it
    expected = factor * first
    scale = float(np.abs(expected).max())
    error = float(np.abs(second - expected).max()) / max(scale, 1e-30)
    if not error <= LR_SCALE_TOLERANCE:
        ratio = float(np.linalg.norm(second) / max(np.linalg.norm(first), 1e-30))
        s.fail("lr_scale", f"with lr={other.lr:g} instead of lr={base.lr:g}, the first step "
               f"on the same gradients is {ratio:.3g} times as large, not {factor:g} times",
               "scale every update by the learning rate in use (self.lr, from options.lr), "
               "e.g. p -= self.lr * update; or skip lr_scale if lr is not a step size")
    if not np.isclose(lr_b, factor * lr_a, rtol=1e-6, atol=0):
        s.fail("lr_scale", f"options lr={base.lr:g} and lr={other.lr:g} give optimizer.lr "
               f"{lr_a!r} and {lr_b!r}", "set self.lr from options.lr (BaseOptimizer(params, "
               "options.lr) and ScheduledOptimizer do): the trainer shows it")


def _optimizer_state_changes(s: Subject) -> None:
    """A stateful optimizer's ``state_dict()`` changes over three steps on the same
    non-zero gradients: running sums and moments accumulate, counters count."""
    params, targets, curv = _quadratic_params()
    grads = _quadratic(params, targets, curv)[1]
    opt = _build_optimizer(s, "state_changes", params)
    opt.start_epoch(0, 1)
    states = []
    for _ in range(3):
        opt.step({k: g.copy() for k, g in grads.items()})
        states.append(npz_round_trip(s, "state_changes", opt.state_dict(), "state_dict()"))
    if not any(states):
        return  # stateless, like plain sgd
    if same_arrays(states[0], states[1]) and same_arrays(states[1], states[2]):
        s.fail("state_changes", f"state_dict() ({', '.join(sorted(states[0]))}) is the same "
               "after steps 1, 2 and 3 on the same non-zero gradients: the state does not "
               "accumulate", "update the state arrays in place (acc += g * g, "
               "m *= beta; m += ...): acc = acc + g * g makes a new array and leaves "
               "self.state as it was, acc[...] = g * g forgets the steps before")


OPTIMIZER_FUNCS = {"options": _optimizer_options, "construct": _optimizer_construct,
                   "start_epoch": _optimizer_start_epoch, "in_place": _optimizer_in_place,
                   "lr_scale": _optimizer_lr_scale, "quadratic": _optimizer_quadratic,
                   "state": _optimizer_state, "state_changes": _optimizer_state_changes}



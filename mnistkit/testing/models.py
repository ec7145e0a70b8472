"""Conformance checks of a model factory."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np

from mnistkit.contracts import (
    exception_line,
    interface_problems,
    new_model,
    params_problems,
    scores_problems,
    step_problems,
)
from mnistkit.errors import MnistkitError
from mnistkit.gradcheck import (
    DEFAULT_THRESHOLD,
    GradientCheckError,
    check_gradients,
    frozen_rng,
    random_batch,
)
from mnistkit.options import build_options, options_to_dict
from mnistkit.testing._core import (
    OVERFIT_EXAMPLES,
    Subject,
    check_declared_options,
    npz_round_trip,
    same_arrays,
    tiny_problem,
)

#: A regularisation strong enough that a gradient without its term fails the gradient
#: check (``option_gradients``); smaller ones are tried when the options refuse it.
STRONG_REGULARISATION = (1.0, 0.1, 0.01)


def _build_model(subject: Subject, check: str, seed: int = 0, options: Any = None) -> Any:
    if options is None:
        options = subject.make_options(check)
    try:
        model = new_model(subject.factory, options, np.random.default_rng(seed),
                          subject.n_inputs, subject.n_classes)
    except Exception as exc:
        subject.fail(check, f"factory(options, rng, n_inputs={subject.n_inputs}, "
                     f"n_classes={subject.n_classes}) raised {exception_line(exc)}",
                     "the factory must accept (options, rng, n_inputs, n_classes), the last "
                     "two also by keyword")
    return model


def _fail_first(s: Subject, check: str, problems: list) -> None:
    if problems:
        s.fail(check, problems[0], problems[0].fix)


def _model_options(s: Subject) -> None:
    check_declared_options(s)
    s.make_options("options")  # the options given to the checks build too


def _model_construct(s: Subject) -> None:
    _fail_first(s, "construct", interface_problems(_build_model(s, "construct")))


def _model_params(s: Subject) -> None:
    _fail_first(s, "params", params_problems(_build_model(s, "params").params))


def _call(s: Subject, check: str, what: str, func: Any) -> Any:
    """``func()``, a call into the model; an exception fails ``check`` naming ``what``."""
    try:
        return func()
    except Exception as exc:
        s.fail(check, f"{what} raised {exception_line(exc)}",
               "see mnistkit.models.base.Model for what each method receives and returns")


def _model_shapes(s: Subject) -> None:
    model = _build_model(s, "shapes")
    before = {k: v.copy() for k, v in model.params.items()}
    x, y = tiny_problem(s.n_inputs, s.n_classes, 5)
    with frozen_rng(model) as reset:
        result = _call(s, "shapes", "loss_and_grads(x, y) of a batch of 5",
                       lambda: model.loss_and_grads(x, y))
        if not isinstance(result, tuple) or len(result) != 2:
            s.fail("shapes", f"loss_and_grads returned {type(result).__name__}",
                   "return (loss, grads): a float and a dict")
        loss, grads = result
        _fail_first(s, "shapes", step_problems(model.params, loss, grads))
        loss = float(loss)
        if not np.isfinite(loss) or loss < 0:
            s.fail("shapes", f"the loss is {loss!r}", "return the mean cross-entropy (>= 0)")
        for key, g in grads.items():
            if not np.all(np.isfinite(g)):
                s.fail("shapes", f"gradient {key!r} has NaN or infinite values",
                       "check the backward pass")
        if not same_arrays(before, model.params):
            s.fail("shapes", "loss_and_grads changed the parameters",
                   "only the optimizer updates params; compute into separate buffers")
        scores = _call(s, "shapes", "scores(x) of a batch of 5", lambda: model.scores(x))
        _fail_first(s, "shapes", scores_problems(scores, 5, s.n_classes, dtype=np.float32))
        if not same_arrays(before, model.params):
            s.fail("shapes", "scores() changed the parameters", "scores must be read-only")
        # Buffers reused across batch sizes must not leak stale values.
        reset()
        first = float(model.loss_and_grads(x[:3], y[:3])[0])
        first_scores = model.scores(x[:3]).copy()
        other, other_y = tiny_problem(s.n_inputs, s.n_classes, 7, seed=2)
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


def _model_deterministic(s: Subject) -> None:
    model = _build_model(s, "deterministic")
    x, y = tiny_problem(s.n_inputs, s.n_classes, 6)
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


def _model_gradients(s: Subject) -> None:
    _check_model_gradients(s, "gradients", _build_model(s, "gradients"))


def _check_model_gradients(s: Subject, check: str, model: Any, setting: str = "",
                           fix: str = "") -> None:
    """The gradient check of ``model``, built with the options ``setting`` describes
    (e.g. ``"reg=1 (a strong regularisation)"``; empty for the checks' options);
    ``fix`` replaces the usual advice."""
    at = f"at {setting}, " if setting else ""
    originals = {k: v for k, v in model.params.items()}
    x, y = random_batch(4, s.n_inputs, s.n_classes, seed=3)
    try:
        results = check_gradients(model, x, y, entries=8)
    except GradientCheckError as exc:
        s.fail(check, f"{at}{exc}", "fix loss_and_grads so the gradient check can run")
    if any(model.params[k] is not v for k, v in originals.items()):
        s.fail(check, "the gradient check could not restore the parameter arrays",
               "keep the parameters in model.params only")
    bad = [r for r in results if not r.passed]
    if bad:
        detail = ", ".join(f"{r.name} (relative error {r.relative_error:.2e})" for r in bad)
        noisy = all(1e-9 < r.relative_error < 1e-2 for r in bad)
        fix = fix or ("the errors look like float32 noise: compute in the dtype of "
                      "model.params, never a hard-coded float32" if noisy else
                      "the backward pass does not match the loss for these parameters; "
                      "derive the gradient again and run 'mnistkit gradcheck' while fixing it")
        s.fail(check, f"{at}analytic and numerical gradients disagree (threshold "
               f"{DEFAULT_THRESHOLD:g}): {detail}", fix)


def _model_option_gradients(s: Subject) -> None:
    """The gradient check again at other declared option values (see
    :func:`option_variants`): a strong regularisation, whose term a gradient that
    forgets it gets wrong by far more than the threshold, and each other choice."""
    for field, value, is_regularisation, options in option_variants(s, "option_gradients"):
        shown = f"{field}={_shown(value)}"
        command = f"'mnistkit gradcheck --model {s.name} -m {shown}'"
        if is_regularisation:
            setting = f"{shown} (a strong regularisation)"
            fix = (f"the gradient of the regularisation term is missing or wrong: a loss "
                   f"term 0.5 * {field} * |W|^2 adds {field} * W to the gradient of every "
                   f"weight it covers; run {command} while fixing it")
        else:
            setting = shown
            fix = (f"the backward pass is wrong for {shown}; run {command} while fixing "
                   "it (or skip option_gradients if that value is meant not to work)")
        model = _build_model(s, "option_gradients", options=options)
        _check_model_gradients(s, "option_gradients", model, setting, fix)


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def is_regularisation(name: str) -> bool:
    """Whether an option called ``name`` looks like an L2 / weight-decay strength
    (``reg``, ``l2``, ``weight_decay``, ``l2_reg``, ``reg_strength``, ``wd``...)."""
    parts = name.lower().split("_")
    return (name.lower() in ("wd", "weight_decay", "l2", "lambda_l2") or "reg" in parts
            or "l2" in parts or name.lower().startswith("regulari")
            or name.lower().endswith("weight_decay"))


def _candidates(name: str, tp: Any, value: Any) -> list[list[Any]]:
    """Groups of values to try for one option (the first that builds of each group):
    a strong regularisation for a float named like one, every other choice of a
    ``Literal``, the other bool, half (or one more than) an int, a tuple of ints one item
    shorter (or halved)."""
    if typing.get_origin(tp) is typing.Literal:
        return [[choice] for choice in typing.get_args(tp) if choice != value]
    if tp is bool:
        return [[not value]]
    if tp is float and is_regularisation(name):
        return [[v for v in STRONG_REGULARISATION if v != value]]
    if tp is int and not isinstance(value, bool):
        return [[v for v in (value // 2, value + 1) if v != value]]
    if typing.get_origin(tp) is tuple and isinstance(value, tuple) and value:
        shorter = value[:-1] if len(value) > 1 else (max(1, value[0] // 2),)
        return [[v for v in (shorter, tuple(max(1, v // 2) for v in value)) if v != value]]
    return []


def option_variants(s: Subject, check: str) -> list[tuple[str, Any, bool, Any]]:
    """``(field, value, is_regularisation, options)`` for each other declared option value
    the ``option_gradients`` check tries, one field changed at a time from the options the
    checks use (values the options refuse, by their bounds or ``__post_init__``, are not
    tried)."""
    base = s.make_options(check)
    if base is None or not dataclasses.is_dataclass(base):
        return []
    values = options_to_dict(base)
    hints = typing.get_type_hints(type(base))
    variants = []
    for f in dataclasses.fields(base):
        current = getattr(base, f.name)
        for group in _candidates(f.name, hints.get(f.name), current):
            for value in group:
                try:
                    options = build_options(type(base), {**values, f.name: value},
                                            f"{s.kind} {s.name!r}")
                except MnistkitError:
                    continue
                variants.append((f.name, value, hints.get(f.name) is float
                                 and is_regularisation(f.name), options))
                break
    return variants


def _model_seed(s: Subject) -> None:
    a, b = _build_model(s, "seed", seed=7), _build_model(s, "seed", seed=7)
    if not same_arrays(a.params, b.params):
        s.fail("seed", "two models built with the same seed have different parameters",
               "draw every initial value from the rng the factory receives")
    x, y = tiny_problem(s.n_inputs, s.n_classes, 6)
    la, lb = float(a.loss_and_grads(x, y)[0]), float(b.loss_and_grads(x, y)[0])
    if la != lb:
        s.fail("seed", f"two models built with the same seed give losses {la} and {lb}",
               "draw all randomness from the rng the factory receives")


def _model_checkpoint(s: Subject) -> None:
    model = _build_model(s, "checkpoint", seed=0)
    # Trained parameters, not fresh ones: biases that start at 0 would hide a scores()
    # that forgets them.
    _perturb(model.params, np.random.default_rng(11))
    loaded = npz_round_trip(s, "checkpoint", model.params, "model.params")
    fresh = _build_model(s, "checkpoint", seed=1)
    if set(fresh.params) != set(loaded):
        s.fail("checkpoint", "a model built with other seed has other parameter names",
               "parameter names must depend on the options only")
    for key, value in loaded.items():
        if fresh.params[key].shape != value.shape or value.dtype != np.float32:
            s.fail("checkpoint", f"parameter {key!r} comes back as {value.shape} {value.dtype}",
                   "parameter shapes must depend on the options only")
        fresh.params[key][...] = value
    x, _ = tiny_problem(s.n_inputs, s.n_classes, 4)
    if not np.array_equal(model.scores(x), fresh.scores(x)):
        s.fail("checkpoint", "after loading saved parameters into a fresh model (in place), "
               "its scores differ from the original model's",
               "read the weights from self.params on every call; cache nothing derived "
               "from them")
    _check_scores_match_loss(s, fresh)


def _perturb(params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Add noise to every parameter in place (std: the parameter's own, at least 0.1), so
    every bias is non-zero and every weight differs from its initial value."""
    for p in params.values():
        spread = max(float(np.std(p)), 0.1)
        p += (rng.standard_normal(p.shape) * spread).astype(p.dtype)


def _mean_cross_entropy(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``scores`` in float64 (the reference for the loss)."""
    z = np.asarray(scores, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def _check_scores_match_loss(s: Subject, model: Any) -> None:
    """``loss_and_grads`` must be the mean cross-entropy of ``scores`` plus a term that
    depends on the parameters only (the regularisation): that difference is the same on
    every batch, here a sparse one and an all-zero one (where only the biases act).

    Skipped when the training loss is random (dropout): it then differs from the loss of
    the evaluation scores on purpose.
    """
    x, y = tiny_problem(s.n_inputs, s.n_classes, 8, seed=4)
    batches = [(x, y), (np.zeros_like(x), y)]
    with frozen_rng(model) as reset:
        reset()
        first = float(model.loss_and_grads(x, y)[0])
        if float(model.loss_and_grads(x, y)[0]) != first:
            return  # training randomness: the "deterministic" check covers the rest
        extras = []
        for bx, by in batches:
            reset()
            loss = float(model.loss_and_grads(bx, by)[0])
            extras.append((loss, loss - _mean_cross_entropy(model.scores(bx), by)))
    (loss_a, extra_a), (loss_b, extra_b) = extras
    if not abs(extra_a - extra_b) <= 2e-5 * (1 + abs(loss_a) + abs(loss_b)):
        s.fail("checkpoint", "with non-zero biases, loss_and_grads and the cross-entropy of "
               f"scores() disagree by {extra_a:.6g} on one batch and {extra_b:.6g} on "
               "another (only a regularisation term, the same on every batch, may differ)",
               "compute scores() exactly as the forward pass of loss_and_grads (every "
               "bias included), and return the mean cross-entropy plus regularisation")


def _model_overfit(s: Subject) -> None:
    from mnistkit.optimizers.sgd import SGD, SGDOptions

    model = _build_model(s, "overfit")
    x, y = tiny_problem(s.n_inputs, s.n_classes, OVERFIT_EXAMPLES)
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


def _model_extras(s: Subject) -> None:
    model = _build_model(s, "extras")
    x, _ = tiny_problem(s.n_inputs, s.n_classes, 3)
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
    if hasattr(model, "sgd_step"):
        _check_sgd_step(s)
    if hasattr(model, "export_layers"):
        _check_export_layers(s, model)


def _check_export_layers(s: Subject, model: Any) -> None:
    """``export_layers()``, if present, must be a Dense/ReLU chain reproducing ``scores``."""
    from mnistkit.errors import ExportError
    from mnistkit.export import ExportSpec, check_faithful, model_layers

    try:
        layers = model_layers(model, s.name)
        check_faithful(model, ExportSpec(layers, s.name, 1 / 255, (1, s.n_inputs),
                                         tuple(str(c) for c in range(s.n_classes))))
    except ExportError as exc:
        s.fail("extras", str(exc), "return [Dense(W, b), ReLU(), ..., Dense(W, b)] from "
               "mnistkit.export: the steps scores(x) computes, with the arrays of params")


def _check_sgd_step(s: Subject, lr: float = 0.1, steps: int = 3) -> None:
    """``sgd_step(x, y, lr)`` must equal ``loss_and_grads`` + plain SGD, up to rounding."""
    from mnistkit.optimizers.sgd import SGD, SGDOptions

    fused, plain = _build_model(s, "extras", seed=5), _build_model(s, "extras", seed=5)
    optimizer = SGD(plain.params, SGDOptions(lr=lr))
    x, y = tiny_problem(s.n_inputs, s.n_classes, 6)
    for step in range(steps):
        loss_fused = float(fused.sgd_step(x, y, lr))
        loss_plain, grads = plain.loss_and_grads(x, y)
        optimizer.step(grads)
        if not np.isclose(loss_fused, float(loss_plain), rtol=1e-5, atol=1e-7):
            s.fail("extras", f"sgd_step returned loss {loss_fused} at step {step}, "
                   f"loss_and_grads {float(loss_plain)}", "return the loss before the update")
        for key, value in plain.params.items():
            if not np.allclose(fused.params[key], value, rtol=1e-4, atol=1e-6):
                s.fail("extras", f"after sgd_step number {step + 1} (lr={lr}) parameter "
                       f"{key!r} differs from loss_and_grads followed by sgd", "sgd_step "
                       "must apply exactly p -= lr * grad, in place, to every parameter")


MODEL_FUNCS = {"options": _model_options, "construct": _model_construct,
               "params": _model_params, "shapes": _model_shapes,
               "deterministic": _model_deterministic, "gradients": _model_gradients,
               "option_gradients": _model_option_gradients, "seed": _model_seed,
               "checkpoint": _model_checkpoint, "overfit": _model_overfit,
               "extras": _model_extras}



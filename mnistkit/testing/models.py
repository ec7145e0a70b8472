"""Conformance checks of a model factory."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistkit.gradcheck import (
    DEFAULT_THRESHOLD,
    GradientCheckError,
    check_gradients,
    frozen_rng,
    random_batch,
)
from mnistkit.testing._core import (
    OVERFIT_EXAMPLES,
    Subject,
    check_declared_options,
    npz_round_trip,
    same_arrays,
    tiny_problem,
)


def _build_model(subject: Subject, check: str, seed: int = 0) -> Any:
    options = subject.make_options(check)
    try:
        model = subject.factory(options, np.random.default_rng(seed), subject.n_inputs,
                                subject.n_classes)
    except Exception as exc:
        subject.fail(check, f"factory(options, rng, {subject.n_inputs}, {subject.n_classes}) "
                     f"raised {type(exc).__name__}: {exc}",
                     "the factory must accept (options, rng, n_inputs, n_classes)")
    return model


def _model_options(s: Subject) -> None:
    check_declared_options(s)


def _model_construct(s: Subject) -> None:
    model = _build_model(s, "construct")
    params = getattr(model, "params", None)
    if not isinstance(params, dict) or not params:
        s.fail("construct", f"model.params is {type(params).__name__}, not a non-empty dict",
               "set self.params = {'W': ..., 'b': ...} in __init__")
    for method in ("loss_and_grads", "scores"):
        if not callable(getattr(model, method, None)):
            s.fail("construct", f"the model has no method {method}()",
                   "see mnistkit.models.base.Model for the contract")


def _model_params(s: Subject) -> None:
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


def _model_shapes(s: Subject) -> None:
    model = _build_model(s, "shapes")
    before = {k: v.copy() for k, v in model.params.items()}
    x, y = tiny_problem(s.n_inputs, s.n_classes, 5)
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
        if not same_arrays(before, model.params):
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
                "seed": _model_seed, "checkpoint": _model_checkpoint,
                "overfit": _model_overfit, "extras": _model_extras}



"""The conformance kit catches each kind of broken model, optimizer, dataset and plugin."""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Literal

import numpy as np
import pytest

from mnistkit import hookimpl
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import DataError
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions
from mnistkit.optimizers.base import BaseOptimizer, LearningRateOptions, ScheduledOptimizer
from mnistkit.optimizers.sgd import SGD, SGDOptions
from mnistkit.options import check_declared, option
from mnistkit.testing import (
    MODEL_CHECKS,
    OPTIMIZER_CHECKS,
    check_dataset,
    check_model,
    check_optimizer,
    check_plugin,
    collect_checks,
    conformance_cases,
    model_checks,
    optimizer_checks,
)

# ------------------------------------------------------------------ broken models


class SignFlipped(SoftmaxClassifier):
    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, {k: -g for k, g in grads.items()}


class Float64Params(SoftmaxClassifier):
    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, rng, n_inputs, n_classes)
        self.params = {k: v.astype(np.float64) for k, v in self.params.items()}


class WrongScores(SoftmaxClassifier):
    def scores(self, x):
        return super().scores(x)[:, :5]


class GradsWrongDtype(SoftmaxClassifier):
    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, {k: g.astype(np.float64) for k, g in grads.items()}


class StaleBuffer(SoftmaxClassifier):
    """Grows its score buffer to the largest batch seen and forgets to slice it."""

    def loss_and_grads(self, x, y):
        n, (W, b) = x.shape[0], (self.params["W"], self.params["b"])
        if getattr(self, "_s", None) is None or self._s.shape[0] < n:
            self._s = np.zeros((n, W.shape[1]), x.dtype)
        s = self._s
        np.matmul(x, W, out=s[:n])
        s[:n] += b
        loss = float(np.log(np.exp(s).sum(axis=1)).mean() - s[np.arange(n), y].mean())
        return loss, super().loss_and_grads(x, y)[1]


class GlobalInit(SoftmaxClassifier):
    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, np.random.default_rng(), n_inputs, n_classes)


class NoisyScores(SoftmaxClassifier):
    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, rng, n_inputs, n_classes)
        self.rng = rng

    def scores(self, x):
        return super().scores(x * (self.rng.random(x.shape) < 0.5))


class CachedWeights(SoftmaxClassifier):
    """Keeps a transposed copy of W made at construction: stale after a load."""

    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, rng, n_inputs, n_classes)
        self._wt = self.params["W"].T.copy()

    def scores(self, x):
        return (self._wt @ x.T).T + self.params["b"]


class Untrainable(SoftmaxClassifier):
    """Right loss and gradients, but its scores ignore the parameters."""

    def scores(self, x):
        return np.zeros((x.shape[0], self.params["b"].shape[0]), np.float32)


class ScoresForgetBias(SoftmaxClassifier):
    """Right loss and gradients; scores() leaves out b (invisible while b is 0)."""

    def scores(self, x):
        return x @ self.params["W"]


class TwoLayerScoresForgetHiddenBias(TwoLayerNet):
    """The built-in network with b1 left out of scores() only."""

    def scores(self, x):
        h = np.maximum(x @ self.params["W1"], 0)
        return h @ self.params["W2"] + self.params["b2"]


class SgdStepForgetsBias(SoftmaxClassifier):
    """An optional fused step that updates W but not b."""

    def sgd_step(self, x, y, lr):
        loss, grads = self.loss_and_grads(x, y)
        self.params["W"] -= lr * grads["W"]
        return loss


class SgdStepLossAfter(SoftmaxClassifier):
    """A fused step that returns the loss after its update instead of before."""

    def sgd_step(self, x, y, lr):
        _, grads = self.loss_and_grads(x, y)
        for key, g in grads.items():
            self.params[key] -= lr * g
        return self.loss_and_grads(x, y)[0]


@dataclasses.dataclass
class NoDefault:
    reg: float


def failing_message(func, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        func(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(("cls", "check", "words"), [
    (SignFlipped, "gradients", "disagree"),
    (Float64Params, "params", "not a float32 array"),
    (WrongScores, "shapes", "expected floats of shape (5, 10)"),
    (GradsWrongDtype, "shapes", "dtype of its parameter"),
    (StaleBuffer, "shapes", "changed"),
    (GlobalInit, "seed", "same seed"),
    (NoisyScores, "deterministic", "scores(x) differs"),
    (CachedWeights, "checkpoint", "cache nothing"),
    (Untrainable, "checkpoint", "cross-entropy of scores() disagree"),
    (ScoresForgetBias, "checkpoint", "cross-entropy of scores() disagree"),
    (SgdStepForgetsBias, "extras", "parameter 'b' differs"),
    (SgdStepLossAfter, "extras", "before the update"),
])
def test_broken_models_fail_with_what_and_how(cls, check, words):
    message = failing_message(check_model, cls, SoftmaxOptions, name="broken")
    assert f"model 'broken' failed check '{check}'" in message
    assert words in message
    assert "How to fix:" in message


def test_untrainable_scores_fail_overfit_too():
    message = failing_message(check_model, Untrainable, SoftmaxOptions, name="broken",
                              skip=["checkpoint"])
    assert "model 'broken' failed check 'overfit'" in message and "not 100%" in message


def test_twolayer_scores_without_the_hidden_bias_fail_the_checkpoint_check():
    message = failing_message(check_model, TwoLayerScoresForgetHiddenBias, TwoLayerOptions,
                              name="broken", options={"hidden_size": 16})
    assert "model 'broken' failed check 'checkpoint'" in message
    assert "non-zero biases" in message and "How to fix:" in message


def test_a_regularised_or_dropout_model_passes_the_scores_and_loss_check():
    """The regularisation term may differ from batch to batch only by rounding; a random
    training loss (dropout) is not compared with the evaluation scores."""
    from mnistkit.testing._core import Subject
    from mnistkit.testing.models import _check_scores_match_loss

    subject = Subject("model", "reg", TwoLayerNet, TwoLayerOptions)
    model = TwoLayerNet(TwoLayerOptions(hidden_size=16, reg=0.5), np.random.default_rng(0))
    _check_scores_match_loss(subject, model)  # a large L2 term, the same on every batch

    class Dropout(TwoLayerNet):
        def __init__(self, options, rng, n_inputs=784, n_classes=10):
            super().__init__(options, rng, n_inputs, n_classes)
            self.rng = rng

        def loss_and_grads(self, x, y):
            return super().loss_and_grads(x * (self.rng.random(x.shape) < 0.5), y)

    _check_scores_match_loss(subject, Dropout(TwoLayerOptions(hidden_size=16),
                                              np.random.default_rng(0)))


def test_options_without_default():
    message = failing_message(check_model, SoftmaxClassifier, NoDefault)
    assert "failed check 'options'" in message and "has no default" in message


def test_a_correct_model_passes_and_skip_is_validated():
    check_model(SoftmaxClassifier, SoftmaxOptions)
    names = [c.name for c in model_checks(SoftmaxClassifier, SoftmaxOptions,
                                          skip=["overfit"])]
    assert names == [n for n in MODEL_CHECKS if n != "overfit"]
    with pytest.raises(ValueError, match="unknown model checks"):
        model_checks(SoftmaxClassifier, SoftmaxOptions, skip=["nope"])


def test_options_given_as_dict_are_validated():
    check_model(SoftmaxClassifier, SoftmaxOptions, options={"reg": "0.001"})
    message = failing_message(check_model, SoftmaxClassifier, SoftmaxOptions,
                              options={"reg": "-1"})
    assert "options cannot be built" in message

# ------------------------------------------------------------------ broken optimizers


class Replaces(BaseOptimizer):
    def __init__(self, params, options):
        super().__init__(params, 0.1)

    def step(self, grads):
        for k in self.params:
            self.params[k] = self.params[k] - self.lr * grads[k]


class Ascends(BaseOptimizer):
    def __init__(self, params, options):
        super().__init__(params, 0.1)

    def step(self, grads):
        for k, p in self.params.items():
            p += self.lr * grads[k]


class ForgetsCounter(BaseOptimizer):
    """Adam-like bias correction with a counter kept outside state_dict."""

    def __init__(self, params, options):
        super().__init__(params, 0.05)
        self.t = 0

    def step(self, grads):
        self.t += 1
        for k, p in self.params.items():
            m = self.buffer(f"m.{k}", p)
            m *= 0.9
            m += 0.1 * grads[k]
            p -= self.lr * m / (1 - 0.9 ** self.t)


class ListState(SGD):
    def state_dict(self):
        return {"history": [1, 2, 3]}


class BadLr(SGD):
    def start_epoch(self, epoch, epochs):
        self.lr = float("nan")


@pytest.mark.parametrize(("cls", "check", "words"), [
    (Replaces, "in_place", "replaced params"),
    (Ascends, "quadratic", "against the gradient"),
    (ForgetsCounter, "state", "takes different steps"),
    (ListState, "state", "not a numeric array"),
    (BadLr, "start_epoch", "lr is nan"),
])
def test_broken_optimizers_fail_with_what_and_how(cls, check, words):
    options = SGDOptions if issubclass(cls, SGD) else None
    message = failing_message(check_optimizer, cls, options, name="broken")
    assert f"optimizer 'broken' failed check '{check}'" in message
    assert words in message and "How to fix:" in message


def test_sgd_passes_every_optimizer_check():
    checks = collect_checks(SGD, kind="optimizer", options_class=SGDOptions)
    assert [c.name for c in checks] == list(OPTIMIZER_CHECKS)
    for check in checks:
        check()

# ------------------------------------------------------------------ datasets


def tiny_dataset(options, data_dir):
    if data_dir is not None and not (data_dir / "ok").exists():
        raise DataError(f"{data_dir}: no data")
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
                  (np.arange(20) % 10).astype(np.uint8))
    return Dataset("tiny", split, split, source="generated")


def test_a_correct_dataset_passes(tmp_path):
    (tmp_path / "ok").touch()
    check_dataset(tiny_dataset, data_dir=tmp_path)
    check_dataset(tiny_dataset)


def test_dataset_that_ignores_missing_files():
    message = failing_message(check_dataset, lambda options, data_dir: tiny_dataset(None, None),
                              name="lenient")
    assert "failed check 'missing'" in message and "did not raise" in message


def test_dataset_with_wrong_image_size():
    def wide(options, data_dir):
        if data_dir is not None:
            raise DataError("none")
        split = Split(np.zeros((4, 28, 30), np.uint8), np.zeros(4, np.uint8))
        return Dataset("wide", split, split, source="x")

    assert "not 28x28" in failing_message(check_dataset, wide)


def test_dataset_raising_a_plain_exception():
    def crashes(options, data_dir):
        raise FileNotFoundError("nope")

    message = failing_message(check_dataset, crashes)
    assert "raised FileNotFoundError" in message and "DataError" in message

# ------------------------------------------------------------------ plugins


def make_plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("kit_test_plugin")
    for name, func in hooks.items():
        setattr(module, name, hookimpl(func))
    return module


def test_plugin_module_cases_cover_its_registrations():
    def mnistkit_register_models(register):
        register("tiny-softmax", SoftmaxClassifier, options=SoftmaxOptions, help="x")

    def mnistkit_register_optimizers(register):
        register("plain-sgd", SGD, options=SGDOptions, help="x")

    cases = conformance_cases(make_plugin(mnistkit_register_models=mnistkit_register_models,
                                          mnistkit_register_optimizers=mnistkit_register_optimizers))
    ids = [case.id for case in cases]
    assert ids[0] == "plugin:kit_test_plugin:plugin"
    assert "model:tiny-softmax:gradients" in ids and "optimizer:plain-sgd:state" in ids
    assert not any(i.startswith("model:twolayer") for i in ids)  # built-ins are not included
    for case in cases:
        case.values[0]()


def test_plugin_whose_hook_raises():
    def mnistkit_register_models(register):
        raise RuntimeError("boom")

    message = failing_message(check_plugin, make_plugin(
        mnistkit_register_models=mnistkit_register_models))
    assert "failed check 'plugin'" in message and "RuntimeError: boom" in message


def test_plugin_registering_a_bad_name():
    def mnistkit_register_models(register):
        register("Bad Name", SoftmaxClassifier)

    assert "lower case" in failing_message(check_plugin, make_plugin(
        mnistkit_register_models=mnistkit_register_models))


def test_plugin_commands_are_checked():
    import click

    @click.command("hello")
    def hello():
        pass  # no docstring: no help text

    def mnistkit_register_commands(cli):
        cli.add_command(hello)

    message = failing_message(check_plugin, make_plugin(
        mnistkit_register_commands=mnistkit_register_commands))
    assert "failed check 'commands'" in message and "no help text" in message


def test_registered_name_needs_a_kind_and_is_looked_up():
    with pytest.raises(ValueError, match="kind="):
        collect_checks("twolayer")
    from mnistkit.plugins import load_plugins

    registry = load_plugins(entry_points=False).registry
    checks = collect_checks("softmax", kind="model", registry=registry)
    assert checks[0].id == "model:softmax:options"

# ------------------------------------------------------------------ option values, lr, state


@dataclasses.dataclass
class WeakRegOptions(TwoLayerOptions):
    """twolayer's options with a default L2 strength too weak for its term to show."""

    hidden_size: int = option(32, "hidden ReLU units", ge=1)
    reg: float = option(1e-7, "L2 strength on W1, W2", ge=0)


class TwoLayerWithoutL2Gradient(TwoLayerNet):
    """A twolayer copy whose loss has the L2 term but whose gradients do not."""

    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        for key in ("W1", "W2"):
            grads[key] -= self.options.reg * self.params[key]
        return loss, grads


def test_a_gradient_without_the_l2_term_fails_at_a_strong_regularisation():
    # at the weak default the gradient check cannot tell: everything else passes
    for check in model_checks(TwoLayerWithoutL2Gradient, WeakRegOptions, name="nol2",
                              skip=["option_gradients"]):
        check()
    message = failing_message(check_model, TwoLayerWithoutL2Gradient, WeakRegOptions,
                              name="nol2")
    assert "model 'nol2' failed check 'option_gradients'" in message
    assert "at reg=1 (a strong regularisation), analytic and numerical gradients disagree" in (
        message) and "W1 (relative error" in message
    assert "regularisation term is missing or wrong" in message
    assert "'mnistkit gradcheck --model nol2 -m reg=1'" in message
    check_model(TwoLayerNet, WeakRegOptions)  # the real gradient passes at every value


def test_the_strong_regularisation_is_found_through_settings_options():
    """``settings={"name": {"options": {...}}}`` sets the options the checks use; the
    option values are varied from there."""
    def mnistkit_register_models(register):
        register("nol2", TwoLayerWithoutL2Gradient, options=TwoLayerOptions, help="x")

    plugin = make_plugin(mnistkit_register_models=mnistkit_register_models)
    message = failing_message(check_plugin, plugin, skip={"nol2": ["gradients"]},
                              settings={"nol2": {"options": {"hidden_size": 16,
                                                             "reg": 1e-8}}})
    assert "model 'nol2' failed check 'option_gradients'" in message


@dataclasses.dataclass
class ChoiceOptions:
    activation: Literal["relu", "tanh", "identity"] = "relu"
    bias: bool = True
    units: int = option(8, "units", ge=1)
    weight_decay: float = option(0.0, "L2", ge=0, le=0.5)
    layers: tuple[int, ...] = (16, 8)
    init_std: float = 0.1
    label: str = "x"

    def __post_init__(self):
        check_declared(self)


def test_option_variants_cover_the_declared_values():
    from mnistkit.testing._core import Subject
    from mnistkit.testing.models import option_variants

    subject = Subject("model", "m", None, ChoiceOptions)
    found = [(field, value, reg) for field, value, reg, _ in option_variants(subject, "x")]
    assert found == [("activation", "tanh", False), ("activation", "identity", False),
                     ("bias", False, False), ("units", 4, False),
                     ("weight_decay", 0.1, True),  # 1.0 is out of its declared bounds
                     ("layers", (16,), False)]     # floats that are not L2, str: not varied
    twolayer = Subject("model", "twolayer", TwoLayerNet, TwoLayerOptions)
    assert [(f, v) for f, v, _, _ in option_variants(twolayer, "x")] == [
        ("hidden_size", 128), ("reg", 1.0)]


@dataclasses.dataclass
class ActivationOptions(SoftmaxOptions):
    activation: Literal["none", "square"] = "none"


class WrongOnlyForSquare(SoftmaxClassifier):
    """Scores squared for activation=square, gradients as if they were not."""

    def loss_and_grads(self, x, y):
        if self.options.activation == "none":
            return super().loss_and_grads(x, y)
        from mnistkit.models.base import softmax_cross_entropy

        s = x @ self.params["W"] + self.params["b"]
        loss, ds = softmax_cross_entropy(s * s, y)
        return loss, {"W": x.T @ ds, "b": ds.sum(axis=0)}


def test_a_backward_pass_wrong_for_one_literal_choice_fails():
    message = failing_message(check_model, WrongOnlyForSquare, ActivationOptions, name="act",
                              skip=["checkpoint", "overfit"])
    assert "failed check 'option_gradients'" in message
    assert "at activation=square, analytic" in message
    assert "wrong for activation=square" in message


class IgnoresLr(ScheduledOptimizer):
    """Steps of 0.1 * gradient, whatever options.lr says."""

    def step(self, grads):
        for key, p in self.params.items():
            p -= 0.1 * grads[key]


@dataclasses.dataclass
class AdagradOptions(LearningRateOptions):
    lr: float = option(0.5, "learning rate", gt=0)
    eps: float = option(1e-8, "added to the root", gt=0)


class Adagrad(ScheduledOptimizer):
    """Steps divided by the root of the running sum of squared gradients."""

    def step(self, grads):
        for key, p in self.params.items():
            g = grads[key]
            p -= self.lr * g / (np.sqrt(self.accumulate(key, g)) + self.options.eps)

    def accumulate(self, key, g):
        acc = self.buffer(f"sum.{key}", g)
        acc += g * g
        return acc


class RebindingAdagrad(Adagrad):
    """``acc = acc + g * g``: a new array each step, the state stays zero."""

    def accumulate(self, key, g):
        acc = self.buffer(f"sum.{key}", g)
        acc = acc + g * g
        return acc


class OverwritingAdagrad(Adagrad):
    """``acc[...] = g * g``: the state holds the last step only."""

    def accumulate(self, key, g):
        acc = self.buffer(f"sum.{key}", g)
        acc[...] = g * g
        return acc


@pytest.mark.parametrize(("cls", "options", "check", "words"), [
    (IgnoresLr, LearningRateOptions, "lr_scale",
     "with lr=0.2 instead of lr=0.1, the first step on the same gradients is 1 times as "
     "large, not 2 times"),
    (RebindingAdagrad, AdagradOptions, "state_changes", "the state does not accumulate"),
    (OverwritingAdagrad, AdagradOptions, "state_changes", "the state does not accumulate"),
])
def test_optimizers_ignoring_lr_or_not_accumulating_fail(cls, options, check, words):
    names = [c.name for c in optimizer_checks(cls, options)]
    for case in optimizer_checks(cls, options, skip=[check]):
        case()  # only the new check tells them from correct ones
    message = failing_message(check_optimizer, cls, options, name="broken")
    assert f"optimizer 'broken' failed check '{check}'" in message
    assert words in message and "How to fix:" in message
    assert names == list(OPTIMIZER_CHECKS)


def test_a_correct_adagrad_passes_and_lr_scale_can_be_skipped():
    check_optimizer(Adagrad, AdagradOptions)
    check_optimizer(IgnoresLr, LearningRateOptions, skip=["lr_scale"])


def test_lr_scale_halves_when_twice_the_lr_is_refused():
    @dataclasses.dataclass
    class CappedOptions(LearningRateOptions):
        lr: float = option(0.8, "learning rate", gt=0, le=1)

    message = failing_message(check_optimizer, IgnoresLr, CappedOptions, name="capped")
    assert "with lr=0.4 instead of lr=0.8" in message and "not 0.5 times" in message


class LrAttributeStuck(SGD):
    """Steps with options.lr but shows a constant lr."""

    def start_epoch(self, epoch, epochs):
        super().start_epoch(epoch, epochs)
        self.lr_shown = self.lr

    @property
    def lr(self):
        return 0.5

    @lr.setter
    def lr(self, value):
        self._lr = value

    def step(self, grads):
        for key, p in self.params.items():
            p -= self._lr * grads[key]


def test_an_lr_attribute_that_does_not_follow_the_options_fails():
    message = failing_message(check_optimizer, LrAttributeStuck, SGDOptions, name="stuck")
    assert "failed check 'lr_scale'" in message and "give optimizer.lr 0.5 and 0.5" in message

# ------------------------------------------------------------------ the first contract failure


class MissingGradient(SoftmaxClassifier):
    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, {"W": grads["W"]}


class NoStartEpoch:
    def __init__(self, params, options):
        self.params, self.lr = params, 0.1

    def step(self, grads):
        for key, p in self.params.items():
            p -= self.lr * grads[key]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _outcomes(checks):
    outcomes = {}
    for check in checks:
        try:
            check()
            outcomes[check.name] = "passed"
        except pytest.skip.Exception as exc:
            outcomes[check.name] = f"skipped: {exc.msg}"
        except AssertionError as exc:
            outcomes[check.name] = f"failed: {exc}"
    return outcomes


def test_after_the_first_contract_failure_the_other_checks_are_skipped():
    outcomes = _outcomes(collect_checks(MissingGradient, kind="model",
                                        options_class=SoftmaxOptions, name="nob"))
    assert [outcomes[n] for n in ("options", "construct", "params")] == ["passed"] * 3
    assert outcomes["shapes"].startswith("failed: model 'nob' failed check 'shapes': "
                                         "loss_and_grads returned gradients for ['W'] but the "
                                         "parameters are ['W', 'b'] (missing ['b'])")
    later = [n for n in MODEL_CHECKS if n not in ("options", "construct", "params", "shapes")]
    for name in later:  # overfit used to fail again with a bare KeyError: 'b'
        assert outcomes[name] == (
            f"skipped: model 'nob': check '{name}' not run: check 'shapes' failed first "
            "(loss_and_grads returned gradients for ['W'] but the parameters are ['W', 'b'] "
            "(missing ['b'])); fix that one")
    outcomes = _outcomes(collect_checks(NoStartEpoch, kind="optimizer", name="nose"))
    assert outcomes["construct"].startswith("failed: optimizer 'nose' failed check "
                                            "'construct': the optimizer has no method "
                                            "start_epoch()")
    assert all(outcomes[n].startswith("skipped: optimizer 'nose': check") for n in
               OPTIMIZER_CHECKS if n not in ("options", "construct"))


def test_outside_pytest_a_check_not_run_says_so(monkeypatch):
    checks = {c.name: c for c in collect_checks(MissingGradient, kind="model",
                                                options_class=SoftmaxOptions, name="nob")}
    monkeypatch.delitem(sys.modules, "pytest")
    with pytest.raises(AssertionError, match="check 'overfit' not run: check 'shapes' failed"):
        checks["overfit"]()


def test_options_that_do_not_build_stop_the_checks_at_options():
    outcomes = _outcomes(collect_checks(SoftmaxClassifier, kind="model",
                                        options_class=SoftmaxOptions, options={"reg": "-1"}))
    assert outcomes["options"].startswith("failed: model 'SoftmaxClassifier' failed check "
                                          "'options': the options cannot be built")
    assert all(v.startswith("skipped:") for k, v in outcomes.items() if k != "options")


class RaisesInHidden(SoftmaxClassifier):
    def hidden(self, x):
        raise RuntimeError("no hidden layer\nsecond line")


def test_an_exception_in_a_check_is_one_line_naming_the_check():
    message = failing_message(check_model, RaisesInHidden, SoftmaxOptions, name="raises")
    assert message.startswith("model 'raises' failed check 'extras': the check stopped on "
                              "RuntimeError: no hidden layer\n  How to fix:")


def test_a_plugin_command_replacing_a_builtin_one_fails():
    import click

    @click.command("models")
    def models():
        """My own listing."""

    def mnistkit_register_commands(cli):
        cli.add_command(models)

    message = failing_message(check_plugin, make_plugin(
        mnistkit_register_commands=mnistkit_register_commands))
    assert "failed check 'commands'" in message
    assert "replaces the built-in command 'models'" in message

"""The numerical gradient check (library and ``mnistkit gradcheck``)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit import hookimpl
from mnistkit.cli import build_cli
from mnistkit.gradcheck import (
    GradientCheckError,
    NondeterministicLossError,
    check_gradients,
    random_batch,
)
from mnistkit.models.base import softmax_cross_entropy
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions
from mnistkit.plugins import load_plugins


class WrongBias(SoftmaxClassifier):
    """The gradient of ``b`` is off by a factor of two; ``W`` is right."""

    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, {"W": grads["W"], "b": 2 * grads["b"]}


class Float32Inside(SoftmaxClassifier):
    """Casts to float32 whatever the parameters' dtype: breaks the float64 check."""

    def loss_and_grads(self, x, y):
        W, b = self.params["W"].astype(np.float32), self.params["b"].astype(np.float32)
        loss, ds = softmax_cross_entropy(x.astype(np.float32) @ W + b, y)
        return loss, {"W": x.astype(np.float32).T @ ds, "b": ds.sum(axis=0)}


class MissingKey(SoftmaxClassifier):
    def loss_and_grads(self, x, y):
        loss, grads = super().loss_and_grads(x, y)
        return loss, {"W": grads["W"]}


class Dropout(SoftmaxClassifier):
    """Input dropout drawn from ``self.rng`` (the contract) or from global state."""

    use_global = False

    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, rng, n_inputs, n_classes)
        self.rng = rng

    def loss_and_grads(self, x, y):
        draw = np.random.random if self.use_global else self.rng.random
        x = x * (draw(x.shape) < 0.5) * 2
        return super().loss_and_grads(x, y)


class GlobalDropout(Dropout):
    use_global = True


def make(cls, **options):
    opts = (TwoLayerOptions if cls is TwoLayerNet else SoftmaxOptions)(**options)
    return cls(opts, np.random.default_rng(0))


@pytest.mark.parametrize("cls", [TwoLayerNet, SoftmaxClassifier])
def test_builtin_models_pass_and_are_restored(cls):
    model = make(cls)
    before = {k: (v, v.copy()) for k, v in model.params.items()}
    x, y = random_batch(5)
    results = check_gradients(model, x, y)
    assert [r.name for r in results] == list(model.params)
    assert all(r.passed and r.relative_error < 1e-7 for r in results)
    for key, (array, values) in before.items():
        assert model.params[key] is array and array.dtype == np.float32
        assert np.array_equal(array, values)


def test_a_wrong_gradient_fails_only_where_it_is_wrong():
    x, y = random_batch(6)
    results = {r.name: r for r in check_gradients(make(WrongBias), x, y)}
    assert results["W"].passed
    assert not results["b"].passed and results["b"].relative_error > 0.1


def test_entries_are_bounded_and_reported():
    x, y = random_batch(3)
    results = check_gradients(make(TwoLayerNet, hidden_size=16), x, y, entries=5)
    assert [r.entries for r in results] == [5, 5, 5, 5]
    small = check_gradients(make(SoftmaxClassifier), x, y, entries=50)
    assert [r.entries for r in small] == [50, 10]


def test_float32_computation_is_reported_as_a_contract_error():
    x, y = random_batch(3)
    with pytest.raises(GradientCheckError, match="dtype of model.params"):
        check_gradients(make(Float32Inside), x, y)


def test_missing_gradient_key():
    x, y = random_batch(3)
    model = make(MissingKey)
    with pytest.raises(GradientCheckError, match=r"missing \['b'\]"):
        check_gradients(model, x, y)
    assert all(v.dtype == np.float32 for v in model.params.values())  # restored after error


def test_dropout_from_model_rng_is_checked_and_rng_left_untouched():
    model = make(Dropout)
    state = model.rng.bit_generator.state
    x, y = random_batch(4)
    assert all(r.passed for r in check_gradients(model, x, y))
    assert model.rng.bit_generator.state == state


def test_dropout_from_global_state_is_reported():
    x, y = random_batch(4)
    with pytest.raises(NondeterministicLossError, match="model.rng"):
        check_gradients(make(GlobalDropout), x, y)


def _plugin_with(model_cls):
    module = types.ModuleType("gradcheck_test_plugin")

    @hookimpl
    def mnistkit_register_models(register):
        register("broken", model_cls, options=SoftmaxOptions, help="test")

    module.mnistkit_register_models = mnistkit_register_models
    return module


def test_cli_passes_for_twolayer():
    cli = build_cli(load_plugins(entry_points=False))
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "twolayer", "-m", "hidden_size=32"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    for name in ("W1", "b1", "W2", "b2"):
        assert name in result.output


def test_cli_json_and_failure_exit_code():
    cli = build_cli(load_plugins([_plugin_with(WrongBias)], entry_points=False))
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "broken", "--json"])
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["passed"] is False
    assert {p["name"]: p["passed"] for p in record["params"]} == {"W": True, "b": False}


def test_cli_table_says_failed():
    cli = build_cli(load_plugins([_plugin_with(WrongBias)], entry_points=False))
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "broken", "--batch", "3"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "FAILED: b" in result.output


def test_cli_real_images():
    cli = build_cli(load_plugins(entry_points=False))
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "softmax", "--real", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"].startswith("mnist: first 8")


def test_cli_unknown_model_and_bad_option():
    cli = build_cli(load_plugins(entry_points=False))
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "twolayr"])
    assert result.exit_code == 2 and "Did you mean 'twolayer'" in result.output
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "twolayer", "-m", "hidden=3"])
    assert result.exit_code == 2 and "hidden_size" in result.output
    assert "Traceback" not in result.output


def factory_raises(options, rng, n_inputs, n_classes):
    raise ImportError("No module named 'torch'\nsecond line")


class ParamsList(SoftmaxClassifier):
    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, rng, n_inputs, n_classes)
        self.params = list(self.params.values())


class Float64Init(SoftmaxClassifier):
    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(options, rng, n_inputs, n_classes)
        self.params = {k: v.astype(np.float64) for k, v in self.params.items()}


class RaisesInLoss(SoftmaxClassifier):
    def loss_and_grads(self, x, y):
        raise ValueError("shapes (8,784) and (10,) not aligned")


@pytest.mark.parametrize(("factory", "message"), [
    (factory_raises, "model 'broken' from plugin 'gradcheck_test_plugin' could not be built: "
                     "ImportError: No module named 'torch'"),
    (ParamsList, "model 'broken' from plugin 'gradcheck_test_plugin': model.params is list, "
                 "not a non-empty dict"),
    (Float64Init, "model 'broken' from plugin 'gradcheck_test_plugin': parameter 'W' is "
                  "float64, not a float32 array"),
    (RaisesInLoss, "model 'broken' from plugin 'gradcheck_test_plugin' failed in the gradient "
                   "check: ValueError: shapes (8,784) and (10,) not aligned"),
    (MissingKey, "model 'broken' from plugin 'gradcheck_test_plugin': loss_and_grads returned "
                 "gradients for ['W'] but the parameters are ['W', 'b'] (missing ['b'])"),
    (Float32Inside, "model 'broken' from plugin 'gradcheck_test_plugin': loss_and_grads: "
                    "gradient 'W' is float32 (784, 10), expected float64 (784, 10) like its "
                    "parameter; compute in the dtype of model.params"),
])
def test_cli_a_broken_model_is_one_line_without_traceback(factory, message):
    cli = build_cli(load_plugins([_plugin_with(factory)], entry_points=False))
    result = CliRunner().invoke(cli, ["gradcheck", "--model", "broken"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.output


def _three_classes(options, data_dir):
    from mnistkit.data.dataset import Dataset, Split

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
                  (np.arange(12) % 3).astype(np.uint8))
    return Dataset("three", split, split, class_names=("a", "b", "c"), source="generated")


def test_cli_sizes_the_model_by_the_dataset():
    module = types.ModuleType("three_classes_plugin")
    module.mnistkit_register_datasets = hookimpl(
        lambda register: register("three", _three_classes, help="three classes"))
    cli = build_cli(load_plugins([module], entry_points=False))
    for extra in ([], ["--real"]):
        result = CliRunner().invoke(cli, ["gradcheck", "--model", "softmax", "--dataset",
                                          "three", "--json", *extra])
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout)
        assert record["dataset"] == "three" and record["classes"] == 3
        shapes = {p["name"]: p["shape"] for p in record["params"]}
        assert shapes == {"W": [784, 3], "b": [3]} and record["passed"]
    default = json.loads(CliRunner().invoke(cli, ["gradcheck", "--model", "softmax",
                                                  "--json"]).stdout)
    assert default["dataset"] == "mnist" and default["classes"] == 10

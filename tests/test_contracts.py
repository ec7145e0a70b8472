"""mnistkit.contracts: building plugin objects, checking them, failures in one line."""

from __future__ import annotations

import numpy as np
import pytest

from mnistkit import contracts
from mnistkit.contracts import (
    Problem,
    build_augmentation,
    build_dataset,
    build_model,
    build_optimizer,
    call_plugin,
    exception_line,
    model_problems,
    optimizer_problems,
    scores_problems,
    step_problems,
)
from mnistkit.errors import DataError, MemoryLimitError, OptionsError, PluginError
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.optimizers.sgd import SGD, SGDOptions
from mnistkit.registry import Entry


def entry(kind, factory, options=None, name="thing"):
    return Entry(kind, name, factory, options, "", "some-plugin")


def test_exception_line_is_the_type_and_the_first_line():
    assert exception_line(ValueError("bad\nworse")) == "ValueError: bad"
    assert exception_line(KeyError("momentum")) == "KeyError: 'momentum'"
    assert exception_line(RuntimeError()) == "RuntimeError"
    assert exception_line(DataError("no files\nat all")) == "no files"  # explains itself


def test_call_plugin_names_the_plugin_in_one_line():
    e = entry("optimizer", None, name="opt")

    def boom():
        raise KeyError("momentum_buffer")

    with pytest.raises(PluginError, match=r"^optimizer 'opt' from plugin 'some-plugin' could "
                                          r"not be built: KeyError: 'momentum_buffer'$"):
        call_plugin(e, "could not be built", boom)
    with pytest.raises(MemoryLimitError, match="could not be built: not enough memory"):
        call_plugin(e, "could not be built", lambda: np.empty((10**8, 10**8), np.float32))
    with pytest.raises(OptionsError, match="^mine$"):  # mnistkit's own errors pass through
        call_plugin(e, "could not be built", lambda: (_ for _ in ()).throw(OptionsError("mine")))
    assert call_plugin(e, "x", lambda: 42) == 42


def test_build_model_validates_options_and_checks_the_contract():
    e = entry("model", SoftmaxClassifier, SoftmaxOptions, "softmax")
    model = build_model(e, {"reg": "0.01"}, np.random.default_rng(0), 784, 3,
                        probe=np.zeros((2, 784), np.float32))
    assert model.params["W"].shape == (784, 3) and model.options.reg == 0.01
    assert build_model(e, SoftmaxOptions(reg=0.5), np.random.default_rng(0), 784, 10
                       ).options.reg == 0.5
    with pytest.raises(OptionsError, match="has no option 'rge'"):
        build_model(e, {"rge": 1}, np.random.default_rng(0), 784, 10)

    class NoScores:
        def __init__(self, options, rng, n_inputs, n_classes):
            self.params = {"W": np.zeros(3, np.float32)}

        def loss_and_grads(self, x, y):
            return 0.0, {}

    with pytest.raises(PluginError, match=r"^model 'nos' from plugin 'some-plugin': the model "
                                          r"has no method scores\(\)$"):
        build_model(entry("model", NoScores, name="nos"), None, np.random.default_rng(0), 784,
                    10)

    class Scores1d(SoftmaxClassifier):
        def scores(self, x):
            return super().scores(x).argmax(axis=1)

    with pytest.raises(PluginError, match=r"scores\(\) returned int64 \(2,\); expected floats "
                                          r"of shape \(2, 10\) \(images, classes\)"):
        build_model(entry("model", Scores1d, SoftmaxOptions), None, np.random.default_rng(0),
                    784, 10, probe=np.zeros((2, 784), np.float32))


def test_build_model_refuses_what_does_not_fit_before_building(monkeypatch):
    monkeypatch.setattr("mnistkit.memory.available_bytes", lambda: 1000)

    class Big(SoftmaxClassifier):
        @staticmethod
        def estimate_memory(options, n_inputs, n_classes, batch_size):
            return {"params": 10**6, "work": 0}

    with pytest.raises(MemoryLimitError, match="checking the gradients of model 'big'"):
        build_model(entry("model", Big, SoftmaxOptions, "big"), None, np.random.default_rng(0),
                    784, 10, batch_size=8, action="checking the gradients of")


def test_model_problems():
    model = SoftmaxClassifier(SoftmaxOptions(), np.random.default_rng(0))
    assert model_problems(model) == []
    model.params["W"] = model.params["W"].astype(np.float64)
    model.params["b"][0] = np.nan
    model.params[""] = np.zeros(1, np.float32)
    problems = model_problems(model)
    assert problems == ["parameter 'W' is float64, not a float32 array",
                        "parameter 'b' has NaN or infinite values",
                        "parameter key '' is not a plain string"]
    assert all(isinstance(p, Problem) and p.fix for p in problems)
    assert model_problems(object()) == ["model.params is NoneType, not a non-empty dict",
                                        "the model has no method loss_and_grads()",
                                        "the model has no method scores()"]


def test_step_problems_name_what_is_wrong():
    params = {"W": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    good = {"W": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    assert step_problems(params, 0.5, good) == []
    assert step_problems(params, np.float32(0.5), good) == []
    assert step_problems(params, 0.5, list(good.values())) == [
        "loss_and_grads must return (loss, dict of gradients); got list as the gradients"]
    assert step_problems(params, 0.5, {"W": good["W"], "c": good["b"]}) == [
        "loss_and_grads returned gradients for ['W', 'c'] but the parameters are ['W', 'b'] "
        "(missing ['b'], extra ['c'])"]
    assert step_problems(params, 0.5, {"W": good["W"][:1], "b": good["b"].astype(np.float64)}
                         ) == [
        "loss_and_grads: gradient 'W' is float32 (1, 2), expected float32 (3, 2) like its "
        "parameter",
        "loss_and_grads: gradient 'b' is float64 (2,), expected float32 (2,) like its "
        "parameter; compute in the dtype of model.params (no hard-coded float32)"]
    assert step_problems(params, np.ones(4), good) == [
        "loss_and_grads must return a number as loss; got ndarray (4,)"]
    assert step_problems(params, float("nan"), good) == []  # divergence: the caller's call


def test_scores_problems():
    assert scores_problems(np.zeros((2, 10), np.float32), 2, 10) == []
    assert scores_problems(np.zeros((2, 10), np.float64), 2, 10, dtype=np.float32) == [
        "scores() returned float64 for float32 parameters"]
    assert scores_problems([[0.0] * 10] * 2, 2, 10) == [
        "scores() returned list; expected floats of shape (2, 10) (images, classes)"]


def test_optimizers_are_built_and_checked():
    params = {"w": np.zeros(3, np.float32)}
    sgd = build_optimizer(entry("optimizer", SGD, SGDOptions, "sgd"), params, {"lr": "0.5"})
    assert sgd.lr == 0.5 and optimizer_problems(sgd) == []

    class Half:
        lr = 0.0

        def __init__(self, params, options):
            pass

        def step(self, grads):
            pass

    assert optimizer_problems(Half(None, None)) == [
        "the optimizer has no method state_dict()", "the optimizer has no method "
        "load_state_dict()", "the optimizer has no method start_epoch()", "optimizer.lr is 0.0"]
    with pytest.raises(PluginError, match="^optimizer 'half' from plugin 'some-plugin': the "
                                          r"optimizer has no method state_dict\(\)$"):
        build_optimizer(entry("optimizer", Half, name="half"), params, None)


def test_datasets_and_augmentations_are_built_and_checked():
    with pytest.raises(DataError, match="^dataset 'd' from plugin 'some-plugin': returned "
                                        "list, not a mnistkit.data.Dataset$"):
        build_dataset(entry("dataset", lambda options, data_dir: [], name="d"), None, None)
    def missing(options, data_dir):
        raise FileNotFoundError("nope")

    with pytest.raises(PluginError, match="dataset 'd' from plugin 'some-plugin' failed to "
                                          "load: FileNotFoundError: nope"):
        build_dataset(entry("dataset", missing, name="d"), None, None)
    with pytest.raises(PluginError, match=r"augmentation 'a' from plugin 'some-plugin': its "
                                          r"factory returned int, which has no distort"):
        build_augmentation(entry("augmentation", lambda options: 3, name="a"), None)


def test_the_factories_are_called_by_keyword():
    seen = {}

    def factory(options, rng, *, n_inputs, n_classes):
        seen.update(n_inputs=n_inputs, n_classes=n_classes)
        return SoftmaxClassifier(SoftmaxOptions(), rng, n_inputs, n_classes)

    contracts.new_model(factory, None, np.random.default_rng(0), 100, 4)
    assert seen == {"n_inputs": 100, "n_classes": 4}

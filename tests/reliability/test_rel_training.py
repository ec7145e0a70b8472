"""Training that goes wrong: divergence stops with the epoch, step, likely cause and a
suggestion, keeping the last good checkpoint; a plugin model breaking its contract is
caught before or on the first step, naming the model and its plugin.

Already covered elsewhere: the NaN guard at library level (tests/test_training.py).
"""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke

from mnistkit import hookimpl
from mnistkit.checkpoint import load_checkpoint
from mnistkit.cli import build_cli
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.plugins import load_plugins

QUICK = ["--limit", "1000", "--val-size", "100", "--batch-size", "100"]  # 10 steps an epoch


def test_huge_learning_rate_through_the_cli(tmp_path):
    result = invoke("train", *QUICK, "--epochs", "2", "-o", "lr=1e6", "--out", tmp_path / "r")
    line = assert_one_line_error(result, "training diverged at epoch 1, step ",
                                 "The learning rate (1e+06) is probably too high",
                                 "try a smaller one (e.g. -o lr=0.01)", exit_code=1)
    assert "loss or a gradient is" in line
    assert "Warning" not in result.output  # no numpy overflow warnings with source lines
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["status"] == "diverged" and record["error"] == line.removeprefix("Error: ")
    # the last good checkpoint is the initial one: finite, and the run can be inspected
    kept = load_checkpoint(tmp_path / "r" / "last.npz")
    assert all(np.isfinite(v).all() for v in kept["params"].values())


@dataclasses.dataclass
class FailOptions:
    fail_step: int = 15  # the 15th step: epoch 2 when an epoch has 10 steps
    what: str = "loss"  # or "grad"


class Diverging:
    """A softmax model whose loss (or a gradient) becomes non-finite at ``fail_step``."""

    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        self.inner = SoftmaxClassifier(SoftmaxOptions(), rng, n_inputs, n_classes)
        self.params, self.options, self.calls = self.inner.params, options, 0

    def loss_and_grads(self, x, y):
        self.calls += 1
        loss, grads = self.inner.loss_and_grads(x, y)
        if self.calls >= self.options.fail_step:
            if self.options.what == "loss":
                loss = float("inf")
            else:
                grads = {**grads, "W": np.full_like(grads["W"], np.nan)}
        return loss, grads

    def scores(self, x):
        return self.inner.scores(x)


def broken(name: str, change):
    """A softmax model whose method outputs are passed through ``change``."""
    class Broken(Diverging):
        def loss_and_grads(self, x, y):
            return change("loss_and_grads", self.inner.loss_and_grads(x, y))

        def scores(self, x):
            return change("scores", self.inner.scores(x))

    Broken.__name__ = name
    return Broken


def _only(method, replace):
    return lambda which, out: replace(out) if which == method else out


def _raise(exc):
    def fail(out):
        raise exc
    return fail


BROKEN_MODELS = {
    # name: (model class, message fragment)
    "wrong-keys": (broken("WrongKeys", _only("loss_and_grads", lambda o: (o[0], {"W": o[1]["W"]}))),
                   "returned gradients for ['W'] but the parameters are ['W', 'b']"),
    "wrong-shape": (broken("WrongShape", _only("loss_and_grads", lambda o: (
        o[0], {**o[1], "W": o[1]["W"][:10]}))), "gradient 'W' is float32 (10, 10), expected "
                                               "float32 (784, 10)"),
    "wrong-dtype": (broken("WrongDtype", _only("loss_and_grads", lambda o: (
        o[0], {k: v.astype(np.float64) for k, v in o[1].items()}))),
        "gradient 'W' is float64 (784, 10), expected float32"),
    "grads-not-a-dict": (broken("GradsList", _only("loss_and_grads", lambda o: (
        o[0], list(o[1].values())))), "must return (loss, dict of gradients)"),
    "loss-per-sample": (broken("PerSample", _only("loss_and_grads", lambda o: (
        np.full(100, o[0]), o[1]))), "must return a number as loss; got ndarray (100,)"),
    "returns-one-value": (broken("OneValue", _only("loss_and_grads", lambda o: o[0])),
                          "loss_and_grads failed on the first step (TypeError"),
    "raises": (broken("Raises", _only("loss_and_grads", _raise(ValueError("shapes (100,784) and "
                                                                          "(10,) not aligned")))),
               "loss_and_grads failed on the first step (ValueError: shapes (100,784)"),
    "scores-1d": (broken("Scores1d", _only("scores", lambda s: s.argmax(axis=1))),
                  "scores() returned int64 (2,); expected floats of shape (2, 10)"),
    "scores-raise": (broken("ScoresRaise", _only("scores", _raise(RuntimeError("no GPU")))),
                     "failed in scores(): RuntimeError: no GPU"),
}


def factory_raises(options, rng, n_inputs=784, n_classes=10):
    raise ImportError("No module named 'torch'")


def optimizer_raises(params, options):
    raise KeyError("momentum_buffer")


@pytest.fixture(scope="module")
def cli():
    plugin = types.ModuleType("mnistkit_badmodels")

    @hookimpl
    def mnistkit_register_models(register):
        register("diverging", Diverging, options=FailOptions)
        for name, (model, _) in BROKEN_MODELS.items():
            register(name, model, options=FailOptions)
        register("factory-raises", factory_raises)

    @hookimpl
    def mnistkit_register_optimizers(register):
        register("optimizer-raises", optimizer_raises)

    plugin.mnistkit_register_models = mnistkit_register_models
    plugin.mnistkit_register_optimizers = mnistkit_register_optimizers
    plugins = load_plugins(extra=[plugin], entry_points=False)
    assert plugins.problems == []
    return build_cli(plugins)


@pytest.mark.parametrize("what, message", [("loss", "the loss or a gradient is inf"),
                                           ("grad", "the loss or a gradient is not finite")])
def test_divergence_in_epoch_2_keeps_epoch_1(cli, tmp_path, what, message):
    out = tmp_path / "r"
    result = invoke("train", *QUICK, "--epochs", "3", "--model", "diverging", "-m",
                    f"what={what}", "--out", out, cli=cli)
    assert_one_line_error(result, "training diverged at epoch 2, step 5", message,
                          "probably too high", exit_code=1)
    assert "epoch   1/3" in result.output  # epoch 1 finished and was shown
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "diverged" and len(record["history"]) == 1
    kept = load_checkpoint(out / "last.npz")
    assert json.loads(str(kept["trainer"]["meta"]))["epoch"] == 1  # epoch 1's checkpoint
    assert all(np.isfinite(v).all() for v in kept["params"].values())
    tested = invoke("test", out, "--json", cli=cli)  # nothing lost: the best params work
    assert tested.exit_code == 0 and json.loads(tested.stdout)["accuracy"] > 0.5


@pytest.mark.parametrize("name", list(BROKEN_MODELS))
def test_broken_plugin_model_is_named_on_the_first_step(cli, tmp_path, name):
    out = tmp_path / "r"
    result = invoke("train", *QUICK, "--epochs", "1", "--model", name, "--out", out, cli=cli)
    message = BROKEN_MODELS[name][1]
    assert_one_line_error(result, f"model {name!r}", "mnistkit_badmodels", message,
                          exit_code=1)
    assert "epoch   1/1" not in result.output  # stopped before any epoch finished
    if (out / "run.json").exists():  # found at the first step: the run says why
        record = json.loads((out / "run.json").read_text())
        assert record["status"] == "failed" and message in record["error"]
        assert load_checkpoint(out / "last.npz")["trainer"]["losses"].size == 0  # no step


def test_plugin_factories_that_raise_are_named(cli, tmp_path):
    result = invoke("train", *QUICK, "--model", "factory-raises", "--out", tmp_path / "a",
                    cli=cli)
    assert_one_line_error(result, "model 'factory-raises' from plugin 'mnistkit_badmodels' could "
                                  "not be built: ImportError: No module named 'torch'",
                          exit_code=1)
    result = invoke("train", *QUICK, "--optimizer", "optimizer-raises", "--out", tmp_path / "b",
                    cli=cli)
    assert_one_line_error(result, "optimizer 'optimizer-raises' from plugin 'mnistkit_badmodels' "
                                  "could not be built: KeyError: 'momentum_buffer'", exit_code=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_broken_model_does_not_break_other_commands(cli, tmp_path):
    for args in (["models"], ["inspect", "--json"],
                 ["train", *QUICK, "--epochs", "1", "--out", tmp_path / "ok", "--quiet"]):
        result = invoke(*args, cli=cli)
        assert result.exit_code == 0, result.output
    assert Path(tmp_path / "ok" / "best.npz").exists()

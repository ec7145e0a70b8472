"""mnistkit-mlp: conformance (several shapes, with dropout), the math, and the CLI."""

from __future__ import annotations

import json

import mnistkit_mlp
import numpy as np
import pytest
from click.testing import CliRunner
from mnistkit_mlp.model import MLP, MLPOptions

from mnistkit.cli import build_cli
from mnistkit.errors import OptionsError
from mnistkit.gradcheck import check_gradients, random_batch
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions
from mnistkit.plugins import load_plugins
from mnistkit.testing import conformance_cases


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's cache folder (decompressed MNIST, downloads)."""
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("check", conformance_cases(mnistkit_mlp))
def test_conformance_with_defaults(check):
    check()


@pytest.mark.parametrize("check", conformance_cases(
    MLP, kind="model", options_class=MLPOptions, name="mlp-3-layers-dropout",
    options={"layers": (64, 32, 16), "dropout": 0.3}) + conformance_cases(
    MLP, kind="model", options_class=MLPOptions, name="mlp-1-layer-no-dropout",
    options={"layers": (24,), "dropout": 0.0}))
def test_conformance_with_other_shapes(check):
    check()


def test_one_hidden_layer_is_exactly_twolayer():
    """Same seed, same initialisation order: mlp layers=H (no dropout) is twolayer."""
    mlp = MLP(MLPOptions(layers=(32,), reg=1e-3, dropout=0.0), np.random.default_rng(3))
    two = TwoLayerNet(TwoLayerOptions(hidden_size=32, reg=1e-3), np.random.default_rng(3))
    assert sorted(mlp.params) == sorted(two.params)
    for key in two.params:
        np.testing.assert_array_equal(mlp.params[key], two.params[key])
    x, y = random_batch(5)
    x = x.astype(np.float32)
    loss_m, grads_m = mlp.loss_and_grads(x, y)
    loss_t, grads_t = two.loss_and_grads(x, y)
    assert loss_m == pytest.approx(loss_t, rel=1e-6)
    for key in two.params:
        np.testing.assert_allclose(grads_m[key], grads_t[key], rtol=1e-5, atol=1e-7)


def test_dropout_is_only_active_in_training():
    model = MLP(MLPOptions(layers=(64,), dropout=0.5), np.random.default_rng(0))
    x, y = random_batch(16)
    x = x.astype(np.float32)
    first = model.loss_and_grads(x, y)[0]
    second = model.loss_and_grads(x, y)[0]
    assert first != second  # new masks each step
    np.testing.assert_array_equal(model.scores(x), model.scores(x))
    h = model.hidden(x)
    assert h.shape == (16, 64) and (h > 0).mean() > 0.3  # nothing dropped at evaluation


def test_dropout_gradients_pass_the_check_and_rng_is_untouched():
    model = MLP(MLPOptions(layers=(16, 8), dropout=0.5), np.random.default_rng(0))
    state = model.rng.bit_generator.state
    x, y = random_batch(6)
    assert all(r.passed for r in check_gradients(model, x, y))
    assert model.rng.bit_generator.state == state


def test_buffers_are_reused():
    model = MLP(MLPOptions(layers=(8, 8)), np.random.default_rng(0))
    x, y = random_batch(4)
    x = x.astype(np.float32)
    _, g1 = model.loss_and_grads(x, y)
    _, g2 = model.loss_and_grads(x, y)
    assert all(g1[k] is g2[k] for k in g1)


@pytest.mark.parametrize("text", ["layers=", "layers=0,3", "dropout=1", "reg=-1"])
def test_invalid_options(text):
    entry = load_plugins([mnistkit_mlp], entry_points=False).registry.get("model", "mlp")
    key, value = text.split("=")
    with pytest.raises(OptionsError):
        entry.make_options({key: value})


def test_cli_gradcheck_and_train(tmp_path):
    cli = build_cli(load_plugins([mnistkit_mlp], entry_points=False))
    runner = CliRunner()
    result = runner.invoke(cli, ["gradcheck", "--model", "mlp", "-m", "layers=32,16",
                                 "-m", "dropout=0.2", "--json"])
    assert result.exit_code == 0, result.output
    assert [p["name"] for p in json.loads(result.stdout)["params"]] == [
        "W1", "b1", "W2", "b2", "W3", "b3"]
    result = runner.invoke(cli, ["train", "--model", "mlp", "-m", "layers=64,32", "-o",
                                 "lr=0.1", "-o", "momentum=0.9", "--limit", "3000",
                                 "--val-size", "500", "--epochs", "2", "--out",
                                 str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["model_options"]["layers"] == [64, 32]
    assert record["metrics"]["test_accuracy"] > 0.8

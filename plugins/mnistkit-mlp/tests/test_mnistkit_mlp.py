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


def test_export_to_onnx_matches_on_the_test_set(tmp_path):
    """A real `mnistkit train` + `mnistkit export` of an mlp with two hidden layers: the
    ONNX model checks, and gives mnistkit's probabilities on the 10,000 test images."""
    import os
    import subprocess
    import sys

    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from mnistkit.data.mnist import load_mnist
    from mnistkit.evaluation import predict_scores
    from mnistkit.models.base import softmax
    from mnistkit.run_folder import load_run

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MNISTKIT_LOAD_PLUGINS": "mnistkit-mlp"}
    run, target = tmp_path / "run", tmp_path / "mlp.onnx"
    for args in (["train", "--model", "mlp", "-m", "layers=64,32", "--epochs", "1",
                  "--limit", "3000", "--val-size", "1000", "--out", run, "--quiet"],
                 ["export", run, "-o", target]):
        done = subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
    proto = onnx.load(str(target))
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node].count("Gemm") == 3
    data = load_mnist()
    loaded = load_run(run, load_plugins([mnistkit_mlp], entry_points=False).registry, data)
    expected = softmax(predict_scores(loaded.model, data.test.images, loaded.pixel_scale))
    probabilities, hidden = ReferenceEvaluator(proto).run(None, {"images": data.test.images})
    assert float(np.max(np.abs(probabilities - expected))) < 1e-5
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    assert hidden.shape == (10_000, 32)  # the last hidden layer, as hidden(x) gives


def test_recipes_are_registered_honestly_and_build():
    from mnistkit_mlp.recipes import RECIPES

    from mnistkit.testing import check_recipe

    registry = load_plugins([mnistkit_mlp], entry_points=False).registry
    assert {"lecun1998-500-150", "mlp-800-800"} <= set(registry.names("recipe"))
    lecun = registry.get("recipe", "lecun1998-500-150")
    assert lecun.plugin == "mnistkit_mlp" and lecun.factory is RECIPES["lecun1998-500-150"]
    assert lecun.factory.published_error == 2.95 and "LeCun" in lecun.factory.source
    assert "500+150" in lecun.factory.source and lecun.factory.model == "mlp"
    options = registry.get("model", "mlp").make_options(dict(lecun.factory.model_options))
    assert options.layers == (500, 150) and options.dropout == 0.0
    model = MLP(options, np.random.default_rng(0))
    assert [model.params[f"W{i}"].shape for i in (1, 2, 3)] == [(784, 500), (500, 150),
                                                                 (150, 10)]
    wide = registry.get("recipe", "mlp-800-800").factory
    assert wide.published_error is None and "no published figure" in wide.source
    assert registry.get("model", "mlp").make_options(dict(wide.model_options)).layers == (
        800, 800)
    for name in RECIPES:
        check_recipe(name, registry=registry)


def test_recipes_are_listed(tmp_path):
    cli = build_cli(load_plugins([mnistkit_mlp], entry_points=False))
    result = CliRunner().invoke(cli, ["recipes", "--json"])
    assert result.exit_code == 0, result.output
    lecun = next(r for r in json.loads(result.stdout) if r["name"] == "lecun1998-500-150")
    assert lecun["plugin"] == "mnistkit_mlp" and lecun["published_error"] == 2.95
    assert lecun["settings"]["model"] == "mlp"
    assert lecun["settings"]["model_options"] == {"layers": [500, 150], "dropout": 0.0}
    assert lecun["command"] == "mnistkit train --recipe lecun1998-500-150"
    assert "2.95%" in CliRunner().invoke(cli, ["recipes"]).stdout

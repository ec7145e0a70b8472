"""mnistkit-adam: conformance, the update formulas, and training through mnistkit."""

from __future__ import annotations

import json

import mnistkit_adam
import numpy as np
import pytest
from click.testing import CliRunner
from mnistkit_adam.adam import Adam, AdamOptions
from mnistkit_adam.rmsprop import RMSprop, RMSpropOptions

from mnistkit.cli import build_cli
from mnistkit.errors import OptionsError
from mnistkit.plugins import load_plugins
from mnistkit.testing import conformance_cases


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's cache folder (decompressed MNIST, downloads)."""
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("check", conformance_cases(mnistkit_adam))
def test_conformance(check):
    check()


@pytest.mark.parametrize("check", conformance_cases(
    Adam, kind="optimizer", options_class=AdamOptions, name="adamw-cosine",
    options={"weight_decay": 0.01, "schedule": "cosine"}) + conformance_cases(
    RMSprop, kind="optimizer", options_class=RMSpropOptions, name="rmsprop-momentum",
    options={"momentum": 0.9, "schedule": "step"}))
def test_conformance_with_other_options(check):
    check()


def reference_adam(p, grads, lr, b1, b2, eps, wd=0.0):
    """Textbook Adam/AdamW in float64, one parameter."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p * (1 - lr * wd)
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


def reference_rmsprop(p, grads, lr, decay, eps, mu):
    v = np.zeros_like(p)
    b = np.zeros_like(p)
    for g in grads:
        v = decay * v + (1 - decay) * g * g
        b = mu * b + g / (np.sqrt(v) + eps)
        p = p - lr * b
    return p


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((5, 3))
    grads = [rng.standard_normal((5, 3)) for _ in range(6)]
    return p0, grads


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_matches_the_textbook_formula(problem, wd):
    p0, grads = problem
    params = {"w": p0.astype(np.float32)}
    opt = Adam(params, AdamOptions(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=wd))
    for g in grads:
        opt.step({"w": g.astype(np.float32)})
    expected = reference_adam(p0, grads, 0.01, 0.8, 0.99, 1e-6, wd)
    np.testing.assert_allclose(params["w"], expected, rtol=1e-5, atol=1e-6)
    assert int(opt.state_dict()["step"]) == len(grads)


@pytest.mark.parametrize("mu", [0.0, 0.9])
def test_rmsprop_matches_the_textbook_formula(problem, mu):
    p0, grads = problem
    params = {"w": p0.astype(np.float32)}
    opt = RMSprop(params, RMSpropOptions(lr=0.01, decay=0.9, eps=1e-6, momentum=mu))
    for g in grads:
        opt.step({"w": g.astype(np.float32)})
    np.testing.assert_allclose(params["w"], reference_rmsprop(p0, grads, 0.01, 0.9, 1e-6, mu),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cls", "bad"), [(AdamOptions, {"beta1": "1"}),
                                          (AdamOptions, {"eps": "0"}),
                                          (RMSpropOptions, {"decay": "-0.1"}),
                                          (RMSpropOptions, {"lr": "0"})])
def test_invalid_options_are_refused(cls, bad):
    registry = load_plugins([mnistkit_adam], entry_points=False).registry
    name = "adam" if cls is AdamOptions else "rmsprop"
    with pytest.raises(OptionsError, match=next(iter(bad))):
        registry.get("optimizer", name).make_options(bad)


def test_listed_and_trains_through_the_cli(tmp_path):
    cli = build_cli(load_plugins([mnistkit_adam], entry_points=False))
    runner = CliRunner()
    listing = runner.invoke(cli, ["optimizers", "--json"])
    names = {item["name"] for item in json.loads(listing.stdout)["items"]}
    assert {"adam", "rmsprop", "sgd"} <= names
    result = runner.invoke(cli, ["train", "--model", "softmax", "--optimizer", "adam",
                                 "-o", "lr=0.003", "--limit", "3000", "--val-size", "500",
                                 "--epochs", "2", "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["optimizer"] == "adam" and record["optimizer_options"]["lr"] == 0.003
    assert record["metrics"]["test_accuracy"] > 0.8

"""The two-layer network: the readable loss_and_grads, and the memory it declares."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions


def _problem(batch: int, dtype=np.float32):
    rng = np.random.default_rng(1)
    return rng.random((batch, 784)).astype(dtype), np.arange(batch) % 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_and_grads_returns_new_arrays_shaped_and_typed_as_the_parameters(dtype):
    model = TwoLayerNet(TwoLayerOptions(hidden_size=13), np.random.default_rng(0))
    model.params = {k: v.astype(dtype) for k, v in model.params.items()}  # as gradcheck does
    x, y = _problem(8, dtype)
    loss, grads = model.loss_and_grads(x, y)
    again = model.loss_and_grads(x, y)[1]
    assert isinstance(loss, float) and grads.keys() == model.params.keys()
    for key, p in model.params.items():
        assert grads[key].shape == p.shape and grads[key].dtype == p.dtype
        assert not np.may_share_memory(grads[key], p)
        assert not np.may_share_memory(grads[key], again[key])
        np.testing.assert_array_equal(grads[key], again[key])


def test_loss_and_grads_is_the_math_of_the_docstring():
    model = TwoLayerNet(TwoLayerOptions(hidden_size=7, reg=0.1), np.random.default_rng(0))
    W1, b1, W2, b2 = (model.params[k].astype(np.float64) for k in ("W1", "b1", "W2", "b2"))
    x, y = _problem(5)
    h = np.maximum(x @ W1 + b1, 0)
    s = h @ W2 + b2
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(5), y]).mean() + 0.05 * ((W1**2).sum() + (W2**2).sum())
    ds = (p - np.eye(10)[y]) / 5
    dh = (ds @ W2.T) * (h > 0)
    expected = {"W1": x.T @ dh + 0.1 * W1, "b1": dh.sum(0), "W2": h.T @ ds + 0.1 * W2,
                "b2": ds.sum(0)}
    got_loss, grads = model.loss_and_grads(x, y)
    assert got_loss == pytest.approx(loss, rel=1e-5)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("hidden, batch", [(100, 128), (13, 8), (5, 1000), (1, 4096)])
@pytest.mark.parametrize("path", ["loss_and_grads", "sgd_step"])
def test_a_step_stays_within_the_memory_estimate(hidden, batch, path):
    options = TwoLayerOptions(hidden_size=hidden)
    model = TwoLayerNet(options, np.random.default_rng(0))
    x, y = _problem(batch)
    tracemalloc.start()
    try:
        if path == "sgd_step":
            model.sgd_step(x, y, 0.1)  # the first one also builds its buffers
        else:
            model.loss_and_grads(x, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= TwoLayerNet.estimate_memory(options, 784, 10, batch)["work"]

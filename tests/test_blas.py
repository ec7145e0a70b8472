"""The accumulating product: BLAS and NumPy fallback agree with the formula; bad inputs
are refused before any call; twolayer's fused SGD step equals loss_and_grads + SGD."""

from __future__ import annotations

import numpy as np
import pytest

import mnistkit.blas as blas
from mnistkit.blas import gemm_update
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions
from mnistkit.optimizers.sgd import SGD, SGDOptions


@pytest.fixture(params=["blas", "numpy"])
def backend(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(blas, "blas_function", lambda dtype: None)
    elif blas.blas_function(np.float32) is None:
        pytest.skip("this NumPy build's OpenBLAS was not found: only the fallback runs")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.3, 1.0), (0.7, 0.999)])
def test_matches_the_formula(backend, dtype, trans_a, alpha, beta):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((13, 7) if trans_a else (7, 13)).astype(dtype)
    b = rng.standard_normal((13, 5)).astype(dtype)
    c = rng.standard_normal((7, 5)).astype(dtype)
    op = a.T if trans_a else a
    expected = alpha * (op.astype(np.float64) @ b) + beta * c.astype(np.float64)
    gemm_update(c, a, b, alpha=alpha, beta=beta, trans_a=trans_a)
    assert c.dtype == dtype
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_empty_inner_dimension_only_scales(backend):
    c = np.ones((2, 3), np.float32)
    gemm_update(c, np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32),
                alpha=1.0, beta=0.5)
    np.testing.assert_array_equal(c, 0.5)


@pytest.mark.parametrize("make, message", [
    (lambda a, b, c: (c, a[:, ::2], b), "a must be C-contiguous"),
    (lambda a, b, c: (c, a, b.astype(np.float64)), "b is float64, c is float32"),
    (lambda a, b, c: (c.astype(np.int32), a.astype(np.int32), b.astype(np.int32)), "float32"),
    (lambda a, b, c: (c[:3], a, b), r"a @ b is \(4, 6\) @ \(6, 5\), c is \(3, 5\)"),
    (lambda a, b, c: (c, a, b[:5]), r"a @ b is \(4, 6\) @ \(5, 5\)"),
    (lambda a, b, c: (c, a, b[0]), "b must be a 2-d array"),
    (lambda a, b, c: (np.lib.stride_tricks.as_strided(c, writeable=False), a, b), "read-only"),
], ids=["strided", "dtype-mix", "ints", "c-shape", "inner", "1-d", "read-only"])
def test_bad_inputs_are_refused_before_computing(make, message):
    rng = np.random.default_rng(0)
    a, b, c = (rng.random(s, dtype=np.float32) for s in [(4, 6), (6, 5), (4, 5)])
    c_in, a_in, b_in = make(a, b, c)
    before = c_in.copy()
    with pytest.raises(ValueError, match=message):
        gemm_update(c_in, a_in, b_in, alpha=1.0, beta=1.0)
    np.testing.assert_array_equal(c_in, before)


def test_output_overlapping_an_input_is_refused():
    block = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        gemm_update(block, block, np.eye(8, dtype=np.float32), alpha=1.0, beta=1.0)


@pytest.mark.parametrize("reg", [0.0, 1e-3])
def test_twolayer_sgd_step_equals_loss_and_grads_then_sgd(backend, reg):
    rng = np.random.default_rng(0)
    x = rng.random((32, 784), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    fused = TwoLayerNet(TwoLayerOptions(hidden_size=24, reg=reg), np.random.default_rng(1))
    plain = TwoLayerNet(TwoLayerOptions(hidden_size=24, reg=reg), np.random.default_rng(1))
    sgd = SGD(plain.params, SGDOptions(lr=0.5))
    for _ in range(5):
        loss_fused = fused.sgd_step(x, y, 0.5)
        loss_plain, grads = plain.loss_and_grads(x, y)
        sgd.step(grads)
        assert loss_fused == pytest.approx(loss_plain, rel=1e-5)
    for key in plain.params:
        np.testing.assert_allclose(fused.params[key], plain.params[key], rtol=1e-4, atol=1e-6)
    assert sgd.plain_lr == 0.5
    assert SGD(plain.params, SGDOptions(lr=0.5, momentum=0.9)).plain_lr is None

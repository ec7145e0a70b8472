"""Cache-line-aligned buffers: same values, own lines, independent arrays."""

from __future__ import annotations

import numpy as np

from mnistkit.buffers import CACHE_LINE, cache_aligned
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions


def test_copies_start_on_their_own_cache_lines_and_do_not_overlap():
    arrays = {"a": np.arange(3, dtype=np.float32), "b": np.ones((5, 7), np.float64),
              "c": np.zeros(1, bool), "d": np.arange(20, dtype=np.intp).reshape(4, 5)}
    out = cache_aligned(arrays)
    spans = []
    for name, a in arrays.items():
        copy = out[name]
        assert copy.dtype == a.dtype and copy.shape == a.shape
        np.testing.assert_array_equal(copy, a)
        assert copy.ctypes.data % CACHE_LINE == 0
        assert copy.flags.writeable and copy.flags.c_contiguous
        spans.append((copy.ctypes.data, copy.ctypes.data + copy.nbytes))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert -(-end // CACHE_LINE) * CACHE_LINE <= start  # no shared line
    out["a"][...] = 9
    assert (arrays["a"] != 9).all() and (out["b"] == 1).all()


def test_twolayer_parameters_and_buffers_are_aligned():
    model = TwoLayerNet(TwoLayerOptions(hidden_size=13), np.random.default_rng(0))
    x = np.random.default_rng(1).random((8, 784), dtype=np.float32)
    model.sgd_step(x, np.arange(8) % 10, 0.1)  # the fast path's buffers
    buffers = next(iter(model._buffers.values()))
    for array in [*model.params.values(), *buffers.values()]:
        assert array.ctypes.data % CACHE_LINE == 0

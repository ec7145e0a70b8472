"""BatchMaker: exact float32 batches, gathered into buffers used in turn."""

from __future__ import annotations

import numpy as np

from mnistkit.batches import BatchMaker
from mnistkit.buffers import CACHE_LINE


def _data(n=50):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def test_take_gathers_and_scales_exactly_like_the_plain_expression():
    images, labels = _data()
    maker = BatchMaker(images, labels, batch_size=8)
    idx = np.array([49, 0, 7, 7, 13, 2, 31, 48])
    x, y = maker.take(idx)
    expected = images[idx].reshape(8, -1).astype(np.float32) * np.float32(1 / 255)
    assert x.dtype == np.float32 and x.shape == (8, 784)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, labels[idx])
    short_x, short_y = maker.take(idx[:3])  # the last, smaller batch of an epoch
    np.testing.assert_array_equal(short_x, expected[:3])
    np.testing.assert_array_equal(short_y, labels[idx[:3]])


def test_rows_match_take_of_the_same_range():
    images, labels = _data()
    maker = BatchMaker(images, labels, batch_size=10, pixel_scale=0.5)
    x_rows, y_rows = (a.copy() for a in maker.rows(20, 30))
    x_take, y_take = maker.take(np.arange(20, 30))
    np.testing.assert_array_equal(x_rows, x_take)
    np.testing.assert_array_equal(y_rows, y_take)
    assert x_rows.max() == images[20:30].max() * 0.5


def test_batches_rotate_through_aligned_buffers():
    images, labels = _data()
    maker = BatchMaker(images, labels, batch_size=4, buffers=3)
    seen = [maker.take(np.arange(i, i + 4))[0] for i in range(7)]
    addresses = [x.ctypes.data for x in seen]
    assert len(set(addresses[:3])) == 3 and addresses[3:6] == addresses[:3]
    assert all(a % CACHE_LINE == 0 for a in addresses)
    # the previous batch is still intact after the next call (only `buffers` apart reuse)
    expected = images[5:9].reshape(4, -1).astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_array_equal(seen[5], expected)

"""Distortions: the warp is exact where it can be checked, distortions are seeded, keep
the ink, and really move it."""

from __future__ import annotations

import numpy as np
import pytest

from mnistkit.augment import (
    Affine,
    AffineOptions,
    Elastic,
    ElasticOptions,
    NoAugmentation,
    batch_rng,
    bilinear_warp,
    gaussian_matrix,
)


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    images = np.zeros((16, 28, 28), np.uint8)
    images[:, 6:22, 12:16] = rng.integers(100, 256, (16, 16, 4))  # a thick vertical stroke
    return images


def zeros(shape):
    return np.zeros(shape, np.float32)


def test_zero_displacement_is_the_identity(digits):
    assert np.array_equal(bilinear_warp(digits, zeros(digits.shape), zeros(digits.shape)),
                          digits)


@pytest.mark.parametrize("shift", [1, 3, -2])
def test_whole_pixel_shifts_move_the_image_and_fill_with_zero(digits, shift):
    out = bilinear_warp(digits, zeros(digits.shape), zeros(digits.shape) + shift)
    expected = np.zeros_like(digits)
    if shift > 0:
        expected[:, :, :-shift] = digits[:, :, shift:]
    else:
        expected[:, :, -shift:] = digits[:, :, :shift]
    assert np.array_equal(out, expected)


def test_half_pixel_shift_is_the_rounded_mean_of_neighbours(digits):
    out = bilinear_warp(digits, zeros(digits.shape) + 0.5, zeros(digits.shape))
    mean = (digits[:, :-1].astype(np.float64) + digits[:, 1:]) / 2
    assert np.array_equal(out[:, :-1], np.floor(mean + 0.5).astype(np.uint8))
    assert np.array_equal(out[:, -1], np.floor(digits[:, -1] / 2 + 0.5).astype(np.uint8))


def reference_warp(images, dy, dx):
    """Bilinear sampling written out in float64, one neighbour at a time."""
    n, h, w = images.shape
    padded = np.zeros((n, h + 2, w + 2))
    padded[:, 1:-1, 1:-1] = images
    rows = np.clip(np.arange(h)[:, None] + 1 + dy.astype(np.float64), 0, h + 1 - 1e-3)
    cols = np.clip(np.arange(w)[None, :] + 1 + dx.astype(np.float64), 0, w + 1 - 1e-3)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    at = np.arange(n)[:, None, None]
    value = ((1 - fr) * (1 - fc) * padded[at, r0, c0] + (1 - fr) * fc * padded[at, r0, c0 + 1]
             + fr * (1 - fc) * padded[at, r0 + 1, c0] + fr * fc * padded[at, r0 + 1, c0 + 1])
    return np.floor(value + 0.5)


@pytest.mark.parametrize("spread", [0.7, 3.0, 40.0])
def test_random_displacements_match_the_bilinear_formula(digits, spread):
    rng = np.random.default_rng(int(spread * 10))
    dy = rng.normal(0, spread, digits.shape).astype(np.float32)
    dx = rng.normal(0, spread, digits.shape).astype(np.float32)
    got = bilinear_warp(digits, dy, dx).astype(np.float64)
    difference = np.abs(got - reference_warp(digits, dy, dx))
    assert difference.max() <= 1  # float32 against float64: a tie may round either way
    assert np.mean(difference) < 1e-3


def test_far_outside_reads_zero(digits):
    assert not bilinear_warp(digits, zeros(digits.shape) + 100, zeros(digits.shape)).any()


def test_gaussian_matrix_smooths_like_a_convolution():
    g = gaussian_matrix(28, 4.0)
    interior = g[14]
    assert interior.sum() == pytest.approx(1.0, abs=1e-3) and interior.argmax() == 14
    assert np.allclose(interior[10:19], interior[18:9:-1])  # symmetric
    assert g[0].sum() < 0.75  # zero beyond the edge: the border loses weight


@pytest.mark.parametrize("make", [lambda: Elastic(ElasticOptions()),
                                  lambda: Affine(AffineOptions())], ids=["elastic", "affine"])
def test_distortions_are_seeded_keep_shape_and_ink_and_move_it(digits, make):
    augment = make()
    a = augment.distort(digits, batch_rng(0, 1, 2))
    b = augment.distort(digits, batch_rng(0, 1, 2))
    c = augment.distort(digits, batch_rng(0, 1, 3))
    assert a.dtype == np.uint8 and a.shape == digits.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ink = digits.reshape(16, -1).sum(1).astype(np.float64)
    kept = a.reshape(16, -1).sum(1) / ink
    assert np.all((kept > 0.5) & (kept < 1.6)), kept  # strokes move, they do not vanish
    moved = np.mean(a != digits, axis=(1, 2))
    assert np.all(moved > 0.02), moved
    assert not np.array_equal(a[0], a[1])  # each image its own distortion


def test_no_augmentation_and_alpha_zero_change_nothing(digits):
    assert NoAugmentation().distort(digits, batch_rng(0, 0, 0)) is digits
    still = Elastic(ElasticOptions(alpha=0.0)).distort(digits, batch_rng(0, 0, 0))
    assert np.array_equal(still, digits)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ElasticOptions(sigma=0), "sigma must be in (0, 28]"),
    (lambda: ElasticOptions(alpha=float("nan")), "alpha must be in [0, 1000]"),
    (lambda: AffineOptions(scale=1.0), "scale must be in [0, 1)"),
    (lambda: AffineOptions(rotation=-1), "rotation must be in [0, 180]"),
])
def test_bad_options_are_refused(make, message):
    with pytest.raises(ValueError) as caught:
        make()
    assert message in str(caught.value)

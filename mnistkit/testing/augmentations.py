"""Conformance checks of an augmentation factory: ``factory(options).distort(images, rng)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistkit.testing._core import Subject, check_declared_options

#: Seeds of the generators given to ``distort`` by the checks.
SEEDS = (1, 2, 3)


def digit_like_images(count: int, seed: int = 0, size: int = 28) -> np.ndarray:
    """``count`` digit-like uint8 images ``(count, size, size)``: a thick stroke and a bar
    of random ink (100..255) at slightly different places on a blank background."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size), np.uint8)
    for image in images:
        top, left = rng.integers(4, 8), rng.integers(9, 14)
        image[top:top + 16, left:left + 4] = rng.integers(100, 256, (16, 4))
        row = top + rng.integers(2, 12)
        image[row:row + 3, 7:21] = rng.integers(100, 256, (3, 14))
    return images


def _build(s: Subject, check: str) -> Any:
    options = s.make_options(check)
    try:
        augmentation = s.factory(options)
    except Exception as exc:
        s.fail(check, f"factory(options) raised {type(exc).__name__}: {exc}",
               "the factory must accept the options instance (None without an options class)")
    if not callable(getattr(augmentation, "distort", None)):
        s.fail(check, f"factory(options) returned {type(augmentation).__name__}, which has no "
               "distort() method", "return an object with distort(images, rng) -> images "
               "(see mnistkit.augment.Augmentation)")
    return augmentation


def _distort(s: Subject, check: str, augmentation: Any, images: np.ndarray,
             seed: int) -> np.ndarray:
    """``distort(images, default_rng(seed))``, checked to be uint8 shaped like ``images``;
    a copy, so a result that is a reused buffer is not overwritten by the next call."""
    try:
        out = augmentation.distort(images, np.random.default_rng(seed))
    except Exception as exc:
        s.fail(check, f"distort() of a batch {images.shape} raised {type(exc).__name__}: "
               f"{exc}", "accept any batch size n of (n, 28, 28) uint8 images")
    if not isinstance(out, np.ndarray):
        s.fail(check, f"distort() returned {type(out).__name__}, not a numpy array",
               "return a uint8 ndarray (n, H, W)")
    if out.shape != images.shape or out.dtype != np.uint8:
        s.fail(check, f"distort() of uint8 {images.shape} returned {out.dtype} {out.shape}",
               "return uint8 images of the input's shape: round and clip to 0..255 with "
               "np.clip(x + 0.5, 0, 255).astype(np.uint8)")
    return out.copy()


def _augmentation_options(s: Subject) -> None:
    check_declared_options(s)


def _augmentation_construct(s: Subject) -> None:
    _build(s, "construct")


def _augmentation_shapes(s: Subject) -> None:
    augmentation = _build(s, "shapes")
    batch = digit_like_images(3)
    first = _distort(s, "shapes", augmentation, batch, SEEDS[0])
    _distort(s, "shapes", augmentation, batch[:1], SEEDS[0])
    _distort(s, "shapes", augmentation, digit_like_images(5, seed=1), SEEDS[1])
    again = _distort(s, "shapes", augmentation, batch, SEEDS[0])
    if not np.array_equal(first, again):
        s.fail("shapes", "the same batch and seed gave other images after batches of 1 and 5",
               "size work arrays kept between calls by the current batch (check the shape "
               "on every call) and overwrite them completely")


def _augmentation_in_place(s: Subject) -> None:
    augmentation = _build(s, "in_place")
    batch = digit_like_images(4)
    before = batch.copy()
    _distort(s, "in_place", augmentation, batch, SEEDS[0])
    if not np.array_equal(batch, before):
        s.fail("in_place", "distort() changed the images it was given",
               "write into a new array (or your own work arrays), never into images: the "
               "trainer keeps the training set")


def _augmentation_deterministic(s: Subject) -> None:
    batch = digit_like_images(8)
    a = _distort(s, "deterministic", _build(s, "deterministic"), batch, SEEDS[0])
    reused = _build(s, "deterministic")
    b = _distort(s, "deterministic", reused, batch, SEEDS[0])
    b2 = _distort(s, "deterministic", reused, batch, SEEDS[0])
    if not (np.array_equal(a, b) and np.array_equal(b, b2)):
        s.fail("deterministic", "distort() of the same batch with generators of the same seed "
               "gave different images", "draw every random number from the rng argument "
               "(never np.random.* global functions, time or a generator of your own)")
    others = [_distort(s, "deterministic", reused, batch, seed) for seed in SEEDS[1:]]
    if s.identity:
        if not all(np.array_equal(out, batch) for out in (a, *others)):
            s.fail("deterministic", "identity=True, but distort() changed the images",
                   "return the images unchanged, or drop identity=True")
        return
    if all(np.array_equal(out, batch) for out in (a, *others)):
        s.fail("deterministic", f"distort() returned every image unchanged for seeds "
               f"{', '.join(map(str, SEEDS))}", "apply the distortion (are the default "
               "options a no-op?); for an augmentation meant to change nothing, like 'none', "
               "pass identity=True")
    if all(np.array_equal(out, a) for out in others):
        s.fail("deterministic", f"generators of seeds {', '.join(map(str, SEEDS))} gave the "
               "same distortion", "draw the distortion's random numbers from the rng argument")


def _augmentation_order(s: Subject) -> None:
    augmentation = _build(s, "order")
    size = 28
    levels = np.array([0, 96, 255], np.uint8)  # blank, grey, full
    for order in ((0, 1, 2), (2, 0, 1)):
        batch = np.repeat(levels[list(order)], size * size).reshape(3, size, size)
        for seed in SEEDS:
            out = _distort(s, "order", augmentation, batch, seed)
            means = out.reshape(3, -1).mean(axis=1)
            if not np.array_equal(np.argsort(means), np.argsort(batch.reshape(3, -1)[:, 0])):
                shown = ", ".join(f"{batch[i, 0, 0]} -> {means[i]:.1f}" for i in range(3))
                s.fail("order", f"a batch of a blank, a grey and a full image (in the order "
                       f"{', '.join(str(batch[i, 0, 0]) for i in range(3))}) came back with "
                       f"mean intensities out of order ({shown}; seed {seed})",
                       "return one distorted copy per image, in the input's order (labels "
                       "are not reordered), and keep ink as ink (no inversion)")


AUGMENTATION_FUNCS = {"options": _augmentation_options, "construct": _augmentation_construct,
                      "shapes": _augmentation_shapes, "in_place": _augmentation_in_place,
                      "deterministic": _augmentation_deterministic,
                      "order": _augmentation_order}

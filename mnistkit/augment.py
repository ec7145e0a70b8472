"""Distortions of training images: Simard's elastic deformations and small affine maps.

Both warp a batch of uint8 images ``(n, H, W)`` by a displacement field and resample it
bilinearly, zero outside the image; labels are unchanged. NumPy only, no loop over
images or pixels:

- **elastic** (Simard, Steinkraus & Platt, ICDAR 2003): a uniform random displacement in
  (-1, 1) per pixel and axis, smoothed by a Gaussian of ``sigma`` pixels, scaled by
  ``alpha``. The smoothing is separable, so it is two small matrix products per image
  (``G @ field @ G.T``, with ``G`` the ``H x H`` Gaussian convolution matrix);
- **affine**: a random rotation, scaling, shear and shift per image, applied about the
  image centre.

The sampling position of output pixel ``(i, j)`` is ``(i + dy, j + dx)``; a bilinear
gather reads the four neighbours at once with ``np.take`` on the flattened batch.
Randomness comes only from the generator passed in, so a batch is a function of that
generator's seed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


# -- the warp shared by every distortion -----------------------------------------------------
def bilinear_warp(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Resample ``images`` (n, H, W) at ``(row + dy, col + dx)`` with bilinear weights,
    zero outside the image; returns uint8 (rounded, clipped to 0..255)."""
    n, h, w = images.shape
    # One pixel of zeros around each image: a neighbour outside reads 0, and a position
    # clipped into the padded frame always has its four neighbours inside it.
    padded = np.zeros((n, h + 2, w + 2), np.uint8)
    padded[:, 1:-1, 1:-1] = images
    r = np.arange(1, h + 1, dtype=np.float32)[:, None] + dy
    c = np.arange(1, w + 1, dtype=np.float32)[None, :] + dx
    np.clip(r, 0, h + 1 - 1e-3, out=r)
    np.clip(c, 0, w + 1 - 1e-3, out=c)
    r0, c0 = r.astype(np.int32), c.astype(np.int32)  # floor: both are >= 0
    fr, fc = r - r0, c - c0
    top_left = r0 * np.int32(w + 2) + c0
    top_left += (np.arange(n, dtype=np.int32) * np.int32((h + 2) * (w + 2)))[:, None, None]
    flat = padded.reshape(-1)
    a00, a01 = flat.take(top_left), flat.take(top_left + 1)
    a10, a11 = flat.take(top_left + (w + 2)), flat.take(top_left + (w + 3))
    top = a00 + fc * (a01.astype(np.float32) - a00)
    bottom = a10 + fc * (a11.astype(np.float32) - a10)
    out = top + fr * (bottom - top)
    out += 0.5  # round half up; out is in [0, 255]
    return out.astype(np.uint8)


# -- elastic ---------------------------------------------------------------------------------
def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """The ``size x size`` matrix of a 1-D Gaussian convolution (zero beyond the edges,
    truncated at 4 sigma), so ``G @ f @ G.T`` smooths a 2-D field ``f``."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel[np.abs(offsets) > math.ceil(4 * sigma)] = 0.0
    radius = np.arange(-math.ceil(4 * sigma), math.ceil(4 * sigma) + 1)
    return (kernel / np.exp(-0.5 * (radius / sigma) ** 2).sum()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ElasticOptions:
    """Simard's elastic distortion: smoothing ``sigma`` and strength ``alpha`` (pixels)."""

    sigma: float = 4.0
    alpha: float = 34.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be > 0; got {self.sigma}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be >= 0; got {self.alpha}")


class Elastic:
    """Elastic distortion: ``distort(images, rng)``."""

    def __init__(self, options: ElasticOptions) -> None:
        self.options = options
        self._g: dict[int, np.ndarray] = {}

    def distort(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``images`` (n, H, W) uint8, each warped by its own smoothed random field."""
        n, h, w = images.shape
        gh, gw = self._gaussian(h), self._gaussian(w)
        field = rng.random(size=(2, n, h, w), dtype=np.float32)  # uniform in [0, 1)
        field *= np.float32(2)
        field -= np.float32(1)  # uniform in [-1, 1)
        smooth = gh @ field @ gw.T  # (2, n, h, w): the separable Gaussian, per image
        smooth *= np.float32(self.options.alpha)
        return bilinear_warp(images, smooth[0], smooth[1])

    def _gaussian(self, size: int) -> np.ndarray:
        if size not in self._g:
            self._g[size] = gaussian_matrix(size, self.options.sigma)
        return self._g[size]


# -- affine ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AffineOptions:
    """Ranges of the random affine map: rotation (degrees), scale (fraction), shear
    (degrees) and shift (pixels), each drawn uniformly in ``[-x, x]``."""

    rotation: float = 12.0
    scale: float = 0.12
    shear: float = 10.0
    shift: float = 2.0

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "shear", "shift"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0; got {value}")
        if self.scale >= 1:
            raise ValueError(f"scale must be below 1; got {self.scale}")


class Affine:
    """Random affine distortion: ``distort(images, rng)``."""

    def __init__(self, options: AffineOptions) -> None:
        self.options = options

    def distort(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``images`` (n, H, W) uint8, each through its own random affine map."""
        n, h, w = images.shape
        o = self.options
        angle = np.radians(rng.uniform(-o.rotation, o.rotation, n))
        shear = np.radians(rng.uniform(-o.shear, o.shear, n))
        scale = 1.0 + rng.uniform(-o.scale, o.scale, n)
        shift = rng.uniform(-o.shift, o.shift, (2, n))
        # The inverse map: where each output pixel samples from (about the centre).
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        a, b = cos, -sin + np.tan(shear) * cos
        c, d = sin, cos + np.tan(shear) * sin
        ys = np.arange(h, dtype=np.float64)[None, :, None] - (h - 1) / 2
        xs = np.arange(w, dtype=np.float64)[None, None, :] - (w - 1) / 2
        src_y = a[:, None, None] * ys + b[:, None, None] * xs - shift[0][:, None, None]
        src_x = c[:, None, None] * ys + d[:, None, None] * xs - shift[1][:, None, None]
        dy = (src_y - ys).astype(np.float32)
        dx = (src_x - xs).astype(np.float32)
        return bilinear_warp(images, dy, dx)


class NoAugmentation:
    """The identity: ``--augment none``."""

    def __init__(self, options: None = None) -> None:
        self.options = options

    def distort(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``images`` unchanged."""
        return images


def batch_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one training batch's distortions: a function of the run's seed
    and the batch's position only, so distortions are the same after ``--resume`` and do
    not depend on how far ahead they were made."""
    return np.random.default_rng([seed, epoch, step, 0xA116])

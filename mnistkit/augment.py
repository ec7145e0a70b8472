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
from typing import Protocol, runtime_checkable

import numpy as np

from mnistkit.options import check_declared, option


@runtime_checkable
class Augmentation(Protocol):
    """What ``mnistkit_register_augmentations`` factories return."""

    def distort(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uint8 array shaped like ``images`` (n, H, W): one distorted copy of each."""
        ...


# -- the warp shared by every distortion -----------------------------------------------------
class BilinearWarp:
    """Resamples batches of uint8 images at displaced positions, bilinearly, zero outside.

    Each pixel's four neighbours are read by one gather: the padded image is first laid
    out as "quads" (the 2 x 2 block whose top-left pixel is ``(i, j)``, four float32 in
    16 bytes), so one ``take`` of 16-byte items replaces four of 4-byte ones (the gathers
    were half of the warp's time). The work arrays are kept between calls (one set per
    batch shape): a fresh 400 kB array per intermediate costs the page faults of mapping
    it. One instance per thread.
    """

    def __init__(self) -> None:
        self._shape: tuple[int, int, int] | None = None

    def _buffers_for(self, shape: tuple[int, int, int]) -> None:
        if shape == self._shape:
            return
        n, h, w = shape
        self._shape = shape
        # One pixel of zeros around each image: a neighbour outside reads 0, and a position
        # clipped into the padded frame always has its four neighbours inside it.
        self.padded = np.zeros((n, h + 2, w + 2), np.float32)
        self.quads = np.empty((n, h + 1, w + 1, 4), np.float32)
        self.rows = np.arange(1, h + 1, dtype=np.float32)[:, None]
        self.cols = np.arange(1, w + 1, dtype=np.float32)[None, :]
        self.image_offsets = (np.arange(n, dtype=np.float32)
                              * np.float32((h + 1) * (w + 1)))[:, None, None]
        self.r, self.c = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.r0, self.c0 = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.index = np.empty(shape, np.intp)
        self.gathered = np.empty(shape, np.complex128)  # 16 bytes: one quad per pixel
        self.top, self.bottom = np.empty(shape, np.float32), np.empty(shape, np.float32)

    def _lay_out_quads(self, images: np.ndarray) -> None:
        padded, quads = self.padded, self.quads
        padded[:, 1:-1, 1:-1] = images
        quads[..., 0] = padded[:, :-1, :-1]
        quads[..., 1] = padded[:, :-1, 1:]
        quads[..., 2] = padded[:, 1:, :-1]
        quads[..., 3] = padded[:, 1:, 1:]

    def __call__(self, images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """``images`` (n, H, W) sampled at ``(row + dy, col + dx)``; a new uint8 array
        (rounded half up, in 0..255)."""
        n, h, w = images.shape
        self._buffers_for((n, h, w))
        self._lay_out_quads(images)
        r, c, r0, c0 = self.r, self.c, self.r0, self.c0
        np.add(dy, self.rows, out=r)  # positions in the padded frame
        np.add(dx, self.cols, out=c)
        np.clip(r, 0, h + 1 - 1e-3, out=r)
        np.clip(c, 0, w + 1 - 1e-3, out=c)
        np.floor(r, out=r0)
        np.floor(c, out=c0)
        r -= r0  # r, c are now the fractions of a pixel
        c -= c0
        r0 *= np.float32(w + 1)  # the quad of (r0, c0), flattened: exact in float32
        r0 += c0
        r0 += self.image_offsets
        np.copyto(self.index, r0, casting="unsafe")
        flat_quads = self.quads.view(np.complex128).reshape(-1)
        flat_quads.take(self.index, out=self.gathered, mode="clip")  # indices are in range
        corners = self.gathered.view(np.float32).reshape(n, h, w, 4)
        a00, a01, a10, a11 = (corners[..., k] for k in range(4))
        # top = a00 + c (a01 - a00); bottom = a10 + c (a11 - a10); top + r (bottom - top)
        top, bottom = self.top, self.bottom
        np.subtract(a01, a00, out=top)
        top *= c
        top += a00
        np.subtract(a11, a10, out=bottom)
        bottom *= c
        bottom += a10
        bottom -= top
        bottom *= r
        top += bottom
        top += 0.5  # round half up: top is in [0, 255]
        return top.astype(np.uint8)


def bilinear_warp(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Resample ``images`` (n, H, W) at ``(row + dy, col + dx)`` with bilinear weights,
    zero outside the image; returns uint8 (rounded, clipped to 0..255)."""
    return BilinearWarp()(images, dy, dx)


#: OpenBLAS runs a product of at most 65536 * 4 multiply-adds on the calling thread
#: (GEMM_MULTITHREAD_THRESHOLD in interface/gemm.c); a larger one goes to its thread pool,
#: and waits there for the training step's products.
_SINGLE_THREAD_MADDS = 65536 * 4


def single_thread_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` for a tall ``a``, in row blocks small enough for BLAS to compute on
    this thread: distortions made beside a training step then never queue behind it
    (one product of the whole batch made an elastic epoch 3.3x slower than plain, the
    blocks 1.3x; A/B in one process)."""
    rows = max(_SINGLE_THREAD_MADDS // max(a.shape[1] * b.shape[1], 1), 1)
    for start in range(0, a.shape[0], rows):
        np.matmul(a[start:start + rows], b, out=out[start:start + rows])


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

    sigma: float = option(4.0, "std of the Gaussian smoothing the field (pixels)", gt=0, le=28)
    alpha: float = option(34.0, "strength: the smoothed field is scaled by it (pixels)",
                          ge=0, le=1000)

    def __post_init__(self) -> None:
        check_declared(self)


class Elastic:
    """Elastic distortion: ``distort(images, rng)``. One instance per thread (it keeps
    its work arrays between batches)."""

    def __init__(self, options: ElasticOptions) -> None:
        self.options = options
        self._warp = BilinearWarp()
        self._shape: tuple[int, int, int] | None = None

    def distort(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``images`` (n, H, W) uint8, each warped by its own smoothed random field."""
        n, h, w = images.shape
        self._buffers_for((n, h, w))
        # The two displacement fields of each image, drawn transposed, (2n, W, H): a field
        # of independent uniforms is one either way, and this order lets each smoothing
        # pass be one matrix product over the whole batch, with one transpose between.
        field = self._field
        rng.random(dtype=np.float32, out=field)  # uniform in [0, 1)
        field *= np.float32(2)
        field -= np.float32(1)  # uniform in [-1, 1)
        single_thread_matmul(field.reshape(-1, h), self._gh_t, self._pass.reshape(-1, h))
        np.copyto(self._passed, self._pass.transpose(0, 2, 1))  # (2n, H, W)
        single_thread_matmul(self._passed.reshape(-1, w), self._gw_t_alpha,
                             self._smooth.reshape(-1, w))
        return self._warp(images, self._smooth[:n], self._smooth[n:])

    def _buffers_for(self, shape: tuple[int, int, int]) -> None:
        if shape == self._shape:
            return
        n, h, w = shape
        self._shape = shape
        sigma, alpha = self.options.sigma, np.float32(self.options.alpha)
        self._gh_t = np.ascontiguousarray(gaussian_matrix(h, sigma).T)
        self._gw_t_alpha = np.ascontiguousarray(gaussian_matrix(w, sigma).T * alpha)
        self._field = np.empty((2 * n, w, h), np.float32)
        self._pass = np.empty((2 * n, w, h), np.float32)
        self._passed = np.empty((2 * n, h, w), np.float32)
        self._smooth = np.empty((2 * n, h, w), np.float32)


# -- affine ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AffineOptions:
    """Ranges of the random affine map: rotation (degrees), scale (fraction), shear
    (degrees) and shift (pixels), each drawn uniformly in ``[-x, x]``."""

    rotation: float = option(12.0, "largest rotation (degrees)", ge=0, le=180)
    scale: float = option(0.12, "largest change of size (fraction)", ge=0, lt=1)
    shear: float = option(10.0, "largest shear (degrees)", ge=0, lt=90)
    shift: float = option(2.0, "largest shift (pixels)", ge=0, le=28)

    def __post_init__(self) -> None:
        check_declared(self)


class Affine:
    """Random affine distortion: ``distort(images, rng)``. One instance per thread."""

    def __init__(self, options: AffineOptions) -> None:
        self.options = options
        self._warp = BilinearWarp()

    def distort(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``images`` (n, H, W) uint8, each through its own random affine map."""
        n, h, w = images.shape
        o = self.options
        angle = np.radians(rng.uniform(-o.rotation, o.rotation, n))
        shear = np.radians(rng.uniform(-o.shear, o.shear, n))
        scale = 1.0 + rng.uniform(-o.scale, o.scale, n)
        shift = rng.uniform(-o.shift, o.shift, (2, n))
        # The inverse map [[a, b], [c, d]] about the centre: output pixel (y, x) samples
        # (a y + b x - shift_y, c y + d x - shift_x).
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        a, b = cos, -sin + np.tan(shear) * cos
        c, d = sin, cos + np.tan(shear) * sin
        # Its displacement from (y, x) is linear in (y, x, 1): one product for the batch.
        coefficients = np.stack([np.stack([a - 1, b, -shift[0]], axis=1),
                                 np.stack([c, d - 1, -shift[1]], axis=1)]).astype(np.float32)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        grid = np.stack([ys.ravel() - (h - 1) / 2, xs.ravel() - (w - 1) / 2,
                         np.ones(h * w, np.float32)])
        displacement = (coefficients.reshape(2 * n, 3) @ grid).reshape(2, n, h, w)
        return self._warp(images, displacement[0], displacement[1])


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

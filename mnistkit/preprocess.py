"""Turn a user's photo or drawing of a digit into an MNIST-like 28x28 uint8 image.

MNIST digits are white on black, size-normalised into a 20x20 box keeping their
aspect ratio, then placed in a 28x28 image so that their centre of mass is at the
centre. :func:`mnistify` does the same to any greyscale picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistkit.errors import DataError
from mnistkit.files import open_regular_file

BOX, SIZE = 20, 28
#: A digit picture is kilobytes; larger files are refused before they are opened.
MAX_IMAGE_BYTES = 64 << 20


def load_image(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG (or anything Pillow reads) as a greyscale uint8 array."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with open_regular_file(path, "an image", max_bytes=MAX_IMAGE_BYTES) as handle, \
                warnings.catch_warnings():
            # Pillow only warns below twice its pixel limit: refuse those bombs too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                return np.asarray(image.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: refused: too many pixels for a digit picture ({exc})") \
            from None
    except (UnidentifiedImageError, OSError, MemoryError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def mnistify(grey: np.ndarray) -> np.ndarray:
    """MNIST-style ``(28, 28)`` uint8 digit from a greyscale image of any size.

    Inverts a light background, crops to the ink, fits it into a 20x20 box keeping
    the aspect ratio, and centres it by mass in 28x28.
    """
    from PIL import Image

    img = grey.astype(np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if np.median(border) > 127:
        img = 255.0 - img
    img -= np.median(border) if np.median(border) <= 127 else 255.0 - np.median(border)
    np.clip(img, 0, 255, out=img)
    ink = img > 0.2 * img.max() if img.max() > 0 else np.zeros_like(img, bool)
    if not ink.any():
        raise DataError("the image is blank: no digit found")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = BOX / max(crop.shape)
    height = max(1, round(crop.shape[0] * scale))
    width = max(1, round(crop.shape[1] * scale))
    fitted = Image.fromarray((crop * (255.0 / crop.max())).astype(np.uint8))
    small = np.asarray(fitted.resize((width, height), Image.LANCZOS), dtype=np.float32)

    canvas = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - height) // 2, (SIZE - width) // 2
    canvas[top:top + height, left:left + width] = small
    total = canvas.sum()
    yy, xx = np.indices(canvas.shape)
    shift_y = int(round(SIZE / 2 - 0.5 - (yy * canvas).sum() / total))
    shift_x = int(round(SIZE / 2 - 0.5 - (xx * canvas).sum() / total))
    shift_y = int(np.clip(shift_y, -top, SIZE - top - height))
    shift_x = int(np.clip(shift_x, -left, SIZE - left - width))
    centred = np.zeros_like(canvas)
    centred[top + shift_y:top + shift_y + height, left + shift_x:left + shift_x + width] = small
    return np.clip(centred, 0, 255).astype(np.uint8)

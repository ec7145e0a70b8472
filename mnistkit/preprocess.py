"""Turn a user's photo or drawing of a digit into an MNIST-like 28x28 uint8 image.

MNIST digits are white on black, size-normalised into a 20x20 box keeping their
aspect ratio, then placed in a 28x28 image so that their centre of mass is at the
centre. :func:`mnistify` does the same to any greyscale picture; :func:`load_image`
decodes a file safely (size limit before decoding, every decoder failure a
:class:`~mnistkit.errors.DataError`, no Pillow warning escaping), and
:func:`prepare_images` does both for many files, keeping each file's error or warnings.

Everything is vectorised NumPy; Pillow is imported only when a file is decoded.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.errors import DataError

BOX, SIZE = 20, 28
#: Pictures with more pixels are refused from their header, before decoding: a digit
#: needs far fewer, and a 50 Mpixel limit leaves room for 48 Mpixel phone photos.
MAX_PIXELS = 50_000_000
#: Decoded pictures are reduced (block averages) to at most this many pixels a side.
MAX_SIDE = 1024
#: :func:`mnistify` works at this resolution at most.
WORK_SIDE = 512
#: Below this contrast (grey levels between ink and background) a picture is blank.
MIN_CONTRAST = 20.0
#: The digit's ink covers at least this fraction of the picture (and 6 pixels).
MIN_INK = 0.0002
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's convert("L")
#: A digit picture is kilobytes to a few megabytes; larger files are refused unopened.
MAX_IMAGE_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class Digit:
    """An MNIST-style ``(28, 28)`` uint8 image and the doubts about it (``warnings``)."""

    image: np.ndarray
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """One file of :func:`prepare_images`: its digit, or the reason it has none."""

    path: str
    digit: Digit | None
    error: str | None = None

    @property
    def message(self) -> str:
        """The error as one line naming the file."""
        return f"{self.path}: {self.error}"


def prepare_images(paths: Iterable[str | Path]) -> list[PreparedImage]:
    """Load and mnistify every file; a file that fails keeps its error, the others go on."""
    prepared = []
    for path in paths:
        try:
            prepared.append(PreparedImage(str(path), mnistify_digit(load_image(path))))
        except DataError as exc:
            reason = str(exc)
            prefix = f"{path}: "
            prepared.append(PreparedImage(str(path), None, reason.removeprefix(prefix)))
    return prepared


# --- decoding ------------------------------------------------------------------------

def load_image(path: str | Path) -> np.ndarray:
    """Read a picture file as a greyscale uint8 array of at most ``MAX_SIDE`` a side.

    The EXIF orientation is applied; transparency is composited on the background that
    keeps the strokes visible; 16-bit and 32-bit pictures are scaled by their bit depth.
    Anything that is not a regular file, has more than ``MAX_PIXELS`` pixels, or that the
    decoder fails on (truncated, corrupt, a decompression bomb, an oversized text or ICC
    chunk) raises :class:`DataError` naming ``path``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_regular_file(path) as handle:
            return _decode(handle, path)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: too many pixels for a digit picture: refused before "
                        f"decoding ({_describe(exc)})") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (not a picture format Pillow "
                        f"knows, or damaged at the start)") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to decode this picture") from None
    except Exception as exc:  # noqa: BLE001 - the decoder parses untrusted bytes
        raise DataError(f"{path}: not a readable image ({_describe(exc)})") from None


def _open_regular_file(path: str | Path) -> Any:
    """Open ``path`` for reading through :func:`mnistkit.files.open_regular_file` (folders,
    FIFOs, sockets and devices refused from ``stat``, opened non-blocking and checked
    again on the descriptor, so nothing blocks); an empty file is refused too."""
    from mnistkit.files import open_regular_file

    try:
        handle = open_regular_file(path, "an image file", max_bytes=MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open the image ({exc.strerror or exc})") from None
    if os.fstat(handle.fileno()).st_size == 0:
        handle.close()
        raise DataError(f"{path}: not a readable image (the file is empty)")
    return handle


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode(handle: Any, path: str | Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings about odd files never print
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(handle) as image:
            _check_size(image.size, path)
            factor = _reduction(image.size)
            if factor > 1 and image.format == "JPEG":
                image.draft(image.mode, (image.size[0] // factor, image.size[1] // factor))
            image.load()
            return _to_grey(_upright(image, ImageOps))


def _upright(image: Any, image_ops: Any) -> Any:
    """``image`` turned as its EXIF orientation says; as stored if the EXIF is damaged
    (the orientation is a hint, the pixels are what matters)."""
    try:
        return image_ops.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF of any kind
        return image


def _check_size(size: tuple[int, int], path: str | Path) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: the picture has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise DataError(f"{path}: {width}x{height} pixels ({width * height / 1e6:.0f} Mpixel) is "
                        f"more than the {MAX_PIXELS / 1e6:.0f} Mpixel allowed for a digit "
                        f"picture: refused before decoding (reduce the picture)")


def _reduction(size: tuple[int, int]) -> int:
    return max(1, -(-max(size) // MAX_SIDE))


_TO_RGB = {"1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
           "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA"}


def _to_grey(image: Any) -> np.ndarray:
    """Greyscale uint8 of a decoded Pillow image of any mode, reduced, alpha composited."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image)
        if values.dtype.kind == "f":
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(values.min()), float(values.max())
        reduced = _block_mean(values, _reduction(image.size))
        return np.clip(np.rint(_scale_deep(reduced, low, high)), 0, 255).astype(np.uint8)
    mode = _TO_RGB.get(image.mode, image.mode)
    if "transparency" in image.info and mode in ("P", "L", "RGB"):
        mode = "LA" if mode == "L" else "RGBA"
    if mode not in ("L", "LA", "RGB", "RGBA"):
        mode = "RGBA" if image.has_transparency_data else "RGB"
    if mode != image.mode:
        image = image.convert(mode)
    factor = _reduction(image.size)
    if factor > 1:
        image = image.reduce(factor)
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        return pixels.astype(np.uint8)
    has_alpha = mode in ("LA", "RGBA")
    colour = pixels[..., :-1] if has_alpha else pixels
    grey = colour[..., 0].astype(np.float32) if colour.shape[-1] == 1 else colour @ _LUMA
    if has_alpha:
        grey = composite(grey, pixels[..., -1])
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _scale_deep(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scale 16/32-bit integer or float pixels (whose range is ``low..high``) to 0..255
    by their bit depth, not clipping them: 16-bit white is 65535, not 255. The depth is
    the smallest common one holding ``high`` (12-bit data in a 16-bit file is 12-bit)."""
    if low >= 0 and high <= 1.0:  # float pictures in 0..1 (also all-zero pictures)
        return values * np.float32(255.0)
    if low >= 0:
        bits = next(b for b in (8, 10, 12, 14, 16, 24, 32, 64) if high <= 2.0 ** b - 1)
        return values * np.float32(255.0 / (2.0 ** bits - 1))
    return (values - np.float32(low)) * np.float32(255.0 / (high - low))  # negatives: stretch


def composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite greyscale strokes with an alpha channel (0..255) on the background that
    keeps them visible: white under dark visible pixels, black under light ones."""
    weight = alpha.astype(np.float32) / 255.0
    total = float(weight.sum())
    if total == 0.0:
        raise DataError("the image is fully transparent: no digit found")
    visible_mean = float((weight * grey).sum()) / total
    background = 255.0 if visible_mean < 128.0 else 0.0
    return weight * grey + (1.0 - weight) * background


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks (the last partial blocks are dropped)."""
    if factor <= 1:
        return values.astype(np.float32)
    rows, cols = values.shape[0] // factor, values.shape[1] // factor
    if rows == 0 or cols == 0:
        return values.astype(np.float32)
    blocks = values[:rows * factor, :cols * factor].reshape(rows, factor, cols, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


# --- finding the digit ---------------------------------------------------------------

def mnistify(grey: np.ndarray) -> np.ndarray:
    """MNIST-style ``(28, 28)`` uint8 digit from a greyscale image of any size.

    Inverts a light background, drops a dark border and specks, crops to the ink, fits
    it into a 20x20 box keeping the aspect ratio, and centres it by mass in 28x28.
    """
    return mnistify_digit(grey).image


def mnistify_digit(grey: np.ndarray) -> Digit:
    """Like :func:`mnistify`, with warnings when the picture does not look like one digit
    (ink touching the edges, covering most of the picture, several digits side by side).
    Raises :class:`DataError` if there is no ink at all."""
    if grey.ndim != 2 or grey.size == 0:
        raise DataError(f"expected a non-empty greyscale image; got shape {grey.shape}")
    img = _block_mean(grey, max(1, -(-max(grey.shape) // WORK_SIDE)))
    strength, ink = _ink(img)
    labels = _components(ink)
    kept, notes = _choose_digit(labels, ink)
    strength = np.where(_dilate(_dilate(kept)), strength, 0.0)  # the strokes' soft edges
    strength *= 255.0 / float(strength[kept].max())
    seen = strength > 0.2 * 255.0
    rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    crop = strength[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return Digit(_fit_and_centre(crop), tuple(notes))


def _otsu(img: np.ndarray) -> float:
    """Otsu's threshold of a 0..255 image (the grey level best splitting two classes)."""
    hist = np.bincount(np.clip(img, 0, 255).astype(np.intp).ravel(), minlength=256)
    hist = hist.astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(hist)
    mass = np.cumsum(hist * levels)
    total, total_mass = weight[-1], mass[-1]
    other = total - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight - total * mass) ** 2 / (weight * other)
    between[~np.isfinite(between)] = -1.0
    return float(np.argmax(between)) + 0.5


def _ink(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ink strength (0 = background) and the ink mask. The background is the majority
    Otsu class, or the light class if it is one solid block (paper inside a dark frame)."""
    threshold = _otsu(img)
    light = img > threshold
    if light.sum() * 2 > light.size or _looks_like_paper(light):  # dark ink on light
        img, light = 255.0 - img, ~light
    background = float(np.median(img[~light])) if (~light).any() else 0.0
    inked = float(np.median(img[light])) if light.any() else background
    if inked - background < MIN_CONTRAST:
        raise DataError("the image is blank: no digit found")
    return np.clip(img - background, 0, None), light


def _looks_like_paper(light: np.ndarray) -> bool:
    """Whether the largest light region is a solid, not elongated block covering a tenth
    of the picture or more: a sheet of paper in a photo, not a stroke."""
    if not light.any():
        return False
    labels = _components(light)
    names, counts = np.unique(labels[light], return_counts=True)
    biggest = labels == names[np.argmax(counts)]
    rows, cols = np.flatnonzero(biggest.any(axis=1)), np.flatnonzero(biggest.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    fill = counts.max() / (height * width)
    return bool(fill > 0.75 and max(height, width) <= 3 * min(height, width)
                and counts.max() >= 0.1 * light.size)


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of ``mask`` (label = smallest flat index in the
    component; -1 off the mask), by vectorised min-propagation with pointer jumping."""
    size = mask.size
    labels = np.where(mask, np.arange(size).reshape(mask.shape), size)
    while True:
        spread = np.minimum(_shift_min(labels, 1, size), _shift_min(labels, 0, size))
        spread = np.minimum(_shift_min(spread, 1, size), spread)
        spread = np.where(mask, spread, size)
        flat = np.append(spread.ravel(), size)
        for _ in range(4):
            flat[:-1] = flat[flat[:-1]]
        spread = flat[:-1].reshape(mask.shape)
        if np.array_equal(spread, labels):
            return np.where(mask, labels, -1)
        labels = spread


def _shift_min(values: np.ndarray, axis: int, fill: int) -> np.ndarray:
    """Minimum of each element and its two neighbours along ``axis``."""
    padded = np.pad(values, [(1, 1) if a == axis else (0, 0) for a in range(2)],
                    constant_values=fill)
    ahead = padded[2:] if axis == 0 else padded[:, 2:]
    behind = padded[:-2] if axis == 0 else padded[:, :-2]
    return np.minimum(values, np.minimum(ahead, behind))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel in the 8 directions."""
    grown = -_shift_min(-mask.astype(np.int8), 0, 0)
    return (-_shift_min(-grown, 1, 0)).astype(bool)


def _edge_mask(shape: tuple[int, ...]) -> np.ndarray:
    edge = np.zeros(shape, bool)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    return edge


def _choose_digit(labels: np.ndarray, ink: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The ink pixels of the digit, without a border (a dark frame of a photo, after
    inversion) or specks, and the reasons to doubt it is one digit."""
    names, inverse = np.unique(labels[ink], return_inverse=True)
    area = np.bincount(inverse, minlength=len(names))
    edge = _edge_mask(ink.shape)
    contact = np.bincount(np.searchsorted(names, labels[ink & edge]), minlength=len(names))
    perimeter = int(edge.sum())
    frame = (contact >= 0.15 * perimeter) | ((contact > 0) & (area >= 0.25 * ink.size))
    if frame.all():
        if contact.sum() >= 0.3 * perimeter:  # a border and nothing inside
            raise DataError(f"no digit found: the ink runs along {contact.sum() / perimeter:.0%} "
                            f"of the picture's edges (a border with nothing inside, or not "
                            f"a digit)")
        frame[:] = False  # ink at the edges only: keep it (the doubts below say so)
    keep = ~frame
    largest = area[keep].max()
    if largest < max(MIN_INK * ink.size, 6):
        raise DataError("the image is blank: no digit found" + (
            " inside the border" if frame.any() else f" (the largest mark has {largest} "
                                                     f"pixels)"))
    keep &= area >= 0.02 * largest  # specks: dust, JPEG noise
    kept = np.zeros(ink.shape, bool)
    kept[ink] = keep[inverse]
    return kept, _doubts(kept, keep, inverse, ink, contact, area)


def _doubts(kept: np.ndarray, keep: np.ndarray, inverse: np.ndarray, ink: np.ndarray,
            contact: np.ndarray, area: np.ndarray) -> list[str]:
    notes = []
    if (contact[keep] > 0).any():
        notes.append("the ink touches the edge of the picture (a digit cut off, or a border "
                     "taken for ink?)")
    covered = kept.sum() / kept.size
    if covered > 0.5:
        notes.append(f"ink covers {covered:.0%} of the picture (a digit is mostly background)")
    columns = np.nonzero(ink)[1]
    first = np.full(len(area), kept.shape[1])
    last = np.full(len(area), -1)
    np.minimum.at(first, inverse, columns)
    np.maximum.at(last, inverse, columns)
    main = np.argmax(np.where(keep, area, -1))
    beside = keep & (area >= 0.25 * area[main]) & ((first > last[main]) | (last < first[main]))
    if beside.any():
        notes.append(f"{int(beside.sum()) + 1} separate shapes side by side (more than one "
                     f"digit?)")
    return notes


def _fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """Fit ``crop`` (float ink strength 0..255) into a 20x20 box and centre it by mass."""
    from PIL import Image

    scale = BOX / max(crop.shape)
    height = max(1, round(crop.shape[0] * scale))
    width = max(1, round(crop.shape[1] * scale))
    fitted = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
    small = np.clip(np.asarray(fitted.resize((width, height), Image.LANCZOS)), 0, 255)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - height) // 2, (SIZE - width) // 2
    canvas[top:top + height, left:left + width] = small
    total = canvas.sum()
    if total <= 0:
        raise DataError("the image is blank: no digit found")
    yy, xx = np.indices(canvas.shape)
    shift_y = int(round(SIZE / 2 - 0.5 - (yy * canvas).sum() / total))
    shift_x = int(round(SIZE / 2 - 0.5 - (xx * canvas).sum() / total))
    shift_y = int(np.clip(shift_y, -top, SIZE - top - height))
    shift_x = int(np.clip(shift_x, -left, SIZE - left - width))
    centred = np.zeros_like(canvas)
    centred[top + shift_y:top + shift_y + height, left + shift_x:left + shift_x + width] = small
    return np.clip(np.rint(centred), 0, 255).astype(np.uint8)


# --- the run and the outputs ---------------------------------------------------------

def require_digit_size(image_shape: tuple[int, ...], run: str | Path) -> None:
    """Refuse a run whose model takes images other than the 28x28 :func:`mnistify` makes."""
    from mnistkit.errors import RunError

    if tuple(image_shape) != (SIZE, SIZE):
        size = "x".join(str(d) for d in image_shape)
        raise RunError(f"{run}: this run was trained on {size} images; predict makes 28x28 "
                       f"MNIST-style inputs, so it needs a run trained on 28x28 images")


def save_inputs(images: Iterable[tuple[str, np.ndarray]], folder: str | Path) -> list[Path]:
    """Write each ``(picture path, 28x28 image)`` as ``folder/<picture name>.png`` (``-2``,
    ``-3``... for repeated names); returns the files written."""
    from PIL import Image

    folder = Path(folder)
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for source, image in images:
            stem, target, n = Path(source).stem or "image", None, 1
            while target is None or target in written:
                target = folder / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png")
                n += 1
            Image.fromarray(image).save(target, format="PNG")
            written.append(target)
    except OSError as exc:
        raise DataError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return written

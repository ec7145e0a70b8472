"""Digits as text: pure functions turning uint8 images into lines of block characters.

Each text line covers two pixel rows with the half blocks ``▀ ▄ █``, so a 28x28 digit
takes 28 columns by 14 lines and keeps its proportions in a terminal. No colour,
no printing: the CLI prints the lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_HALF_BLOCKS = np.array([" ", "▄", "▀", "█"])  # index: 2 * top + bottom
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def digit_lines(image: np.ndarray, threshold: int = 96) -> list[str]:
    """Render one ``(rows, cols)`` uint8 image: a pixel is ink when ``>= threshold``."""
    if image.ndim != 2:
        raise ValueError(f"expected a (rows, cols) image, got shape {image.shape}")
    ink = image >= threshold
    if ink.shape[0] % 2:
        ink = np.vstack([ink, np.zeros((1, ink.shape[1]), dtype=bool)])
    codes = 2 * ink[0::2].astype(np.intp) + ink[1::2]
    return ["".join(row) for row in _HALF_BLOCKS[codes]]


def crop_blank(images: np.ndarray, threshold: int = 96) -> np.ndarray:
    """``images`` without the border rows and columns that have no ink in any of them."""
    ink = (images >= threshold).any(axis=0)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return images
    return images[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def digits_grid(images: np.ndarray, titles: Sequence[str], width: int = 80,
                gap: int = 2, threshold: int = 96, crop: bool = True) -> list[str]:
    """Render several images side by side, as many per row as fit in ``width`` columns,
    each under its title (cut to the image width). ``crop`` drops the blank border
    shared by all the images."""
    if len(images) != len(titles):
        raise ValueError("need one title per image")
    if len(images) == 0:
        return []
    if crop:
        images = crop_blank(images, threshold)
    cell = images.shape[2]
    per_row = max(1, (width + gap) // (cell + gap))
    spacer = " " * gap
    lines: list[str] = []
    for start in range(0, len(images), per_row):
        block = [digit_lines(img, threshold) for img in images[start:start + per_row]]
        heads = [str(t)[:cell].ljust(cell) for t in titles[start:start + per_row]]
        lines.append(spacer.join(heads).rstrip())
        lines.extend(spacer.join(parts).rstrip() for parts in zip(*block, strict=True))
        lines.append("")
    return lines[:-1]


def bar(fraction: float, width: int = 20) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (0..1), in eighths."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)

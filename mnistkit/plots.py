"""Matplotlib figures, one function per picture, plus :func:`save_figure`.

Figures are built with :class:`matplotlib.figure.Figure` directly, not pyplot, so the
library never touches the global backend or keeps figures alive: in a notebook the
returned figure displays as usual, and :func:`save_figure` renders with Agg.
Colour maps default to colour-blind-safe ones: ``gray_r`` for digits (ink dark on
white), ``viridis``/``cividis`` for heat maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnistkit.errors import MnistkitError
from mnistkit.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIGIT_CMAP = "gray_r"
HEATMAP_CMAP = "viridis"
FIGURE_FORMATS = ("png", "svg", "pdf")


def sample_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                title: str = "", cmap: str = DIGIT_CMAP) -> Figure:
    """A grid of images ``(N, rows, cols)``, each titled with its class name."""
    from matplotlib.figure import Figure

    n = len(images)
    if n == 0 or len(labels) != n:
        raise ValueError("sample_grid needs at least one image and one label per image")
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.1 * cols + 0.2, 1.25 * rows + (0.45 if title else 0.1)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= n:
            continue
        ax.imshow(images[index], cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(str(class_names[int(labels[index])]), fontsize=10, pad=2)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Render ``fig`` with Agg into ``path`` atomically (format from the suffix:
    png, svg or pdf) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise MnistkitError(f"cannot write figure {str(path)!r}: unknown format "
                            f"{path.suffix or '(no suffix)'}; use .png, .svg or .pdf")
    FigureCanvasAgg(fig)
    try:
        with atomic_write(path) as handle:
            fig.savefig(handle, format=fmt, dpi=dpi)
    except OSError as exc:
        raise MnistkitError(f"cannot write figure {str(path)!r}: {exc.strerror or exc}") from None
    return path

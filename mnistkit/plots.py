"""Matplotlib figures, one function per picture, plus :func:`save_figure`.

Figures are built with :class:`matplotlib.figure.Figure` directly, not pyplot, so the
library never touches the global backend or keeps figures alive: in a notebook the
returned figure displays as usual, and :func:`save_figure` renders with Agg.
Colour maps default to colour-blind-safe ones: ``gray_r`` for digits (ink dark on
white), ``viridis``/``cividis`` for heat maps, ``PuOr`` for signed weights, and the
Okabe-Ito palette for lines.

The figures of a trained run (history, weights, confusion, errors, embedding) take
arrays; the numbers behind them come from small NumPy functions in this module
(:func:`confident_errors`, :func:`pca_2d`, :func:`moving_average`, :func:`load_curves`)
so they can be checked without drawing.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistkit.errors import MnistkitError, RunError
from mnistkit.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIGIT_CMAP = "gray_r"
HEATMAP_CMAP = "viridis"
FIGURE_FORMATS = ("png", "svg", "pdf")
HISTORY_PNG = "history.png"  # written into every finished run folder by ``mnistkit train``


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


#: The start of matplotlib's warning about a character the font cannot draw (a regex).
MISSING_GLYPH_WARNING = r"Glyph \d+ \(.*\) missing from font"


def plain_text(fig: Figure) -> Figure:
    """Draw every text of ``fig`` literally: run folders and class names are the user's, so
    ``$`` in them must not start mathtext (``a$\\foo$`` would fail to render)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
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
    plain_text(fig)
    try:
        with atomic_write(path) as handle, warnings.catch_warnings():
            # A run or class name with characters the font lacks (emoji, CJK...) is drawn
            # as boxes; matplotlib's warning about it would only clutter stderr.
            warnings.filterwarnings("ignore", message=MISSING_GLYPH_WARNING,
                                    category=UserWarning)
            fig.savefig(handle, format=fmt, dpi=dpi)
    except OSError as exc:
        raise MnistkitError(f"cannot write figure {str(path)!r}: {exc.strerror or exc}") from None
    return path

# ---------------------------------------------------------------------------------------
# What a run learned: the data behind each figure (pure NumPy, checked by the tests),
# then the figures (they take arrays, never a run folder), then run-folder conveniences.
# ---------------------------------------------------------------------------------------

#: Okabe & Ito (2008) colour-blind-safe palette for lines, black left out (used for text).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")

#: Diverging colour map for weights, centred at 0. ColorBrewer's PuOr (orange = negative,
#: near-white = 0, purple = positive) stays two distinct hues under the common red-green colour
#: deficiencies and in greyscale keeps 0 as the lightest value; RdBu-like maps rely on a
#: red/blue pair that is less robust, and a sequential map could not show the sign.
WEIGHTS_CMAP = "PuOr"

#: Sequential, perceptually uniform, colour-blind-safe map for counts.
COUNTS_CMAP = "viridis"


@dataclasses.dataclass(frozen=True)
class RunCurves:
    """One run's training curves: loss per step and accuracies per epoch."""

    label: str
    step_loss: np.ndarray          # (steps,) loss of every step, step k at index k - 1
    steps_per_epoch: int
    epochs: np.ndarray             # (E,) 1-based epoch numbers
    train_accuracy: np.ndarray     # (E,)
    val_accuracy: np.ndarray       # (E,) NaN when the run had no validation set


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average: point ``i`` is the mean of ``values[max(0, i-window+1):i+1]``
    (shorter windows at the start, so the curve starts at the first value)."""
    values = np.asarray(values, np.float64)
    if window < 1:
        raise ValueError(f"window must be at least 1; got {window}")
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, values.size + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


MIN_SMOOTHING_WINDOW = 5
MAX_SMOOTHING_WINDOW = 200


def smoothing_window(n_steps: int) -> int:
    """A window of about 2% of the steps, at least ``MIN_SMOOTHING_WINDOW`` (so short runs
    are smoothed too) and at most ``MAX_SMOOTHING_WINDOW``."""
    return int(min(MAX_SMOOTHING_WINDOW, max(MIN_SMOOTHING_WINDOW, round(n_steps / 50))))


def confident_errors(probabilities: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` misclassified images with the highest predicted probability,
    most confident first (ties by index). Fewer when there are fewer mistakes."""
    probabilities = np.asarray(probabilities)
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != np.asarray(labels))
    confidence = probabilities[wrong, predictions[wrong]]
    order = np.lexsort((wrong, -confidence))  # last key is primary
    return wrong[order[:max(n, 0)]]


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project the rows of ``x`` ``(N, D)`` on their two principal components.

    Returns ``(points (N, 2), explained (2,))``: the coordinates and the fraction of the
    total variance each component explains. Signs are fixed so that each component's
    largest-magnitude loading is positive (stable from run to run)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a (N >= 2, D) array; got shape {x.shape}")
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    if components.shape[0] < 2:  # D == 1: pad with a zero direction
        components = np.vstack([components, np.zeros_like(components)])
        singular = np.concatenate([singular, [0.0]])
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    components = components * signs[:, None]
    total = float(np.sum(singular ** 2))
    explained = singular[:2] ** 2 / total if total > 0 else np.zeros(2)
    return centred @ components.T, explained


def weight_images(first_layer: np.ndarray, max_units: int | None = None,
                  shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """The first-layer weights ``(n_inputs, units)`` as ``(units, rows, cols)`` images
    (the first ``max_units`` units)."""
    w = np.asarray(first_layer)
    if w.ndim != 2 or w.shape[0] != shape[0] * shape[1]:
        raise ValueError(f"expected first-layer weights of shape ({shape[0] * shape[1]}, "
                         f"units); got {w.shape}")
    units = w.shape[1] if max_units is None else min(max_units, w.shape[1])
    return np.ascontiguousarray(w[:, :units].T).reshape(units, *shape)


def _grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return -(-n // cols), cols


def _luminance(rgba: np.ndarray) -> np.ndarray:
    """Relative luminance (WCAG) of RGBA colours ``(..., 4)`` in 0..1."""
    rgb = np.asarray(rgba)[..., :3]
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def text_colours(rgba: np.ndarray) -> np.ndarray:
    """``"white"`` or ``"black"`` for text on each background colour, whichever contrasts
    more (WCAG contrast ratio)."""
    lum = _luminance(rgba)
    white_contrast = 1.05 / (lum + 0.05)
    black_contrast = (lum + 0.05) / 0.05
    return np.where(white_contrast > black_contrast, "white", "black")


# -- reading runs for the history plot ------------------------------------------------------
def read_step_losses(run_dir: str | Path) -> np.ndarray:
    """The loss of every step from ``steps.csv`` of a run (validated): see
    :meth:`mnistkit.runs.folder.RunFolder.read_step_losses`."""
    from mnistkit.runs.folder import RunFolder

    return RunFolder(run_dir).read_step_losses()


def run_curves(run_dir: str | Path, label: str | None = None) -> RunCurves:
    """The training curves of the run at ``run_dir`` (``run.json`` and ``steps.csv``)."""
    from mnistkit.runs.folder import read_record

    record = read_record(run_dir)
    history = record["history"]
    try:
        epochs = np.array([row["epoch"] for row in history], np.int64)
        train_acc = np.array([row["train_accuracy"] for row in history], np.float64)
        val_acc = np.array([row["val_accuracy"] for row in history], np.float64)
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{run_dir}: run.json history rows need epoch, train_accuracy and "
                       f"val_accuracy") from None
    losses = read_step_losses(run_dir)
    steps_per_epoch = record["training"].get("steps_per_epoch") or 0
    if not steps_per_epoch and len(epochs):
        steps_per_epoch = -(-len(losses) // max(int(epochs[-1]), 1))
    return RunCurves(label or run_labels([Path(run_dir)], [record])[0], losses,
                     int(steps_per_epoch), epochs, train_acc, val_acc)


def run_labels(paths: Sequence[Path], records: Sequence[dict[str, Any]]) -> list[str]:
    """Legend labels: folder name, model and optimizer, plus the options that differ
    between the runs compared (the learning rate when there is a single run)."""
    def options(record: dict[str, Any]) -> dict[str, Any]:
        return {**record.get("model_options", {}), **record.get("optimizer_options", {})}

    all_options = [options(r) for r in records]
    keys = sorted({k for o in all_options for k in o})
    if len(records) > 1:  # options every run has, with different values
        shown = [k for k in keys if all(k in o for o in all_options)
                 and len({repr(o[k]) for o in all_options}) > 1]
    else:
        shown = [k for k in ("lr",) if k in keys]
    labels = []
    for path, record, opts in zip(paths, records, all_options, strict=True):
        extra = ", ".join(f"{k}={_short(opts[k])}" for k in shown if k in opts)
        labels.append(f"{path.name}: {record['model']} + {record['optimizer']}"
                      + (f" ({extra})" if extra else ""))
    return labels


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def load_curves(run_dirs: Sequence[str | Path]) -> list[RunCurves]:
    """:func:`run_curves` of several runs, labelled so they can be told apart."""
    from mnistkit.runs.folder import read_record

    paths = [Path(p) for p in run_dirs]
    labels = run_labels(paths, [read_record(p) for p in paths])
    return [run_curves(p, label) for p, label in zip(paths, labels, strict=True)]


# -- figures of a run -----------------------------------------------------------------------
def history_figure(curves: Sequence[RunCurves], title: str = "") -> Figure:
    """Two panels: the training loss of every step (thin, raw; thick, moving average) and
    train (dashed) / validation (solid) accuracy per epoch, one colour per run."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import (
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
        PercentFormatter,
    )

    if not curves:
        raise ValueError("history_figure needs at least one run")
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2, width_ratios=(1.35, 1))
    windows = []
    for i, run in enumerate(curves):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        steps = np.arange(1, len(run.step_loss) + 1)
        window = smoothing_window(len(steps))
        windows.append(window)
        loss_ax.plot(steps, run.step_loss, color=colour, linewidth=0.6, alpha=0.3)
        loss_ax.plot(steps, moving_average(run.step_loss, window), color=colour,
                     linewidth=1.8, label=run.label)
        acc_ax.plot(run.epochs, run.train_accuracy, color=colour, linestyle="--", marker="o",
                    markersize=4, linewidth=1.3)
        if np.isfinite(run.val_accuracy).any():
            acc_ax.plot(run.epochs, run.val_accuracy, color=colour, linestyle="-",
                        marker="s", markersize=4, linewidth=1.8)
    if all(np.all(c.step_loss > 0) for c in curves):
        loss_ax.set_yscale("log")
        loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        loss_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        loss_ax.yaxis.set_minor_formatter(NullFormatter())
        loss_ax.set_ylabel("training loss (log scale)")
    else:
        loss_ax.set_ylabel("training loss")
    loss_ax.set_xlabel("step (one minibatch)")
    smoothing = (f"{windows[0]} steps" if len(set(windows)) == 1 else
                 "about 2% of the steps")
    loss_ax.set_title(f"Training loss per step\nthin: every step; thick: moving average "
                      f"over {smoothing}", fontsize=10)
    loss_ax.grid(True, which="major", alpha=0.3)
    loss_ax.legend(fontsize=8, loc="upper right")
    per_epoch = {c.steps_per_epoch for c in curves}
    if len(per_epoch) == 1 and (spe := per_epoch.pop()) > 0:
        top = loss_ax.secondary_xaxis("top", functions=(lambda s, k=spe: s / k,
                                                        lambda e, k=spe: e * k))
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_xlabel("epoch", fontsize=9)
    acc_ax.set_title("Accuracy per epoch", fontsize=10)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.grid(True, alpha=0.3)
    styles = [Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=4,
                     label="train"),
              Line2D([], [], color="0.3", linestyle="-", marker="s", markersize=4,
                     label="validation")]
    acc_ax.legend(handles=styles, fontsize=8, loc="lower right",
                  title="colours: runs as on the left" if len(curves) > 1 else None,
                  title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def weights_figure(images: np.ndarray, titles: Sequence[str], title: str = "",
                   max_cols: int = 8, cmap: str = WEIGHTS_CMAP,
                   scale_label: str = "weight (0 = white)") -> Figure:
    """First-layer weights as images ``(units, rows, cols)`` on one diverging colour
    scale centred at 0 (shared by all panels, clipped at the 99.5th percentile of |w|)."""
    from matplotlib.figure import Figure

    n = len(images)
    if n == 0 or len(titles) != n:
        raise ValueError("weights_figure needs at least one image and one title per image")
    rows, cols = _grid_shape(n, 5 if n <= 10 else max_cols)
    fig = Figure(figsize=(1.15 * cols + 1.1, 1.3 * rows + (0.6 if title else 0.2)),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = float(np.percentile(np.abs(images), 99.5)) or 1.0
    shown = None
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= n:
            continue
        shown = ax.imshow(images[index], cmap=cmap, vmin=-limit, vmax=limit,
                          interpolation="nearest")
        ax.set_title(str(titles[index]), fontsize=9, pad=2)
    bar = fig.colorbar(shown, ax=axes, shrink=min(0.9, 0.25 + 0.25 * rows), aspect=25)
    bar.set_label(scale_label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "",
                     cmap: str = COUNTS_CMAP) -> Figure:
    """The confusion matrix as a heat map with the count written in every cell.

    Colours follow the count on a log scale (the diagonal is 100 times the rest);
    empty cells stay white. Text is black or white, whichever contrasts more."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"expected a ({k}, {k}) matrix; got {matrix.shape}")
    fig = Figure(figsize=(0.55 * k + 2.2, 0.5 * k + 1.6), layout="constrained")
    ax = fig.subplots()
    norm = LogNorm(vmin=1, vmax=max(int(matrix.max()), 2))
    colour_map = _colormap(cmap).with_extremes(bad="white")
    masked = np.ma.masked_less(matrix, 1)
    shown = ax.imshow(masked, cmap=colour_map, norm=norm, interpolation="nearest")
    fills = colour_map(norm(np.maximum(matrix, 1)))
    colours = text_colours(fills)
    size = 9 if matrix.max() < 1000 else 8
    for i in range(k):
        for j in range(k):
            count = int(matrix[i, j])
            ax.text(j, i, str(count), ha="center", va="center", fontsize=size,
                    color=colours[i, j] if count else "0.6",
                    fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(k), [str(c) for c in class_names])
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    bar = fig.colorbar(shown, ax=ax, shrink=0.85, format="{x:g}")
    bar.set_label("images (log scale)")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def errors_figure(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                  confidence: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """A gallery of misclassified images, each titled with its true class, the predicted
    class and the predicted probability (the sample grid, retitled)."""
    import textwrap

    fig = sample_grid(images, predictions, class_names, title=title)
    titles = error_titles(labels, predictions, confidence, class_names)
    for ax, text in zip(fig.axes, titles, strict=False):
        ax.set_title(text, fontsize=8, pad=2)
    if title:  # the grid can be narrower than the title: wrap it (about 11 chars per inch)
        fig.suptitle(textwrap.fill(title, max(20, int(fig.get_figwidth() * 11))), fontsize=11)
    return fig


def error_titles(labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray,
                 class_names: Sequence[str]) -> list[str]:
    """``"true 4\\npred 9 87.3%"`` per image."""
    return [f"true {class_names[int(t)]}\npred {class_names[int(p)]} {probability_text(c)}"
            for t, p, c in zip(labels, predictions, confidence, strict=True)]


def probability_text(p: float) -> str:
    """A probability as a percentage with one decimal, rounded down, so 0.9996 reads
    ``99.9%``, never ``100.0%`` for a probability below 1."""
    return f"{math.floor(float(p) * 1000) / 10:.1f}%"


def embedding_figure(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                     explained: Sequence[float] | None = None, title: str = "") -> Figure:
    """A 2-D scatter of ``points`` ``(N, 2)`` coloured by class (tab10), with a legend
    and each class's name written at its median point."""
    import matplotlib.patheffects as effects
    from matplotlib.figure import Figure

    points, labels = np.asarray(points), np.asarray(labels)
    fig = Figure(figsize=(7.6, 6.2), layout="constrained")
    ax = fig.subplots()
    palette = _colormap("tab10")
    outline = [effects.withStroke(linewidth=3, foreground="white")]
    for k, name in enumerate(class_names):
        mine = points[labels == k]
        if not len(mine):
            continue
        colour = palette(k % 10)
        ax.scatter(mine[:, 0], mine[:, 1], s=3, alpha=0.45, color=colour, linewidths=0,
                   label=str(name), rasterized=True)
        centre = np.median(mine, axis=0)
        ax.text(centre[0], centre[1], str(name), fontsize=13, fontweight="bold",
                color=colour, ha="center", va="center", path_effects=outline)
    axis = ["first", "second"]
    for i, setter in enumerate((ax.set_xlabel, ax.set_ylabel)):
        share = f" ({explained[i]:.1%} of the variance)" if explained is not None else ""
        setter(f"{axis[i]} principal component{share}")
    ax.legend(title="class", markerscale=4, fontsize=8, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
    for handle in ax.get_legend().legend_handles:
        handle.set_alpha(1)
    ax.grid(True, alpha=0.2)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _colormap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def save_history_plot(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw the history of the run at ``run_dir`` into ``path`` (default
    ``run_dir/history.png``) and return where it went."""
    run_dir = Path(run_dir)
    curves = load_curves([run_dir])
    fig = history_figure(curves, title=f"Training history of {run_dir.name}")
    return save_figure(fig, run_dir / HISTORY_PNG if path is None else path)


# ---------------------------------------------------------------------------------------
# A sweep: validation accuracy against each swept setting.
# ---------------------------------------------------------------------------------------
def sweep_axis_points(trials: Sequence[dict[str, Any]], axis: str
                      ) -> tuple[list[Any], list[tuple[int, float]]]:
    """The values of the swept ``axis`` (``m.hidden_size``, ``o.lr``, ``epochs``...) in
    plotting order (numbers ascending, text as given), and one ``(value index, validation
    accuracy)`` point per finished trial."""
    from mnistkit.sweep import axis_value

    values: list[Any] = []
    points = []
    for trial in trials:
        value = axis_value(trial["config"], axis)
        if value not in values:
            values.append(value)
    numeric = all(_as_float(v) is not None for v in values)
    if numeric:
        values.sort(key=lambda v: _as_float(v))
    for trial in trials:
        accuracy = trial.get("val_accuracy")
        if trial["status"] == "finished" and isinstance(accuracy, float) and accuracy == accuracy:
            points.append((values.index(axis_value(trial["config"], axis)), accuracy))
    return values, points


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sweep_figure(trials: Sequence[dict[str, Any]], axes: Sequence[str], title: str = ""
                 ) -> Figure:
    """One panel per swept setting: every finished trial's validation accuracy (dots) and
    the mean over the trials sharing each value (line), so the effect of each setting and
    the spread over the others and the seeds show at once."""
    from matplotlib.figure import Figure

    axes = list(axes) or ["epochs"]
    fig = Figure(figsize=(4.2 * len(axes), 3.6), layout="constrained")
    for k, axis in enumerate(axes):
        ax = fig.add_subplot(1, len(axes), k + 1)
        values, points = sweep_axis_points(trials, axis)
        colour = OKABE_ITO[k % len(OKABE_ITO)]
        if points:
            x, y = np.array(points, dtype=np.float64).T
            ax.scatter(x, y * 100, color=colour, alpha=0.55, s=18, label="trials")
            means = [y[x == i].mean() * 100 for i in range(len(values)) if np.any(x == i)]
            ax.plot([i for i in range(len(values)) if np.any(x == i)], means, color=colour,
                    marker="o", linewidth=1.8, label="mean")
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(axis.split(".", 1)[-1])
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(True, alpha=0.3)
        if k == 0 and points:
            ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# -- what the network trains on: distorted copies of training images --------------------------
def distorted_copies(augmentation: Any, images: np.ndarray, copies: int, seed: int,
                     name: str = "augmentation") -> np.ndarray:
    """``(copies, n, H, W)`` uint8: ``copies`` distortions of the batch ``images`` (n, H, W).

    Copy ``k`` is ``augmentation.distort(images, batch_rng(seed, k, 0))``: what these
    images would be if they made the first batch of epoch ``k`` of a run seeded ``seed``.
    A ``distort`` that fails or returns something else than uint8 images of the input's
    shape raises :class:`mnistkit.errors.PluginError` naming ``name``.
    """
    from mnistkit.augment import batch_rng
    from mnistkit.errors import PluginError

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"expected a non-empty uint8 batch (n, H, W); got {images.dtype} "
                         f"{images.shape}")
    if copies < 1:
        raise ValueError(f"copies must be at least 1; got {copies}")
    out = np.empty((copies, *images.shape), np.uint8)
    for k in range(copies):
        try:
            distorted = augmentation.distort(images.copy(), batch_rng(seed, k, 0))
        except MnistkitError:
            raise
        except Exception as exc:
            text = (str(exc).splitlines() or [""])[0]
            raise PluginError(f"augmentation {name!r}: distort failed "
                              f"({type(exc).__name__}: {text})") from None
        if (not isinstance(distorted, np.ndarray) or distorted.dtype != np.uint8
                or distorted.shape != images.shape):
            got = (f"{getattr(distorted, 'dtype', type(distorted).__name__)} "
                   f"{getattr(distorted, 'shape', '')}").strip()
            raise PluginError(f"augmentation {name!r}: distort must return uint8 images "
                              f"shaped {images.shape}; got {got}")
        out[k] = distorted  # a copy: distort may return a buffer it reuses
    return out


def augment_figure(originals: np.ndarray, copies: np.ndarray, row_labels: Sequence[str] = (),
                   title: str = "", cmap: str = DIGIT_CMAP) -> Figure:
    """One row per image: the original ``originals[i]`` (n, H, W), a gap, then its distorted
    copies ``copies[:, i]`` (copies, n, H, W), all on the same 0..255 scale. ``row_labels``
    (e.g. class names) are written left of the originals."""
    from matplotlib.figure import Figure

    originals, copies = np.asarray(originals), np.asarray(copies)
    n = len(originals)
    if n == 0 or copies.ndim != 4 or copies.shape[1:] != originals.shape:
        raise ValueError(f"expected originals (n, H, W) and copies (k, n, H, W); got "
                         f"{originals.shape} and {copies.shape}")
    if row_labels and len(row_labels) != n:
        raise ValueError(f"expected {n} row labels; got {len(row_labels)}")
    k = len(copies)
    fig = Figure(figsize=(1.0 * (k + 1) + 0.25 + (0.35 if row_labels else 0.1),
                          1.0 * n + (0.75 if title else 0.4)), layout="constrained")
    axes = fig.subplots(n, k + 2, squeeze=False,
                        gridspec_kw={"width_ratios": [1, 0.2] + [1] * k})
    for i in range(n):
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 1:  # the gap between the original and its copies
                ax.set_axis_off()
                continue
            image = originals[i] if j == 0 else copies[j - 2, i]
            ax.imshow(image, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            for spine in ax.spines.values():
                spine.set_color("0.6" if j else "0.2")
            if i == 0:
                ax.set_title("original" if j == 0 else f"copy {j - 1}", fontsize=9, pad=3)
        if row_labels:
            axes[i][0].set_ylabel(str(row_labels[i]), fontsize=10, rotation=0, labelpad=10,
                                  va="center")
    if title:  # about 12 characters per inch at this size
        import textwrap

        fig.suptitle(textwrap.fill(title, max(24, int(fig.get_figwidth() * 12))), fontsize=10)
    return fig

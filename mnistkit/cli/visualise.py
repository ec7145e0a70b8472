"""``mnistkit visualise``: pictures of the data and of what a run learned.

Every subcommand writes a PNG (``-o`` to choose the file, .svg and .pdf work too),
prints its path, and with ``--show`` opens it in the desktop's image viewer when
there is a display. The numbers come from the library (:mod:`mnistkit.evaluation`,
:mod:`mnistkit.plots`); this module only parses options and prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mnistkit.cli.common import (
    augmentation_options,
    dataset_options,
    load_run_for_cli,
    run_options,
    split_option,
)
from mnistkit.cli.completion import complete_run_folders
from mnistkit.cli.data_cmds import show_samples_command
from mnistkit.errors import OptionsError

F = TypeVar("F", bound=Callable[..., Any])


# -- shared options and helpers -------------------------------------------------------------
def _output_option(default: str) -> Callable[[F], F]:
    return click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help=f"Image file to write (.png, .svg or .pdf). "
                                           f"[default: {default}]")


def _show_option(func: F) -> F:
    return click.option("--show", is_flag=True,
                        help="Also open the image in the desktop's viewer (when there is "
                             "a display).")(func)


def _agg() -> None:
    """Select matplotlib's file-only backend before anything imports pyplot."""
    import matplotlib

    matplotlib.use("Agg")


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _finish(fig: Any, path: Path, what: str, show: bool) -> None:
    """Save ``fig`` to ``path``, print where it went, open it when asked and possible."""
    from mnistkit.plots import save_figure

    save_figure(fig, path)
    click.echo(f"wrote {path} ({what})")
    if show:
        _show(path)


def _show(path: Path) -> None:
    if not _has_display():
        click.echo(f"note: no display (DISPLAY is not set), so nothing was opened; "
                   f"the image is {path}", err=True)
        return
    try:
        click.launch(str(path))
    except OSError as exc:
        click.echo(f"note: could not open an image viewer ({exc}); the image is {path}",
                   err=True)




# -- the group ------------------------------------------------------------------------------
@click.group("visualise")
def visualise_group() -> None:
    """Pictures of the data and of what a run learned, as PNG files.

    Each command prints the path it wrote; -o chooses it, --show opens it.

    \b
    Example:
      mnistkit visualise samples --digit 3
      mnistkit visualise augment --augment elastic
      mnistkit visualise history runs/sgd runs/momentum
      mnistkit visualise weights runs/softmax
      mnistkit visualise confusion runs/softmax
      mnistkit visualise errors runs/softmax -n 24
      mnistkit visualise sweep sweeps/hidden
    """


def _samples(show: bool, **kwargs: Any) -> None:
    show_samples_command.callback(**kwargs)
    if show and not kwargs["terminal"]:
        _show(kwargs["output"])


samples_command = click.Command(
    "samples", callback=_samples,
    params=[*show_samples_command.params, click.Option(
        ["--show"], is_flag=True, help="Also open the image in the desktop's viewer (when "
                                       "there is a display).")],
    help="""Draw a grid of random samples, each titled with its label, into a PNG.

    The same command as 'mnistkit show-samples' (its short form).

    \b
    Example:
      mnistkit visualise samples -o samples.png
      mnistkit visualise samples -n 25 --split test --digit 7 --seed 1
      mnistkit visualise samples -n 8 --terminal
    """,
    short_help="Grid of random samples (same as show-samples).")
visualise_group.add_command(samples_command)


@visualise_group.command("augment", short_help="Training images beside their distorted "
                                                "copies (--augment).")
@augmentation_options(
    "elastic", help="Augmentation to draw (see 'mnistkit augmentations').",
    option_help="Set an option of the augmentation, e.g. -a alpha=20 (repeatable).")
@click.option("-n", "count", type=click.IntRange(1, 50), default=8, show_default=True,
              help="Number of training images (one row each).")
@click.option("--copies", type=click.IntRange(1, 20), default=5, show_default=True,
              help="Distorted copies of each image (one column each).")
@click.option("--digit", type=click.IntRange(min=0), default=None, metavar="D",
              help="Only images of class D (a digit for MNIST).")
@click.option("--seed", type=int, default=None, metavar="S",
              help="Random seed of the images and the distortions; default a fresh one, "
                   "printed so the picture can be redrawn.")
@_output_option("augment-NAME.png")
@_show_option
@dataset_options
def augment_command(augment: str, augment_options: tuple[str, ...], count: int, copies: int,
                    digit: int | None, seed: int | None, output: Path | None, show: bool,
                    dataset_name: str, data_dir: Path | None) -> None:
    """What the network trains on with --augment: N training images in a column, each
    beside several distorted copies of it.

    Copy k is what the augmentation makes of these images as the first batch of epoch
    k of a run trained with the same --seed; the options are the augmentation's own
    (see 'mnistkit augmentations').

    \b
    Example:
      mnistkit visualise augment
      mnistkit visualise augment --augment elastic -a alpha=20 -n 6 --seed 0
      mnistkit visualise augment --augment affine --copies 8 --digit 7
    """

    from mnistkit.cli.common import current_plugins, load_dataset_for_cli, pick_samples
    from mnistkit.contracts import build_augmentation
    from mnistkit.options import options_to_dict, parse_assignments

    entry = current_plugins().registry.get("augmentation", augment)
    options = entry.make_options(parse_assignments(augment_options))
    augmentation = build_augmentation(entry, options_to_dict(options))
    dataset = load_dataset_for_cli(dataset_name, data_dir)
    train = dataset.train
    picked, seed = pick_samples(dataset, train.labels, count, seed, digit)
    images = train.images[picked]
    _agg()
    from mnistkit.plots import augment_figure, distorted_copies

    distorted = distorted_copies(augmentation, images, copies, seed, name=augment)
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in options_to_dict(options).items())
    described = f"{augment} ({settings})" if settings else augment
    fig = augment_figure(images, distorted, [dataset.class_names[int(y)]
                                             for y in train.labels[picked]],
                         title=f"{described}: {len(picked)} {dataset.name} training images "
                               f"and {copies} distorted copies, seed {seed}")
    _finish(fig, output or Path(f"augment-{augment}.png"),
            f"{len(picked)} images x {copies} copies, {described}, seed {seed}", show)


@visualise_group.command("sweep")
@click.argument("sweep_path", metavar="SWEEP", type=click.Path(path_type=Path))
@_output_option("SWEEP/sweep.png")
@_show_option
def sweep_command(sweep_path: Path, output: Path | None, show: bool) -> None:
    """Validation accuracy against each swept setting of a sweep.

    One panel per setting that took several values: a dot per finished trial and
    the mean over the trials sharing each value.

    \b
    Example:
      mnistkit visualise sweep sweeps/hidden
    """
    _agg()
    from mnistkit.plots import sweep_figure
    from mnistkit.sweep import swept_axes
    from mnistkit.sweep_runner import read_state

    state = read_state(sweep_path)
    finished = sum(t["status"] == "finished" for t in state.trials)
    fig = sweep_figure(state.trials, swept_axes(state.spec),
                       title=f"Sweep {sweep_path.name}: {finished} of {len(state.trials)} "
                             "trials finished")
    _finish(fig, output or sweep_path / "sweep.png",
            f"{finished} finished trials, settings: "
            f"{', '.join(swept_axes(state.spec)) or 'none swept'}", show)


@visualise_group.command("history")
@click.argument("runs", metavar="RUN...", nargs=-1, required=True,
                type=click.Path(path_type=Path), shell_complete=complete_run_folders)
@_output_option("RUN/history.png for one run, history.png for several")
@_show_option
def history_command(runs: tuple[Path, ...], output: Path | None, show: bool) -> None:
    """Training loss per step (raw and smoothed) and accuracy per epoch.

    Several runs are drawn over each other, one colour each, labelled with the
    folder name, model and optimizer and the options that differ: a way to compare
    optimizers or models. 'mnistkit train' writes this picture for every finished
    run as RUN/history.png.

    \b
    Example:
      mnistkit visualise history runs/softmax
      mnistkit visualise history runs/sgd runs/momentum -o compare.png
    """
    _agg()
    from mnistkit.plots import HISTORY_PNG, history_figure, load_curves

    curves = load_curves(runs)
    if output is None:
        output = runs[0] / HISTORY_PNG if len(runs) == 1 else Path(HISTORY_PNG)
    title = (f"Training history of {runs[0].name}" if len(runs) == 1 else
             f"Training history of {len(runs)} runs")
    fig = history_figure(curves, title=title)
    steps = " + ".join(str(len(c.step_loss)) for c in curves)
    _finish(fig, output, f"{len(curves)} run{'s' if len(curves) > 1 else ''}, {steps} steps",
            show)


@visualise_group.command("weights")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@click.option("-n", "max_units", type=click.IntRange(min=1), default=32, show_default=True,
              help="Most hidden units to draw (the first ones); a softmax run shows all ten "
                   "class templates.")
@click.option("--minus-init", is_flag=True,
              help="Draw what training changed: the weights minus their initial values "
                   "(rebuilt from the run's seed).")
@_output_option("RUN/weights.png")
@_show_option
@run_options
def weights_command(run_path: Path, max_units: int, minus_init: bool, output: Path | None,
                    show: bool, which: str, data_dir: Path | None) -> None:
    """The first-layer weights as 28x28 images, on a colour scale centred at 0.

    For 'softmax' these are the ten class templates (purple: ink there is evidence
    for the class, orange: against it). For 'twolayer' (and any model with a
    first_layer() of 784 inputs) each image is one hidden unit's pixel weights;
    after a short training they are mostly their random start, and --minus-init
    shows the strokes the units learned.

    \b
    Example:
      mnistkit visualise weights runs/softmax
      mnistkit visualise weights runs/twolayer -n 64 --minus-init -o units.png
    """
    _agg()
    from mnistkit.plots import weight_images, weights_figure

    loaded = load_run_for_cli(run_path, data_dir, which)
    dataset = loaded.dataset
    weights = _first_layer(loaded.model, loaded.record["model"], run_path, dataset)
    if minus_init:
        weights = weights - _initial_first_layer(loaded, dataset)
    model_name = loaded.record["model"]
    # one unit per class and no hidden layer: a linear classifier, its units are templates
    is_templates = (weights.shape[1] == dataset.n_classes
                    and not callable(getattr(loaded.model, "hidden", None)))
    images = weight_images(weights, None if is_templates else max_units,
                           dataset.test.images.shape[1:])
    change = " minus their initial values" if minus_init else ""
    if is_templates:
        titles = [f"class {name}" for name in dataset.class_names]
        title = f"{run_path.name} ({model_name}): class templates{change}"
    else:
        titles = [f"unit {i}" for i in range(len(images))]
        title = (f"{run_path.name} ({model_name}): first-layer weights{change}, "
                 f"{len(images)} of {weights.shape[1]} hidden units")
    fig = weights_figure(images, titles, title=title, scale_label=(
        "change since the start (0 = white)" if minus_init else "weight (0 = white)"))
    _finish(fig, output or run_path / "weights.png", f"{len(images)} panels", show)


def _first_layer(model: Any, model_name: str, run_path: Path, dataset: Any) -> Any:
    """The model's ``first_layer()`` weights, checked to be ``(pixels, units)``."""
    if not callable(getattr(model, "first_layer", None)):
        raise OptionsError(f"model {model_name!r} of {run_path} has no first_layer(), so its "
                           f"weights cannot be drawn as images")
    weights = model.first_layer()
    rows, cols = dataset.test.images.shape[1:]
    if getattr(weights, "ndim", 0) != 2 or weights.shape[0] != rows * cols:
        raise OptionsError(f"model {model_name!r}: first_layer() has shape "
                           f"{getattr(weights, 'shape', '?')}; expected ({rows * cols}, units) "
                           f"to draw {rows}x{cols} images")
    return weights


def _initial_first_layer(loaded: Any, dataset: Any) -> Any:
    """The first layer the run started from: training builds its model first from
    ``default_rng(seed)``, so the same call gives the same initial parameters."""
    import numpy as np

    from mnistkit.cli.common import current_plugins
    from mnistkit.runs import build_model

    record = loaded.record
    entry = current_plugins().registry.get("model", record["model"])
    start = build_model(entry, record["model_options"],
                        np.random.default_rng(record["training"]["seed"]), dataset)
    return start.first_layer()


@visualise_group.command("confusion")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@split_option()
@_output_option("RUN/confusion-SPLIT.png")
@_show_option
@run_options
def confusion_command(run_path: Path, split: str, output: Path | None, show: bool,
                      which: str, data_dir: Path | None) -> None:
    """The confusion matrix as a heat map with the count in every cell.

    Rows are the true classes, columns the predicted ones; the same numbers as
    'mnistkit test RUN'.

    \b
    Example:
      mnistkit visualise confusion runs/softmax
      mnistkit visualise confusion runs/softmax --split val -o val-confusion.png
    """
    _agg()
    from mnistkit.evaluation import evaluate
    from mnistkit.plots import confusion_figure

    loaded = load_run_for_cli(run_path, data_dir, which, split=split)
    data, dataset = loaded.split(split), loaded.dataset
    result = evaluate(loaded.model, data.images, data.labels, dataset.n_classes,
                      loaded.pixel_scale)
    title = (f"{run_path.name} ({loaded.record['model']}): {split} accuracy "
             f"{result.accuracy:.2%} on {len(data):,} images")
    fig = confusion_figure(result.confusion, dataset.class_names, title=title)
    _finish(fig, output or run_path / f"confusion-{split}.png",
            f"{split} accuracy {result.accuracy:.2%}", show)


@visualise_group.command("errors")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@click.option("-n", "count", type=click.IntRange(1, 100), default=16, show_default=True,
              help="Number of mistakes to show.")
@split_option()
@click.option("--terminal", is_flag=True,
              help="Print the mistakes with block characters instead of writing a file.")
@_output_option("RUN/errors.png (errors-SPLIT.png for val/train)")
@_show_option
@run_options
def errors_command(run_path: Path, count: int, split: str, terminal: bool,
                   output: Path | None, show: bool, which: str, data_dir: Path | None) -> None:
    """The most confidently wrong images: each with its true class, the prediction
    and the probability the model gave it, most confident first.

    \b
    Example:
      mnistkit visualise errors runs/softmax
      mnistkit visualise errors runs/softmax -n 8 --terminal
    """
    from mnistkit.evaluation import evaluate
    from mnistkit.plots import confident_errors, probability_text

    loaded = load_run_for_cli(run_path, data_dir, which, split=split)
    data, dataset = loaded.split(split), loaded.dataset
    result = evaluate(loaded.model, data.images, data.labels, dataset.n_classes,
                      loaded.pixel_scale)
    picked = confident_errors(result.probabilities, data.labels, count)
    wrong = int((result.predictions != data.labels).sum())
    what = (f"{len(picked)} most confident of {wrong:,} mistakes on {len(data):,} {split} "
            f"images")
    if len(picked) == 0:
        click.echo(f"no mistakes on the {len(data):,} {split} images: nothing to draw")
        return
    images, labels = data.images[picked], data.labels[picked]
    predictions = result.predictions[picked]
    confidence = result.probabilities[picked, predictions]
    if terminal:
        from mnistkit.cli.data_cmds import _print_digits

        titles = [f"{dataset.class_names[int(t)]}→{dataset.class_names[int(p)]} "
                  f"{probability_text(c)}"
                  for t, p, c in zip(labels, predictions, confidence, strict=True)]
        _print_digits(images, titles, f"{run_path.name}: {what} (true→predicted probability)")
        return
    _agg()
    from mnistkit.plots import errors_figure

    fig = errors_figure(images, labels, predictions, confidence, dataset.class_names,
                        title=f"{run_path.name}: {what}")
    default = run_path / ("errors.png" if split == "test" else f"errors-{split}.png")
    _finish(fig, output or default, what, show)


@visualise_group.command("embedding")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@click.option("-n", "count", type=click.IntRange(min=2), default=5000, show_default=True,
              help="Number of test images to project (a fixed random subset).")
@_output_option("RUN/embedding.png")
@_show_option
@run_options
def embedding_command(run_path: Path, count: int, output: Path | None, show: bool,
                      which: str, data_dir: Path | None) -> None:
    """A 2-D PCA of the hidden layer's activations on test images, coloured by class.

    Needs a model with a hidden layer (hidden(x)), such as 'twolayer'. Classes
    that form separate clouds are the ones the last layer can tell apart easily.

    \b
    Example:
      mnistkit visualise embedding runs/twolayer
    """
    _agg()
    import numpy as np

    from mnistkit.batches import flatten
    from mnistkit.plots import embedding_figure, pca_2d

    loaded = load_run_for_cli(run_path, data_dir, which)
    dataset = loaded.dataset
    model_name = loaded.record["model"]
    if not callable(getattr(loaded.model, "hidden", None)):
        raise OptionsError(f"model {model_name!r} of {run_path} has no hidden layer "
                           f"(hidden(x)); try a twolayer run")
    test = dataset.test
    picked = np.sort(np.random.default_rng(0).permutation(len(test))[:count])
    x = flatten(test.images[picked]).astype(np.float32) * np.float32(loaded.pixel_scale)
    points, explained = pca_2d(loaded.model.hidden(x))
    title = (f"{run_path.name} ({model_name}): hidden activations of {len(picked):,} "
             f"test images, 2-D PCA")
    fig = embedding_figure(points, test.labels[picked], dataset.class_names, explained,
                           title=title)
    _finish(fig, output or run_path / "embedding.png",
            f"{len(picked):,} images, {explained.sum():.1%} of the variance", show)


COMMANDS = [visualise_group]

"""``mnistkit predict``: classify the user's own digit pictures with a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mnistkit.cli.common import console, json_option, load_run_for_cli, print_json
from mnistkit.cli.completion import complete_run_folders
from mnistkit.errors import EXIT_FAILURE


@click.command("predict", short_help="Classify your own digit pictures with a trained run.")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(1, 10), default=3, show_default=True,
              help="How many classes to show per image.")
@click.option("--show-input", is_flag=True,
              help="Print the 28x28 image the model saw for each picture (block characters; "
                   "not with --json: use --save-input).")
@click.option("--save-input", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Save the 28x28 image the model saw as DIR/<picture>.png.")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="MNISTKIT_DATA_DIR",
              default=None, help="Folder with the run's dataset, if not the default.")
@json_option
def predict_command(run_path: Path, images: tuple[Path, ...], top: int, show_input: bool,
                    save_input: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Classify your own digit pictures (PNG, JPEG...) with a trained run.

    Each picture is turned greyscale (transparency composited, EXIF orientation
    applied), inverted if its background is light, cleared of a dark border, fitted
    into a 20x20 box and centred by mass in 28x28, like MNIST. A picture that cannot
    be read is reported on stderr and the others are still classified; the exit code
    is then 1.

    \b
    Example:
      mnistkit predict runs/my-run my-seven.png another.jpg
      mnistkit predict runs/my-run photo.jpg --show-input
    """
    from mnistkit.preprocess import prepare_images

    loaded, dataset = _load_for_predict(run_path, data_dir)
    prepared = prepare_images(images)
    results = _classify(loaded, dataset, prepared, top)
    if save_input is not None:
        _save_inputs(prepared, save_input)
    _print_results(results, None if as_json else console())
    if as_json:
        print_json(results)
    elif show_input:
        _show_inputs([item for item in prepared if item.error is None])
    if any(item.error is not None for item in prepared):
        raise click.exceptions.Exit(EXIT_FAILURE)


def _load_for_predict(run_path: Path, data_dir: Path | None) -> tuple[Any, Any]:
    """The run and its dataset, refused before any image if its model is not 28x28."""
    from mnistkit.errors import RunError
    from mnistkit.preprocess import require_digit_size
    from mnistkit.runs import read_record

    try:
        loaded = load_run_for_cli(run_path, data_dir, "best")
        dataset = loaded.dataset
    except RunError as exc:
        record = read_record(run_path)  # read once already: a damaged record failed above
        _explain_other_data(run_path, data_dir, record, exc)
        raise
    require_digit_size(dataset.train.images.shape[1:], run_path)
    return loaded, dataset


def _explain_other_data(run_path: Path, data_dir: Path | None, record: dict[str, Any],
                        exc: Exception) -> None:
    """Raise a clearer error when the run was trained on another copy of its dataset
    (for example 14x14 images given with --data-dir) than the one found now."""
    from mnistkit.cli.common import load_dataset_for_cli
    from mnistkit.errors import RunError

    dataset = load_dataset_for_cli(record["dataset"]["name"], data_dir)
    if dataset.fingerprint() != record["dataset"].get("fingerprint"):
        raise RunError(f"{run_path}: was trained on other data "
                       f"({record['dataset'].get('source')}) than {dataset.name} from "
                       f"{dataset.source}, and does not fit it ({exc}); predict needs a run "
                       f"trained on 28x28 images") from None


def _classify(loaded: Any, dataset: Any, prepared: list[Any], top: int) -> list[dict[str, Any]]:
    """Per-file records, in the order given: the top classes and warnings, or the error."""
    import numpy as np

    from mnistkit.evaluation import predict_scores
    from mnistkit.models.base import softmax

    good = [item for item in prepared if item.error is None]
    probs = iter(softmax(predict_scores(loaded.model, np.stack([g.digit.image for g in good]),
                                        loaded.pixel_scale)) if good else [])
    results = []
    for item in prepared:
        if item.error is not None:
            results.append({"image": item.path, "error": item.error})
            continue
        row = next(probs)
        best = np.argsort(row)[::-1][:top]
        results.append({"image": item.path, "top": [
            {"class": dataset.class_names[i], "probability": float(row[i])} for i in best],
            "warnings": list(item.digit.warnings)})
    return results


def _print_results(results: list[dict[str, Any]], out: Any) -> None:
    """In the order given: each error (and warning) on stderr, each result on ``out``
    (None for ``--json``, which prints them all at the end)."""
    for result in results:
        if "error" in result:
            click.echo(f"Error: {result['image']}: {result['error']}", err=True)
            continue
        if out is not None:
            guesses = ", ".join(f"[bold]{g['class']}[/] {g['probability']:.1%}" if k == 0 else
                                f"{g['class']} {g['probability']:.1%}"
                                for k, g in enumerate(result["top"]))
            out.print(f"{result['image']}: {guesses}")
            out.file.flush()
        for note in result["warnings"]:
            click.echo(f"warning: {result['image']}: does not look like one digit: {note}",
                       err=True)


def _show_inputs(good: list[Any]) -> None:
    """Print the 28x28 images the model saw, with block characters, under their names."""
    if not good:
        return
    import numpy as np
    from rich.text import Text

    from mnistkit.terminal import digits_grid

    out = console()
    out.print(Text("What the model saw (28x28):", style="bold"))
    lines = digits_grid(np.stack([g.digit.image for g in good]),
                        [Path(g.path).name for g in good], width=out.width, crop=False)
    for line in lines:
        out.print(Text(line), no_wrap=True, overflow="ignore", crop=False)


def _save_inputs(prepared: list[Any], folder: Path) -> None:
    from mnistkit.preprocess import save_inputs

    for path in save_inputs([(p.path, p.digit.image) for p in prepared if p.error is None],
                            folder):
        click.echo(f"wrote {path}", err=True)


COMMANDS = [predict_command]

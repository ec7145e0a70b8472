"""Commands that train and evaluate models: train, test (predict is in predict_cmd)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from mnistkit.cli.common import (
    augmentation_options,
    console,
    current_plugins,
    dataset_options,
    error_message,
    json_option,
    limit_threads,
    load_dataset_for_cli,
    load_run_for_cli,
    percent,
    print_json,
    quiet_option,
    run_options,
    split_option,
    threads_option,
    usable_cores,
)
from mnistkit.cli.completion import (
    complete_model_options,
    complete_models,
    complete_optimizer_options,
    complete_optimizers,
    complete_recipes,
    complete_run_folders,
)
from mnistkit.errors import EXIT_INTERRUPTED, MnistkitError

__all__ = ["COMMANDS", "test_command", "threads_option", "train_command"]


def _threads_beside_augmentation() -> int | None:
    """BLAS threads for a run whose distortions are made by a background thread: one core
    fewer than usable, so the step's threads, which wait for each other, are not
    preempted by it (on 2 cores an elastic epoch of 784-800-10 took 1.4-1.5 s either
    way on a quiet machine, but 2 threads stalled to 10x that beside other work).
    ``None`` (the library's default) on one core."""
    cores = usable_cores()
    return cores - 1 if cores > 1 else None


def _threads_note(run: Any, threads_given: bool) -> str | None:
    """The line saying how many BLAS threads a run with augmentation uses, when the
    command line did not choose (``--threads``)."""
    if run.trainer.augmented is None or threads_given:
        return None
    blas = _threads_beside_augmentation()
    shown = "its default threads" if blas is None else (
        f"{blas} thread{'s' if blas != 1 else ''}")
    return (f"[dim]Distortions are made on one core beside the step: BLAS uses {shown} "
            "(--threads N to choose)[/]")


def _threads_given() -> bool:
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source("threads") in (
        ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


class _StopFlag:
    """First Ctrl-C asks training to stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@click.command("train", short_help="Train a model; the run is saved in a folder.")
@click.option("--model", "model_name", default="twolayer", show_default=True, metavar="NAME",
              shell_complete=complete_models,
              help="Model to train (see 'mnistkit models').")
@click.option("--optimizer", "optimizer_name", default="sgd", show_default=True, metavar="NAME",
              shell_complete=complete_optimizers,
              help="Optimizer (see 'mnistkit optimizers').")
@click.option("-m", "--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete_model_options,
              help="Set a model option, e.g. -m hidden_size=512 (repeatable; 'mnistkit "
                   "models' lists each model's options with their ranges).")
@click.option("-o", "--optimizer-option", "optimizer_options", multiple=True,
              shell_complete=complete_optimizer_options,
              metavar="KEY=VALUE", help="Set an optimizer option, e.g. -o lr=0.1 (repeatable).")
@click.option("--epochs", type=int, default=None, help="Passes over the training set. "
              "[default: 20; with --resume: the run's own]")
@click.option("--batch-size", type=int, default=128, show_default=True,
              help="Images per step.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for initialisation and batch order (same seed, same result).")
@click.option("--val-size", type=int, default=None, metavar="N",
              help="Images held out of the END of the training set for validation "
                   "(never the test set); 0 for none. [default: the dataset's; 10,000 "
                   "for MNIST, a sixth of a small dataset]")
@click.option("--limit", type=int, default=None, metavar="N",
              help="Train on the first N training images only (quick trials).")
@click.option("--sampling", type=click.Choice(["shuffle", "replacement"]), default="shuffle",
              show_default=True, help="Shuffle once per epoch, or draw each batch with "
                                      "replacement.")
@click.option("--steps-per-epoch", type=int, default=None, metavar="N",
              help="Steps per epoch (default: one pass over the training images).")
@click.option("--raw-pixels", is_flag=True,
              help="Feed raw 0..255 pixels instead of scaling to [0, 1] (as the blog post did).")
@augmentation_options(
    "none", help="Distort each training batch: none, elastic, affine (see 'mnistkit "
                 "augmentations'). Validation and test images are never distorted.",
    option_help="Set an augmentation option, e.g. -a sigma=4 -a alpha=34 (repeatable).")
@click.option("--recipe", default=None, metavar="NAME", shell_complete=complete_recipes,
              help="Train a named configuration, e.g. a published result (see 'mnistkit "
                   "recipes'); any option given as well overrides the recipe's.")
@dataset_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder to create. [default: runs/<timestamp>-<model>]")
@click.option("--resume", type=click.Path(path_type=Path), default=None, metavar="RUN",
              shell_complete=complete_run_folders,
              help="Continue an interrupted run folder from its last checkpoint.")
@threads_option
@quiet_option("Print only the final line.")
@json_option
def train_command(model_name: str, optimizer_name: str, model_options: tuple[str, ...],
                  optimizer_options: tuple[str, ...], epochs: int | None, batch_size: int,
                  seed: int, val_size: int | None, limit: int | None, sampling: str,
                  steps_per_epoch: int | None, raw_pixels: bool, augment: str,
                  augment_options: tuple[str, ...], recipe: str | None, dataset_name: str,
                  data_dir: Path | None, out: Path | None, resume: Path | None,
                  threads: int | None, quiet: bool, as_json: bool) -> None:
    """Train a model and save the run (parameters, history, metrics) in a folder.

    Progress shows a bar per epoch with the running loss and ETA, then one line
    per epoch. Ctrl-C stops after the current step and saves a resumable
    checkpoint (exit code 130); continue with --resume RUN.

    \b
    Example:
      mnistkit train --model twolayer
      mnistkit train --model twolayer -m hidden_size=512 -o lr=0.1 -o momentum=0.9 --epochs 5
      mnistkit train --model softmax --epochs 5 --out runs/softmax
      mnistkit train --resume runs/softmax
      mnistkit train --augment elastic -a sigma=4 -a alpha=34 -m hidden_size=800
      mnistkit train --recipe simard2003-elastic --epochs 50
    """
    import numpy as np

    from mnistkit.cli.progress import TrainingProgress, follow
    from mnistkit.options import parse_assignments
    from mnistkit.runs import Run, RunFinishedError, RunSpec, default_run_dir
    from mnistkit.training import TrainConfig

    registry = current_plugins().registry
    out_console = console(stderr=as_json)
    if resume is not None:  # the run's own dataset; nothing else may differ from the run
        dataset_name = _check_resume_request(resume, registry)
    elif recipe is not None:  # the recipe's settings where the command line gave none
        settings = _recipe_settings(registry, recipe)
        model_name, optimizer_name = settings["model_name"], settings["optimizer_name"]
        epochs, batch_size, val_size = settings["epochs"], settings["batch_size"], (
            settings["val_size"])
        sampling, steps_per_epoch = settings["sampling"], settings["steps_per_epoch"]
        raw_pixels, augment = settings["raw_pixels"], settings["augment"]
    try:
        with out_console.status("Loading data…") if not (quiet or as_json) else _nothing():
            dataset = load_dataset_for_cli(dataset_name, data_dir)
    except KeyboardInterrupt:
        click.echo("Interrupted while loading the data; nothing was saved.", err=True)
        sys.exit(EXIT_INTERRUPTED)

    # From here a first Ctrl-C only asks training to stop after the current step: the run
    # folder, once created, always holds a complete, resumable checkpoint.
    stop = _StopFlag()
    previous = signal.signal(signal.SIGINT, stop.handle)
    run = None
    try:
        if resume is not None:
            try:
                run = Run.resume(resume, dataset, registry, epochs=epochs)
            except RunFinishedError as finished:  # the wanted end state holds: exit 0
                click.echo(error_message(finished), err=True)
                if as_json:
                    print_json({"run": str(resume), **finished.record})
                return
        else:
            config = TrainConfig(epochs=20 if epochs is None else epochs, batch_size=batch_size,
                                 seed=seed, sampling=sampling, steps_per_epoch=steps_per_epoch,
                                 pixel_scale=1.0 if raw_pixels else 1.0 / 255.0)
            given = {"model": parse_assignments(model_options),
                     "optimizer": parse_assignments(optimizer_options),
                     "augment": parse_assignments(augment_options)}
            if recipe is not None:
                given = {kind: {**settings[f"{kind}_options"], **values}
                         for kind, values in given.items()}
            spec = RunSpec(model=model_name, optimizer=optimizer_name,
                           model_options=given["model"], optimizer_options=given["optimizer"],
                           dataset=dataset_name, val_size=val_size, limit=limit, config=config,
                           augment=augment, augment_options=given["augment"], recipe=recipe)
            run = Run.start(spec, dataset, registry,
                            out or default_run_dir("runs", recipe or model_name),
                            pick_free_name=out is None)
        note = _threads_note(run, _threads_given())
        if threads is None and run.trainer.augmented is not None:
            threads = _threads_beside_augmentation()
        # Overflow warnings would print source lines; the NaN guard explains divergence.
        with limit_threads(threads), np.errstate(over="ignore", invalid="ignore",
                                                 divide="ignore"):
            follow(run.train(stop), None if quiet or as_json else
                   TrainingProgress(run, out_console, stopping=stop, note=note))
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep the last checkpoint
        where = (f"the last checkpoint in {run.path} is kept. Resume with: mnistkit train "
                 f"--resume {run.path}") if run is not None else "no run folder was completed"
        click.echo(f"Stopped at once; {where}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        signal.signal(signal.SIGINT, previous)

    record = run.record
    if record["status"] == "interrupted":
        click.echo(f"Interrupted at epoch {run.trainer.epoch + 1}, step {run.trainer.step}: "
                   f"checkpoint saved. Resume with: mnistkit train --resume {run.path}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    from mnistkit.plots import save_history_plot  # matplotlib: imported only here

    try:  # RUN/history.png, as 'mnistkit visualise history RUN'; the run is saved either way
        save_history_plot(run.path)
    except (OSError, MnistkitError) as exc:
        click.echo(f"warning: could not draw {run.path / 'history.png'}: {exc}", err=True)
    if as_json:
        print_json({"run": str(run.path), **record})
        return
    m = record["metrics"]
    out_console.print(
        f"[bold]test accuracy {m['test_accuracy']:.2%}[/] (best epoch {record['best_epoch']}, "
        f"val {percent(m['val_accuracy'])}) in {record['wall_seconds']:.1f} s; run saved to "
        f"[cyan]{run.path}[/]")


#: The train options a resume must not change, and how their settings are spelled.
_RESUME_FIXED = {
    "model_name": "--model", "optimizer_name": "--optimizer", "dataset_name": "--dataset",
    "val_size": "--val-size", "limit": "--limit", "batch_size": "--batch-size",
    "seed": "--seed", "sampling": "--sampling", "steps_per_epoch": "--steps-per-epoch",
    "raw_pixels": "--raw-pixels", "model_options": "-m", "optimizer_options": "-o",
    "augment": "--augment", "augment_options": "-a",
}
_OPTION_FLAGS = {"model": "-m", "optimizer": "-o", "augment": "-a"}

#: The train command's parameters that a recipe sets, and the Recipe field of each.
_RECIPE_FIELDS = {
    "model_name": "model", "optimizer_name": "optimizer", "epochs": "epochs",
    "batch_size": "batch_size", "val_size": "val_size", "sampling": "sampling",
    "steps_per_epoch": "steps_per_epoch", "raw_pixels": "raw_pixels", "augment": "augment",
}


def _recipe_settings(registry: Any, name: str) -> dict[str, Any]:
    """The train parameters of recipe ``name``: the recipe's value of each parameter the
    command line left at its default, the command line's otherwise; ``*_options`` are
    the recipe's options (the command line's are merged over them by the caller)."""
    from click.core import ParameterSource

    recipe = registry.get("recipe", name).factory
    ctx = click.get_current_context()
    settings = {}
    for param, field in _RECIPE_FIELDS.items():
        explicit = ctx.get_parameter_source(param) in (ParameterSource.COMMANDLINE,
                                                       ParameterSource.ENVIRONMENT)
        settings[param] = ctx.params[param] if explicit else getattr(recipe, field)
    for kind, param in (("model", "model_name"), ("optimizer", "optimizer_name"),
                        ("augment", "augment")):
        # The recipe's options belong to the recipe's model (optimizer, augmentation) only.
        same = settings[param] == getattr(recipe, _RECIPE_FIELDS[param])
        settings[f"{kind}_options"] = dict(getattr(recipe, f"{kind}_options")) if same else {}
    return settings


def _check_resume_request(resume: Path, registry: Any) -> str:
    """Refuse ``--resume`` with options that contradict the run (naming each), or with
    ``--out``; return the name of the run's dataset."""
    from click.core import ParameterSource

    from mnistkit.errors import OptionsError
    from mnistkit.options import parse_assignments
    from mnistkit.runs import read_record, resume_conflicts

    ctx = click.get_current_context()
    given = {name for name in (*_RESUME_FIXED, "out", "recipe")
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                   ParameterSource.ENVIRONMENT)}
    record = read_record(resume)
    for option in ("out", "recipe"):
        if option in given:
            raise click.UsageError(f"--{option} and --resume cannot be used together: a "
                                   "resumed run keeps its folder and settings")
    p = ctx.params
    options = {f"{kind}_options" for kind in _OPTION_FLAGS}
    requested: dict[str, Any] = {
        {"model_name": "model", "optimizer_name": "optimizer",
         "dataset_name": "dataset"}.get(name, name): p[name]
        for name in given if name not in ("raw_pixels", *options)}
    if "raw_pixels" in given:
        requested["pixel_scale"] = 1.0 if p["raw_pixels"] else 1.0 / 255.0
    for kind in _OPTION_FLAGS:
        if f"{kind}_options" in given:
            requested[f"{kind}_options"] = parse_assignments(p[f"{kind}_options"])
    conflicts = resume_conflicts(record, registry, requested)
    if conflicts:
        described = ", ".join(_describe_conflict(*c) for c in conflicts)
        raise OptionsError(f"--resume {resume}: {described}; a resumed run keeps its settings "
                           "(only --epochs and --threads may change)")
    return record["dataset"]["name"]


def _describe_conflict(setting: str, requested: Any, recorded: Any) -> str:
    kind, _, option = setting.partition("_options.")
    if option:
        return f"{_OPTION_FLAGS[kind]} {option}={requested} (the run has {recorded})"
    if setting == "pixel_scale":
        pixels = "raw 0..255" if recorded == 1.0 else "scaled to 0..1"
        return f"--raw-pixels (the run fed {pixels} pixels)"
    flag = _RESUME_FIXED.get({"model": "model_name", "optimizer": "optimizer_name",
                              "dataset": "dataset_name"}.get(setting, setting), setting)
    return f"{flag} {requested} (the run has {recorded})"


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()


@click.command("test", short_help="Evaluate a trained run: accuracy, per class, confusion.")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@split_option("Images to evaluate on (val: the run's held-out part of the training set).")
@run_options
@threads_option
@json_option
def test_command(run_path: Path, split: str, which: str, data_dir: Path | None,
                 threads: int | None, as_json: bool) -> None:
    """Evaluate a trained run: accuracy, per-class precision/recall, confusion matrix.

    \b
    Example:
      mnistkit test runs/20261128-120000-twolayer
      mnistkit test runs/my-run --split val --json
    """
    from mnistkit.evaluation import evaluate

    loaded = load_run_for_cli(run_path, data_dir, which, split=split)
    part, dataset = loaded.split(split), loaded.dataset
    with limit_threads(threads):
        result = evaluate(loaded.model, part.images, part.labels, dataset.n_classes,
                          loaded.pixel_scale)
    summary = {"run": str(run_path), "split": split, "params": which, "images": len(part),
               **result.to_dict(dataset.class_names)}
    if as_json:
        print_json(summary)
        return
    _render_evaluation(summary, dataset.class_names)


def _render_evaluation(summary: dict[str, Any], class_names: tuple[str, ...]) -> None:
    from rich.table import Table

    out = console()
    out.print(f"[bold]{summary['split']} accuracy {summary['accuracy']:.2%}[/] on "
              f"{summary['images']} images (loss {summary['loss']:.4f}, {summary['params']} "
              f"parameters of {summary['run']})")
    per_class = Table(title="Per class", title_justify="left")
    for column in ("class", "precision", "recall", "support"):
        per_class.add_column(column, justify="right")
    for row in summary["per_class"]:
        per_class.add_row(row["class"], f"{row['precision']:.2%}", f"{row['recall']:.2%}",
                          str(row["support"]))
    out.print(per_class)
    matrix = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    matrix.add_column("")
    for name in class_names:
        matrix.add_column(name, justify="right")
    for name, row in zip(class_names, summary["confusion_matrix"], strict=True):
        cells = [f"[bold]{v}[/]" if i == j else (str(v) if v else "[dim]0[/]")
                 for j, v in enumerate(row) for i in [class_names.index(name)]]
        matrix.add_row(name, *cells)
    out.print(matrix)


COMMANDS = [train_command, test_command]

"""Pieces shared by the CLI commands: the current plugins, common options, output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

# The plugins of the running command; commands import it from here (it lives in
# mnistkit.plugins, where plugin authors find it).
from mnistkit.plugins import current_plugins

F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_ENV = "MNISTKIT_DATA_DIR"
#: Width of rich output that is not a terminal (a file, a pipe) and has no ``COLUMNS``:
#: wide enough that nothing is wrapped or squeezed, so paths and tables stay whole.
UNWRAPPED_WIDTH = 10_000


DATASET_OPTIONS_KEY = "mnistkit.dataset_options"


def _remember_dataset_options(ctx: click.Context, param: click.Parameter,
                              values: tuple[str, ...]) -> None:
    """Keep ``-d KEY=VALUE`` values in ``ctx.meta`` for :func:`load_dataset_for_cli`."""
    parsed = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"expected KEY=VALUE; got {value!r}", ctx, param)
        parsed[key.strip()] = text
    ctx.meta[DATASET_OPTIONS_KEY] = parsed


def dataset_options(func: F) -> F:
    """Add ``--dataset NAME``, ``--data-dir DIR`` (env ``MNISTKIT_DATA_DIR``) and
    ``-d/--dataset-option KEY=VALUE`` (the dataset's declared options, e.g. a loader)."""
    func = click.option(
        "-d", "--dataset-option", multiple=True, metavar="KEY=VALUE", expose_value=False,
        callback=_remember_dataset_options, shell_complete=_complete_dataset_options,
        help="Set a dataset option, e.g. -d loader=python-mnist (see 'mnistkit datasets'; "
             "repeatable).")(func)
    func = click.option(
        "--data-dir", type=click.Path(path_type=Path), envvar=DATA_DIR_ENV, default=None,
        help=f"Folder with the dataset's IDX files (plain or .gz) instead of the bundled copy. "
             f"Env: {DATA_DIR_ENV}.")(func)
    func = click.option("--dataset", "dataset_name", default="mnist", show_default=True,
                        metavar="NAME", help="Dataset to use (see 'mnistkit datasets').",
                        shell_complete=_complete_datasets)(func)
    return func


def _complete_datasets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    from mnistkit.cli.completion import complete_datasets

    return complete_datasets(ctx, param, incomplete)


def _complete_dataset_options(ctx: click.Context, param: click.Parameter,
                              incomplete: str) -> list:
    from mnistkit.cli.completion import complete_dataset_options

    return complete_dataset_options(ctx, param, incomplete)


def run_options(func: F) -> F:
    """Add ``--params best|last`` and ``--data-dir`` (env ``MNISTKIT_DATA_DIR``): which
    parameters of a trained run to use, and where its dataset is."""
    func = click.option("--data-dir", type=click.Path(path_type=Path), envvar=DATA_DIR_ENV,
                        default=None, help="Folder with the run's dataset, if not the "
                                           "default.")(func)
    func = click.option("--params", "which", type=click.Choice(["best", "last"]),
                        default="best", show_default=True,
                        help="Best-on-validation or last parameters.")(func)
    return func


def json_option(func: F) -> F:
    """Add ``--json``: machine-readable output on stdout instead of tables."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON on stdout (for scripts).")(func)


def load_dataset_for_cli(dataset_name: str, data_dir: Path | None) -> Any:
    """Load a dataset through the current plugins' registry."""
    from mnistkit.datasets import load_dataset

    ctx = click.get_current_context(silent=True)
    options = ctx.meta.get(DATASET_OPTIONS_KEY) if ctx is not None else None
    return load_dataset(dataset_name, data_dir, options=options or None,
                        registry=current_plugins().registry)


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON to stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def console(stderr: bool = False) -> Any:
    """A rich Console on stdout (or stderr), honouring NO_COLOR and non-terminals.

    On a terminal, output fits the terminal's real width. Written to a file or a pipe it
    is not wrapped at all (rich would wrap at 80 columns): text is never soft-wrapped and
    tables get ``COLUMNS`` if it is set, else :data:`UNWRAPPED_WIDTH`.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if _is_terminal(stream):
        return Console(file=stream, highlight=False)
    return Console(file=stream, highlight=False, soft_wrap=True,
                   width=_columns() or UNWRAPPED_WIDTH)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def _columns() -> int | None:
    """``COLUMNS`` when it holds a positive number."""
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None

"""Pieces shared by the CLI commands: the current plugins, the options several commands
take (as decorators), loading a run, how library errors are worded, output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

# The plugins of the running command; commands import it from here (it lives in
# mnistkit.plugins, where plugin authors find it).
from mnistkit.plugins import current_plugins

if TYPE_CHECKING:
    from mnistkit.errors import MnistkitError
    from mnistkit.runs import LoadedRun

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


def quiet_option(help: str) -> Callable[[F], F]:
    """Add ``-q/--quiet``: no progress, only the result (``help`` says what is left)."""
    return click.option("-q", "--quiet", is_flag=True, help=help)


def split_option(help: str = "Images to use (val and train: the run's own parts of the "
                             "training set).") -> Callable[[F], F]:
    """Add ``--split test|val|train`` (default ``test``): which images of a run to use
    (:meth:`mnistkit.runs.LoadedRun.split`)."""
    return click.option("--split", type=click.Choice(["test", "val", "train"]),
                        default="test", show_default=True, help=help)


def augmentation_options(default: str, help: str, option_help: str) -> Callable[[F], F]:
    """Add ``--augment NAME`` (an augmentation, default ``default``) and repeatable
    ``-a/--augment-option KEY=VALUE`` (its options), both completed in the shell."""
    def add(func: F) -> F:
        func = click.option("-a", "--augment-option", "augment_options", multiple=True,
                            metavar="KEY=VALUE", shell_complete=_complete_augmentation_options,
                            help=option_help)(func)
        return click.option("--augment", default=default, show_default=True, metavar="NAME",
                            shell_complete=_complete_augmentations, help=help)(func)
    return add


def _complete_augmentations(ctx: click.Context, param: click.Parameter,
                            incomplete: str) -> list:
    from mnistkit.cli.completion import complete_augmentations

    return complete_augmentations(ctx, param, incomplete)


def _complete_augmentation_options(ctx: click.Context, param: click.Parameter,
                                   incomplete: str) -> list:
    from mnistkit.cli.completion import complete_augmentation_options

    return complete_augmentation_options(ctx, param, incomplete)


def threads_option(func: F) -> F:
    """Add ``--threads N``: BLAS threads for matrix products (default: the library's),
    capped at the cores this process may use (with a one-line warning). Use the value
    with :func:`limit_threads`."""
    return click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
                        callback=_cap_threads,
                        help="Number of BLAS threads (default: all cores; at most the "
                             "usable cores).")(func)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # no affinity on this platform
        return max(os.cpu_count() or 1, 1)


def _cap_threads(ctx: click.Context, param: click.Parameter, threads: int | None) -> int | None:
    """More threads than usable cores only slows the products down: use the cores."""
    cores = usable_cores()
    if threads is None or threads <= cores:
        return threads
    shown = str(threads) if len(str(threads)) <= 20 else f"{str(threads)[:17]}..."
    click.echo(f"warning: --threads {shown} is more than the {cores} usable cores; using "
               f"{cores}", err=True)
    return cores


def limit_threads(threads: int | None) -> Any:
    """A context in which BLAS uses ``threads`` threads (``None``: as it is)."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


# -- errors ---------------------------------------------------------------------------------
def flag(setting: str) -> str:
    """The option that gives a library setting on the command line: ``val_size`` is
    ``--val-size``."""
    return "--" + setting.replace("_", "-")


def error_message(exc: MnistkitError) -> str:
    """A library error as the command line says it: the settings it names spelled as
    their flags (:meth:`mnistkit.errors.MnistkitError.worded`)."""
    return exc.worded(flag)


# -- runs -----------------------------------------------------------------------------------
def load_run_for_cli(run_path: Path, data_dir: Path | None, which: str,
                     split: str | None = None) -> LoadedRun:
    """The run at ``run_path`` with its ``which`` parameters and its dataset (from
    ``data_dir``, or where the dataset's plugin finds it). A ``split`` the run does not
    have is refused from its record, before the data is loaded."""
    from mnistkit.runs import RunFolder, check_split, load_run

    info = RunFolder(run_path).read()
    if split is not None:
        check_split(run_path, info, split)
    dataset = load_dataset_for_cli(info.dataset["name"], data_dir)
    return load_run(run_path, current_plugins().registry, dataset, which)


def percent(value: Any) -> str:
    """``12.34%``, or ``-`` for what is not a number (no validation set, no result)."""
    return "-" if not isinstance(value, float) or value != value else f"{value:.2%}"


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


def pick_samples(dataset: Any, labels: Any, count: int, seed: int | None,
                 digit: int | None) -> tuple[Any, int]:
    """Indices of ``count`` images with ``labels`` (of ``dataset``) for a picture, and the
    seed they were drawn with: of class ``digit`` if given (refused when the dataset has
    no such class), drawn with ``seed`` (a fresh one when ``None``)."""
    import numpy as np

    from mnistkit.data.summary import choose_samples

    if digit is not None and digit >= dataset.n_classes:
        raise click.BadParameter(
            f"{digit} is not a class of {dataset.name} (0..{dataset.n_classes - 1})",
            param_hint="--digit")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 1_000_000)
    return choose_samples(labels, count, seed, digit), seed

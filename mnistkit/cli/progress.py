"""Progress on the terminal while long work runs: one renderer per kind of work, fed
the events the library yields.

:func:`follow` drives an iterator of events to its end, handing each to a renderer (or
to none, for ``--quiet`` and ``--json``), and returns the last. A renderer is a context
manager with ``update(event)``: :class:`TrainingProgress` draws a bar per epoch and a
line per finished epoch of :meth:`mnistkit.runs.Run.train`; :class:`SweepProgress` a
live table of the trials of :func:`mnistkit.sweep_runner.run_sweep`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mnistkit.cli.common import percent

T = TypeVar("T")

#: Rows of the sweep's live table: running and failed trials first, then the latest.
TABLE_ROWS = 24
#: The bar is redrawn at most this often (seconds), not after every step.
REDRAW_SECONDS = 0.05


class Renderer(Protocol[T]):
    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...

    def update(self, event: T) -> None: ...


def follow(events: Iterable[T], renderer: Renderer[T] | None = None) -> T | None:
    """Consume ``events``, showing each with ``renderer`` (``None``: show nothing);
    the last event, or ``None`` when there was none."""
    last = None
    if renderer is None:
        for event in events:
            last = event
        return last
    with renderer:
        for event in events:
            renderer.update(event)
            last = event
    return last


# -- training ------------------------------------------------------------------------------
def format_options(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items()) or "no options"


class TrainingProgress:
    """What ``mnistkit train`` shows: the run's settings, a bar per epoch with the running
    loss and the time left, and one line per finished epoch. ``stopping()`` true (the
    first Ctrl-C) turns the bar's label into ``stopping…``; ``note``, if any, is printed
    under the settings."""

    def __init__(self, run: Any, out: Any, stopping: Callable[[], bool] = lambda: False,
                 note: str | None = None) -> None:
        self.run, self.out, self.stopping, self.note = run, out, stopping, note
        self._progress: Any = None
        self._task: Any = None
        self._running, self._count, self._drawn = 0.0, 0, 0.0

    def __enter__(self) -> TrainingProgress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        info = self.run.info
        augmentation = info.augmentation
        distorted = "" if augmentation.name == "none" else (
            f", distorted by [bold]{augmentation.name}[/] "
            f"({format_options(augmentation.options)})")
        self.out.print(
            f"Training [bold]{info.model}[/] ({format_options(info.model_options)}) with "
            f"[bold]{info.optimizer}[/] ({format_options(info.optimizer_options)}) on "
            f"{info.dataset['name']} ({info.dataset['n_train']} train, "
            f"{info.dataset['n_val']} val images){distorted} -> {self.run.path}")
        if self.note:
            self.out.print(self.note)
        columns = (TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
        self._progress = Progress(*columns, console=self.out, transient=True)
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, event: Any) -> None:
        from mnistkit.training import EpochFinished, EpochStarted, StepFinished

        progress = self._progress
        if isinstance(event, EpochStarted):
            self._running, self._count = 0.0, 0
            if self._task is not None:
                progress.remove_task(self._task)
            self._task = progress.add_task(f"epoch {event.epoch + 1}/{event.epochs}",
                                           total=event.steps, completed=self.run.trainer.step,
                                           loss=0.0)
        elif isinstance(event, StepFinished):
            self._running, self._count = self._running + event.loss, self._count + 1
            now = time.perf_counter()
            if now - self._drawn >= REDRAW_SECONDS or event.step == event.steps:
                progress.update(self._task, completed=event.step,
                                loss=self._running / self._count)
                self._drawn = now
        elif isinstance(event, EpochFinished):
            progress.console.print(
                f"epoch {event.epoch:>3}/{self.run.trainer.config.epochs}  "
                f"loss {event.train_loss:.4f}  train acc {event.train_accuracy:.2%}  "
                f"val acc {percent(event.val_accuracy)}  lr {event.lr:.3g}  "
                f"{event.seconds:.2f}s")
        if self._task is not None and self.stopping():
            progress.update(self._task, description="stopping…")


# -- sweeps --------------------------------------------------------------------------------
class SweepProgress:
    """What ``mnistkit sweep`` shows: where the trials run, then a live table of them
    (status, accuracies, time, an ETA) updated with every update of the sweep."""

    def __init__(self, state: Any, folder: Path, backend: Any, out: Any) -> None:
        self.state, self.folder, self.backend, self.out = state, folder, backend, out
        self._live: Any = None

    def __enter__(self) -> SweepProgress:
        from rich.live import Live

        from mnistkit.sweep import count_trials, swept_axes

        self.out.print(f"Sweep of {count_trials(self.state.spec)} trials -> {self.folder} on "
                       f"{self.backend.description}")
        self._swept = swept_axes(self.state.spec)
        self._live = Live(console=self.out, refresh_per_second=4, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)
        if exc[0] is None:  # the table stays; a blank line before the summary
            self.out.print()

    def update(self, update: Any) -> None:
        self._live.update(trials_table(update, self._swept, self.backend.capacity))


def trials_table(update: Any, swept: list[str], capacity: int) -> Any:
    """The live table of a sweep's trials after ``update``."""
    from rich.table import Table

    from mnistkit.sweep import describe_config

    trials = update.trials
    counts = {s: sum(t["status"] == s for t in trials) for s in
              ("finished", "failed", "interrupted")}
    done = [t for t in trials if t["status"] in ("finished", "failed")]
    remaining = len(trials) - len(done)
    seconds = [t["seconds"] for t in done if t.get("seconds")]
    eta = (sum(seconds) / len(seconds)) * remaining / max(1, capacity) if seconds else None
    caption = (f"{len(done)}/{len(trials)} done ({counts['failed']} failed), "
               f"{len(update.running)} running, {update.elapsed:.0f} s"
               + (f", ETA {eta:.0f} s" if eta is not None and remaining else "")
               + ("  [yellow]stopping: running trials checkpoint after this step[/]"
                  if update.stopping else ""))
    table = Table(caption=caption, caption_justify="left")
    for column in ("trial", "options", "seed", "status", "val acc", "test acc", "time"):
        table.add_column(column, justify="right" if column in ("seed", "val acc", "test acc",
                                                                "time") else "left")
    styles = {"finished": "green", "failed": "bold red", "running": "cyan",
              "interrupted": "yellow", "pending": "dim"}
    for t in _rows_to_show(trials, update.running):
        status = "running" if t["id"] in update.running else t["status"]
        table.add_row(t["id"], describe_config(t["config"], swept) or "-", str(t["seed"]),
                      f"[{styles.get(status, '')}]{status}[/]",
                      percent(t.get("val_accuracy")), percent(t.get("test_accuracy")),
                      f"{t['seconds']:.1f} s" if t.get("seconds") else "")
    return table


def _rows_to_show(trials: list[dict[str, Any]], running: frozenset[str]) -> list[dict]:
    if len(trials) <= TABLE_ROWS:
        return trials
    first = [t for t in trials if t["id"] in running or t["status"] == "failed"]
    rest = [t for t in trials if t not in first and t["status"] != "pending"]
    return sorted((first + rest[-max(0, TABLE_ROWS - len(first)):])[:TABLE_ROWS],
                  key=lambda t: t["index"])

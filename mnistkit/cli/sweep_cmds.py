"""``mnistkit sweep``: many trials on a local process pool or a Dask cluster."""

from __future__ import annotations

import datetime as dt
import signal
import sys
from pathlib import Path
from typing import Any

import click

from mnistkit.cli.common import console, flag, json_option, print_json, quiet_option
from mnistkit.cli.completion import (
    complete_datasets,
    complete_model_options,
    complete_models,
    complete_optimizer_options,
    complete_optimizers,
)
from mnistkit.errors import EXIT_INTERRUPTED


class _SweepSignals:
    """First Ctrl-C: stop starting trials, let the running ones checkpoint. Second: abort."""

    def __init__(self) -> None:
        self.presses = 0

    def handle(self, signum: int, frame: Any) -> None:
        self.presses += 1

    def stop(self) -> bool:
        return self.presses >= 1

    def abort(self) -> bool:
        return self.presses >= 2


@click.command("sweep", short_help="Train many trials (a grid, random or TPE search) in parallel.")
@click.argument("sweep_file", metavar="[SWEEP.toml]", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default="twolayer", show_default=True, metavar="NAME[,NAME...]",
              shell_complete=complete_models, help="Model(s) to train.")
@click.option("--optimizer", default="sgd", show_default=True, metavar="NAME[,NAME...]",
              shell_complete=complete_optimizers, help="Optimizer(s).")
@click.option("-m", "--model-option", "model_options", multiple=True,
              shell_complete=complete_model_options,
              metavar="KEY=V1,V2,...", help="Model option values to sweep, e.g. "
                                            "-m hidden_size=64,128,256 (repeatable).")
@click.option("-o", "--optimizer-option", "optimizer_options", multiple=True,
              shell_complete=complete_optimizer_options,
              metavar="KEY=V1,V2,...", help="Optimizer option values, e.g. -o lr=0.05,0.1.")
@click.option("--epochs", default="20", show_default=True, metavar="N[,N...]",
              help="Epochs per trial.")
@click.option("--batch-size", default="128", show_default=True, metavar="N[,N...]",
              help="Images per step.")
@click.option("--dataset", default="mnist", show_default=True, metavar="NAME[,NAME...]",
              shell_complete=complete_datasets, help="Dataset(s).")
@click.option("--seeds", type=int, default=1, show_default=True, metavar="N",
              help="Seeds per configuration (0..N-1): the summary gives mean and spread.")
@click.option("--search", type=click.Choice(["grid", "random", "tpe"]), default="grid",
              show_default=True, help="Every combination; --trials random ones; or --trials "
                                      "chosen by Optuna's TPE from the results so far (needs "
                                      "mnistkit[optuna]).")
@click.option("--trials", type=click.IntRange(min=1), default=None, metavar="N",
              help="Configurations drawn by --search random or tpe.")
@click.option("--search-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of --search random or tpe (same seed, same trials).")
@click.option("--val-size", type=int, default=None, metavar="N",
              help="Validation images held out of the training set (ranks the trials). "
                   "[default: the dataset's; 10,000 for MNIST]")
@click.option("--limit", type=int, default=None, metavar="N",
              help="Train every trial on the first N training images only.")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Local worker processes. [default: the usable cores]")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="BLAS threads per trial. [default: cores / workers locally, 1 on Dask]")
@click.option("--scheduler", envvar="MNISTKIT_DASK_SCHEDULER", default=None,
              metavar="tcp://HOST:PORT", help="Run the trials on this Dask cluster instead "
              "(needs mnistkit[dask]). Env: MNISTKIT_DASK_SCHEDULER.")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="Times a trial whose worker died is retried from its checkpoint.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Sweep folder to create. [default: sweeps/<timestamp>]")
@click.option("--resume", type=click.Path(path_type=Path), default=None, metavar="SWEEP",
              help="Continue a stopped sweep: finished trials are kept, the rest resume.")
@quiet_option("Print only the ranked summary.")
@json_option
def sweep_command(sweep_file: Path | None, model: str, optimizer: str,
                  model_options: tuple[str, ...], optimizer_options: tuple[str, ...],
                  epochs: str, batch_size: str, dataset: str, seeds: int, search: str,
                  trials: int | None, search_seed: int, val_size: int | None, limit: int | None,
                  workers: int | None, threads: int | None, scheduler: str | None,
                  retries: int, out: Path | None, resume: Path | None, quiet: bool,
                  as_json: bool) -> None:
    """Train many trials, each an ordinary run folder, and rank the configurations.

    The sweep is given on the command line (comma-separated values in any setting)
    or in a TOML file. Trials run in parallel on local worker processes, or on a
    Dask cluster with --scheduler. A live table shows every trial; the summary
    ranks configurations by mean validation accuracy over seeds (test accuracy
    is shown, never used to choose). Ctrl-C stops after the running trials'
    current step (exit 130); --resume SWEEP continues.

    \b
    Example:
      mnistkit sweep -m hidden_size=64,128,256 -o lr=0.05,0.1,0.2 --seeds 3 --epochs 5
      mnistkit sweep sweep.toml --workers 2 --out sweeps/hidden
      mnistkit sweep --search random --trials 20 -o lr=0.01,0.03,0.1,0.3 --epochs 2
      mnistkit sweep --resume sweeps/hidden
      mnistkit sweep sweep.toml --scheduler tcp://127.0.0.1:8786
    """
    from mnistkit import sweep as sweeps
    from mnistkit import sweep_runner as runner
    from mnistkit.cli.common import current_plugins
    from mnistkit.cli.progress import SweepProgress, follow

    ctx = click.get_current_context()
    if resume is not None:
        _refuse_sweep_settings_on_resume(ctx, sweep_file, out)
        lock = runner.claim_sweep_folder(resume, resume=True)
        state = runner.read_state(resume)
        folder = resume
    else:
        if sweep_file is not None:
            _refuse_sweep_settings_with_file(ctx)
            spec = sweeps.spec_from_toml(sweep_file)
        else:
            spec = sweeps.spec_from_cli(
                model=model, optimizer=optimizer, model_options=model_options,
                optimizer_options=optimizer_options, epochs=epochs, batch_size=batch_size,
                dataset=dataset, seeds=seeds, search=search, trials=trials,
                search_seed=search_seed, val_size=val_size, limit=limit)
        trial_list = sweeps.expand_trials(spec, current_plugins().registry)
        default = Path("sweeps") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        lock = runner.claim_sweep_folder(out or default, resume=False,
                                         pick_free_name=out is None)
        folder = lock.folder
        state = runner.new_state(spec, trial_list)
        runner.write_state(folder, state)  # resumable from here, even if no trial starts
    try:
        backend = (runner.dask_backend(scheduler, threads) if scheduler else
                   runner.local_backend(workers, threads))
        try:
            signals = _SweepSignals()
            previous = signal.signal(signal.SIGINT, signals.handle)
            try:
                updates = runner.run_sweep(folder, state, backend, current_plugins().registry,
                                           retries, signals.stop, signals.abort)
                final = follow(updates, None if quiet or as_json else SweepProgress(
                    state, folder, backend, console(stderr=as_json)))
            except KeyboardInterrupt:
                click.echo(f"Stopped at once; finished trials are kept. Resume with: mnistkit "
                           f"sweep --resume {folder}", err=True)
                sys.exit(EXIT_INTERRUPTED)
            finally:
                signal.signal(signal.SIGINT, previous)
        finally:
            backend.close()
    finally:
        lock.release()
    _report(folder, state.trials, state.spec, as_json=as_json,
            stopped=bool(final and final.stopping))


def _given(ctx: click.Context, names: tuple[str, ...]) -> list[str]:
    from click.core import ParameterSource

    return [name for name in names
            if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]


_SWEEP_SETTINGS = ("model", "optimizer", "model_options", "optimizer_options", "epochs",
                   "batch_size", "dataset", "seeds", "search", "trials", "search_seed",
                   "val_size", "limit")


def _flag(name: str) -> str:
    return {"model_options": "-m", "optimizer_options": "-o"}.get(name) or flag(name)


def _refuse_sweep_settings_on_resume(ctx: click.Context, sweep_file: Path | None,
                                     out: Path | None) -> None:
    given = _given(ctx, _SWEEP_SETTINGS)
    if sweep_file is not None or out is not None or given:
        what = ", ".join([_flag(n) for n in given] + (["SWEEP.toml"] if sweep_file else [])
                         + (["--out"] if out else []))
        raise click.UsageError(f"--resume continues a sweep as it was defined; remove {what}")


def _refuse_sweep_settings_with_file(ctx: click.Context) -> None:
    given = _given(ctx, _SWEEP_SETTINGS)
    if given:
        raise click.UsageError(f"give the sweep either in SWEEP.toml or with options, not "
                               f"both: remove {', '.join(_flag(n) for n in given)}")


def _report(folder: Path, trials: list[dict[str, Any]], spec: Any, as_json: bool,
            stopped: bool) -> None:
    """The ranked summary (or JSON), then the exit code: 130 when stopped, 1 when a trial
    failed, else 0."""
    from mnistkit.errors import TrainingError
    from mnistkit.sweep import describe_config, summarize, swept_axes

    summary = summarize(trials)
    swept = swept_axes(spec)
    if as_json:
        print_json({"sweep": str(folder), "trials": trials, "summary": [
            {"config": s.config, "trials": s.trials, "finished": s.finished,
             "val_accuracy_mean": s.val_mean, "val_accuracy_std": s.val_std,
             "test_accuracy_mean": s.test_mean, "test_accuracy_std": s.test_std}
            for s in summary]})
    else:
        from rich.table import Table

        table = Table(title=f"Ranked by mean validation accuracy ({folder})",
                      title_justify="left")
        for column in ("rank", "configuration", "seeds", "val acc", "test acc"):
            table.add_column(column, justify="left" if column == "configuration" else "right")
        for rank, s in enumerate(summary, start=1):
            table.add_row(str(rank), describe_config(s.config, swept) or describe_config(
                s.config), f"{s.finished}/{s.trials}", _mean_std(s.val_mean, s.val_std),
                _mean_std(s.test_mean, s.test_std))
        console().print(table)
    if stopped:
        click.echo(f"Sweep stopped; running trials were checkpointed. Resume with: mnistkit "
                   f"sweep --resume {folder}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    failed = [t for t in trials if t["status"] != "finished"]
    if failed:
        first = failed[0]
        raise TrainingError(f"{len(failed)} of {len(trials)} trials did not finish; "
                            f"{first['id']} ({first['run']}): {first['status']}: "
                            f"{first.get('error') or 'no error recorded'}")


def _mean_std(mean: float, std: float) -> str:
    if mean != mean:
        return "-"
    return f"{mean:.2%} ± {std:.2%}" if std == std and std > 0 else f"{mean:.2%}"


COMMANDS = [sweep_command]

"""The ``mnistkit compare`` command (click only at import; rich inside the command)."""

from __future__ import annotations

from pathlib import Path

import click

from mnistkit.cli.completion import complete_run_folders
from mnistkit_compare.summary import NUMERIC


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="RUN...", shell_complete=complete_run_folders)
@click.option("--sort", "sort_key", type=click.Choice(NUMERIC), default=None,
              help="Order the runs by this column, best first (default: as given).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the rows as JSON on stdout (for scripts).")
def compare_command(runs: tuple[Path, ...], sort_key: str | None, as_json: bool) -> None:
    """Compare training runs side by side: options, accuracies, loss and time.

    Reads each RUN folder's run.json (written by 'mnistkit train'); fields a run
    lacks (unfinished, interrupted, other versions) show as '-'. The best value of
    each numeric column is highlighted.

    \b
    Example:
      mnistkit compare runs/twolayer runs/mlp
      mnistkit compare runs/* --sort test_accuracy
      mnistkit compare runs/a runs/b --json
    """
    from mnistkit_compare.summary import sort_rows, summarise

    rows = [summarise(run) for run in runs]
    if sort_key:
        rows = sort_rows(rows, sort_key)
    if as_json:
        from mnistkit.cli.common import print_json

        print_json({"runs": rows})
        return
    _print_table(rows)


def _fmt(key: str, value: object) -> str:
    if value is None or value == "":
        return "-"
    if key in ("test_accuracy", "best_val_accuracy"):
        return f"{value:.2%}"
    if key == "final_train_loss":
        return f"{value:.4f}"
    if key in ("wall_seconds", "seconds_per_epoch"):
        return f"{value:.1f}"
    if key in ("model_options", "optimizer_options"):
        return str(value).replace(" ", "\n")  # one option per line
    return str(value)


def _print_table(rows: list[dict]) -> None:
    """One column per run, one line per field: runs side by side."""
    from rich.table import Table

    from mnistkit.cli.common import console
    from mnistkit_compare.summary import LOWER_IS_BETTER

    fields = [("model", "model"), ("model_options", "model options"),
              ("optimizer", "optimizer"), ("optimizer_options", "optimizer options"),
              ("dataset", "dataset"), ("seed", "seed"), ("epochs", "epochs"),
              ("best_val_accuracy", "best val accuracy"), ("test_accuracy", "test accuracy"),
              ("final_train_loss", "final train loss"), ("seconds_per_epoch", "s / epoch"),
              ("wall_seconds", "wall seconds"), ("status", "status")]
    best = {}
    for key in ("best_val_accuracy", "test_accuracy", "final_train_loss", "seconds_per_epoch",
                "wall_seconds"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if len(values) > 1:
            best[key] = min(values) if key in LOWER_IS_BETTER else max(values)
    table = Table(title=f"{len(rows)} runs side by side", title_justify="left")
    table.add_column("", style="bold")
    for row in rows:
        table.add_column(Path(row["run"]).name or row["run"], overflow="fold")
    for key, title in fields:
        cells = []
        for row in rows:
            text = _fmt(key, row.get(key))
            if key in best and row.get(key) == best[key]:
                text = f"[green]{text}[/]"
            cells.append(text)
        table.add_row(title, *cells)
    console().print(table)

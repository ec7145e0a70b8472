"""``mnistkit runs``: list the run folders (sweeps included) and remove unfinished ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mnistkit.cli.common import console, json_option, print_json

DEFAULT_ROOTS = (Path("runs"), Path("sweeps"))
_STATUS_STYLE = {"finished": "green", "running": "cyan", "interrupted": "yellow",
                 "stopped": "yellow", "diverged": "red", "failed": "bold red",
                 "damaged": "bold red"}


class _RunsGroup(click.Group):
    """``mnistkit runs [DIR]`` lists; ``mnistkit runs rm [DIR]`` removes. A first argument
    that is not a subcommand is the folder to list."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _filters_option(func: Any) -> Any:
    return click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
                        help="Only runs with this model, optimizer, status, dataset or "
                             "option value, e.g. --filter model=mlp (repeatable).")(func)


def _collect(folder: Path | None, filters: tuple[str, ...]) -> list[Any]:
    from mnistkit.errors import RunError
    from mnistkit.options import parse_assignments
    from mnistkit.run_index import list_runs, matches

    wanted = parse_assignments(filters)
    if folder is not None:
        roots = [folder]
    else:
        roots = [root for root in DEFAULT_ROOTS if root.is_dir()]
        if not roots:
            raise RunError("no runs/ or sweeps/ folder here; give the folder to list: "
                           "mnistkit runs DIR")
    rows = [row for root in roots for row in list_runs(root)]
    return [row for row in rows if matches(row, wanted)]


@click.group("runs", cls=_RunsGroup, invoke_without_command=False,
             short_help="List run folders (sweeps included); remove unfinished ones.")
def runs_group() -> None:
    """List the run folders under a folder, or remove the unfinished ones.

    \b
    mnistkit runs [DIR] [--sort path|date|model|status|val|test|time]
                  [--filter KEY=VALUE]... [--json]
    mnistkit runs rm [DIR] [--filter KEY=VALUE]... [--yes]

    DIR defaults to runs/ and sweeps/; folders are searched recursively, so the
    trials of a sweep are listed too. Options shown are the ones that differ from
    the model's and optimizer's defaults. A run killed while training is listed
    as stopped; a damaged run folder as damaged, with the reason.

    \b
    Example:
      mnistkit runs                          # runs/ and sweeps/
      mnistkit runs sweeps/S --sort val --filter status=finished
      mnistkit runs --filter model=mlp --json
      mnistkit runs rm --yes                 # remove interrupted, failed... runs
    """


@runs_group.command("list", hidden=True)
@click.argument("folder", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--sort", type=click.Choice(["path", "date", "model", "status", "val", "test",
                                           "time"]), default="path", show_default=True,
              help="Order of the rows (val, test: best first).")
@_filters_option
@json_option
def list_command(folder: Path | None, sort: str, filters: tuple[str, ...],
                 as_json: bool) -> None:
    """List run folders under DIR (default: runs/ and sweeps/), recursively."""
    from mnistkit.run_index import sort_rows

    rows = sort_rows(_collect(folder, filters), sort)
    if as_json:
        print_json([row.to_dict() for row in rows])
        return
    _render(rows)


def _non_default_options(row: Any, cache: dict[str, dict[str, Any]]) -> str:
    """The options of ``row`` that differ from its model's and optimizer's defaults."""
    from mnistkit.cli.common import current_plugins
    from mnistkit.errors import MnistkitError
    from mnistkit.options import options_to_dict

    defaults: dict[str, Any] = {}
    for kind, name in (("model", row.model), ("optimizer", row.optimizer)):
        key = f"{kind}:{name}"
        if key not in cache:
            try:
                entry = current_plugins().registry.get(kind, name)
                cache[key] = options_to_dict(entry.make_options({}))
            except MnistkitError:
                cache[key] = {}
        defaults.update(cache[key])
    return " ".join(f"{k}={v}" for k, v in row.options.items()
                    if k not in defaults or defaults[k] != v)


def _render(rows: list[Any]) -> None:
    from rich.table import Table

    cache: dict[str, dict[str, Any]] = {}
    table = Table(caption=f"{len(rows)} run{'s' if len(rows) != 1 else ''}",
                  caption_justify="left")
    for column in ("run", "date", "model", "optimizer", "options", "status", "epochs",
                   "val acc", "test acc", "time"):
        table.add_column(column, justify="right" if column in (
            "epochs", "val acc", "test acc", "time") else "left", overflow="fold")
    for row in rows:
        options = _non_default_options(row, cache) or "defaults"
        status = f"[{_STATUS_STYLE.get(row.status, '')}]{row.status}[/]"
        if row.error and row.status in ("damaged", "failed", "diverged"):
            status += f"\n[dim]{row.error[:80]}[/]"
        table.add_row(row.path, row.created[:16].replace("T", " "), row.model, row.optimizer,
                      options, status, f"{row.epochs_done}/{row.epochs or '?'}",
                      _pct(row.val_accuracy), _pct(row.test_accuracy),
                      f"{row.seconds:.1f} s" if row.seconds is not None else "")
    console().print(table)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@runs_group.command("rm")
@click.argument("folder", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@_filters_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask before removing (for scripts).")
def rm_command(folder: Path | None, filters: tuple[str, ...], yes: bool) -> None:
    """Remove the runs under DIR that are not finished (interrupted, diverged, failed,
    stopped, damaged); finished runs and runs being trained are never removed."""
    from mnistkit.run_index import REMOVABLE, remove_run

    rows = [row for row in _collect(folder, filters) if row.status in REMOVABLE]
    if not rows:
        click.echo("No unfinished runs to remove.")
        return
    for row in rows:
        click.echo(f"  {row.path}  ({row.status})")
    if not yes and not click.confirm(f"Remove these {len(rows)} run folders?", default=False):
        click.echo("Nothing removed.")
        return
    for row in rows:
        remove_run(row)
    click.echo(f"Removed {len(rows)} run folder{'s' if len(rows) != 1 else ''}.")


COMMANDS = [runs_group]

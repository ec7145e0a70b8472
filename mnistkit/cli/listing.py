"""Commands that list what is installed: plugins, models, optimizers, datasets,
augmentations and recipes."""

from __future__ import annotations

from typing import Any

import click

from mnistkit.cli.common import console, current_plugins, json_option, print_json


def _entry_record(entry: Any, plugins: Any) -> dict[str, Any]:
    return {
        "name": entry.name,
        "plugin": entry.plugin,
        "distribution": plugins.distribution_of(entry.plugin),
        "help": entry.help,
        "options": [
            {"name": o.name, "type": o.type_name, "default": _plain(o.default), "help": o.help,
             "range": o.bounds or None}
            for o in entry.describe_options()
        ],
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _list_kind(kind: str, as_json: bool) -> None:
    plugins = current_plugins()
    records = [_entry_record(e, plugins) for e in plugins.registry.entries(kind)]
    conflicts = {n: owners for (k, n), owners in plugins.registry.conflicts().items() if k == kind}
    if as_json:
        print_json({"items": records, "conflicts": conflicts})
        return
    from rich.table import Table

    table = Table(title=f"{kind.capitalize()}s", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("plugin")
    table.add_column("description")
    table.add_column("options (default)")
    for rec in records:
        opts = "\n".join(f"{o['name']}: {o['type']} = {o['default']!r}"
                         + (f" ({o['range']})" if o["range"] else "") for o in rec["options"])
        table.add_row(rec["name"], rec["plugin"], rec["help"], opts or "-")
    out = console()
    out.print(table)
    for name, owners in conflicts.items():
        out.print(f"[yellow]conflict:[/] {kind} {name!r} is registered by {' and '.join(owners)}")


@click.command("models", short_help="List the installed models and their options.")
@json_option
def models_command(as_json: bool) -> None:
    """List the installed models with their options and defaults.

    \b
    Example:
      mnistkit models
      mnistkit train --model twolayer -m hidden_size=512
    """
    _list_kind("model", as_json)


@click.command("optimizers", short_help="List the installed optimizers and their options.")
@json_option
def optimizers_command(as_json: bool) -> None:
    """List the installed optimizers with their options and defaults.

    \b
    Example:
      mnistkit optimizers
      mnistkit train --model twolayer -o lr=0.05 -o momentum=0.9
    """
    _list_kind("optimizer", as_json)


@click.command("datasets")
@json_option
def datasets_command(as_json: bool) -> None:
    """List the installed datasets.

    \b
    Example:
      mnistkit datasets
      mnistkit inspect --dataset mnist
    """
    _list_kind("dataset", as_json)


@click.command("augmentations",
               short_help="List the installed training-image distortions and their options.")
@json_option
def augmentations_command(as_json: bool) -> None:
    """List the installed augmentations (distortions of the training images) with their
    options and defaults.

    \b
    Example:
      mnistkit augmentations
      mnistkit visualise augment --augment elastic -a alpha=20
      mnistkit train --augment elastic -a sigma=4 -a alpha=34
    """
    _list_kind("augmentation", as_json)


def recipe_record(entry: Any) -> dict[str, Any]:
    """What ``mnistkit recipes --json`` shows of one registered recipe."""
    recipe = entry.factory
    return {
        "name": entry.name,
        "title": recipe.title,
        "source": recipe.source,
        "published_error": recipe.published_error,
        "plugin": entry.plugin,
        "notes": recipe.notes,
        "settings": recipe.settings(),
        "command": recipe.command(entry.name),
    }


def published_error_text(error: float | None) -> str:
    """``2.95%``, or ``-`` when the source publishes no figure."""
    return "-" if error is None else f"{error:g}%"


@click.command("recipes", short_help="List the installed recipes: published results to "
                                     "reproduce.")
@json_option
def recipes_command(as_json: bool) -> None:
    """List the installed recipes: named training settings, each with the source it
    reproduces and the test error published there.

    --json prints a list of objects with every setting of each recipe and the command
    that trains it.

    \b
    Example:
      mnistkit recipes
      mnistkit recipes --json
      mnistkit train --recipe simard2003-elastic
    """
    plugins = current_plugins()
    records = [recipe_record(e) for e in plugins.registry.entries("recipe")]
    conflicts = {n: owners for (k, n), owners in plugins.registry.conflicts().items()
                 if k == "recipe"}
    for name, owners in conflicts.items():
        click.echo(f"warning: recipe {name!r} is registered by {' and '.join(owners)}; "
                   f"using it is an error", err=True)
    if as_json:
        print_json(records)
        return
    from rich.table import Table

    table = Table(title="Recipes", title_justify="left",
                  caption="Train one with: mnistkit train --recipe NAME", caption_justify="left")
    table.add_column("name", style="bold")
    table.add_column("published error", justify="right")
    table.add_column("title")
    table.add_column("source")
    for rec in records:
        table.add_row(rec["name"], published_error_text(rec["published_error"]), rec["title"],
                      rec["source"])
    console().print(table)


@click.command("plugins", short_help="List the loaded plugins and what they register.")
@json_option
def plugins_command(as_json: bool) -> None:
    """List the loaded plugins: distribution, version, hooks and what each registers
    (models, optimizers, datasets, augmentations, recipes and the commands it adds).

    Plugins that failed to load are listed too, with their error.

    \b
    Example:
      mnistkit plugins --json
      MNISTKIT_LOAD_PLUGINS= mnistkit plugins     # built-ins only
    """
    plugins = current_plugins()
    records = [
        {"name": p.name, "distribution": p.distribution, "version": p.version,
         "hooks": list(p.hooks), "registers": plugins.registrations(p.name)}
        for p in plugins.info()
    ]
    problems = [{"name": p.plugin, "distribution": p.distribution, "error": p.error}
                for p in plugins.problems]
    if as_json:
        print_json({"plugins": records, "failed": problems})
        return
    from rich.table import Table

    table = Table(title="Plugins", title_justify="left")
    for column in ("name", "distribution", "version", "hooks", "registers"):
        table.add_column(column)
    for rec in records:
        registers = "\n".join(f"{k}s: {', '.join(v)}" for k, v in rec["registers"].items())
        hooks = "\n".join(h.removeprefix("mnistkit_") for h in rec["hooks"])
        table.add_row(rec["name"], rec["distribution"], rec["version"], hooks, registers or "-")
    for prob in problems:
        table.add_row(prob["name"], prob["distribution"], "", "[red]failed[/]", prob["error"])
    console().print(table)


COMMANDS = [plugins_command, models_command, optimizers_command, datasets_command,
            augmentations_command, recipes_command]

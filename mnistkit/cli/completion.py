"""Shell completion: ``mnistkit completion bash|zsh|fish`` and the completers of options.

Click's completion machinery does the work: the script printed by ``mnistkit completion
SHELL`` calls ``mnistkit`` back with ``_MNISTKIT_COMPLETE`` set, and Click asks the
``shell_complete`` callback of the option or argument being typed. The callbacks here
complete registered model, optimizer, dataset, augmentation and recipe names (from the
plugins' registry), ``-m``/``-o``/``-a`` option names of the chosen model, optimizer or
augmentation, and run folders (folders holding a ``run.json``). They must stay fast:
nothing beyond the registry is imported, and the search for run folders is bounded.

Plugin commands may use these callbacks too, e.g.
``click.argument("run", shell_complete=complete_run_folders)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click
from click.shell_completion import CompletionItem

from mnistkit.cli.common import current_plugins

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_MNISTKIT_COMPLETE"
RUN_JSON = "run.json"
#: How deep below the folder being typed run folders are looked for, and how many
#: folders are looked at in all: completion answers in milliseconds even in $HOME.
RUN_SEARCH_DEPTH = 4
RUN_SEARCH_FOLDERS = 2000
_SKIPPED_FOLDERS = {"node_modules", "__pycache__", "site-packages"}


def _complete_names(kind: str, incomplete: str) -> list[CompletionItem]:
    """Names of ``kind`` starting with the last comma-separated part of ``incomplete``
    (``--model a,b`` in ``sweep`` takes lists)."""
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    entries = current_plugins().registry.entries(kind)  # type: ignore[arg-type]
    return [CompletionItem(prefix + entry.name, help=None if head else (entry.help or None))
            for entry in entries if entry.name.startswith(last)]


def _name_completer(kind: str, what: str) -> Any:
    """The ``shell_complete`` callback completing registered names of ``kind``."""

    def complete(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
        return _safe(lambda: _complete_names(kind, incomplete))

    complete.__doc__ = what
    return complete


complete_models = _name_completer("model", "Registered model names.")
complete_optimizers = _name_completer("optimizer", "Registered optimizer names.")
complete_datasets = _name_completer("dataset", "Registered dataset names.")
complete_augmentations = _name_completer("augmentation",
                                         "Registered augmentation names (``--augment``).")
complete_recipes = _name_completer("recipe", "Registered recipe names (``--recipe``), each "
                                             "with its title as help.")


#: The parameter names under which a command takes each kind's name, and the name used
#: when the line gives none.
_CHOSEN_KEYS = {"model": ("model_name", "model"), "optimizer": ("optimizer_name", "optimizer"),
                "dataset": ("dataset_name", "dataset"),
                "augmentation": ("augment_name", "augment", "augmentation")}
_DEFAULTS = {"model": "twolayer", "optimizer": "sgd", "dataset": "mnist",
             "augmentation": "none"}


def _chosen(ctx: click.Context, kind: str) -> list[str]:
    """The model(s), optimizer(s), dataset or augmentation given earlier on the line, or
    the command's default."""
    for key in _CHOSEN_KEYS[kind]:
        value = ctx.params.get(key)
        if isinstance(value, str) and value:
            return [part for part in value.split(",") if part]
    return [_DEFAULTS[kind]]


def _complete_option_names(ctx: click.Context, kind: str,
                           incomplete: str) -> list[CompletionItem]:
    """``KEY=`` for each option of the chosen model/optimizer; after ``KEY=``, its choices."""
    from mnistkit.errors import MnistkitError

    registry = current_plugins().registry
    infos = []
    for name in _chosen(ctx, kind):
        try:
            infos += registry.get(kind, name).describe_options()  # type: ignore[arg-type]
        except MnistkitError:  # an unknown or conflicting name: nothing to offer
            continue
    key, equals, _value = incomplete.partition("=")
    if equals:
        return [CompletionItem(f"{key}={choice}") for info in infos if info.name == key
                for choice in _choices(info.type_name) if choice.startswith(_value)]
    seen: dict[str, Any] = {}
    for info in infos:
        if info.name.startswith(incomplete) and info.name not in seen:
            about = f"{info.type_name}, default {info.default}: {info.help}"
            seen[info.name] = CompletionItem(f"{info.name}=", help=about)
    return list(seen.values())


def _choices(type_name: str) -> list[str]:
    """The values of a ``bool`` or ``a|b|c`` option type; nothing for free-form types."""
    if type_name == "bool":
        return ["true", "false"]
    return type_name.split("|") if "|" in type_name else []


def complete_model_options(ctx: click.Context, param: click.Parameter,
                           incomplete: str) -> list[CompletionItem]:
    """``-m KEY=``: the options of the chosen ``--model``."""
    return _safe(lambda: _complete_option_names(ctx, "model", incomplete))


def complete_optimizer_options(ctx: click.Context, param: click.Parameter,
                               incomplete: str) -> list[CompletionItem]:
    """``-o KEY=``: the options of the chosen ``--optimizer``."""
    return _safe(lambda: _complete_option_names(ctx, "optimizer", incomplete))


def complete_dataset_options(ctx: click.Context, param: click.Parameter,
                             incomplete: str) -> list[CompletionItem]:
    """``-d KEY=``: the options of the chosen ``--dataset``."""
    return _safe(lambda: _complete_option_names(ctx, "dataset", incomplete))


def complete_augmentation_options(ctx: click.Context, param: click.Parameter,
                                  incomplete: str) -> list[CompletionItem]:
    """``-a KEY=``: the options of the chosen ``--augment``."""
    return _safe(lambda: _complete_option_names(ctx, "augmentation", incomplete))


def run_folders(incomplete: str, depth: int = RUN_SEARCH_DEPTH,
                budget: int = RUN_SEARCH_FOLDERS) -> list[str]:
    """Paths of folders holding a ``run.json`` that start with ``incomplete``, looked for
    at most ``depth`` levels below the folder being typed, in at most ``budget`` folders."""
    base = os.path.dirname(incomplete)
    found: list[str] = []
    for visited, path in enumerate(_walk(base, incomplete, depth), start=1):
        if visited > budget:
            break
        if path.startswith(incomplete) and os.path.isfile(os.path.join(path, RUN_JSON)):
            found.append(path)
    return sorted(found)


def _walk(base: str, incomplete: str, depth: int) -> Iterator[str]:
    """Folders below ``base`` (breadth first) whose path could lead to ``incomplete``."""
    level = [base]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                entries = list(os.scandir(folder or "."))
            except OSError:
                continue
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith(".") or entry.name in _SKIPPED_FOLDERS:
                    continue
                path = os.path.join(folder, entry.name) if folder else entry.name
                if not (path.startswith(incomplete) or incomplete.startswith(path)):
                    continue
                try:
                    if not entry.is_dir():
                        continue
                except OSError:
                    continue
                yield path
                below.append(path)
        level = below


def complete_run_folders(ctx: click.Context, param: click.Parameter,
                         incomplete: str) -> list[CompletionItem]:
    """Run folders (holding ``run.json``) under the folder being typed."""
    return _safe(lambda: [CompletionItem(path) for path in run_folders(incomplete)])


def _safe(complete: Any) -> list[CompletionItem]:
    """Run a completer; any failure offers nothing rather than a traceback in the shell."""
    try:
        return complete()
    except Exception:
        return []


def completion_script(cli: click.Command, shell: str, prog_name: str = "mnistkit") -> str:
    """Click's completion script of ``cli`` for ``shell``."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"choose one of {', '.join(SHELLS)}", param_hint="SHELL")
    return cls(cli, {}, prog_name, COMPLETE_VAR).source()


@click.command("completion", short_help="Print the shell completion script (bash, zsh, fish).")
@click.argument("shell", metavar="SHELL", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the script that makes SHELL complete mnistkit's commands, options,
    model/optimizer/dataset/augmentation/recipe names, -m/-o/-a option names and run
    folders.

    \b
    Example (install it once; open a new shell after):
      echo 'eval "$(mnistkit completion bash)"' >> ~/.bashrc
      echo 'eval "$(mnistkit completion zsh)"' >> ~/.zshrc
      mnistkit completion fish > ~/.config/fish/completions/mnistkit.fish
    """
    click.echo(completion_script(ctx.find_root().command, shell))


COMMANDS = [completion_command]

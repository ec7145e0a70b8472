"""The ``mnistkit`` group: built-in and plugin commands, user errors as one line.

Each module in :data:`COMMAND_MODULES` exposes ``COMMANDS``, a list of Click commands.
Modules import only click at load time; numpy-heavy work, rich tables and
matplotlib are imported inside the command functions so ``mnistkit --help`` is fast.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from mnistkit import __version__
from mnistkit.cli import EXIT_INTERRUPTED, INTERRUPTED_MESSAGE
from mnistkit.cli.common import error_message
from mnistkit.errors import MnistkitError
from mnistkit.plugins import Plugins, get_plugins

COMMAND_MODULES = ("data_cmds", "listing", "train_cmds", "predict_cmd", "sweep_cmds",
                   "runs_cmds", "gradcheck", "visualise", "export_cmd", "completion",
                   "serve_cmd")


class MnistkitGroup(click.Group):
    """A group that turns :class:`MnistkitError` into one line on stderr and an exit code,
    and Ctrl-C (while parsing or running) into ``Interrupted.`` and exit code 130."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:  # click itself would print "Aborted!" and exit 1
            raise _interrupted() from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistkitError as exc:
            error = click.ClickException(error_message(exc))  # settings named as flags
            error.exit_code = exc.exit_code
            raise error from None
        except KeyboardInterrupt:  # Ctrl-C: the shell convention 128 + SIGINT, no traceback
            raise _interrupted() from None


    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:  # perhaps the command of a plugin that failed
            problems = getattr(self, "plugin_problems", [])
            if problems and "No such command" in exc.message:
                failed = "; ".join(f"plugin {p.plugin!r} from {p.distribution}: {p.error}"
                                   for p in problems)
                exc.message += (f" A plugin that failed may be the one that adds it ({failed});"
                                " see 'mnistkit plugins'.")
            raise


def _interrupted() -> click.exceptions.Exit:
    click.echo(INTERRUPTED_MESSAGE, err=True)
    return click.exceptions.Exit(EXIT_INTERRUPTED)


HELP = """Train and study small neural networks on MNIST with nothing but NumPy.

\b
Start here:
  mnistkit inspect                    what the data is
  mnistkit train --model twolayer     train the two-layer network
  mnistkit test runs/<run>            evaluate a trained run
"""


def _add_builtin_commands(group: click.Group) -> None:
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"mnistkit.cli.{module_name}")
        for command in module.COMMANDS:
            group.add_command(command)


def build_cli(plugins: Plugins | None = None) -> click.Group:
    """A fresh ``mnistkit`` group with built-in and plugin commands.

    ``plugins`` defaults to the process-wide ones (built-ins plus entry points);
    tests pass their own. Plugin problems are printed once per invocation.
    """
    if plugins is None:
        plugins = get_plugins()

    @click.group(cls=MnistkitGroup, help=HELP,
                 context_settings={"help_option_names": ["-h", "--help"]},
                 epilog="Run 'mnistkit COMMAND --help' for a command's options and an example.")
    @click.version_option(__version__, "-V", "--version", prog_name="mnistkit")
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        ctx.obj = plugins
        for problem in plugins.problems:
            click.echo(problem.message(), err=True)

    _add_builtin_commands(cli)
    plugins.call_register_commands(cli)
    cli.plugin_problems = plugins.problems  # type: ignore[attr-defined]
    return cli


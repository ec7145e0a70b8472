"""The ``mnistkit`` command line: thin Click commands over the library.

Each module in :data:`COMMAND_MODULES` exposes ``COMMANDS``, a list of Click commands.
Modules import only click at load time; numpy-heavy work, rich tables and
matplotlib are imported inside the command functions so ``mnistkit --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from mnistkit import __version__
from mnistkit.errors import MnistkitError
from mnistkit.plugins import Plugins, get_plugins

EXIT_INTERRUPTED = 130
COMMAND_MODULES = ("data_cmds", "listing", "train_cmds", "predict_cmd", "sweep_cmds",
                   "runs_cmds", "gradcheck", "visualise")


class MnistkitGroup(click.Group):
    """A group that turns :class:`MnistkitError` into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistkitError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None
        except KeyboardInterrupt:  # Ctrl-C: the shell convention 128 + SIGINT, no traceback
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


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
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    build_cli().main(args=argv if argv is not None else sys.argv[1:], prog_name="mnistkit")

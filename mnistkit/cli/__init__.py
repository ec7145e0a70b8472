"""The ``mnistkit`` command line: thin Click commands over the library.

This package module imports nothing but the standard library, so :func:`main` is
running (and catching Ctrl-C) before click, pluggy, NumPy or any plugin is imported.
The group itself lives in :mod:`mnistkit.cli.app`; ``build_cli`` and ``MnistkitGroup``
are re-exported here on first use.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130
INTERRUPTED_MESSAGE = "Interrupted."
_FROM_APP = ("build_cli", "MnistkitGroup", "COMMAND_MODULES", "HELP")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run ``mnistkit ARGS``; Ctrl-C at any moment (while
    importing, loading plugins, parsing or running) ends with ``Interrupted.`` and 130.

    Once the command has finished, SIGINT is ignored: a late Ctrl-C cannot turn a
    finished command into a traceback while the interpreter shuts down.
    """
    try:
        import signal  # not at the top: even this import can be interrupted

        try:
            from mnistkit.cli.app import build_cli

            build_cli().main(args=argv if argv is not None else sys.argv[1:],
                             prog_name="mnistkit")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        exit_interrupted()


def exit_interrupted() -> None:
    """Print ``Interrupted.`` on stderr and exit with 130 (128 + SIGINT)."""
    try:
        sys.stderr.write(f"{INTERRUPTED_MESSAGE}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed or a broken pipe: the exit code still says it
        pass
    sys.exit(EXIT_INTERRUPTED)


def __getattr__(name: str) -> object:
    if name in _FROM_APP:
        from mnistkit.cli import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

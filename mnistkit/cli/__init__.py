"""The ``mnistkit`` command line: thin Click commands over the library.

This package module imports nothing but the standard library (and
:mod:`mnistkit.errors`, which imports nothing else), so :func:`main` is running (and
catching Ctrl-C) before click, pluggy, NumPy or any plugin is imported. The exit codes
are :mod:`mnistkit.errors`' (``EXIT_INTERRUPTED`` is re-exported here).
The group itself lives in :mod:`mnistkit.cli.app`; ``build_cli`` and ``MnistkitGroup``
are re-exported here on first use.
"""

from __future__ import annotations

import sys
from types import ModuleType  # already imported by Python's start-up: costs nothing

from mnistkit.errors import EXIT_INTERRUPTED

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

        _reraise_lost_interrupts(signal)
        try:
            from mnistkit.cli.app import build_cli

            build_cli().main(args=argv if argv is not None else sys.argv[1:],
                             prog_name="mnistkit")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        exit_interrupted()


def _reraise_lost_interrupts(signal: ModuleType) -> None:
    """A Ctrl-C landing in code that cannot raise (a weakref callback inside the import
    system, a ``__del__``) would be printed as "Exception ignored ... KeyboardInterrupt"
    and lost: signal it again, so it is raised where :func:`main` catches it."""
    import _thread
    import os

    previous = sys.unraisablehook
    main_thread, process = _thread.get_ident(), os.getpid()

    def again() -> None:  # a real SIGINT to the main thread also wakes a sleep or a wait
        if hasattr(signal, "pthread_kill") and os.getpid() == process:  # not a forked child
            signal.pthread_kill(main_thread, signal.SIGINT)
        else:
            _thread.interrupt_main(signal.SIGINT)

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type,
                                                          KeyboardInterrupt):
            # From another thread, which runs once this one lets go of the GIL, i.e. after
            # the hook: a signal sent from here would be handled, and lost, in the hook.
            _thread.start_new_thread(again, ())
            return
        previous(unraisable)

    sys.unraisablehook = hook


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

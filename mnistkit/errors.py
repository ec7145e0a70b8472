"""Exception types and exit codes. Every error a user can cause derives from
:class:`MnistkitError`.

The CLI prints such errors as one line on stderr and exits with the error's
:attr:`~MnistkitError.exit_code`, without a traceback; any other exception is a bug in
mnistkit or in a plugin.

A message may name a setting (``val_size``, ``epochs``...) marked with :func:`setting`:
``str(error)`` shows the setting's name, and a front end shows its own spelling with
:meth:`MnistkitError.worded` (the CLI its flags, ``--val-size``), so the library never
names a command-line flag.
"""

from __future__ import annotations

from collections.abc import Callable

#: The exit codes of the ``mnistkit`` command, all of them: an error the user can fix, a
#: bad option or usage (click's own usage errors exit 2 too), Ctrl-C (128 + SIGINT).
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_MARK = "\0"  # never in a path, a name or a number: marks a setting's name in a message


def setting(name: str) -> str:
    """``name`` marked as a setting in an error message: shown as ``name`` by ``str()``,
    and as the front end spells it by :meth:`MnistkitError.worded`."""
    return f"{_MARK}{name}{_MARK}"


class MnistkitError(Exception):
    """An error caused by the user's input or environment, explained in its message."""

    exit_code = EXIT_FAILURE

    def __init__(self, *args: object) -> None:
        message = args[0] if args else ""
        self.template = message if isinstance(message, str) else str(message)
        if isinstance(message, str) and _MARK in message:
            args = (_spelled(message, str), *args[1:])
        super().__init__(*args)

    def worded(self, spell: Callable[[str], str]) -> str:
        """The message with each marked setting spelled ``spell(name)``."""
        template = getattr(self, "template", "")  # a subclass may skip this __init__
        if _MARK not in template:
            return str(self)
        return _spelled(template, spell)


def _spelled(template: str, spell: Callable[[str], str]) -> str:
    """``template`` with each marked setting (every other part between marks) spelled."""
    parts = template.split(_MARK)
    return "".join(spell(part) if i % 2 else part for i, part in enumerate(parts))


class DataError(MnistkitError):
    """A data file or folder is missing, malformed or fails its checksum."""


class OptionsError(MnistkitError):
    """A model, optimizer or dataset option is unknown or has a bad value."""

    exit_code = EXIT_USAGE


class MemoryLimitError(OptionsError):
    """A size the user asked for (model options, steps per epoch) needs more memory than
    the machine has available; refused before allocating."""


class UnknownNameError(MnistkitError):
    """A model, optimizer or dataset name that no installed plugin registers."""

    exit_code = EXIT_USAGE


class PluginError(MnistkitError):
    """A plugin is broken: it failed to load, or registered a name another plugin has."""


class RunError(MnistkitError):
    """A run folder or checkpoint is missing, invalid or was tampered with."""


class TrainingError(MnistkitError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class DownloadError(DataError):
    """A dataset could not be downloaded or failed its checksum."""


class ExportError(MnistkitError):
    """A run cannot be exported (the model does not support it, or a package is missing)."""

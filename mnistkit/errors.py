"""Exception types. Every error a user can cause derives from :class:`MnistkitError`.

The CLI prints such errors as one line on stderr and exits non-zero, without a
traceback; any other exception is a bug in mnistkit or in a plugin.
"""


class MnistkitError(Exception):
    """An error caused by the user's input or environment, explained in its message."""

    exit_code = 1


class DataError(MnistkitError):
    """A data file or folder is missing, malformed or fails its checksum."""


class OptionsError(MnistkitError):
    """A model, optimizer or dataset option is unknown or has a bad value."""

    exit_code = 2


class MemoryLimitError(OptionsError):
    """A size the user asked for (model options, steps per epoch) needs more memory than
    the machine has available; refused before allocating."""


class UnknownNameError(MnistkitError):
    """A model, optimizer or dataset name that no installed plugin registers."""

    exit_code = 2


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

"""Load a registered dataset by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistkit.data.dataset import Dataset
from mnistkit.errors import DataError
from mnistkit.registry import Registry


def load_dataset(name: str = "mnist", data_dir: str | Path | None = None,
                 options: dict[str, Any] | None = None,
                 registry: Registry | None = None) -> Dataset:
    """Load dataset ``name`` from ``data_dir`` (``None``: its default location).

    ``registry`` defaults to :func:`mnistkit.plugins.current_registry`: inside a
    mnistkit command the registry of the plugins the command line was built with, else
    the installed plugins' one. A plugin's loader that fails with anything but a
    :class:`~mnistkit.errors.MnistkitError` is one :class:`~mnistkit.errors.PluginError`
    line naming it.
    """
    from mnistkit.contracts import build_dataset, make_options
    from mnistkit.plugins import current_registry

    entry = (registry or current_registry()).get("dataset", name)
    opts = make_options(entry, options)
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise DataError(f"data folder {str(folder)!r} does not exist or is not a folder")
    return build_dataset(entry, opts, folder)

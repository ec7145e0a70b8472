"""Load a registered dataset by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistkit.data.dataset import Dataset
from mnistkit.errors import DataError, MnistkitError, PluginError
from mnistkit.plugins import get_registry
from mnistkit.registry import Registry


def load_dataset(name: str = "mnist", data_dir: str | Path | None = None,
                 options: dict[str, Any] | None = None,
                 registry: Registry | None = None) -> Dataset:
    """Load dataset ``name`` from ``data_dir`` (``None``: its default location).

    ``registry`` defaults to the installed plugins' one.
    """
    entry = (registry or get_registry()).get("dataset", name)
    opts = entry.make_options(options)
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise DataError(f"data folder {str(folder)!r} does not exist or is not a folder")
    try:
        dataset = entry.factory(opts, folder)
    except MnistkitError:
        raise
    except Exception as exc:  # a plugin's bug: name it in one line
        text = (str(exc).splitlines() or [""])[0]
        raise PluginError(f"dataset {name!r} from plugin {entry.plugin!r} failed to load: "
                          f"{type(exc).__name__}: {text}") from exc
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset plugin {entry.plugin!r} returned {type(dataset).__name__}, "
                        "not a mnistkit.data.Dataset")
    return dataset

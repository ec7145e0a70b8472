"""python-mnist as a second EMNIST reader (``-d loader=python-mnist``).

python-mnist 0.7 (``pip install python-mnist``) knows EMNIST's layout:
``MNIST(path).select_emnist(subset)`` picks the ``emnist-<subset>-*`` files and turns the
images upright while reading them. Its traps, handled here:

- it is imported only when this loader is chosen, so the plugin works without it;
- its import name is ``mnist``, the same as that of the unrelated PyPI package ``mnist``
  (``mnist.train_images()``...). Whichever was installed last owns the folder; when the
  module found is not python-mnist's, the error says which distribution it comes from and
  how to repair it;
- ``select_emnist`` switches to ``.gz`` files; plain files are read by switching back;
- it validates little (a magic number), so its arrays are checked after reading, and its
  exceptions become one-line :class:`~mnistkit.errors.DataError` messages naming the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.errors import DataError

INSTALL = "pip install 'python-mnist==0.7'"


def import_python_mnist() -> Any:
    """The ``mnist`` module of python-mnist; DataError when missing or shadowed."""
    try:
        import mnist
    except ImportError:
        raise DataError(f"loader=python-mnist needs the python-mnist package (import name "
                        f"'mnist'): {INSTALL}, or use the default loader=mnistkit") from None
    if not hasattr(getattr(mnist, "MNIST", None), "select_emnist"):
        raise DataError(clash_message(mnist))
    return mnist


def clash_message(module: Any) -> str:
    """Why the ``mnist`` module found is not python-mnist's, and how to fix it."""
    where = getattr(module, "__file__", None) or "an unknown place"
    owners = _distributions_of("mnist")
    others = [d for d in owners if d.lower().replace("_", "-") != "python-mnist"]
    owner = f" (installed by {', '.join(others)})" if others else ""
    return (f"the module 'mnist' imported from {where}{owner} is not python-mnist's (it has no "
            f"MNIST.select_emnist): python-mnist and the unrelated PyPI package 'mnist' both "
            f"install a module named 'mnist'. Fix: pip uninstall -y mnist python-mnist && "
            f"{INSTALL}; or use the default loader=mnistkit")


def _distributions_of(module_name: str) -> list[str]:
    try:
        return sorted(set(metadata.packages_distributions().get(module_name, [])))
    except Exception:  # metadata of a broken environment: just say less
        return []


def read_emnist(paths: dict[str, Path], subset: str,
                names: Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(images, labels)]`` for the (images, labels) canonical ``names`` of each split,
    read by python-mnist from ``paths`` (canonical name -> file): uint8 ``(N, rows, cols)``
    upright images and uint8 labels as stored."""
    mnist = import_python_mnist()
    files = [paths[name] for pair in names for name in pair]
    folders = {f.parent for f in files}
    gz = {f.name.endswith(".gz") for f in files}
    if len(folders) != 1 or len(gz) != 1:
        raise DataError(f"loader=python-mnist needs the four files in one folder, all plain or "
                        f"all .gz; found {', '.join(str(f) for f in files)}")
    reader = mnist.MNIST(str(folders.pop()))
    reader.select_emnist(subset)  # file names of the subset, upright images, .gz
    reader.gz = gz.pop()
    result = []
    for images_name, labels_name in names:
        images_file, labels_file = paths[images_name], paths[labels_name]
        try:  # python-mnist adds the .gz itself
            images, labels = reader.load(*(str(f)[:-3] if reader.gz else str(f)
                                           for f in (images_file, labels_file)))
        except (OSError, EOFError, ValueError, struct.error, zlib.error) as exc:
            text = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise DataError(f"{images_file} or {labels_file}: python-mnist could not read it "
                            f"({text}); loader=mnistkit names the problem exactly") from None
        result.append((_as_images(images, images_file), np.asarray(labels, np.uint8)))
    return result


def _as_images(images: list, path: Path) -> np.ndarray:
    """python-mnist's lists of flat upright images as uint8 ``(N, side, side)``."""
    count = len(images)
    side = int(round(np.sqrt(len(images[0])))) if count else 28
    try:
        array = np.array(images, dtype=np.uint8)
    except ValueError:
        array = None
    if array is None or array.shape != (count, side * side):
        raise DataError(f"{path}: python-mnist read images of unequal sizes (a truncated "
                        f"file?); loader=mnistkit names the problem exactly")
    return array.reshape(count, side, side)

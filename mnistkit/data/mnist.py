"""MNIST and its look-alikes: four IDX files in a folder, found under the usual names.

:func:`load_idx_folder` is the reusable part (Fashion-MNIST, KMNIST and friends use the
same four file names); :func:`load_mnist` is the built-in ``mnist`` dataset, bundled
with mnistkit in ``mnistkit/data/files/`` or read from any copy with ``--data-dir``.

Accepted layouts (files plain or ``.gz``; plain is preferred when both exist)::

    DIR/train-images-idx3-ubyte[.gz]      python-mnist, the original site
    DIR/train-images.idx3-ubyte[.gz]      what some unzip tools produce
    DIR/train-images-idx3-ubyte/train-images-idx3-ubyte   (a Kaggle download)
    DIR/MNIST/raw/train-images-idx3-ubyte[.gz]            torchvision's root folder
    DIR/raw/...                                           torchvision's raw folder
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mnistkit.data.cache import IdxRead, fresh_reads, read_idx_cached
from mnistkit.data.dataset import DIGIT_NAMES, Dataset, Split
from mnistkit.data.idx import check_pair
from mnistkit.errors import DataError
from mnistkit.files import require_regular_file

#: The four files of an MNIST-style dataset, by split: (images, labels).
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_NAMES: tuple[str, ...] = tuple(name for pair in SPLIT_FILES.values() for name in pair)

#: MD5 of the uncompressed MNIST files, as published with the data set.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: SHA-256 of the same uncompressed files (header included), computed by mnistkit from the
#: bundled copy after checking its MD5: a cached array whose content hashes to this is
#: the published file (SHA-256 is also faster here than MD5: 0.04 s against 0.07 s).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

BUNDLED_DIR = Path(__file__).resolve().parent / "files"


def accepted_names(name: str) -> tuple[str, ...]:
    """File names accepted for the canonical ``name``, in order of preference."""
    dotted = name.replace("-idx", ".idx", 1)
    return (name, dotted, f"{name}.gz", f"{dotted}.gz")


def _find_in(location: Path, name: str) -> Path | None:
    for candidate_name in accepted_names(name):
        candidate = location / candidate_name
        if candidate.is_dir():  # Kaggle: a folder holding a same-named file
            candidate = candidate / candidate_name
        if _is_regular_file(candidate):
            return candidate
    return None


def _is_regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file; ``False`` when absent, :class:`DataError` when
    it is a FIFO, socket or device (reading it would block or never end)."""
    try:
        require_regular_file(path, "an IDX file")
    except OSError:
        return False
    return True


def find_idx_files(folder: str | Path, torchvision_name: str | None = None) -> dict[str, Path]:
    """Locate the four files in ``folder`` (or its torchvision ``NAME/raw`` or ``raw``
    subfolder); canonical name -> path. A partial set raises :class:`DataError` saying
    what is missing and which names are accepted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {str(folder)!r} does not exist or is not a folder")
    subfolders = ([Path(torchvision_name) / "raw"] if torchvision_name else []) + [Path("raw")]
    locations = [folder] + [folder / sub for sub in subfolders if (folder / sub).is_dir()]
    best: dict[str, Path] = {}
    where = folder
    for location in locations:
        found = {n: p for n in FILE_NAMES if (p := _find_in(location, n)) is not None}
        if len(found) == len(FILE_NAMES):
            return found
        if len(found) > len(best):
            best, where = found, location
    missing = [n for n in FILE_NAMES if n not in best]
    looked = ", ".join(f"{s}/" for s in subfolders)
    have = f"; found {', '.join(p.name for p in best.values())}" if best else ""
    raise DataError(
        f"{where}: missing {', '.join(missing)}{have}. Each file may be plain or .gz, and "
        f"spelled like train-images-idx3-ubyte or train-images.idx3-ubyte; also looked in "
        f"{looked}")


def load_idx_folder(folder: str | Path, name: str, class_names: tuple[str, ...],
                    expected_md5: dict[str, str] | None = None, *,
                    torchvision_name: str | None = None, source: str | None = None,
                    use_cache: bool | None = None,
                    expected_sha256: dict[str, str] | None = None) -> Dataset:
    """Load an MNIST-style dataset from the four IDX files in ``folder``.

    ``name`` and ``class_names`` describe the dataset; ``expected_md5`` (canonical file
    name -> MD5 of the uncompressed file) are its published sums, if any: the result is
    ``verified`` when every one matches, checked in this process (arrays served from the
    cache are hashed again; see :mod:`mnistkit.data.cache`). ``expected_sha256`` (same
    keys) are SHA-256 sums of the same content that make that check of cached arrays
    faster. ``torchvision_name`` (``"MNIST"``, ``"FashionMNIST"``...) also accepts
    torchvision's ``folder/NAME/raw`` layout. ``use_cache`` None follows
    ``MNISTKIT_NO_CACHE``. ``files`` of the result holds each MD5 established now
    (``""`` for a file without a published sum that was served from the cache).
    """
    paths = find_idx_files(folder, torchvision_name)
    files: dict[str, str] = {}
    splits: dict[str, Split] = {}
    md5s, shas = dict(expected_md5 or {}), dict(expected_sha256 or {})

    def read(file_name: str, ndim: int) -> IdxRead:
        return read_idx_cached(paths[file_name], ndim=ndim, dtype=np.uint8, use_cache=use_cache,
                               expected_md5=md5s.get(file_name),
                               known_sha256=shas.get(file_name))

    for split_name, (images_name, labels_name) in SPLIT_FILES.items():
        images = read(images_name, 3)
        labels = read(labels_name, 1)
        check_pair(images.array, labels.array, paths[images_name], paths[labels_name],
                   len(class_names))
        files[images_name], files[labels_name] = images.md5, labels.md5
        splits[split_name] = Split(images.array, labels.array)
    train_images, test_images = (paths[SPLIT_FILES[s][0]] for s in ("train", "test"))
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        sizes = ["x".join(map(str, splits[s].images.shape[1:])) for s in ("train", "test")]
        raise DataError(f"{train_images} holds {sizes[0]} images but {test_images} holds "
                        f"{sizes[1]}: both splits must have the same image size")
    expected = md5s
    verified = bool(expected) and all(files.get(k) == v for k, v in expected.items())
    return Dataset(name=name, train=splits["train"], test=splits["test"],
                   class_names=tuple(class_names), source=source or str(Path(folder)),
                   files=files, verified=verified, expected_md5=expected)


def load_mnist(data_dir: Path | None = None, *, use_cache: bool | None = None) -> Dataset:
    """MNIST from ``data_dir``, or the copy bundled with mnistkit when ``None``.

    Every load checks the files against the published MD5 sums (see
    :func:`load_idx_folder`). A copy given as ``data_dir`` that differs is loaded
    (``verified`` false; ``inspect`` shows the mismatch), but the bundled copy must be
    the published one: a mismatch there raises :class:`DataError`.
    """
    folder = BUNDLED_DIR if data_dir is None else Path(data_dir)
    source = f"bundled ({BUNDLED_DIR})" if data_dir is None else str(folder)
    dataset = load_idx_folder(folder, "mnist", DIGIT_NAMES, MNIST_MD5, torchvision_name="MNIST",
                              source=source, use_cache=use_cache, expected_sha256=MNIST_SHA256)
    if data_dir is None and not dataset.verified:
        bad = [f"{n} has MD5 {dataset.files.get(n) or '?'}, published {m}"
               for n, m in MNIST_MD5.items() if dataset.files.get(n) != m]
        raise DataError(f"the bundled MNIST in {BUNDLED_DIR} is not the published data "
                        f"({'; '.join(bad)}): the installation is damaged; reinstall mnistkit")
    return dataset


@dataclasses.dataclass(frozen=True)
class FileCheck:
    """One file's checksum: its MD5 (of the uncompressed content) and the published one."""

    name: str
    md5: str
    expected: str | None

    @property
    def status(self) -> str:
        """``ok``, ``mismatch``, ``unknown`` (no published sum) or ``not checked`` (a
        published sum, but no MD5 established in this process)."""
        if not self.expected:
            return "unknown"
        if not self.md5:
            return "not checked"
        return "ok" if self.md5 == self.expected else "mismatch"


def checksum_report(dataset: Dataset) -> list[FileCheck]:
    """Each file of ``dataset`` with its MD5 (as established when it was loaded, in this
    process) and its published sum."""
    names = list(dataset.files) + [n for n in dataset.expected_md5 if n not in dataset.files]
    return [FileCheck(n, dataset.files.get(n, ""), dataset.expected_md5.get(n)) for n in names]


def verify_mnist(data_dir: Path | None = None) -> list[FileCheck]:
    """Re-read MNIST's files from ``data_dir`` (``None``: the bundled copy), bypassing the
    cache, and check each file's MD5 against the published sums."""
    with fresh_reads():
        return checksum_report(load_mnist(data_dir))

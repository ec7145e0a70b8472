"""The six EMNIST datasets: file names, class names, and two loaders that agree.

EMNIST (Cohen et al., 2017) converts NIST Special Database 19 to MNIST's format: 28x28
uint8 images in IDX files, one pair per split, named
``emnist-<dataset>-<train|test>-<images-idx3|labels-idx1>-ubyte`` (``.gz`` in the
official ``gzip.zip``). Two traps:

- *Orientation*: the images are stored transposed (each is its upright picture mirrored
  along the diagonal); :func:`upright` transposes them back.
- *Labels of ``letters``* are 1..26 (0 is unused): they are shifted to 0..25 here, so
  the classes are ``a``..``z`` (upper and lower case merged) and a model has 26 outputs.

Loading (``loader`` option): ``mnistkit`` (default) reads the files with mnistkit's
validating IDX reader and its cache; ``python-mnist`` reads them with python-mnist's
``MNIST.select_emnist`` (a pure-Python reader, slow and about 8 bytes of memory per
pixel: meant for cross-checking, see :mod:`mnistkit_emnist.python_mnist`). Both give the
same arrays.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mnistkit.data.cache import read_idx_cached
from mnistkit.data.dataset import DIGIT_NAMES, Dataset, Split
from mnistkit.data.idx import check_pair
from mnistkit.data.mnist import accepted_names
from mnistkit.errors import DataError
from mnistkit.files import cache_dir

HOMEPAGE = "https://www.nist.gov/itl/products-and-services/emnist-dataset"
SPLITS = ("train", "test")
LOADERS = ("mnistkit", "python-mnist")
_UPPER = tuple(string.ascii_uppercase)
#: balanced and bymerge merge the 15 lower-case letters that look like their capitals.
_MERGED_LOWER = tuple("abdefghnqrt")


@dataclasses.dataclass
class EmnistOptions:
    """Options of the ``emnist-*`` datasets (set with ``-d name=value``)."""

    loader: Literal["mnistkit", "python-mnist"] = dataclasses.field(
        default="mnistkit", metadata={"help": "file reader: mnistkit's validating IDX reader, "
                                              "or python-mnist (slow; for cross-checks)"})


@dataclasses.dataclass(frozen=True)
class EmnistSpec:
    """One EMNIST dataset: its file prefix, classes and published sizes."""

    name: str
    subset: str
    class_names: tuple[str, ...]
    sizes: tuple[int, int]
    label_offset: int = 0

    @property
    def help(self) -> str:
        train, test = self.sizes
        return (f"EMNIST {self.subset}: {len(self.class_names)} classes, {train:,}/{test:,}, "
                f"from --data-dir")

    def file_names(self, split: str) -> tuple[str, str]:
        """Canonical (images, labels) file names of ``split``, without ``.gz``."""
        stem = f"emnist-{self.subset}-{split}"
        return f"{stem}-images-idx3-ubyte", f"{stem}-labels-idx1-ubyte"


def _spec(subset: str, class_names: tuple[str, ...], sizes: tuple[int, int],
          label_offset: int = 0) -> EmnistSpec:
    return EmnistSpec(f"emnist-{subset}", subset, class_names, sizes, label_offset)


#: The datasets this plugin registers, by name (sizes as published with EMNIST).
SPECS: dict[str, EmnistSpec] = {spec.name: spec for spec in (
    _spec("digits", DIGIT_NAMES, (240_000, 40_000)),
    _spec("letters", tuple(string.ascii_lowercase), (124_800, 20_800), label_offset=1),
    _spec("balanced", DIGIT_NAMES + _UPPER + _MERGED_LOWER, (112_800, 18_800)),
    _spec("byclass", DIGIT_NAMES + _UPPER + tuple(string.ascii_lowercase),
          (697_932, 116_323)),
    _spec("bymerge", DIGIT_NAMES + _UPPER + _MERGED_LOWER, (697_932, 116_323)),
    _spec("mnist", DIGIT_NAMES, (60_000, 10_000)),
)}


def default_folder() -> Path:
    """Where the files are looked for without ``--data-dir``: ``<mnistkit cache>/emnist``."""
    return cache_dir() / "emnist"


def find_files(folder: Path, spec: EmnistSpec) -> dict[str, Path]:
    """The four files of ``spec`` in ``folder`` or its ``gzip/`` subfolder (the official
    archive's), plain preferred over ``.gz``; canonical name -> path. Missing files raise
    :class:`DataError` with the instructions to get them."""
    wanted = [name for split in SPLITS for name in spec.file_names(split)]
    best: dict[str, Path] = {}
    for location in (folder, folder / "gzip"):
        found = {}
        for name in wanted:
            for candidate in accepted_names(name):
                if (location / candidate).is_file():
                    found[name] = location / candidate
                    break
        if len(found) == len(wanted):
            return found
        best = found if len(found) > len(best) else best
    missing = [name for name in wanted if name not in best]
    raise DataError(
        f"{folder}: missing {', '.join(f'{m}.gz' for m in missing)} (plain or .gz, here or in "
        f"gzip/). EMNIST is not downloaded by mnistkit: get gzip.zip (561 MB, all six EMNIST "
        f"datasets) from {HOMEPAGE}, unzip it and pass --data-dir with the folder of the "
        f"emnist-*-ubyte.gz files (or put them in {default_folder()})")


def upright(images: np.ndarray) -> np.ndarray:
    """EMNIST images ``(N, 28, 28)`` as stored (transposed) turned upright: each image
    transposed, in place when the array is writable (a copy of the whole set would double
    the memory of byclass's 550 MB), else into a new array."""
    if not images.flags.writeable or images.shape[1] != images.shape[2]:
        return np.ascontiguousarray(images.transpose(0, 2, 1))
    for start in range(0, len(images), 8192):
        block = images[start:start + 8192]
        block[...] = block.transpose(0, 2, 1).copy()
    return images


def _fix_labels(labels: np.ndarray, spec: EmnistSpec, path: Path) -> np.ndarray:
    """Labels shifted to start at 0 (``letters``: 1..26 -> 0..25); 0 there is an error."""
    if not spec.label_offset:
        return labels
    if labels.size and int(labels.min()) < spec.label_offset:
        bad = int(np.argmax(labels < spec.label_offset))
        raise DataError(f"{path}: label {int(labels[bad])} at index {bad}; {spec.name} labels "
                        f"are {spec.label_offset}..{len(spec.class_names)}")
    return (labels - np.uint8(spec.label_offset)).astype(np.uint8)


def _read_mnistkit(paths: dict[str, Path], spec: EmnistSpec
                   ) -> tuple[dict[str, Split], dict[str, str]]:
    """Both splits through mnistkit's validating reader (and cache); and the MD5s of the
    files read from their source (a cached array has none: EMNIST publishes no sums)."""
    splits, md5s = {}, {}
    n_labels = len(spec.class_names) + spec.label_offset
    for split in SPLITS:
        images_name, labels_name = spec.file_names(split)
        images = read_idx_cached(paths[images_name], ndim=3, dtype=np.uint8)
        labels = read_idx_cached(paths[labels_name], ndim=1, dtype=np.uint8)
        check_pair(images.array, labels.array, paths[images_name], paths[labels_name], n_labels)
        # "" when served from the cache with no published sum to prove it by: not known
        md5s.update({n: r.md5 for n, r in ((images_name, images), (labels_name, labels))
                     if r.md5})
        splits[split] = Split(upright(images.array),
                              _fix_labels(labels.array, spec, paths[labels_name]))
    return splits, md5s


def _read_python_mnist(paths: dict[str, Path], spec: EmnistSpec) -> dict[str, Split]:
    from mnistkit_emnist.python_mnist import read_emnist

    raw = read_emnist(paths, spec.subset, [spec.file_names(split) for split in SPLITS])
    splits = {}
    for split, (images, labels) in zip(SPLITS, raw, strict=True):
        images_name, labels_name = spec.file_names(split)
        n_labels = len(spec.class_names) + spec.label_offset
        check_pair(images, labels, paths[images_name], paths[labels_name], n_labels)
        splits[split] = Split(images, _fix_labels(labels, spec, paths[labels_name]))
    return splits


def check_mapping(folder: Path, spec: EmnistSpec) -> None:
    """Compare the class names with ``emnist-<subset>-mapping.txt`` when the folder has it
    (lines ``label code`` or, for letters, ``label upper lower``: the last code is the
    name used here); a difference raises :class:`DataError`."""
    for location in (folder, folder / "gzip"):
        path = location / f"emnist-{spec.subset}-mapping.txt"
        if path.is_file():
            break
    else:
        return
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        mapping = {int(row[0]) - spec.label_offset: chr(int(row[-1])) for row in rows}
    except (OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: not an EMNIST mapping file ({exc})") from None
    expected = dict(enumerate(spec.class_names))
    if mapping != expected:
        wrong = sorted(k for k in expected.keys() | mapping.keys()
                       if mapping.get(k) != expected.get(k))
        raise DataError(f"{path}: label {wrong[0] + spec.label_offset} is "
                        f"{mapping.get(wrong[0])!r} there but {expected.get(wrong[0])!r} in "
                        f"mnistkit-emnist's class names (a different EMNIST release?)")


def load(name: str, data_dir: Path | None = None, loader: str = "mnistkit") -> Dataset:
    """Load EMNIST dataset ``name`` from ``data_dir`` (``None``: :func:`default_folder`)
    with the ``mnistkit`` or ``python-mnist`` reader."""
    spec = SPECS[name]
    if loader not in LOADERS:
        raise DataError(f"loader must be one of {', '.join(LOADERS)}; got {loader!r}")
    folder = Path(data_dir) if data_dir is not None else default_folder()
    paths = find_files(folder, spec)
    check_mapping(folder, spec)
    if loader == "mnistkit":
        splits, md5s = _read_mnistkit(paths, spec)
        source = str(folder)
    else:
        splits, md5s = _read_python_mnist(paths, spec), {}
        source = f"{folder} (read by python-mnist)"
    return Dataset(name=spec.name, train=splits["train"], test=splits["test"],
                   class_names=spec.class_names, source=source, files=md5s)


def loader(name: str) -> Callable[[Any, Path | None], Dataset]:
    """The ``factory(options, data_dir)`` registered for dataset ``name``."""

    def factory(options: Any, data_dir: Path | None) -> Dataset:
        return load(name, data_dir, getattr(options, "loader", "mnistkit"))

    factory.__name__ = f"load_{name.replace('-', '_')}"
    factory.__doc__ = f"Load {name} (see mnistkit_emnist.datasets.load)."
    return factory

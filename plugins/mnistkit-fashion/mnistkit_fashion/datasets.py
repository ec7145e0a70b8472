"""Fashion-MNIST and Kuzushiji-MNIST: published files, checksums, mirrors and loading.

Each dataset is four gzipped IDX files with MNIST's file names. ``SPECS`` declares, per
dataset, the files with the MD5 sums their authors publish for the ``.gz`` files, the
mirrors tried in order, and the class names. Loading:

- with ``--data-dir DIR``: the files are read from ``DIR`` (plain or ``.gz``, any layout
  mnistkit's MNIST loader accepts); nothing is downloaded.
- without: :func:`mnistkit.data.download.fetch_files` makes sure the four ``.gz`` files
  are in ``<mnistkit cache>/<dataset>/`` with their published sums (downloading only
  what is missing or damaged), then they are read from there.

The dataset is marked verified only when the four ``.gz`` files have their published sums
(hashed in this process) *and* its arrays were decoded from them in this process. The
authors publish sums of the ``.gz`` files only, so an array served from mnistkit's
decompressed cache cannot be proven to come from them (anyone who can write the cache
can rewrite an entry to look consistent): a load from the cache is not verified;
``mnistkit inspect --verify`` re-reads the files and is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistkit.data.cache import track_reads
from mnistkit.data.dataset import Dataset
from mnistkit.data.download import RemoteFile, fetch_files, is_valid
from mnistkit.data.mnist import load_idx_folder


@dataclasses.dataclass(frozen=True)
class RemoteIdxDataset:
    """An MNIST-style dataset published as four ``.gz`` IDX files."""

    name: str
    help: str
    class_names: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    homepage: str
    torchvision_name: str


def _files(md5s: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, md5=md5) for name, md5 in md5s.items())


FASHION_MNIST = RemoteIdxDataset(
    name="fashion-mnist",
    help="Fashion-MNIST (Zalando): 10 kinds of clothing, 60k/10k; downloaded on first use.",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
    files=_files({
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    torchvision_name="FashionMNIST",
)

KMNIST = RemoteIdxDataset(
    name="kmnist",
    help="Kuzushiji-MNIST (ROIS-CODH): 10 cursive hiragana, 60k/10k; downloaded on first use.",
    # Romanised names of お き す つ な は ま や れ を (kmnist_classmap.csv), label order.
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    files=_files({
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    }),
    mirrors=(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
    homepage="https://github.com/rois-codh/kmnist",
    torchvision_name="KMNIST",
)

#: The datasets this plugin registers, by name. Tests replace entries (mirrors, files).
SPECS: dict[str, RemoteIdxDataset] = {spec.name: spec for spec in (FASHION_MNIST, KMNIST)}


def load(name: str, data_dir: Path | None = None, *, timeout: float = 30.0) -> Dataset:
    """Load dataset ``name`` from ``data_dir``, or from the cache after downloading it."""
    spec = SPECS[name]
    if data_dir is None:
        folder = fetch_files(spec.name, spec.files, spec.mirrors, timeout=timeout)
        source = f"{folder} (downloaded from {spec.homepage})"
    else:
        folder = Path(data_dir)
        source = str(folder)
    with track_reads() as reads:
        dataset = load_idx_folder(folder, spec.name, spec.class_names,
                                  torchvision_name=spec.torchvision_name, source=source)
    decoded_now = bool(reads) and not any(cached for _, cached in reads)
    verified = decoded_now and all(is_valid(folder / f.name, f) for f in spec.files)
    return dataclasses.replace(dataset, verified=verified) if verified else dataset


def loader(name: str) -> Callable[[Any, Path | None], Dataset]:
    """The ``factory(options, data_dir)`` registered for dataset ``name``."""

    def factory(options: Any, data_dir: Path | None) -> Dataset:
        return load(name, data_dir)

    factory.__name__ = f"load_{name.replace('-', '_')}"
    factory.__doc__ = f"Load {name} (see mnistkit_fashion.datasets.load)."
    return factory

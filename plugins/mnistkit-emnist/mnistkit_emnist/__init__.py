"""mnistkit plugin: the EMNIST datasets, read from your copy of the official IDX files.

Registers ``emnist-digits``, ``emnist-letters``, ``emnist-balanced``, ``emnist-byclass``,
``emnist-bymerge`` and ``emnist-mnist`` (28x28 grey images, stored transposed in the
files and turned upright here). EMNIST is not downloaded (the official archive is 561 MB
for all six together); give the folder of ``emnist-*-idx?-ubyte(.gz)`` files::

    mnistkit train --dataset emnist-letters --data-dir ~/data/emnist/gzip
    mnistkit inspect --dataset emnist-digits --data-dir ~/data/emnist/gzip -d loader=python-mnist
"""

from __future__ import annotations

from typing import Any

from mnistkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def mnistkit_register_datasets(register: Any) -> None:
    """Register the six EMNIST datasets."""
    from mnistkit_emnist.datasets import SPECS, EmnistOptions, loader

    for name, spec in SPECS.items():
        register(name, loader(name), options=EmnistOptions, help=spec.help)

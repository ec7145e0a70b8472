"""mnistkit plugin: the ``fashion-mnist`` and ``kmnist`` datasets.

Both are MNIST drop-ins (60,000 + 10,000 grey 28x28 images, 10 classes) that are not
bundled: the first use downloads the four ``.gz`` files into the mnistkit cache folder,
checking each against its published MD5. Offline, give a folder with the files::

    mnistkit train --dataset fashion-mnist
    mnistkit train --dataset kmnist --data-dir ~/Downloads/kmnist
"""

from __future__ import annotations

from typing import Any

from mnistkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def mnistkit_register_datasets(register: Any) -> None:
    """Register ``fashion-mnist`` and ``kmnist``."""
    from mnistkit_fashion.datasets import SPECS, loader

    for name, spec in SPECS.items():
        register(name, loader(name), help=spec.help)

"""Shared test setup. Tests never write to the real user cache folder."""

from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_dir(tmp_path_factory):
    """Point ``MNISTKIT_CACHE_DIR`` at a temporary folder for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.mktemp("mnistkit-cache")))
        patch.delenv("MNISTKIT_NO_CACHE", raising=False)
        patch.delenv("MNISTKIT_DATA_DIR", raising=False)
        yield


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST, loaded once for the session."""
    from mnistkit.datasets import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def first_mnist_images(mnist) -> Callable:
    """``first_mnist_images(n_train, n_test)``: a dataset named ``mnist`` of the first
    real training and test images (quick runs that still learn)."""
    from mnistkit.data.dataset import Dataset, Split

    def first(n_train: int, n_test: int) -> Dataset:
        return Dataset("mnist", Split(mnist.train.images[:n_train], mnist.train.labels[:n_train]),
                       Split(mnist.test.images[:n_test], mnist.test.labels[:n_test]),
                       source="first images of the bundled MNIST")

    return first


@pytest.fixture(scope="session")
def registry():
    """The built-in plugins only (no installed entry points)."""
    from mnistkit.plugins import load_plugins

    return load_plugins(entry_points=False).registry

"""Shared test setup. Tests never write to the real user cache folder."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache_dir(tmp_path_factory):
    """Point ``MNISTKIT_CACHE_DIR`` at a temporary folder for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.mktemp("mnistkit-cache")))
        patch.delenv("MNISTKIT_NO_CACHE", raising=False)
        patch.delenv("MNISTKIT_DATA_DIR", raising=False)
        yield

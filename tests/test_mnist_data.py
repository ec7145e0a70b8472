"""The bundled MNIST against its published facts, folder layouts, checksums and the cache."""

import gzip
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from mnistkit.data import cache
from mnistkit.data.cache import fresh_reads, read_idx_cached
from mnistkit.data.idx import write_idx
from mnistkit.data.mnist import (
    BUNDLED_DIR,
    FILE_NAMES,
    MNIST_MD5,
    MNIST_SHA256,
    find_idx_files,
    load_idx_folder,
    load_mnist,
    verify_mnist,
)
from mnistkit.data.summary import choose_samples, class_counts, pixel_mean_std
from mnistkit.errors import DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


# -- the bundled data: known facts from shared/mnist/README.md ---------------------------

def test_bundled_mnist_shapes_and_dtypes(mnist):
    assert mnist.name == "mnist"
    assert mnist.train.images.shape == (60000, 28, 28)
    assert mnist.test.images.shape == (10000, 28, 28)
    for split in (mnist.train, mnist.test):
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.uint8
    assert mnist.class_names == tuple("0123456789")
    assert mnist.source.startswith("bundled")


def test_bundled_mnist_class_counts_and_first_labels(mnist):
    assert class_counts(mnist.train.labels, 10) == TRAIN_COUNTS
    assert class_counts(mnist.test.labels, 10) == TEST_COUNTS
    assert mnist.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_bundled_mnist_pixel_mean_and_std(mnist):
    mean, std = pixel_mean_std(mnist.train.images)
    assert round(mean, 4) == 0.1307
    assert round(std, 4) == 0.3081
    as_float = mnist.test.images.astype(np.float64) / 255
    assert pixel_mean_std(mnist.test.images) == pytest.approx((as_float.mean(), as_float.std()),
                                                              rel=1e-12)


def test_bundled_mnist_checksums(mnist):
    assert mnist.files == MNIST_MD5
    assert mnist.verified
    checks = verify_mnist()
    assert [(c.name, c.status) for c in checks] == [(n, "ok") for n in FILE_NAMES]


def _python_mnist(split: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # python-mnist 0.7 uses `is` with literals
        from mnist import MNIST
    reader = MNIST(str(BUNDLED_DIR), gz=True)  # lists; np.array over them is slow
    images, labels = reader.load_testing() if split == "test" else reader.load_training()
    flat = np.frombuffer(b"".join(bytes(row) for row in images), dtype=np.uint8)
    return flat, np.asarray(labels, dtype=np.uint8)


def test_same_arrays_as_python_mnist_test_split(mnist):
    images, labels = _python_mnist("test")
    np.testing.assert_array_equal(mnist.test.images.reshape(-1), images)
    np.testing.assert_array_equal(mnist.test.labels, labels)


@pytest.mark.slow
def test_same_arrays_as_python_mnist_train_split(mnist):
    images, labels = _python_mnist("train")  # ~5 s
    np.testing.assert_array_equal(mnist.train.images.reshape(-1), images)
    np.testing.assert_array_equal(mnist.train.labels, labels)


# -- folders: a tiny MNIST-like dataset in every accepted layout -------------------------

def tiny(seed: int = 0, n_train: int = 12, n_test: int = 5, n_classes: int = 10):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, n_classes, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, n_classes, n_test, dtype=np.uint8),
    }


def write_folder(folder: Path, arrays: dict, spell=lambda name: name, names=None) -> Path:
    for name in names or arrays:
        target = folder / spell(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_idx(target, arrays[name])
    return folder


SPELLINGS = {
    "plain": lambda n: n,
    "gz": lambda n: n + ".gz",
    "dotted": lambda n: n.replace("-idx", ".idx"),
    "dotted-gz": lambda n: n.replace("-idx", ".idx") + ".gz",
    "kaggle": lambda n: f"{n}/{n}",
    "torchvision": lambda n: f"MNIST/raw/{n}",
    "torchvision-raw-gz": lambda n: f"raw/{n}.gz",
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_each_accepted_layout_loads(tmp_path, spelling):
    arrays = tiny()
    write_folder(tmp_path, arrays, SPELLINGS[spelling])
    data = load_mnist(tmp_path)
    np.testing.assert_array_equal(data.train.images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.test.labels, arrays["t10k-labels-idx1-ubyte"])
    assert data.source == str(tmp_path)
    assert not data.verified  # not the published files
    assert set(data.files) == set(FILE_NAMES) and data.expected_md5 == MNIST_MD5


def test_plain_file_is_preferred_over_gz(tmp_path):
    write_folder(tmp_path, tiny(0), SPELLINGS["gz"])
    write_folder(tmp_path, tiny(1), SPELLINGS["plain"])
    found = find_idx_files(tmp_path)
    assert all(not p.name.endswith(".gz") for p in found.values())
    np.testing.assert_array_equal(load_mnist(tmp_path).train.images,
                                  tiny(1)["train-images-idx3-ubyte"])


def test_half_the_files_lists_what_is_missing_and_accepted_names(tmp_path):
    write_folder(tmp_path, tiny(), names=["train-images-idx3-ubyte", "train-labels-idx1-ubyte"])
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: missing t10k-images-idx3-ubyte, "
                              "t10k-labels-idx1-ubyte; found train-images-idx3-ubyte")
    assert "train-images.idx3-ubyte" in message and ".gz" in message and "MNIST/raw/" in message


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_generic_folder_loader_for_other_datasets(tmp_path):
    arrays = tiny(n_classes=3)
    write_folder(tmp_path / "FashionMNIST" / "raw", arrays, SPELLINGS["gz"])
    md5 = {n: hashlib.md5(gzip.decompress((tmp_path / "FashionMNIST" / "raw" / f"{n}.gz")
                                          .read_bytes())).hexdigest() for n in FILE_NAMES}
    first = load_idx_folder(tmp_path, "x", ("a", "b", "c"), torchvision_name="FashionMNIST")
    assert first.files == md5  # read from the files: MD5 computed while reading
    warm = load_idx_folder(tmp_path, "x", ("a", "b", "c"), torchvision_name="FashionMNIST")
    assert warm.files == dict.fromkeys(FILE_NAMES, "")  # from the cache, nothing to check
    data = load_idx_folder(tmp_path, "three", ("a", "b", "c"), md5,
                           torchvision_name="FashionMNIST")
    assert data.name == "three" and data.n_classes == 3 and data.verified
    wrong = dict(md5, **{"t10k-labels-idx1-ubyte": "0" * 32})
    assert not load_idx_folder(tmp_path, "three", ("a", "b", "c"), wrong,
                               torchvision_name="FashionMNIST").verified


def test_label_beyond_the_class_names_is_refused(tmp_path):
    arrays = tiny()
    arrays["t10k-labels-idx1-ubyte"][3] = 10
    write_folder(tmp_path, arrays)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: label 10 at index 3"):
        load_mnist(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    arrays = tiny()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:-1]
    write_folder(tmp_path, arrays)
    with pytest.raises(DataError, match="has 12 images but .*has 11 labels"):
        load_mnist(tmp_path)


def test_a_changed_file_fails_verification(tmp_path):
    for name in FILE_NAMES[:3]:
        os.symlink(BUNDLED_DIR / f"{name}.gz", tmp_path / f"{name}.gz")
    labels = load_mnist().test.labels.copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    data = load_mnist(tmp_path)
    assert not data.verified
    status = {c.name: c.status for c in verify_mnist(tmp_path)}
    assert status == {**{n: "ok" for n in FILE_NAMES[:3]}, "t10k-labels-idx1-ubyte": "mismatch"}


# -- samples ----------------------------------------------------------------------------

def test_choose_samples_is_reproducible_and_filters_by_class(mnist):
    labels = mnist.train.labels
    first = choose_samples(labels, 25, seed=3)
    assert first.tolist() == choose_samples(labels, 25, seed=3).tolist()
    assert len(set(first.tolist())) == 25
    sevens = choose_samples(labels, 40, seed=1, digit=7)
    assert len(sevens) == 40 and set(labels[sevens].tolist()) == {7}
    assert len(choose_samples(np.array([1, 2, 1], np.uint8), 10, seed=0, digit=1)) == 2


# -- the decompressed cache ---------------------------------------------------------------

@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(folder))
    return folder / cache.CACHE_SUBDIR


def test_warm_read_equals_cold_read(tmp_path, own_cache):
    source = write_folder(tmp_path / "d", tiny(), SPELLINGS["gz"]) / "t10k-images-idx3-ubyte.gz"
    cold = read_idx_cached(source, ndim=3, dtype=np.uint8)
    warm = read_idx_cached(source, ndim=3, dtype=np.uint8)
    assert not cold.cached and warm.cached
    np.testing.assert_array_equal(cold.array, warm.array)
    assert warm.array.dtype == np.uint8
    assert warm.md5 == ""  # served from the cache with no published sum: no MD5 claimed
    checked = read_idx_cached(source, ndim=3, dtype=np.uint8, expected_md5=cold.md5)
    assert checked.cached and checked.md5 == cold.md5  # recomputed from the cached array
    assert len(list(own_cache.glob("*.npy"))) == 1


def test_whole_dataset_from_the_cache_equals_the_source(own_cache, mnist):
    again = load_mnist()
    assert len(list(own_cache.glob("*.npy"))) == 4
    warm = load_mnist()
    for split in ("train", "test"):
        np.testing.assert_array_equal(warm.split(split).images, mnist.split(split).images)
        np.testing.assert_array_equal(warm.split(split).labels, again.split(split).labels)
    assert warm.files == MNIST_MD5 and warm.verified


def test_a_changed_source_is_not_served_stale(tmp_path, own_cache):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    stamp = path.stat().st_mtime_ns
    assert read_idx_cached(path).array.tolist() == [0, 1, 2, 3, 4]
    write_idx(path, np.arange(5, 10, dtype=np.uint8))  # same size
    os.utime(path, ns=(stamp, stamp))  # even with the old modification time
    fresh = read_idx_cached(path)
    assert not fresh.cached and fresh.array.tolist() == [5, 6, 7, 8, 9]
    assert len(list(own_cache.glob("*.npy"))) == 1  # the stale entry was removed


@pytest.mark.parametrize("damage", ["flip-data", "truncate", "garbage-json", "missing-npy",
                                    "pickle"])
def test_a_damaged_cache_entry_is_ignored_and_rewritten(tmp_path, own_cache, damage):
    path = tmp_path / "images"
    original = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_idx(path, original)
    read_idx_cached(path)
    npy = next(own_cache.glob("*.npy"))
    if damage == "flip-data":
        raw = bytearray(npy.read_bytes())
        raw[-100] ^= 0xFF
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:300])
    elif damage == "garbage-json":
        npy.with_suffix(".json").write_text("{not json")
    elif damage == "missing-npy":
        npy.unlink()
    else:
        np.save(npy, np.array([object()], dtype=object), allow_pickle=True)
    again = read_idx_cached(path)
    assert not again.cached
    np.testing.assert_array_equal(again.array, original)
    assert read_idx_cached(path).cached  # rewritten


def test_a_record_md5_is_never_believed(tmp_path, own_cache):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    real = read_idx_cached(path).md5
    record = next(own_cache.glob("*.json"))
    meta = json.loads(record.read_text())
    meta["md5"] = "0" * 32  # a field the record does not even have any more
    record.write_text(json.dumps(meta))
    assert read_idx_cached(path).md5 == ""
    assert read_idx_cached(path, expected_md5="0" * 32).md5 == real  # re-read: the truth
    with fresh_reads():
        assert read_idx_cached(path).md5 == real


def test_no_cache_env_disables_the_cache(tmp_path, own_cache, monkeypatch):
    monkeypatch.setenv("MNISTKIT_NO_CACHE", "1")
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    assert not read_idx_cached(path).cached and not read_idx_cached(path).cached
    assert not own_cache.exists()


def test_unusable_cache_folder_falls_back_silently(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(blocker / "cache"))
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    assert read_idx_cached(path).array.tolist() == [0, 1, 2, 3, 4]

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(cache, "cache_dir", no_home)
    assert read_idx_cached(path).array.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root ignores file permissions")
def test_read_only_cache_folder_falls_back_silently(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(folder))
    try:
        path = tmp_path / "labels"
        write_idx(path, np.arange(5, dtype=np.uint8))
        assert read_idx_cached(path).array.tolist() == [0, 1, 2, 3, 4]
    finally:
        folder.chmod(0o700)


def test_errors_in_the_source_are_reported_even_with_a_cache(tmp_path, own_cache):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    read_idx_cached(path)
    shutil.copyfile(path, tmp_path / "copy")
    (tmp_path / "copy").write_bytes((tmp_path / "copy").read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated"):
        read_idx_cached(tmp_path / "copy")
    with pytest.raises(DataError, match="has 1 dimensions"):
        read_idx_cached(path, ndim=3)  # a cached entry of the wrong shape is not a hit


# -- what the cache proves ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_content_digest_is_the_hash_of_the_idx_file(tmp_path, dtype):
    array = (np.arange(60) * 7 - 100).astype(dtype).reshape(3, 4, 5)
    write_idx(tmp_path / "f", array)
    content = (tmp_path / "f").read_bytes()
    for algorithm in ("sha256", "md5"):
        assert cache.idx_content_digest(array, algorithm) == hashlib.new(algorithm,
                                                                         content).hexdigest()
    assert cache.idx_content_digest(array[:, ::2]) == hashlib.sha256(
        _idx_bytes(tmp_path / "g", array[:, ::2])).hexdigest()  # not contiguous


def _idx_bytes(path: Path, array: np.ndarray) -> bytes:
    write_idx(path, array)
    return path.read_bytes()


def test_shipped_sha256_sums_are_of_the_published_files():
    for name in FILE_NAMES:
        content = gzip.decompress((BUNDLED_DIR / f"{name}.gz").read_bytes())
        assert hashlib.md5(content).hexdigest() == MNIST_MD5[name]
        assert hashlib.sha256(content).hexdigest() == MNIST_SHA256[name]


def test_a_cached_array_is_served_only_when_proven(tmp_path, own_cache):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    real = read_idx_cached(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    hit = read_idx_cached(path, expected_md5=real.md5, known_sha256=sha)
    assert hit.cached and hit.md5 == real.md5
    # a known SHA-256 that is not the content's: not served from the cache
    wrong = read_idx_cached(path, expected_md5=real.md5, known_sha256="0" * 64)
    assert not wrong.cached and wrong.md5 == real.md5


def test_a_copy_that_differs_from_its_sum_is_re_read_but_not_rewritten(tmp_path, own_cache):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    first = read_idx_cached(path, expected_md5="0" * 32)
    npy = next(own_cache.glob("*.npy"))
    stamp = npy.stat().st_mtime_ns
    again = read_idx_cached(path, expected_md5="0" * 32)
    assert not again.cached and again.md5 == first.md5 != "0" * 32  # the mismatch stays
    assert npy.stat().st_mtime_ns == stamp


def test_track_reads_tells_what_came_from_the_cache(tmp_path, own_cache):
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    with cache.track_reads() as reads:
        read_idx_cached(path)
        read_idx_cached(path)
    assert reads == [(path, False), (path, True)]
    read_idx_cached(path)
    assert len(reads) == 2  # only within the block


def test_a_damaged_bundled_copy_is_an_error(tmp_path, monkeypatch):
    for name in FILE_NAMES:
        shutil.copyfile(BUNDLED_DIR / f"{name}.gz", tmp_path / f"{name}.gz")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, np.uint8))
    monkeypatch.setattr("mnistkit.data.mnist.BUNDLED_DIR", tmp_path)
    with pytest.raises(DataError, match=r"bundled MNIST .* is not the published data "
                                        r"\(t10k-labels-idx1-ubyte has MD5 [0-9a-f]{32}, "
                                        r"published 27ae3e4e"):
        load_mnist()


@pytest.mark.parametrize("home", [None, "", "relative/home", "missing"])
def test_no_cache_folder_without_a_usable_home(tmp_path, monkeypatch, home):
    from mnistkit.data.download import dataset_folder
    from mnistkit.files import cache_dir

    monkeypatch.delenv("MNISTKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # relative: ignored, as XDG says
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", str(tmp_path / home) if home == "missing" else home)
    with pytest.raises(DataError, match="no cache folder: HOME .*MNISTKIT_CACHE_DIR"):
        cache_dir()
    with pytest.raises(DataError, match="no cache folder"):
        dataset_folder("fashion-mnist")  # downloads need a folder: one clear error
    path = tmp_path / "labels"
    write_idx(path, np.arange(5, dtype=np.uint8))
    assert not read_idx_cached(path).cached and not read_idx_cached(path).cached
    assert not (tmp_path / "missing").exists()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "mnistkit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mnistkit"

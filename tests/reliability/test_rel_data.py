"""Hostile and damaged data files: the IDX reader under fuzzing, memory bounds, and the
data errors a user meets through ``mnistkit inspect`` / ``mnistkit train --data-dir``.

Already covered elsewhere (not repeated): the reader's round trip and each malformed
header (tests/test_idx.py), accepted folder layouts and the cache (tests/test_mnist_data.py).
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import FUZZ, assert_one_line_error, invoke, run_python, small_idx_folder, time_limit
from hypothesis import event, example, given
from hypothesis import strategies as st

from mnistkit.data.idx import IDX_DTYPES, read_idx, read_idx_with_md5, write_idx
from mnistkit.errors import DataError

# -- an independent oracle for what the reader must accept ---------------------------------

def header(code: int, dims: list[int]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()




def expected_array(content: bytes) -> np.ndarray | None:
    """What a correct reader returns for uncompressed ``content``, or None if invalid."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in IDX_DTYPES:
        return None
    n_dims = content[3]
    if n_dims == 0 or len(content) < 4 + 4 * n_dims:
        return None
    dims = [int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims)]
    dtype = IDX_DTYPES[content[2]]
    body = content[4 + 4 * n_dims:]
    if len(body) != math.prod(dims) * dtype.itemsize:
        return None
    try:
        return np.frombuffer(body, dtype).reshape(dims)
    except ValueError:  # more dimensions than NumPy allows, or an unindexable size
        return None


def decompressed(blob: bytes) -> bytes | None:
    """The content a gzip reader sees, None for a broken stream."""
    if blob[:2] != b"\x1f\x8b":
        return blob
    try:
        return gzip.decompress(blob)
    except Exception:
        return None


# -- strategies --------------------------------------------------------------------------

SIZES = st.integers(0, 6) | st.sampled_from([0, 1, 28, 255, 2**16, 2**31, 2**32 - 1])
CODES = st.sampled_from(sorted(IDX_DTYPES) * 4 + [0x00, 0x07, 0x0A, 0x0F, 0x80, 0xFF])
NDIMS = st.integers(0, 4) | st.sampled_from([0, 1, 3, 31, 32, 33, 64, 65, 255])


@st.composite
def idx_content(draw) -> bytes:
    """Uncompressed IDX-like bytes: random, or a header (valid or not) with a body that
    fits, is short, too long or random, then a few random byte-level mutations."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    prefix = draw(st.sampled_from([b"\0\0"] * 12 + [b"\x12\x34", b"\0\x01", b"\x1f\x8b"]))
    code, n_dims = draw(CODES), draw(NDIMS)
    if n_dims <= 4:
        dims = draw(st.lists(SIZES, min_size=n_dims, max_size=n_dims))
    else:  # many dimensions: mostly 1, maybe a 0 and some 2^32-1 (a tiny or empty body)
        dims = [1] * n_dims
        for _ in range(draw(st.integers(0, 3))):
            dims[draw(st.integers(0, n_dims - 1))] = draw(st.sampled_from([0, 2, 2**32 - 1]))
    header = prefix + bytes([code, n_dims]) + np.asarray(dims, ">u4").tobytes()
    itemsize = IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1
    exact = math.prod(dims) * itemsize
    choice = draw(st.sampled_from(["exact", "exact", "short", "long", "random"]))
    if choice == "exact" and exact <= 4096:
        size = exact
    elif choice == "short" and exact > 0:
        size = max(0, min(exact, 4096) - draw(st.integers(1, 64)))
    elif choice == "long" and exact <= 4096:
        size = exact + draw(st.integers(1, 64))
    else:
        size = draw(st.integers(0, 512))
    content = bytearray(header + draw(st.binary(min_size=size, max_size=size)))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):  # byte-level mutations
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(content) - 1, 0)))
        if op == "flip" and content:
            content[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del content[pos:]
        else:
            content[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(content)


@st.composite
def idx_file(draw) -> bytes:
    """File bytes: plain, or gzipped and then possibly damaged, or a small gzip bomb."""
    content = draw(idx_content())
    packing = draw(st.sampled_from(["plain", "gz", "gz", "gz-damaged", "gz-bomb"]))
    if packing == "plain":
        return content
    if packing == "gz-bomb":  # the declared body, then far more zeros than declared
        extra = draw(st.sampled_from([1, 1 << 16, 1 << 21]))
        return gzip.compress(content + bytes(extra), compresslevel=1, mtime=0)
    blob = bytearray(gzip.compress(content, mtime=0))
    if packing == "gz-damaged":
        how = draw(st.sampled_from(["truncate", "flip", "garbage", "second-member"]))
        pos = draw(st.integers(0, len(blob) - 1))
        if how == "truncate":
            del blob[pos:]
        elif how == "flip":
            blob[pos] ^= draw(st.integers(1, 255))
        elif how == "garbage":
            blob += draw(st.binary(min_size=1, max_size=16))
        else:
            blob += gzip.compress(draw(st.binary(max_size=32)), mtime=0)
    return bytes(blob)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _kind(message: str) -> str:
    """A short class of a DataError message, for hypothesis' statistics."""
    for kind in ("gzip", "not an IDX", "too short", "0 dimensions", "header ends early",
                 "truncated", "trailing", "NumPy cannot hold"):
        if kind in message:
            return kind
    return message.split(": ", 1)[-1][:30]


def memory_bound(blob: bytes) -> int:
    """Generous ceiling on what reading ``blob`` may allocate: a few times the data a
    stream of this size can really hold (deflate expands at most ~1032x), never more."""
    real = len(blob) * (1032 if blob[:2] == b"\x1f\x8b" else 1)
    return (1 << 20) + 3 * max(real, 1 << 16)


@FUZZ
@given(blob=idx_file())
@example(blob=header(8, [1] * 100) + b"x")  # more dimensions than NumPy allows
@example(blob=header(8, [0, 2**32 - 1, 2**32 - 1]))  # empty, but too big to index
@example(blob=gzip.compress(header(8, [2**31, 28, 28]) + bytes(100)))  # lying gzip header
def test_fuzzed_idx_files_give_an_array_or_a_data_error(scratch, blob):
    """Random and mutated IDX files, plain and gzipped: a correct array or DataError;
    never another exception, never a hang, never an allocation beyond the file's means."""
    path = scratch / "fuzz-idx3-ubyte"
    path.write_bytes(blob)
    content = decompressed(blob)
    expected = expected_array(content) if content is not None else None
    tracemalloc.start()
    try:
        with time_limit(10):
            try:
                array, md5 = read_idx_with_md5(path)
            except DataError as exc:
                array, message = None, str(exc)
                assert message.startswith(str(path)) and "\n" not in message
                event("refused: " + _kind(message))
            else:
                event("accepted")
            try:
                images = read_idx(path, ndim=3, dtype=np.uint8)  # what the loader asks for
            except DataError:
                images = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= memory_bound(blob), (peak, len(blob))
    if expected is None:
        assert array is None, "the reader accepted a file the oracle calls invalid"
        assert images is None
    else:
        assert array is not None, f"the reader refused a valid file: {message}"
        assert array.shape == expected.shape and array.dtype == expected.dtype.newbyteorder("=")
        np.testing.assert_array_equal(array, expected)
        import hashlib
        assert md5 == hashlib.md5(content).hexdigest()
        if images is not None:
            assert images.ndim == 3 and images.dtype == np.uint8


@FUZZ
@given(images=idx_file(), labels=idx_file(), n_classes=st.integers(1, 12))
def test_fuzzed_pairs_through_the_folder_loader(scratch, images, labels, n_classes):
    """A whole MNIST-style folder whose test files are fuzzed: a Dataset or a DataError."""
    from mnistkit.data.mnist import load_idx_folder

    folder = scratch / "pair"
    if not (folder / "train-images-idx3-ubyte").exists():
        small_idx_folder(folder, n_train=20, n_test=5, gz=False)
    (folder / "t10k-images-idx3-ubyte").write_bytes(images)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with time_limit(10):
        try:
            dataset = load_idx_folder(folder, "fuzz", tuple(map(str, range(n_classes))),
                                      use_cache=False)
        except DataError as exc:
            assert "\n" not in str(exc)
            return
    test = dataset.test
    assert test.images.ndim == 3 and test.images.dtype == np.uint8
    assert test.images.shape[1:] == (28, 28) and len(test.images) == len(test.labels)
    assert test.labels.size == 0 or int(test.labels.max()) < n_classes


# -- lying headers and bombs: memory measured -----------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dims", [[2**31, 28, 28], [2**32 - 1] * 3, [4_000_000_000]],
                         ids=["2^31x28x28", "3x(2^32-1)", "4e9"])
def test_billions_declared_on_a_short_file_allocate_almost_nothing(tmp_path, gz, dims):
    data = header(8, dims) + bytes(1000)
    path = tmp_path / "liar"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"liar: header declares .*\(truncated\)"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # < 1 MiB, for a header declaring up to 2^96 bytes


def test_more_dimensions_than_numpy_holds_is_a_data_error(tmp_path):
    (tmp_path / "deep").write_bytes(header(8, [1] * 100) + b"x")
    with pytest.raises(DataError, match="100-dimensional uint8 array that NumPy cannot hold"):
        read_idx(tmp_path / "deep")
    (tmp_path / "wide").write_bytes(header(8, [0] + [2**32 - 1] * 10))
    with pytest.raises(DataError, match="NumPy cannot hold"):
        read_idx(tmp_path / "wide")


RSS_PROBE = r"""
import gzip, resource, sys
import numpy as np
from mnistkit.data.idx import read_idx
from mnistkit.errors import DataError
head = bytes([0, 0, 8, 3]) + np.asarray([2**31, 28, 28], ">u4").tobytes()
folder = sys.argv[1]
open(folder + "/plain", "wb").write(head + bytes(5000))
open(folder + "/gz", "wb").write(gzip.compress(head + bytes(5000)))
with gzip.open(folder + "/bomb", "wb", compresslevel=1) as out:   # 16 MiB of zeros
    out.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big"))
    for _ in range(16):
        out.write(bytes(1 << 20))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name in ("plain", "gz", "bomb"):
    try:
        read_idx(folder + "/" + name)
        print("accepted", name)
    except DataError:
        pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_resident_memory_stays_flat_on_lying_files(tmp_path):
    """The same in a fresh process, measured as peak RSS (what the OS sees)."""
    result = run_python(RSS_PROBE, str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert "accepted" not in lines
    assert int(lines[-1]) < 16  # MiB of peak RSS growth while refusing all three files


# -- through the command line ---------------------------------------------------------------

@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    return small_idx_folder(tmp_path_factory.mktemp("data") / "good")


@pytest.fixture
def data_copy(good_folder, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MNISTKIT_NO_CACHE", "1")
    return Path(shutil.copytree(good_folder, tmp_path / "copy"))


def _truncate_gz(folder: Path) -> str:
    path = folder / "t10k-labels-idx1-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path.name


def _corrupt_gz(folder: Path) -> str:
    path = folder / "t10k-images-idx3-ubyte.gz"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 40] = bytes(40)
    path.write_bytes(bytes(blob))
    return path.name


def _gzip_bomb(folder: Path) -> str:
    path = folder / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as out:  # declares 100 labels, inflates to 32 MiB
        out.write(header(8, [100]) + bytes(100))
        for _ in range(32):
            out.write(bytes(1 << 20))
    assert path.stat().st_size < 64 << 10
    return path.name


def _half_the_files(folder: Path) -> str:
    (folder / "train-images-idx3-ubyte.gz").unlink()
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    return "missing train-images-idx3-ubyte, train-labels-idx1-ubyte"


def _mismatched_counts(folder: Path) -> str:
    path = folder / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, read_idx(path)[:90])
    return "has 100 images but"


def _label_out_of_range(folder: Path) -> str:
    path = folder / "train-labels-idx1-ubyte.gz"
    labels = read_idx(path)
    labels[7] = 10
    write_idx(path, labels)
    return "train-labels-idx1-ubyte.gz: label 10 at index 7 is outside 0..9"


def _swapped_files(folder: Path) -> str:
    images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    tmp = folder / "x"
    images.rename(tmp)
    labels.rename(images)
    tmp.rename(labels)
    return "t10k-images-idx3-ubyte.gz: has 1 dimensions"


def _not_idx(folder: Path) -> str:
    (folder / "train-images-idx3-ubyte.gz").write_text("<html>404 Not Found</html>")
    return "train-images-idx3-ubyte.gz: not an IDX file"


def _image_sizes_differ(folder: Path) -> str:
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((100, 14, 14), np.uint8))
    return "holds 28x28 images but"


def _empty_images(folder: Path) -> str:
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((600, 0, 0), np.uint8))
    return "images of 0x0 pixels hold nothing"


DAMAGE = {
    "truncated-gz": (_truncate_gz, "corrupt or truncated gzip data"),
    "corrupt-gz": (_corrupt_gz, "corrupt or truncated gzip data"),
    "gzip-bomb": (_gzip_bomb, "more data than the header declares"),
    "half-the-files": (_half_the_files, "also looked in"),
    "mismatched-counts": (_mismatched_counts, "has 90 labels"),
    "label-out-of-range": (_label_out_of_range, ""),
    "swapped-files": (_swapped_files, "expected 3"),
    "not-idx": (_not_idx, "magic number"),
    "image-sizes-differ": (_image_sizes_differ, "14x14"),
    "zero-pixel-images": (_empty_images, "train-images-idx3-ubyte.gz"),
}


@pytest.mark.parametrize("command", ["inspect", "train"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_data_folder_is_one_line_naming_the_file(data_copy, tmp_path, case, command):
    damage, more = DAMAGE[case]
    named = damage(data_copy)
    args = (["inspect"] if command == "inspect" else
            ["train", "--out", tmp_path / "run", "--val-size", "100", "--epochs", "1"])
    result = invoke(*args, "--data-dir", data_copy)
    line = assert_one_line_error(result, named, more, exit_code=1)
    assert str(data_copy) in line  # the folder or file is named with its path
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["inspect", "train"])
def test_missing_or_non_folder_data_dir(tmp_path, command):
    (tmp_path / "file").write_text("x")
    for target in (tmp_path / "nowhere", tmp_path / "file", tmp_path):
        result = invoke(command, "--data-dir", target, "--out", tmp_path / "run") \
            if command == "train" else invoke(command, "--data-dir", target)
        assert_one_line_error(result, str(target), exit_code=1)


def test_the_undamaged_small_folder_loads(data_copy):
    """The control: the same folder before damage is accepted (unverified sums)."""
    result = invoke("inspect", "--data-dir", data_copy, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["test"]["count"] == 100

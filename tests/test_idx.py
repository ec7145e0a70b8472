"""The IDX reader and writer: round trips, and every malformed file it must refuse."""

import gzip
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnistkit.data.idx import (
    is_gzip,
    read_idx,
    read_idx_pair,
    read_idx_with_md5,
    write_idx,
)
from mnistkit.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code: int, dims: list[int]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


def put(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
        dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
        elements={"allow_nan": False} if np.dtype(dt).kind == "f" else None)),
    suffix=st.sampled_from(["", ".gz"]),
)
def test_round_trip_through_the_writer(array, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"a-idx{suffix}"
        write_idx(path, array)
        back = read_idx(path)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_writer_output_is_the_standard_layout(tmp_path):
    labels = np.array([5, 0, 4], dtype=np.uint8)
    write_idx(tmp_path / "l", labels)
    assert (tmp_path / "l").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x00\x04"
    images = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    write_idx(tmp_path / "i", images)
    raw = (tmp_path / "i").read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051
    assert raw[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x03"
    assert raw[16:] == images.tobytes()


def test_gzip_is_recognised_by_its_magic_bytes_not_its_name(tmp_path):
    data = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "x.gz", data)
    renamed = (tmp_path / "x.gz").rename(tmp_path / "labels-without-suffix")
    assert is_gzip(renamed)
    np.testing.assert_array_equal(read_idx(renamed), data)
    plain = put(tmp_path / "plain.gz", header(8, [10]) + data.tobytes())  # misnamed plain
    assert not is_gzip(plain)
    np.testing.assert_array_equal(read_idx(plain), data)


def test_md5_is_of_the_uncompressed_content(tmp_path):
    import hashlib

    content = header(8, [3, 2, 2]) + bytes(range(12))
    put(tmp_path / "a.gz", content, gz=True)
    assert read_idx_with_md5(tmp_path / "a.gz")[1] == hashlib.md5(content).hexdigest()


def test_multi_member_gzip_is_read_whole(tmp_path):
    content = header(8, [6]) + bytes(range(6))
    (tmp_path / "m").write_bytes(gzip.compress(content[:7]) + gzip.compress(content[7:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "m"), np.arange(6, dtype=np.uint8))


def test_expected_ndim_and_dtype_are_enforced(tmp_path):
    write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"labels: has 1 dimensions \(magic 0x00000801=2049\); "
                                        r"expected 3"):
        read_idx(tmp_path / "labels", ndim=3)
    write_idx(tmp_path / "floats", np.zeros(4, np.float32))
    with pytest.raises(DataError, match="floats: holds float32 values.*expected uint8"):
        read_idx(tmp_path / "floats", dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(("content", "message"), [
    (b"\x12\x34\x08\x03" + bytes(12), r"not an IDX file \(magic number 0x12340803"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "not an IDX file"),  # unknown type code
    (b"\x00\x00", "only 2 bytes, too short for an IDX header"),
    (b"", "only 0 bytes"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "header ends early: 3 sizes declared, 1 present"),
    (header(8, [4, 2, 2]) + bytes(15), r"4x2x2 uint8 \(16 bytes of data\) .* 15 \(truncated\)"),
    (header(8, [3]) + bytes(4), "trailing bytes after the data"),
    (header(0x0C, [2]) + bytes(7), r"2 int32 \(8 bytes of data\).*truncated"),
])
def test_malformed_files_raise_data_error_naming_the_file(tmp_path, gz, content, message):
    path = put(tmp_path / "bad-idx3-ubyte", content, gz=gz)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_huge_declared_count_on_a_short_file_fails_without_allocating(tmp_path, gz):
    path = put(tmp_path / "liar", header(8, [2**31, 28, 28]) + bytes(1000), gz=gz)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"2147483648x28x28 uint8 .* has 1000 \(truncated\)"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # plain: the size is checked against the file's size first; gzip: the buffer grows
    # only as decompressed data arrives, starting at most 64 MiB (never touched here)
    assert peak < (1 << 20 if not gz else 80 << 20)


def test_gzip_bomb_beyond_the_declared_size_is_refused_early(tmp_path):
    path = tmp_path / "bomb"
    with gzip.open(path, "wb") as out:
        out.write(header(8, [10]))
        for _ in range(64):
            out.write(bytes(1 << 20))  # 64 MiB of zeros, ~64 KiB on disk
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"more data than the header declares \(10 uint8"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_corrupt_gzip_stream(tmp_path):
    blob = bytearray(gzip.compress(header(8, [4000]) + np.random.default_rng(0).bytes(4000)))
    blob[40:60] = bytes(20)
    (tmp_path / "c.gz").write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"c\.gz: corrupt or truncated gzip data"):
        read_idx(tmp_path / "c.gz")


@pytest.mark.parametrize("cut", [1, 6, 200])
def test_truncated_gzip_stream(tmp_path, cut):
    blob = gzip.compress(header(8, [4000]) + np.random.default_rng(0).bytes(4000))
    (tmp_path / "t.gz").write_bytes(blob[:-cut])
    with pytest.raises(DataError, match=r"t\.gz: (corrupt or truncated gzip data|.*truncated)"):
        read_idx(tmp_path / "t.gz")


def test_gzip_with_a_wrong_crc_is_refused(tmp_path):
    blob = bytearray(gzip.compress(header(8, [5]) + bytes(5)))
    blob[-8] ^= 0xFF  # the CRC-32 in the trailer
    (tmp_path / "crc.gz").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt or truncated gzip data"):
        read_idx(tmp_path / "crc.gz")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="nope: no such file"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)


def test_pair_counts_must_agree(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "lbl", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"img has 3 images but .*lbl has 4 labels"):
        read_idx_pair(tmp_path / "img", tmp_path / "lbl")


def test_pair_labels_must_be_below_the_class_count(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "lbl", np.array([1, 10, 2], np.uint8))
    with pytest.raises(DataError, match=r"lbl: label 10 at index 1 is outside 0\.\.9"):
        read_idx_pair(tmp_path / "img", tmp_path / "lbl", n_classes=10)
    images, labels = read_idx_pair(tmp_path / "img", tmp_path / "lbl", n_classes=11)
    assert images.shape == (3, 2, 2) and labels.tolist() == [1, 10, 2]


def test_pair_refuses_swapped_files(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "lbl", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="lbl: has 1 dimensions"):
        read_idx_pair(tmp_path / "lbl", tmp_path / "img")


@pytest.mark.parametrize("array", [np.zeros(3, bool), np.zeros(3, np.uint16),
                                   np.zeros(3, np.complex64), np.float32(1.0)])
def test_writer_refuses_what_idx_cannot_hold(tmp_path, array):
    with pytest.raises(DataError, match="IDX cannot hold"):
        write_idx(tmp_path / "w", array)
    assert not (tmp_path / "w").exists()

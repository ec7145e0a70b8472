"""Reader paths the other tests do not reach: 3-byte files, a gzip body larger than the
IDX reader's first buffer, a dimension of 2^32, a damaged CRC and strongly compressed
members inside a checkpoint."""

from __future__ import annotations

import gzip
import hashlib
import io
import signal
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import Hang, time_limit

from mnistkit.checkpoint import load_checkpoint, save_checkpoint
from mnistkit.data import idx
from mnistkit.data.idx import read_idx, read_idx_with_md5, write_idx
from mnistkit.errors import DataError, RunError

# ------------------------------------------------------------------------ IDX files


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("size", [0, 1, 3])
def test_files_shorter_than_the_magic_number(tmp_path, gz, size):
    data = b"\x00\x00\x08"[:size]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    with pytest.raises(DataError, match=f"short: only {size} bytes, too short for an IDX "
                                        "header"):
        read_idx(path)


def test_a_three_byte_file_that_is_half_a_gzip_magic(tmp_path):
    path = tmp_path / "half.gz"
    path.write_bytes(b"\x1f\x8b\x08")  # gzip magic, then nothing
    with pytest.raises(DataError, match="half.gz: corrupt or truncated gzip data"):
        read_idx(path)


def test_a_gzip_body_larger_than_the_first_buffer_is_read_whole(tmp_path):
    """> 64 MiB inflated from < 1 MiB: the buffer starts at 64 MiB and must grow."""
    first = idx._FIRST_ALLOC
    n = first + 3 * 4096 + 17  # not a multiple of the read chunk either
    raw = bytearray(b"\x00\x00\x08\x01" + struct.pack(">I", n))
    raw += bytes(range(251)) * (n // 251)
    raw += bytes(range(n % 251))
    path = tmp_path / "big-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
    # the compressed size does not lower the first buffer below the 64 MiB cap
    assert path.stat().st_size * idx._MAX_DEFLATE_RATIO > first
    array, md5 = read_idx_with_md5(path, ndim=1)
    assert array.shape == (n,) and array.dtype == np.uint8
    assert np.array_equal(array, np.frombuffer(raw, np.uint8, offset=8))
    assert md5 == hashlib.md5(raw).hexdigest()
    del array
    # one byte short of the declared size is still refused after the buffer grew
    path.write_bytes(gzip.compress(memoryview(raw)[:-1], compresslevel=1, mtime=0))
    with pytest.raises(DataError, match=f"declares {n} uint8 .{n} bytes of data. but the "
                                        f"file has {n - 1} .truncated."):
        read_idx(path)


def test_the_first_buffer_of_a_small_gzip_file_is_bounded_by_its_size(tmp_path, monkeypatch):
    """A small .gz cannot inflate beyond ~1032x its size: a header declaring more gets a
    first buffer of that bound (at least 64 KiB), never the declared size or the 64 MiB
    cap; an honest header gets exactly its size."""
    sizes = []
    real_empty = np.empty

    def spy(shape, dtype=float, *args, **kwargs):
        if dtype is np.uint8:
            sizes.append(int(shape))
        return real_empty(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(idx.np, "empty", spy)
    honest = tmp_path / "labels.gz"
    write_idx(honest, np.zeros(200_000, np.uint8))  # ~240 bytes of gzip
    np.testing.assert_array_equal(read_idx(honest), np.zeros(200_000, np.uint8))
    assert sizes == [200_000]
    sizes.clear()
    lying = tmp_path / "lying.gz"
    body = bytes(200_000)
    lying.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 50_000_000)
                                    + body, mtime=0))
    with pytest.raises(DataError, match="declares 50000000 uint8 .* but the file has 200000 "
                                        ".truncated."):
        read_idx(lying)
    assert sizes[0] == max(1 << 16, idx._MAX_DEFLATE_RATIO * lying.stat().st_size)
    assert sizes[0] < 1_000_000 and max(sizes) < 2_000_000


def test_a_dimension_of_2_to_the_32_cannot_be_written(tmp_path):
    with pytest.raises(DataError, match=r"IDX cannot hold an array of shape \(4294967296, 0\)"):
        write_idx(tmp_path / "w", np.zeros((2**32, 0), np.uint8))
    assert not (tmp_path / "w").exists()


def test_the_largest_dimension_2_to_the_32_minus_1_round_trips(tmp_path):
    path = tmp_path / "edge"
    write_idx(path, np.zeros((2**32 - 1, 0), np.uint8))
    assert path.read_bytes() == b"\x00\x00\x08\x02\xff\xff\xff\xff\x00\x00\x00\x00"
    assert read_idx(path).shape == (2**32 - 1, 0)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_a_header_dimension_of_2_to_the_32_minus_1_on_a_short_file(tmp_path, gz):
    data = b"\x00\x00\x08\x01\xff\xff\xff\xff" + bytes(10)
    path = tmp_path / "lying"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    with pytest.raises(DataError, match="header declares 4294967295 uint8 .4294967295 bytes "
                                        "of data. but the file has 10 .truncated."):
        read_idx(path)


# ---------------------------------------------------------------------- checkpoints


def _npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


def test_a_three_byte_checkpoint(tmp_path):
    path = tmp_path / "last.npz"
    path.write_bytes(b"PK\x03")
    with pytest.raises(RunError, match=r"last.npz: not a valid checkpoint \(not an .npz "
                                       r"archive\)"):
        load_checkpoint(path)


def test_a_damaged_member_crc_is_refused(tmp_path):
    path = tmp_path / "last.npz"
    weights = np.arange(1000, dtype=np.float32)
    save_checkpoint(path, {"params": {"W": weights}})
    raw = bytearray(path.read_bytes())
    at = raw.index(weights.tobytes()[4000 - 8:])  # the last two floats of the data
    raw[at] ^= 0x01  # one bit of the data; the headers and sizes stay intact
    path.write_bytes(bytes(raw))
    with pytest.raises(RunError, match=r"last.npz: not a valid checkpoint \(BadZipFile: Bad "
                                       r"CRC-32 for file 'params/W.npy'\)"):
        load_checkpoint(path)


def test_a_strongly_compressed_member_loads(tmp_path):
    """8 MB of zeros deflate about 1000:1, near the bound used to refuse lying sizes."""
    path = tmp_path / "best.npz"
    zeros = np.zeros(2_000_000, np.float32)
    np.savez_compressed(path, **{"params/W": zeros, "params/b": np.ones(3, np.float32)})
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("params/W.npy")
        assert info.file_size > 900 * info.compress_size  # strongly compressed indeed
    groups = load_checkpoint(path)
    np.testing.assert_array_equal(groups["params"]["W"], zeros)
    np.testing.assert_array_equal(groups["params"]["b"], np.ones(3, np.float32))


def _forge_size(path: Path, name: str, size: int) -> None:
    """Make the central directory (what ``infolist`` reads) claim ``size`` bytes for
    ``name``, as a hostile archive could."""
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")
    encoded = name.encode()
    while raw[entry + 46:entry + 46 + len(encoded)] != encoded:
        entry = raw.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", raw, entry + 24, size)  # uncompressed size
    path.write_bytes(bytes(raw))


def test_a_compressed_member_claiming_more_than_deflate_can_give_is_refused(tmp_path):
    path = tmp_path / "best.npz"
    np.savez_compressed(path, **{"params/W": np.zeros(10_000, np.float32)})
    with zipfile.ZipFile(path) as archive:
        stored = archive.getinfo("params/W.npy").compress_size
    claimed = 1032 * stored + 1025  # one byte past the limit
    _forge_size(path, "params/W.npy", claimed)
    with pytest.raises(RunError, match=f"refused: member 'params/W.npy' claims {claimed} bytes "
                                       f"stored in {stored}"):
        load_checkpoint(path)


def test_a_stored_member_claiming_more_than_it_stores_is_refused(tmp_path):
    path = tmp_path / "last.npz"
    save_checkpoint(path, {"params": {"W": np.zeros(10, np.float32)}})
    with zipfile.ZipFile(path) as archive:
        stored = archive.getinfo("params/W.npy").compress_size
    _forge_size(path, "params/W.npy", stored + 1)
    with pytest.raises(RunError, match=f"claims {stored + 1} bytes stored in {stored}"):
        load_checkpoint(path)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_members_of_every_npy_header_version_load(tmp_path, version):
    path = tmp_path / "last.npz"
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("params/W.npy", _npy(weights, version))
    np.testing.assert_array_equal(load_checkpoint(path)["params"]["W"], weights)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_a_member_one_byte_short_of_its_header_is_damaged(tmp_path, version):
    path = tmp_path / "last.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("params/W.npy", _npy(np.zeros(4, np.float32), version)[:-1])
    with pytest.raises(RunError, match=r"member 'params/W.npy' declares 16 bytes of float32 "
                                       r"\(4,\) but holds 15 \(damaged\)"):
        load_checkpoint(path)


# ------------------------------------------------- the harness: timers and signals


def test_time_limit_keeps_the_per_test_timeout_armed():
    """``time_limit`` (used around the readers in the fuzz tests) and pytest-timeout share
    SIGALRM: after the block the per-test timer is back, with the time it had left."""
    before = signal.getitimer(signal.ITIMER_REAL)[0]
    if not before:
        pytest.skip("no per-test timer armed (pytest-timeout off or not the signal method)")
    with time_limit(5):
        pass
    after = signal.getitimer(signal.ITIMER_REAL)[0]
    assert 0 < after <= before
    with pytest.raises(Hang), time_limit(0.05):
        while True:
            pass
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= after


# ------------------------------------------------------- checkpoints: the other refusals


def test_a_missing_checkpoint_and_a_name_without_a_group(tmp_path):
    with pytest.raises(RunError, match="last.npz: checkpoint file not found"):
        load_checkpoint(tmp_path / "last.npz")
    with pytest.raises(RunError, match="is a folder, not a regular file"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint file either
    path = tmp_path / "flat.npz"
    np.savez(path, W=np.zeros(2, np.float32))
    with pytest.raises(RunError, match=r"flat.npz: unexpected array 'W' \(not group/key\)"):
        load_checkpoint(path)


def test_saving_an_object_array_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="params/W is an object array; checkpoints hold "
                                        "numbers only"):
        save_checkpoint(tmp_path / "last.npz", {"params": {"W": np.array([{}, 1], object)}})
    assert list(tmp_path.iterdir()) == []


def test_groups_round_trip_exactly(tmp_path):
    groups = {"params": {"W": np.arange(6, dtype=np.float32).reshape(2, 3),
                         "b": np.zeros(0, np.float32)},
              "trainer": {"meta": np.array('{"epoch": 1}'), "step": np.array(7)}}
    save_checkpoint(str(tmp_path / "c.npz"), groups)  # str or Path, both accepted
    back = load_checkpoint(str(tmp_path / "c.npz"))
    assert set(back) == set(groups)
    for group, arrays in groups.items():
        assert set(back[group]) == set(arrays)
        for key, value in arrays.items():
            assert back[group][key].dtype == value.dtype
            np.testing.assert_array_equal(back[group][key], value)
    with zipfile.ZipFile(tmp_path / "c.npz") as archive:  # written uncompressed
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


def test_a_compressed_member_claiming_exactly_the_limit_is_not_refused_for_its_size(tmp_path):
    path = tmp_path / "best.npz"
    np.savez_compressed(path, **{"params/W": np.zeros(10_000, np.float32)})
    with zipfile.ZipFile(path) as archive:
        stored = archive.getinfo("params/W.npy").compress_size
    _forge_size(path, "params/W.npy", 1032 * stored + 1024)  # the limit itself
    with pytest.raises(RunError) as info:
        load_checkpoint(path)
    assert "claims" not in str(info.value)  # refused later, for what it holds
    assert "declares 40000 bytes of float32 (10000,)" in str(info.value)

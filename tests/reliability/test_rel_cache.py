"""The decompressed cache proves what it serves: tampered entries, a damaged bundled copy,
a missing home. Real ``mnistkit`` processes, each with its own cache folder."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import default_signals, run_python, subprocess_env

from mnistkit.data.cache import CACHE_SUBDIR, idx_content_digest
from mnistkit.data.idx import write_idx
from mnistkit.data.mnist import BUNDLED_DIR, FILE_NAMES, MNIST_MD5, MNIST_SHA256, load_mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
QUICK = ["--limit", "1000", "--val-size", "100", "--epochs", "1", "-m", "hidden_size=8"]


def mnistkit(*args: str, cache: Path | None, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m mnistkit ARGS`` with the cache in ``cache`` (built-ins only)."""
    env = env if env is not None else subprocess_env()
    if cache is not None:
        env["MNISTKIT_CACHE_DIR"] = str(cache)
    env["MNISTKIT_LOAD_PLUGINS"] = ""
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          preexec_fn=default_signals)


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def inspect_json(cache: Path, *extra: str) -> dict:
    proc = mnistkit("inspect", "--json", *extra, cache=cache)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    """The bundled arrays, read without any cache."""
    data = load_mnist(use_cache=False)
    return {"train-images-idx3-ubyte": data.train.images,
            "train-labels-idx1-ubyte": data.train.labels,
            "t10k-images-idx3-ubyte": data.test.images,
            "t10k-labels-idx1-ubyte": data.test.labels,
            "fingerprint": data.fingerprint()}


@pytest.fixture
def filled_cache(tmp_path) -> Path:
    """A cache folder filled by a real ``mnistkit inspect``."""
    cache = tmp_path / "cache"
    assert inspect_json(cache)["verified"] is True
    assert len(list((cache / CACHE_SUBDIR).glob("*.npy"))) == 4
    return cache


def entry_of(cache: Path, name: str) -> tuple[Path, Path]:
    """The ``.npy`` and ``.json`` of the bundled file ``name`` in ``cache``."""
    source = str((BUNDLED_DIR / f"{name}.gz").resolve())
    for record in (cache / CACHE_SUBDIR).glob("*.json"):
        if json.loads(record.read_text())["source"] == source:
            return record.with_suffix(".npy"), record
    raise AssertionError(f"no cache entry for {name}")


def rewrite(cache: Path, name: str, array: np.ndarray, *, fix_record: bool = True,
            **fields) -> None:
    """Replace the entry's array; make the record agree with it as a careful attacker
    would (its SHA-256, the old CRC-32, the published MD5), plus ``fields``."""
    npy, record = entry_of(cache, name)
    np.save(npy, array, allow_pickle=False)
    meta = json.loads(record.read_text())
    if fix_record:
        meta.update(sha256=idx_content_digest(array), md5=MNIST_MD5[name],
                    crc32=zlib.crc32(np.ascontiguousarray(array).reshape(-1)),
                    shape=list(array.shape), dtype=array.dtype.str)
    meta.update(fields)
    record.write_text(json.dumps(meta))


def _labels_changed(cache: Path, real: dict) -> None:
    labels = real["train-labels-idx1-ubyte"].copy()
    labels[:2000] = 0  # changes the class counts too
    rewrite(cache, "train-labels-idx1-ubyte", labels)


def _labels_rolled(cache: Path, real: dict) -> None:  # same class counts, wrong pairs
    rewrite(cache, "train-labels-idx1-ubyte", np.roll(real["train-labels-idx1-ubyte"], 1))


def _images_changed(cache: Path, real: dict) -> None:
    images = real["train-images-idx3-ubyte"].copy()
    images[:100] = 255 - images[:100]
    rewrite(cache, "train-images-idx3-ubyte", images)


def _npy_swapped_record_untouched(cache: Path, real: dict) -> None:
    rewrite(cache, "t10k-labels-idx1-ubyte", np.roll(real["t10k-labels-idx1-ubyte"], 3),
            fix_record=False)


def _record_sha_set_to_the_shipped_one(cache: Path, real: dict) -> None:
    labels = np.roll(real["t10k-labels-idx1-ubyte"], 3)
    rewrite(cache, "t10k-labels-idx1-ubyte", labels,
            sha256=MNIST_SHA256["t10k-labels-idx1-ubyte"])


def _entry_swapped_for_another_entry(cache: Path, real: dict) -> None:
    test_npy, test_record = entry_of(cache, "t10k-images-idx3-ubyte")
    npy, record = entry_of(cache, "train-images-idx3-ubyte")
    shutil.copyfile(test_npy, npy)  # a valid array with a valid record...
    meta = json.loads(test_record.read_text())
    meta.update({k: json.loads(record.read_text())[k] for k in ("source", "stat")})
    record.write_text(json.dumps(meta))  # ...claiming to be the train images


TAMPERING: dict[str, Callable[[Path, dict], None]] = {
    "labels-changed-record-fixed": _labels_changed,
    "labels-permuted-record-fixed": _labels_rolled,
    "images-changed-record-fixed": _images_changed,
    "npy-swapped-record-untouched": _npy_swapped_record_untouched,
    "record-sha256-set-to-the-shipped-one": _record_sha_set_to_the_shipped_one,
    "entry-swapped-for-another-entry": _entry_swapped_for_another_entry,
}


@pytest.mark.parametrize("tamper", TAMPERING)
def test_a_tampered_entry_is_never_served_nor_reported_verified(filled_cache, real, tamper):
    TAMPERING[tamper](filled_cache, real)
    report = inspect_json(filled_cache)
    assert report["verified"] is True and report["checksums_checked"] == "now"
    assert [(f["file"], f["md5"], f["status"]) for f in report["files"]] == [
        (n, MNIST_MD5[n], "ok") for n in FILE_NAMES]
    assert report["splits"]["train"]["class_counts"] == TRAIN_COUNTS
    for name in FILE_NAMES:  # the source was re-read and the entry rewritten
        npy, _ = entry_of(filled_cache, name)
        np.testing.assert_array_equal(np.load(npy, allow_pickle=False), real[name])


def test_training_never_runs_on_a_poisoned_entry(filled_cache, real, tmp_path):
    _labels_rolled(filled_cache, real)
    proc = mnistkit("train", *QUICK, "--quiet", "--out", tmp_path / "run", cache=filled_cache)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["dataset"]["fingerprint"] == real["fingerprint"]
    assert record["dataset"]["files"] == MNIST_MD5


def test_inspect_verify_on_a_tampered_entry_reads_the_files(filled_cache, real):
    _labels_changed(filled_cache, real)
    report = inspect_json(filled_cache, "--verify")
    assert report["verified"] is True and report["checksums_checked"] == "now, re-reading the files"
    assert report["splits"]["train"]["class_counts"] == TRAIN_COUNTS


def _damaged_bundled_copy(folder: Path) -> Path:
    folder.mkdir()
    for name in FILE_NAMES:
        shutil.copyfile(BUNDLED_DIR / f"{name}.gz", folder / f"{name}.gz")
    with gzip.open(BUNDLED_DIR / "train-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read()[8:], np.uint8)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.roll(labels, 1))
    return folder


# Runs the CLI with the bundled folder pointed at argv[1] (an installation whose files changed).
DAMAGED_INSTALL = """
import sys
from pathlib import Path
import mnistkit.data.mnist as mnist
mnist.BUNDLED_DIR = Path(sys.argv[1])
from mnistkit.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("command", [["inspect"], ["train", *QUICK]])
def test_a_damaged_bundled_copy_is_refused(tmp_path, command):
    folder = _damaged_bundled_copy(tmp_path / "files")
    extra = ["--out", str(tmp_path / "run")] if command[0] == "train" else []
    env = subprocess_env(MNISTKIT_CACHE_DIR=str(tmp_path / "cache"), MNISTKIT_LOAD_PLUGINS="")
    proc = run_python(DAMAGED_INSTALL, str(folder), *command, *extra, env=env)
    no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert "bundled MNIST" in errors[0] and "not the published data" in errors[0]
    assert "train-labels-idx1-ubyte has MD5 " in errors[0] and "reinstall" in errors[0]
    assert not (tmp_path / "run").exists()


def test_a_data_dir_copy_that_differs_is_a_mismatch_every_time(tmp_path):
    folder = _damaged_bundled_copy(tmp_path / "copy")
    cache = tmp_path / "cache"
    for _ in range(2):  # filling the cache, then from it
        proc = mnistkit("inspect", "--json", "--data-dir", folder, cache=cache)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        status = {f["file"]: f["status"] for f in report["files"]}
        assert report["verified"] is False
        assert status == {**dict.fromkeys(FILE_NAMES, "ok"), "train-labels-idx1-ubyte": "mismatch"}
    proc = mnistkit("inspect", "--verify", "--data-dir", folder, cache=cache)
    no_traceback(proc)
    assert proc.returncode == 1 and "checksum mismatch" in proc.stderr


# -- no usable home: no cache, nothing created ------------------------------------------

COUNT_CACHED = """
from mnistkit.data.cache import read_idx_cached
from mnistkit.data.mnist import BUNDLED_DIR
path = BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz"
print(sum(read_idx_cached(path).cached for _ in range(3)))
"""


def homeless_env(home: str | None) -> dict[str, str]:
    env = subprocess_env()
    for name in ("MNISTKIT_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        env.pop(name, None)
    if home is not None:
        env["HOME"] = home
    return env


@pytest.mark.parametrize("home", ["unset", "empty", "missing", "relative"])
def test_no_cache_is_created_without_a_usable_home(tmp_path, home):
    work = tmp_path / "work"
    work.mkdir()
    value = {"unset": None, "empty": "", "missing": str(tmp_path / "gone"),
             "relative": "rel-home"}[home]
    env = homeless_env(value)
    proc = subprocess.run([sys.executable, "-c", COUNT_CACHED], env=env, cwd=work,
                          capture_output=True, text=True, timeout=60, preexec_fn=default_signals)
    assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr  # never a hit
    inspected = mnistkit("inspect", "--json", cache=None, env=env, cwd=work)
    no_traceback(inspected)
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["verified"] is True
    assert not (tmp_path / "gone").exists()
    assert list(work.iterdir()) == []  # no rel-home/.cache either

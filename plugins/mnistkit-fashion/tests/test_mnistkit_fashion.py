"""mnistkit-fashion, offline: generated IDX files served on 127.0.0.1, mirrors patched."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import socket
import tempfile
from pathlib import Path

import mnistkit_fashion
import numpy as np
import pytest
from click.testing import CliRunner
from mnistkit_fashion import datasets
from mnistkit_fashion.datasets import SPECS

from mnistkit.cli import build_cli
from mnistkit.data.cache import fresh_reads, idx_content_digest
from mnistkit.data.download import RemoteFile
from mnistkit.data.idx import write_idx
from mnistkit.datasets import load_dataset
from mnistkit.errors import DataError, DownloadError
from mnistkit.plugins import load_plugins
from mnistkit.testing import conformance_cases, serve_folder


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's cache folder (decompressed MNIST, downloads)."""
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def make_idx_folder(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """Four small gzipped IDX files with MNIST's names (every class in both splits)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return folder


def md5_of(folder: Path) -> dict[str, str]:
    return {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in NAMES}


# Built once at import, so the conformance cases can be parametrised with its path.
DATA = make_idx_folder(Path(tempfile.mkdtemp(prefix="mnistkit-fashion-test-")) / "files")


@pytest.mark.parametrize("check", conformance_cases(
    mnistkit_fashion, data_dirs={"fashion-mnist": DATA, "kmnist": DATA}))
def test_conformance(check):
    check()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def served(tmp_path):
    """A loopback server with the files under good/ and nothing under missing/."""
    root = tmp_path / "www"
    make_idx_folder(root / "good")
    with serve_folder(root) as server:
        yield server, md5_of(root / "good")


def use_mirrors(monkeypatch, name: str, mirrors: list[str], md5s: dict[str, str]) -> None:
    files = tuple(RemoteFile(n, md5=md5s[n]) for n in NAMES)
    monkeypatch.setitem(SPECS, name, dataclasses.replace(SPECS[name], mirrors=tuple(mirrors),
                                                         files=files))


@pytest.fixture
def registry():
    return load_plugins([mnistkit_fashion], entry_points=False).registry


def test_published_checksums_and_class_names_are_declared():
    fashion = {f.name: f.md5 for f in SPECS["fashion-mnist"].files}
    assert fashion == {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    assert SPECS["fashion-mnist"].class_names[0] == "T-shirt/top"
    assert SPECS["fashion-mnist"].class_names[-1] == "Ankle boot"
    kmnist = {f.name: f.md5 for f in SPECS["kmnist"].files}
    assert kmnist["train-images-idx3-ubyte.gz"] == "bdb82020997e1d708af4cf47b453dcf7"
    assert len(SPECS["kmnist"].class_names) == 10


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_first_use_downloads_from_the_first_working_mirror(name, cache, served, monkeypatch,
                                                           registry):
    server, md5s = served
    use_mirrors(monkeypatch, name, [server.url + "missing/", server.url + "good/"], md5s)
    dataset = load_dataset(name, registry=registry)
    assert len(dataset.train) == 60 and len(dataset.test) == 20
    assert dataset.class_names == SPECS[name].class_names and dataset.verified
    assert sorted(p.name for p in (cache / name).iterdir()) == sorted(NAMES)
    assert server.requests[:2] == [f"/missing/{NAMES[0]}", f"/good/{NAMES[0]}"]
    count = len(server.requests)
    again = load_dataset(name, registry=registry)  # present and valid: no request
    assert len(server.requests) == count
    assert again.fingerprint() == dataset.fingerprint()


def test_wrong_checksum_on_every_mirror(cache, served, monkeypatch, registry):
    server, md5s = served
    bad = dict(md5s, **{NAMES[0]: "0" * 32})
    use_mirrors(monkeypatch, "fashion-mnist", [server.url + "good/"], bad)
    with pytest.raises(DownloadError) as info:
        load_dataset("fashion-mnist", registry=registry)
    message = str(info.value)
    assert "wrong checksum" in message and "deleted" in message and "--data-dir" in message
    assert not (cache / "fashion-mnist" / NAMES[0]).exists()


def test_data_dir_works_without_network(cache, monkeypatch, registry, tmp_path):
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    use_mirrors(monkeypatch, "kmnist", [dead], md5_of(DATA))
    with pytest.raises(DownloadError, match="--data-dir"):
        load_dataset("kmnist", registry=registry)
    with fresh_reads():  # decoded now, not served from the cache
        dataset = load_dataset("kmnist", DATA, registry=registry)
    assert len(dataset.train) == 60 and dataset.verified  # the .gz sums match the declared ones
    cached = load_dataset("kmnist", DATA, registry=registry)
    assert not cached.verified  # from the cache: the .gz sums say nothing about these arrays
    assert cached.fingerprint() == dataset.fingerprint()
    monkeypatch.setitem(SPECS, "kmnist", datasets.KMNIST)  # the real published sums
    with fresh_reads():
        assert not load_dataset("kmnist", DATA, registry=registry).verified


def test_a_tampered_cache_entry_is_never_verified(cache, monkeypatch, registry, tmp_path):
    use_mirrors(monkeypatch, "kmnist", ["http://127.0.0.1:9/"], md5_of(DATA))
    folder = tmp_path / "copy"
    shutil.copytree(DATA, folder)
    with fresh_reads():
        assert load_dataset("kmnist", folder, registry=registry).verified
    labels_gz = str((folder / "train-labels-idx1-ubyte.gz").resolve())
    record = next(p for p in cache.glob("idx-v1/*.json")
                  if json.loads(p.read_text())["source"] == labels_gz)
    poisoned = (np.load(record.with_suffix(".npy")) + 1) % 10
    np.save(record.with_suffix(".npy"), poisoned)  # labels changed, the record fixed up
    record.write_text(json.dumps(dict(json.loads(record.read_text()),
                                      sha256=idx_content_digest(poisoned))))
    served = load_dataset("kmnist", folder, registry=registry)
    # no published sum of the decoded arrays exists to catch it: served, but not verified
    assert np.array_equal(served.train.labels, poisoned) and not served.verified
    with fresh_reads():
        again = load_dataset("kmnist", folder, registry=registry)
    assert again.verified and not np.array_equal(again.train.labels, poisoned)


def test_data_dir_with_missing_files(registry, tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="missing"):
        load_dataset("fashion-mnist", tmp_path / "half", registry=registry)


def test_cli_lists_and_trains_on_a_downloaded_dataset(cache, served, monkeypatch, tmp_path):
    server, md5s = served
    use_mirrors(monkeypatch, "fashion-mnist", [server.url + "good/"], md5s)
    cli = build_cli(load_plugins([mnistkit_fashion], entry_points=False))
    runner = CliRunner()
    listing = json.loads(runner.invoke(cli, ["datasets", "--json"]).stdout)
    assert {"fashion-mnist", "kmnist", "mnist"} <= {item["name"] for item in listing["items"]}
    result = runner.invoke(cli, ["train", "--dataset", "fashion-mnist", "--model", "softmax",
                                 "-o", "lr=0.1", "--val-size", "10", "--batch-size", "10",
                                 "--epochs", "1", "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset"]["name"] == "fashion-mnist"


def test_cli_inspect_says_what_was_checked(cache, monkeypatch, tmp_path):
    use_mirrors(monkeypatch, "kmnist", ["http://127.0.0.1:9/"], md5_of(DATA))
    folder = tmp_path / "copy"
    shutil.copytree(DATA, folder)
    cli = build_cli(load_plugins([mnistkit_fashion], entry_points=False))
    reports = []
    for args in ([], [], ["--verify"]):  # decoded now, from the cache, re-read
        result = CliRunner().invoke(cli, ["inspect", "--dataset", "kmnist", "--data-dir",
                                          str(folder), "--json", *args])
        reports.append(json.loads(result.stdout))
    assert [r["verified"] for r in reports] == [True, False, True]
    assert reports[0]["checksums_checked"] == "now"
    assert reports[1]["checksums_checked"].startswith("now, except files served from the cache")
    assert all(f["md5"] == "" and f["status"] == "unknown" for f in reports[1]["files"])


def test_cli_offline_error_is_one_line(cache, monkeypatch):
    monkeypatch.setitem(SPECS, "kmnist", dataclasses.replace(SPECS["kmnist"], mirrors=()))
    cli = build_cli(load_plugins([mnistkit_fashion], entry_points=False))
    result = CliRunner().invoke(cli, ["train", "--dataset", "kmnist", "--epochs", "1"])
    assert result.exit_code == 1
    assert "--data-dir" in result.output and "Traceback" not in result.output

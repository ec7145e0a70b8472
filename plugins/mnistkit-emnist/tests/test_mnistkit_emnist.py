"""mnistkit-emnist on small synthetic files in EMNIST's layout (written with ``write_idx``).

Every image is drawn upright first, then stored transposed as EMNIST stores it, so the
tests know what "upright" must give. Both loaders (mnistkit's reader and python-mnist)
must return exactly those arrays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mnistkit_emnist
import numpy as np
import pytest
from mnistkit_emnist.datasets import SPECS, load, upright
from mnistkit_emnist.python_mnist import import_python_mnist

from mnistkit.data.cache import fresh_reads
from mnistkit.data.idx import write_idx
from mnistkit.datasets import load_dataset
from mnistkit.errors import DataError
from mnistkit.plugins import load_plugins
from mnistkit.testing import conformance_cases

N_TRAIN, N_TEST = 60, 20


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's cache folder."""
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def upright_images(n: int, seed: int) -> np.ndarray:
    """Random upright images with a marker no transpose or flip preserves: the top row
    lit on its left half only."""
    images = np.random.default_rng(seed).integers(0, 200, (n, 28, 28), dtype=np.uint8)
    images[:, 0, :14] = 255
    return images


def labels_for(name: str, n: int) -> np.ndarray:
    """Every class of ``name``, as stored in the files (letters: 1..26)."""
    spec = SPECS[name]
    return (np.arange(n) % len(spec.class_names) + spec.label_offset).astype(np.uint8)


def write_emnist(folder: Path, names=tuple(SPECS), gz: bool = True) -> dict[str, dict]:
    """EMNIST-layout files for ``names`` in ``folder``; the upright truth per dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for index, name in enumerate(names):
        spec = SPECS[name]
        truth[name] = {}
        for split, n in (("train", N_TRAIN), ("test", N_TEST)):
            images_name, labels_name = spec.file_names(split)
            images = upright_images(n, seed=10 * index + len(split))
            labels = labels_for(name, n)
            suffix = ".gz" if gz else ""
            write_idx(folder / f"{images_name}{suffix}", images.transpose(0, 2, 1))  # as EMNIST
            write_idx(folder / f"{labels_name}{suffix}", labels)
            truth[name][split] = (images, labels - spec.label_offset)
    return truth


# Built once at import, so the conformance cases can be parametrised with its path.
DATA = Path(tempfile.mkdtemp(prefix="mnistkit-emnist-test-"))
TRUTH = write_emnist(DATA)


@pytest.mark.parametrize("check", conformance_cases(
    mnistkit_emnist, data_dirs=dict.fromkeys(SPECS, DATA)))
def test_conformance(check):
    check()


def test_the_six_datasets_are_registered_with_their_classes():
    registry = load_plugins([mnistkit_emnist], entry_points=False).registry
    assert {n for n in registry.names("dataset") if n.startswith("emnist-")} == {
        "emnist-digits", "emnist-letters", "emnist-balanced", "emnist-byclass",
        "emnist-bymerge", "emnist-mnist"}
    assert SPECS["emnist-letters"].class_names == tuple("abcdefghijklmnopqrstuvwxyz")
    assert len(SPECS["emnist-balanced"].class_names) == 47
    assert len(SPECS["emnist-byclass"].class_names) == 62
    assert SPECS["emnist-bymerge"].class_names == SPECS["emnist-balanced"].class_names
    assert SPECS["emnist-balanced"].class_names[36:] == tuple("abdefghnqrt")


@pytest.mark.parametrize("loader", ["mnistkit", "python-mnist"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_both_loaders_give_the_upright_images_and_shifted_labels(name, loader):
    dataset = load(name, DATA, loader)
    for split in ("train", "test"):
        images, labels = TRUTH[name][split]
        got = dataset.split(split)
        assert got.images.dtype == np.uint8 and got.labels.dtype == np.uint8
        assert np.array_equal(got.images, images), f"{name} {split} not upright"
        assert np.array_equal(got.labels, labels)
        assert (got.images[:, 0, :14] == 255).all()  # the marker: top row, left half
    assert dataset.class_names == SPECS[name].class_names


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_the_two_loaders_agree_on_plain_and_gz_files_in_a_gzip_subfolder(tmp_path, gz):
    write_emnist(tmp_path / "gzip", names=("emnist-letters",), gz=gz)  # the archive's folder
    ours = load("emnist-letters", tmp_path, "mnistkit")
    theirs = load("emnist-letters", tmp_path, "python-mnist")
    assert ours.fingerprint() == theirs.fingerprint()
    assert ours.test.labels.max() == 19 and ours.class_names[0] == "a"  # labels 1..20 stored


def test_upright_transposes_in_place_or_into_a_copy():
    stored = upright_images(5, 0).transpose(0, 2, 1).copy()
    expected = stored.transpose(0, 2, 1).copy()
    read_only = stored.copy()
    read_only.flags.writeable = False
    assert np.array_equal(upright(read_only), expected)
    result = upright(stored)
    assert result is stored and np.array_equal(result, expected)


def test_through_load_dataset_with_the_loader_option():
    registry = load_plugins([mnistkit_emnist], entry_points=False).registry
    a = load_dataset("emnist-digits", DATA, registry=registry)
    b = load_dataset("emnist-digits", DATA, options={"loader": "python-mnist"},
                     registry=registry)
    assert a.fingerprint() == b.fingerprint() and "python-mnist" in b.source
    assert not b.files  # MD5s come from mnistkit's reader, when it reads the source
    with fresh_reads():
        fresh = load_dataset("emnist-digits", DATA, registry=registry)
    assert sorted(fresh.files) == sorted(n for s in ("train", "test")
                                         for n in SPECS["emnist-digits"].file_names(s))
    assert all(len(md5) == 32 for md5 in fresh.files.values())


def test_missing_files_explain_how_to_get_them(tmp_path):
    write_emnist(tmp_path, names=("emnist-digits",))
    with pytest.raises(DataError) as info:
        load("emnist-letters", tmp_path)
    message = str(info.value)
    assert "emnist-letters-train-images-idx3-ubyte.gz" in message
    assert "nist.gov" in message and "--data-dir" in message and "gzip.zip" in message


def _mapping_lines(name: str) -> list[str]:
    spec = SPECS[name]
    if spec.label_offset:  # letters: label, upper-case code, lower-case code
        return [f"{i + 1} {ord(c.upper())} {ord(c)}" for i, c in enumerate(spec.class_names)]
    return [f"{i} {ord(c)}" for i, c in enumerate(spec.class_names)]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_class_names_are_checked_against_a_mapping_file(tmp_path, name):
    write_emnist(tmp_path, names=(name,))
    subset = SPECS[name].subset
    mapping = tmp_path / f"emnist-{subset}-mapping.txt"
    lines = _mapping_lines(name)
    mapping.write_text("\n".join(lines) + "\n")
    assert load(name, tmp_path).class_names == SPECS[name].class_names
    label, code = lines[-1].split()[0], lines[-1].split()[-1]
    lines[-1] = f"{label} {int(code) + 1}"
    mapping.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"label {label} is"):
        load(name, tmp_path)


def test_a_letters_label_of_zero_is_a_data_error(tmp_path):
    write_emnist(tmp_path, names=("emnist-letters",))
    write_idx(tmp_path / "emnist-letters-test-labels-idx1-ubyte.gz",
              np.zeros(N_TEST, np.uint8))
    for loader in ("mnistkit", "python-mnist"):
        with pytest.raises(DataError, match="label 0 at index 0; emnist-letters labels are 1..26"):
            load("emnist-letters", tmp_path, loader)


def test_a_truncated_file_is_a_data_error_with_both_loaders(tmp_path):
    write_emnist(tmp_path, names=("emnist-digits",), gz=False)
    path = tmp_path / "emnist-digits-test-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated"):
        load("emnist-digits", tmp_path, "mnistkit")
    with pytest.raises(DataError, match=str(path)):
        load("emnist-digits", tmp_path, "python-mnist")


def test_python_mnist_missing_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist", None)  # import mnist raises ImportError
    with pytest.raises(DataError, match=r"needs the python-mnist package .*pip install"):
        import_python_mnist()
    assert load("emnist-digits", DATA).n_classes == 10  # the default loader needs nothing


def test_the_unrelated_mnist_package_is_detected(tmp_path, monkeypatch):
    fake = tmp_path / "shadow" / "mnist"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(  # what the PyPI package 'mnist' looks like
        "def train_images():\n    raise RuntimeError('downloads from the internet')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "shadow"))
    monkeypatch.delitem(sys.modules, "mnist", raising=False)
    with pytest.raises(DataError) as info:
        load("emnist-digits", DATA, "python-mnist")
    message = str(info.value)
    assert str(fake / "__init__.py") in message and "is not python-mnist's" in message
    assert "pip uninstall -y mnist python-mnist" in message


# --- the command line, in real processes -------------------------------------------------

def mnistkit_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("MNISTKIT_LOAD_PLUGINS", None)
    env.pop("MNISTKIT_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_cli_lists_the_datasets_with_the_loader_option():
    done = mnistkit_cli("datasets", "--json")
    assert done.returncode == 0, done.stderr
    items = {i["name"]: i for i in json.loads(done.stdout)["items"]}
    assert {f"emnist-{s}" for s in ("digits", "letters", "balanced", "byclass", "bymerge",
                                     "mnist")} <= set(items)
    assert items["emnist-letters"]["plugin"] == "emnist"
    assert [o["name"] for o in items["emnist-letters"]["options"]] == ["loader"]


@pytest.mark.parametrize("loader", ["mnistkit", "python-mnist"])
def test_cli_inspect_with_either_loader(loader):
    done = mnistkit_cli("inspect", "--dataset", "emnist-letters", "--data-dir", DATA,
                        "-d", f"loader={loader}", "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["class_names"] == list("abcdefghijklmnopqrstuvwxyz")
    counts = facts["splits"]["train"]["class_counts"]
    expected = np.bincount(TRUTH["emnist-letters"]["train"][1], minlength=26).tolist()
    assert (list(counts.values()) if isinstance(counts, dict) else counts) == expected


def test_cli_trains_on_letters(tmp_path):
    done = mnistkit_cli("train", "--dataset", "emnist-letters", "--data-dir", DATA, "--model",
                        "softmax", "--epochs", "1", "--val-size", "10", "--batch-size", "10",
                        "--out", tmp_path / "run", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["dataset"]["name"] == "emnist-letters"
    assert record["dataset"]["class_names"] == list("abcdefghijklmnopqrstuvwxyz")
    assert record["model_options"] and record["status"] == "finished"


@pytest.mark.parametrize("args, fragment", [
    (["-d", "loader=pymnist"], "loader"),
    (["-d", "loadr=python-mnist"], "loadr"),
    (["-d", "loader"], "expected KEY=VALUE"),
])
def test_cli_bad_dataset_options_are_one_line(args, fragment):
    done = mnistkit_cli("inspect", "--dataset", "emnist-digits", "--data-dir", DATA, *args)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in done.stderr


def test_cli_missing_files_are_one_line_with_instructions(tmp_path):
    done = mnistkit_cli("inspect", "--dataset", "emnist-balanced", "--data-dir", tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "gzip.zip" in errors[0] and "--data-dir" in errors[0]

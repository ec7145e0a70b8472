"""Conformance checks of a dataset factory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mnistkit.data.dataset import Dataset
from mnistkit.errors import MnistkitError
from mnistkit.testing._core import (
    Subject,
    check_declared_options,
)


def _load(s: Subject, check: str, data_dir: Path | None) -> Any:
    options = s.make_options(check)
    try:
        return s.factory(options, data_dir)
    except MnistkitError as exc:
        s.fail(check, f"loading from {str(data_dir) if data_dir else 'its default location'} "
               f"failed: {exc}", "give the check a data_dir holding the dataset's files")
    except Exception as exc:
        s.fail(check, f"factory(options, data_dir) raised {type(exc).__name__}: {exc}",
               "raise mnistkit.errors.DataError for missing or invalid data")


def _dataset_options(s: Subject) -> None:
    check_declared_options(s)


def _dataset_load(s: Subject) -> None:
    ds = _load(s, "load", s.data_dir)
    if not isinstance(ds, Dataset):
        s.fail("load", f"the factory returned {type(ds).__name__}",
               "return a mnistkit.data.Dataset")
    for split_name in ("train", "test"):
        split = ds.split(split_name)
        if len(split) == 0:
            s.fail("load", f"the {split_name} split is empty", "load both splits")
        if split.images.shape[1:] != (28, 28):
            s.fail("load", f"{split_name} images are {split.images.shape[1:]}, not 28x28",
                   "models take 784 inputs: resize or pad to 28x28")
    names = ds.class_names
    if (len(names) < 2 or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)):
        s.fail("load", f"class_names {names!r} are not distinct non-empty strings",
               "pass class_names=(...) with one name per label")
    if not ds.source:
        s.fail("load", "Dataset.source is empty", "say where the data came from (a folder "
               "or URL), it is recorded in run.json")


def _dataset_deterministic(s: Subject) -> None:
    a, b = _load(s, "deterministic", s.data_dir), _load(s, "deterministic", s.data_dir)
    if a.fingerprint() != b.fingerprint():
        s.fail("deterministic", "two loads give different data",
               "do not shuffle or sample when loading; the trainer shuffles")


def _dataset_missing(s: Subject) -> None:
    options = s.make_options("missing")
    with tempfile.TemporaryDirectory() as empty:
        try:
            s.factory(options, Path(empty))
        except MnistkitError as exc:
            if not str(exc):
                s.fail("missing", "the error for an empty data folder has no message",
                       "say which files are missing and where they were looked for")
            return
        except Exception as exc:
            s.fail("missing", f"an empty data folder raised {type(exc).__name__}: {exc}",
                   "raise mnistkit.errors.DataError naming the folder and the missing files")
    s.fail("missing", "an empty data folder did not raise", "raise mnistkit.errors.DataError "
           "when the files are not there (never download into a folder given with --data-dir)")


DATASET_FUNCS = {"options": _dataset_options, "load": _dataset_load,
                  "deterministic": _dataset_deterministic, "missing": _dataset_missing}



"""The validation hold-out when the user gives none: the dataset's own default, else
10,000 capped at a sixth of the training images; a too-large one says how to fix it."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit import hookimpl
from mnistkit.cli import build_cli
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import DataError
from mnistkit.plugins import load_plugins
from mnistkit.runs import DEFAULT_VAL_SIZE, val_size_for


def _split(n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                 (np.arange(n) % 10).astype(np.uint8))


def _dataset(n_train: int, **fields) -> Dataset:
    return Dataset("small", _split(n_train), _split(60, 1), source="generated", **fields)


def _cli_with(**fields):
    module = types.ModuleType("small_dataset_plugin")
    module.mnistkit_register_datasets = hookimpl(
        lambda register: register("small", lambda options, data_dir: _dataset(600, **fields),
                                  help="600 training images"))
    return build_cli(load_plugins([module], entry_points=False))


def _train(cli, tmp_path, *args):
    return CliRunner().invoke(cli, ["train", "--dataset", "small", "--epochs", "1", "--json",
                                    "--out", str(tmp_path / "run"), *args])


@pytest.mark.parametrize(("n_train", "fields", "given", "expected"), [
    (60_000, {}, None, DEFAULT_VAL_SIZE),
    (600, {}, None, 100),                       # a sixth of a small dataset
    (600, {"default_val_size": 50}, None, 50),  # the dataset's own default
    (600, {"default_val_size": 50}, 0, 0),      # what the user gives wins
])
def test_val_size_for(n_train, fields, given, expected):
    assert val_size_for(_dataset(n_train, **fields), given) == expected


@pytest.mark.parametrize("bad", [-1, 600, 10_000, True, 2.5])
def test_a_dataset_default_that_cannot_be_held_out_is_refused(bad):
    with pytest.raises(DataError, match="default_val_size must be a count of images from 0 "
                                        "to 599"):
        _dataset(600, default_val_size=bad)


@pytest.mark.parametrize(("fields", "expected_val"), [({}, 100),
                                                      ({"default_val_size": 50}, 50)])
def test_a_small_dataset_trains_with_no_val_size(tmp_path, fields, expected_val):
    result = _train(_cli_with(**fields), tmp_path)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["training"]["val_size"] == expected_val
    assert record["dataset"]["n_val"] == expected_val
    assert record["dataset"]["n_train"] == 600 - expected_val


def test_a_too_large_val_size_is_one_line_that_suggests_the_fix(tmp_path):
    result = _train(_cli_with(), tmp_path, "--val-size", "10000")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == ["Error: --val-size must be between 0 and 599 (the dataset has 600 "
                     "training images); got 10000: give a smaller --val-size, or leave it "
                     "out for the dataset's default"]
    assert not (tmp_path / "run").exists()  # nothing claimed for a run that cannot start

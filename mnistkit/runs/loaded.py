"""Loading a trained run: its record, its model with the chosen parameters, and its
splits of the dataset (``split("test")``, ``"val"``, ``"train"``), which ``mnistkit
test`` and ``mnistkit visualise`` evaluate.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.checkpoint import check_params
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import DataError, MnistkitError, OptionsError, RunError, setting
from mnistkit.registry import Registry
from mnistkit.runs.build import build_model, split_train_val
from mnistkit.runs.folder import CHECKPOINTS, RUN_JSON, RunFolder
from mnistkit.runs.record import RunRecord

#: The splits of a run: the dataset's test images, and the run's own parts of the
#: training images (the ``val_size`` held out at the end, the images it trained on).
SPLITS = ("test", "val", "train")


@dataclasses.dataclass
class LoadedRun:
    """A trained run read back: its record (the JSON form; typed: :attr:`info`), the
    model with the chosen parameters, and the dataset it was loaded with."""

    path: Path
    record: dict[str, Any]
    model: Any
    dataset: Dataset | None = None

    @functools.cached_property
    def info(self) -> RunRecord:
        """The record, typed."""
        return RunRecord.from_json(self.record, self.path)

    @property
    def pixel_scale(self) -> float:
        return float(self.record["training"]["pixel_scale"])

    def split(self, name: str) -> Split:
        """The images of split ``name`` (one of :data:`SPLITS`): the dataset's test split,
        or the run's own validation or training part of its training images.

        Refused (one line): a split the run does not have (``val`` of a run that held out
        none), a dataset that no longer holds the run's split (other data than it was
        trained on), and an empty selection.
        """
        if self.dataset is None:
            raise RunError(f"{self.path}: loaded without its dataset; use load_run")
        return run_split(self.path, self.info, self.dataset, name)


def check_split(path: str | Path, info: RunRecord, name: str) -> None:
    """Refuse a split the run at ``path`` does not have, from its record alone (before
    any data is loaded): ``val`` of a run that held out no validation images."""
    if name not in SPLITS:
        raise OptionsError(f"choose a split of {', '.join(SPLITS)}; got {name!r}")
    if name == "val" and not info.training.val_size:
        raise OptionsError(f"{path} has no validation images (it was trained with "
                           f"{setting('val_size')} 0); use {setting('split')} test or "
                           f"{setting('split')} train")


def run_split(path: str | Path, info: RunRecord, dataset: Dataset, name: str) -> Split:
    """Split ``name`` of the run at ``path`` (record ``info``) in ``dataset``: see
    :meth:`LoadedRun.split`."""
    check_split(path, info, name)
    if name == "test":
        part = dataset.test
    elif len(dataset.train) == 0:
        part = dataset.train
    else:
        val_size, limit = info.training.val_size, info.training.limit
        try:
            train, val = split_train_val(dataset.train, val_size, limit)
        except OptionsError:
            used = f" and trained on {limit}" if limit is not None else ""
            raise RunError(
                f"{path} held out {val_size} validation images{used}, but dataset "
                f"{dataset.name!r} now has only {len(dataset.train)} training images; use the "
                f"run's data ({setting('data_dir')}) or {setting('split')} test") from None
        part = val if name == "val" else train
    if len(part) == 0:
        kind = "test" if name == "test" else "training"
        raise DataError(f"dataset {dataset.name!r} has no {kind} images: nothing to evaluate "
                        f"with {setting('split')} {name}")
    return part


def load_run(path: str | Path, registry: Registry, dataset: Dataset,
             which: str = "best") -> LoadedRun:
    """Rebuild the model of the run at ``path`` with its ``best`` or ``last`` parameters."""
    folder = RunFolder(path)
    record = folder.read_json()
    if which not in CHECKPOINTS:
        raise OptionsError(f"choose best or last parameters; got {which!r}")
    entry = registry.get("model", record["model"])
    try:
        model = build_model(entry, record["model_options"], np.random.default_rng(0), dataset)
    except MnistkitError:
        raise
    except Exception as exc:
        raise RunError(f"{folder.path}: cannot rebuild model {record['model']!r} from {RUN_JSON} "
                       f"({type(exc).__name__}: {exc})") from None
    file = folder.checkpoint_path(which)
    saved = folder.load_checkpoint(which, expected_params=model.params).get("params", {})
    check_params(file, saved, model.params)
    for key, value in saved.items():
        model.params[key][...] = value
    return LoadedRun(folder.path, record, model, dataset)

"""The runs package: the typed record and its round trip, the folder's files, a run's
splits, and library errors that name settings (the CLI spells them as flags)."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mnistkit.runs.record as record_module
from mnistkit.cli.app import build_cli
from mnistkit.cli.progress import follow
from mnistkit.data.dataset import Dataset
from mnistkit.errors import DataError, OptionsError, RunError, setting
from mnistkit.plots import read_step_losses
from mnistkit.plugins import load_plugins
from mnistkit.runs import (
    EpochRecord,
    LoadedRun,
    Run,
    RunFolder,
    RunRecord,
    RunSpec,
    TrainingRecord,
    check_split,
    load_run,
    read_record,
)
from mnistkit.training import EpochFinished, TrainConfig


@pytest.fixture(scope="module")
def small(first_mnist_images) -> Dataset:
    """1200 real training images and 300 test images."""
    return first_mnist_images(1200, 300)


def _train(small, registry, folder: Path, **overrides) -> Path:
    settings = dict(model="twolayer", model_options={"hidden_size": 16}, val_size=200,
                    limit=600, config=TrainConfig(epochs=2, batch_size=100, seed=1))
    settings.update(overrides)
    run = Run.start(RunSpec(**settings), small, registry, folder)
    for _ in run.train():
        pass
    return run.path


@pytest.fixture(scope="module")
def runs(small, registry, tmp_path_factory) -> dict[str, Path]:
    """A plain run, one without validation images, one with an augmentation."""
    root = tmp_path_factory.mktemp("runs")
    return {"plain": _train(small, registry, root / "plain"),
            "no-val": _train(small, registry, root / "no-val", val_size=0, limit=None),
            "augmented": _train(small, registry, root / "augmented", augment="affine")}


def _text(value) -> str:
    return json.dumps(value, indent=2)  # NaN == NaN here, unlike in dict comparison


# -- the record ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["plain", "no-val", "augmented"])
def test_real_records_round_trip(runs, name):
    data = read_record(runs[name])
    record = RunRecord.from_json(data)
    assert _text(record.to_json()) == _text(data)
    assert record.to_text() == (runs[name] / "run.json").read_text()  # the file, byte for byte
    assert RunFolder(runs[name]).read() == record
    assert isinstance(record.history[0], EpochRecord)
    assert isinstance(record.training, TrainingRecord)
    assert record.best == record.history[record.best_epoch - 1]


def test_records_are_typed(runs):
    record = RunFolder(runs["augmented"]).read()
    assert record.status == "finished" and record.training.epochs == 2
    assert record.augmentation.name == "affine" and record.augmentation.options
    assert record.training.config() == TrainConfig(epochs=2, batch_size=100, seed=1)
    no_val = RunFolder(runs["no-val"]).read()
    assert np.isnan(no_val.history[0].val_accuracy)
    assert no_val.history[0].score == no_val.history[0].train_accuracy  # no validation set


def test_an_old_record_without_augmentation_or_recipe_still_reads(runs, small, registry,
                                                                  tmp_path):
    """Runs made before augmentation existed: no ``augmentation``, no ``recipe``, and no
    augmentation plugin; they trained on plain images."""
    old = tmp_path / "old"
    shutil.copytree(runs["plain"], old)
    data = json.loads((old / "run.json").read_text())
    for key in ("augmentation", "recipe"):
        del data[key]
    del data["plugins"]["augmentation"]
    data["status"], data["training"]["epochs"] = "interrupted", 2
    (old / "run.json").write_text(json.dumps(data, indent=2))

    record = RunFolder(old).read()
    assert record.augmentation.name == "none" and record.augmentation.options == {}
    assert record.recipe is None
    written = record.to_json()
    assert written["augmentation"] == {"name": "none", "options": {}}
    assert {k: v for k, v in written.items() if k not in ("augmentation", "recipe")} == {
        k: v for k, v in data.items()}
    assert load_run(old, registry, small).info.augmentation.name == "none"
    resumed = Run.resume(old, small, registry, epochs=3)  # the old run trains further
    for _ in resumed.train():
        pass
    assert read_record(old)["augmentation"] == {"name": "none", "options": {}}
    assert len(read_record(old)["history"]) == 3


def test_unknown_keys_are_kept(runs):
    data = read_record(runs["plain"])
    data["future"] = {"kept": True}
    record = RunRecord.from_json(data)
    assert record.extra == {"future": {"kept": True}}
    assert record.to_json()["future"] == {"kept": True}


def test_to_json_is_a_copy(runs):
    record = RunFolder(runs["plain"]).read()
    record.to_json()["model_options"]["hidden_size"] = 1
    assert record.model_options["hidden_size"] == 16


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("training"), "missing 'training'"),
    (lambda d: d["history"].append({"epoch": "one"}), "history row 3 is not a record"),
    (lambda d: d.update(best_epoch=7), "best_epoch 7 is not one of the recorded epochs"),
    (lambda d: d.update(format_version=99), "run format 99 is not supported"),
    (lambda d: d["metrics"].update(test_loss=float("inf")),
     "metrics.test_loss is Infinity, not a finite number"),
    (lambda d: d["history"][0].update(lr=float("nan")),
     r"history.\*.lr is NaN, not a finite number"),
])
def test_from_json_validates_like_reading_the_file(runs, change, message):
    data = read_record(runs["plain"])
    change(data)
    with pytest.raises(RunError, match=message):
        RunRecord.from_json(data, "the record")


def test_the_schema_has_one_list_of_fields():
    from mnistkit.runs.folder import history_csv

    fields = [f.name for f in dataclasses.fields(EpochRecord)]
    assert tuple(fields) == record_module.EPOCH_FIELDS
    assert history_csv([]).strip() == ",".join(fields)
    assert list(record_module._TRAINING_TYPES) == [
        f.name for f in dataclasses.fields(TrainingRecord)]
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(
        record_module._TRAINING_TYPES)
    event = EpochFinished(1, 0.5, 0.9, 0.8, 0.1, 2.0)
    assert isinstance(event, EpochRecord) and event.to_dict() == event.to_json()
    assert EpochRecord.from_json(event.to_json()) == EpochRecord(1, 0.5, 0.9, 0.8, 0.1, 2.0)
    with pytest.raises(TypeError):
        EpochRecord.from_json({"epoch": 1})


def test_history_rows_are_the_trainers_epoch_records(runs):
    record = RunFolder(runs["plain"]).read()
    rows = (runs["plain"] / "history.csv").read_text().splitlines()
    assert rows[0] == ",".join(record_module.EPOCH_FIELDS) and len(rows) == 3
    assert rows[1].split(",")[1] == repr(record.history[0].train_loss)


# -- the folder ----------------------------------------------------------------------------
def test_the_step_log_is_read_through_the_folder(runs):
    folder = RunFolder(runs["plain"])
    losses = folder.read_step_losses()
    assert len(losses) == 2 * 6  # 600 images in batches of 100, two epochs
    assert np.array_equal(read_step_losses(runs["plain"]), losses)
    info = folder.read()
    assert info.metrics["train_loss"] == pytest.approx(float(np.mean(losses[-6:])))


def test_a_folder_is_claimed_once(runs, tmp_path):
    from mnistkit.run_lock import RunBusyError

    made = RunFolder.create(tmp_path / "new")
    assert made.owned and made.path == tmp_path / "new"
    with pytest.raises(RunBusyError):
        RunFolder(tmp_path / "new").claim()
    made.release()
    assert not made.owned
    taken = RunFolder(tmp_path / "new").claim()
    assert taken.owned
    taken.release()


# -- a run's splits -----------------------------------------------------------------------
def test_split_gives_the_runs_own_parts(runs, small, registry):
    loaded = load_run(runs["plain"], registry, small)
    assert isinstance(loaded, LoadedRun) and loaded.dataset is small
    assert len(loaded.split("test")) == 300
    assert len(loaded.split("val")) == 200  # the last 200 training images
    assert len(loaded.split("train")) == 600  # the first 600 of the 1000 left
    assert np.array_equal(loaded.split("val").images, small.train.images[1000:])
    assert np.array_equal(loaded.split("train").images, small.train.images[:600])


def test_a_split_the_run_does_not_have_is_refused_from_the_record(runs):
    info = RunFolder(runs["no-val"]).read()
    with pytest.raises(OptionsError) as refused:
        check_split(runs["no-val"], info, "val")
    assert str(refused.value) == (f"{runs['no-val']} has no validation images (it was "
                                  "trained with val_size 0); use split test or split train")
    assert refused.value.worded(lambda s: f"--{s.replace('_', '-')}") == (
        f"{runs['no-val']} has no validation images (it was trained with --val-size 0); "
        "use --split test or --split train")
    check_split(runs["no-val"], info, "train")
    with pytest.raises(OptionsError, match="choose a split of test, val, train"):
        check_split(runs["no-val"], info, "everything")


def test_split_refuses_data_that_no_longer_holds_the_runs_split(runs, small, registry):
    loaded = load_run(runs["plain"], registry, small)
    fewer = Dataset("mnist", small.train.subset(slice(0, 500)), small.test.subset(slice(0, 0)))
    moved = dataclasses.replace(loaded, dataset=fewer)
    with pytest.raises(RunError, match="held out 200 validation images and trained on 600, "
                                       "but dataset 'mnist' now has only 500"):
        moved.split("train")
    with pytest.raises(DataError, match="has no test images: nothing to evaluate with split "
                                        "test"):
        moved.split("test")


def test_visualise_and_test_refuse_a_missing_split_alike(runs):
    cli = build_cli(load_plugins(entry_points=False))
    runner = CliRunner()
    expected = (f"Error: {runs['no-val']} has no validation images (it was trained with "
                "--val-size 0); use --split test or --split train")
    for args in (["test", runs["no-val"], "--split", "val"],
                 ["visualise", "confusion", runs["no-val"], "--split", "val"],
                 ["visualise", "errors", runs["no-val"], "--split", "val"]):
        # checked before the data is loaded: a --data-dir that does not exist is not read
        result = runner.invoke(cli, [str(a) for a in args] + ["--data-dir", "/nonexistent"])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [expected]


# -- errors name settings ------------------------------------------------------------------
def test_library_errors_name_settings_and_the_cli_spells_flags(small, registry, tmp_path):
    with pytest.raises(OptionsError) as refused:
        Run.start(RunSpec(val_size=1200), small, registry, tmp_path / "x")
    assert str(refused.value) == (
        "val_size must be between 0 and 1199 (the dataset has 1200 training images); got "
        "1200: give a smaller val_size, or leave it out for the dataset's default")
    assert refused.value.worded(lambda s: f"--{s.replace('_', '-')}") == (
        "--val-size must be between 0 and 1199 (the dataset has 1200 training images); got "
        "1200: give a smaller --val-size, or leave it out for the dataset's default")
    again = pickle.loads(pickle.dumps(refused.value))
    assert str(again) == str(refused.value)
    plain = RunError(f"a message without settings, {setting('epochs')} aside")
    assert str(plain) == "a message without settings, epochs aside"
    assert RunError("nothing marked").worded(str.upper) == "nothing marked"


def test_follow_returns_the_last_event_with_or_without_a_renderer():
    shown = []

    class Renderer:
        def __enter__(self):
            shown.append("enter")

        def __exit__(self, *exc):
            shown.append("exit")

        def update(self, event):
            shown.append(event)

    assert follow(iter([1, 2, 3])) == 3
    assert follow(iter([])) is None
    assert follow(iter([1, 2]), Renderer()) == 2 and shown == ["enter", 1, 2, "exit"]


def test_a_checkpoint_whose_history_is_not_epoch_records_is_damaged(runs, small, registry,
                                                                    tmp_path):
    """The trainer's history in ``last.npz`` becomes ``run.json``'s on the next epoch:
    rows that are not records of numbers are refused on resume, not written."""
    from mnistkit.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    groups = load_checkpoint(run / "last.npz")
    meta = json.loads(str(groups["trainer"]["meta"]))
    meta["history"][1] = {"epoch": 2, "train_loss": "low"}
    groups["trainer"]["meta"] = np.array(json.dumps(meta))
    save_checkpoint(run / "last.npz", groups)
    with pytest.raises(RunError, match="last.npz: trainer state is damaged"):
        Run.resume(run, small, registry, epochs=3)

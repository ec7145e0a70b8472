"""Training on distorted images: seeded, identical after a resume, recorded, never touching
validation or test images; broken augmentation plugins are named; recipes train."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit.augment import Elastic, ElasticOptions, batch_rng
from mnistkit.cli import build_cli
from mnistkit.data.dataset import Dataset
from mnistkit.errors import PluginError
from mnistkit.hookspecs import hookimpl
from mnistkit.plugins import load_plugins
from mnistkit.prefetch import AugmentedBatches
from mnistkit.run_folder import read_record
from mnistkit.runs import Run, RunSpec, augmentation_record
from mnistkit.training import TrainConfig


@pytest.fixture(scope="module")
def small(first_mnist_images) -> Dataset:
    return first_mnist_images(3000, 1000)


def spec(augment="elastic", **overrides) -> RunSpec:
    config = dict(epochs=2, batch_size=64, seed=3)
    config.update(overrides.pop("config", {}))
    base = dict(model="twolayer", model_options={"hidden_size": 32}, val_size=500,
                optimizer_options={"lr": 0.1}, config=TrainConfig(**config), augment=augment)
    base.update(overrides)
    return RunSpec(**base)


def train(run: Run, stop=lambda: False) -> Run:
    for _ in run.train(stop):
        pass
    return run


def test_batches_are_the_distorted_images_of_the_order_in_turn(small):
    images, labels = small.train.images[:200], small.train.labels[:200]
    order = np.random.default_rng(0).permutation(200)
    made = AugmentedBatches(images, labels, Elastic(ElasticOptions()), 32, 1 / 255, seed=7)
    made.start(epoch=2, order=order, first_step=1, steps=4)
    reference = Elastic(ElasticOptions())
    try:
        for step in (1, 2, 3):
            x, y = made.take()
            idx = order[step * 32:(step + 1) * 32]
            expected = reference.distort(images[idx], batch_rng(7, 2, step))
            assert x.dtype == np.float32 and x.shape == (32, 784)
            np.testing.assert_array_equal(x, expected.reshape(32, -1) * np.float32(1 / 255))
            np.testing.assert_array_equal(y, labels[idx])
    finally:
        made.close()
    assert not any(t.name.startswith("mnistkit-augment") for t in threading.enumerate())


def test_augmented_training_is_seeded_and_differs_from_plain(small, registry, tmp_path):
    a = train(Run.start(spec(), small, registry, tmp_path / "a"))
    b = train(Run.start(spec(), small, registry, tmp_path / "b"))
    plain = train(Run.start(spec(augment="none"), small, registry, tmp_path / "plain"))
    for key in a.model.params:
        assert np.array_equal(a.model.params[key], b.model.params[key]), key
    assert not np.array_equal(a.model.params["W1"], plain.model.params["W1"])
    assert read_record(tmp_path / "a")["augmentation"] == {
        "name": "elastic", "options": {"sigma": 4.0, "alpha": 34.0}}
    assert read_record(tmp_path / "plain")["augmentation"] == {"name": "none", "options": {}}


@pytest.mark.parametrize("augment", ["elastic", "affine"])
@pytest.mark.parametrize("stop_after", [13, 39, 50])  # mid-epoch 1, at the epoch end, epoch 2
def test_interrupted_then_resumed_equals_uninterrupted(augment, stop_after, small, registry,
                                                       tmp_path):
    whole = train(Run.start(spec(augment), small, registry, tmp_path / "whole"))
    steps = iter(range(10_000))
    train(Run.start(spec(augment), small, registry, tmp_path / "part"),
          stop=lambda: next(steps) >= stop_after)
    assert read_record(tmp_path / "part")["status"] == "interrupted"
    resumed = train(Run.resume(tmp_path / "part", small, registry))
    for key in whole.model.params:
        assert np.array_equal(whole.model.params[key], resumed.model.params[key]), key
    assert resumed.record["history"][-1]["train_loss"] == whole.record["history"][-1]["train_loss"]
    assert resumed.record["metrics"] == whole.record["metrics"]


def test_validation_and_test_images_are_never_distorted(small, registry, tmp_path):
    seen: list[np.ndarray] = []

    class Recording:
        def distort(self, images, rng):
            seen.append(images.copy())
            return images

    run = Run.start(spec(augment="none"), small, registry, tmp_path / "r")
    run.trainer.augmented = AugmentedBatches(run.trainer.train.images,
                                             run.trainer.train.labels, Recording(), 64,
                                             1 / 255, seed=3)
    train(run)
    distorted = np.concatenate(seen)
    assert len(distorted) == 2 * 40 * 64  # two epochs of 40 batches of training images
    train_rows = {row.tobytes() for row in small.train.images[:2500]}
    assert all(image.tobytes() in train_rows for image in distorted[:200])
    held_out = {row.tobytes() for row in small.train.images[2500:]} | {
        row.tobytes() for row in small.test.images}
    assert not any(image.tobytes() in held_out for image in distorted)


class _Broken:
    def __init__(self, options):
        pass

    def distort(self, images, rng):
        return images.astype(np.float32)


class _Raising(_Broken):
    def distort(self, images, rng):
        raise ZeroDivisionError("oops")


class _BrokenPlugin:
    @hookimpl
    def mnistkit_register_augmentations(self, register):
        register("floaty", _Broken, help="returns float32")
        register("raising", _Raising, help="raises")


@pytest.mark.parametrize(("name", "words"), [
    ("floaty", "distort must return uint8 images shaped (64, 28, 28); got float32"),
    ("raising", "distort failed (ZeroDivisionError: oops)")])
def test_a_broken_augmentation_is_named_and_the_run_records_it(name, words, small, tmp_path):
    registry = load_plugins([_BrokenPlugin()], entry_points=False).registry
    run = Run.start(spec(augment=name), small, registry, tmp_path / "r")
    with pytest.raises(PluginError) as caught:
        train(run)
    assert words in str(caught.value) and f"augmentation {name!r}" in str(caught.value)
    assert "_BrokenPlugin" in str(caught.value)  # the plugin that registered it
    record = read_record(tmp_path / "r")
    assert record["status"] == "failed" and words in record["error"]
    assert not any(t.name.startswith("mnistkit-augment") for t in threading.enumerate())


def test_runs_made_before_augmentation_existed_read_as_none(small, registry, tmp_path):
    train(Run.start(spec(augment="none", config={"epochs": 1}), small, registry,
                    tmp_path / "old"))
    path = tmp_path / "old" / "run.json"
    record = json.loads(path.read_text())
    del record["augmentation"], record["recipe"]
    path.write_text(json.dumps(record))
    assert augmentation_record(read_record(tmp_path / "old")) == {"name": "none", "options": {}}
    resumed = train(Run.resume(tmp_path / "old", small, registry, epochs=2))
    assert resumed.trainer.augmented is None and resumed.record["status"] == "finished"


# -- the command line ---------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def test_cli_augmented_run_trains_resumes_and_records(tmp_path):
    out = tmp_path / "aug"
    result = invoke("train", "--augment", "elastic", "-a", "sigma=3", "--limit", "600",
                    "--val-size", "200", "--epochs", "1", "-m", "hidden_size=16", "--out",
                    str(out), "-q")
    assert result.exit_code == 0, result.output
    record = read_record(out)
    assert record["augmentation"] == {"name": "elastic", "options": {"sigma": 3.0, "alpha": 34.0}}
    result = invoke("train", "--resume", str(out), "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    assert len(read_record(out)["history"]) == 2


@pytest.mark.parametrize(("args", "words"), [
    (["--augment", "elastik"], "Did you mean 'elastic'?"),
    (["--augment", "elastic", "-a", "sigma=-1"], "sigma must be in (0, 28]"),
    (["--augment", "elastic", "-a", "sigmaa=3"], "sigma"),
    (["--augment", "none", "-a", "x=1"], "takes no options"),
    (["--recipe", "simard2003-elastc"], "Did you mean 'simard2003-elastic'?"),
])
def test_cli_bad_augmentation_or_recipe_is_one_line_and_no_folder(args, words, tmp_path):
    result = invoke("train", *args, "--limit", "100", "--epochs", "1", "--out",
                    str(tmp_path / "r"))
    assert result.exit_code != 0 and words in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_cli_recipe_sets_everything_and_given_options_override_it(tmp_path):
    out = tmp_path / "rec"
    result = invoke("train", "--recipe", "simard2003-elastic", "--epochs", "1", "--limit",
                    "300", "-a", "alpha=20", "-m", "hidden_size=24", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    record = read_record(out)
    assert record["recipe"] == "simard2003-elastic"
    assert record["augmentation"] == {"name": "elastic", "options": {"sigma": 4.0, "alpha": 20.0}}
    assert record["model_options"]["hidden_size"] == 24
    assert record["training"]["epochs"] == 1 and record["training"]["val_size"] == 5000
    # another augmentation than the recipe's: the recipe's elastic options are not carried
    result = invoke("train", "--recipe", "simard2003-elastic", "--augment", "affine",
                    "--epochs", "1", "--limit", "300", "-m", "hidden_size=8",
                    "--out", str(tmp_path / "affine"), "-q")
    assert result.exit_code == 0, result.output
    assert read_record(tmp_path / "affine")["augmentation"]["name"] == "affine"


@pytest.mark.parametrize(("args", "words"), [
    (["--recipe", "simard2003-plain"], "--recipe and --resume cannot be used together"),
    (["-a", "sigma=5"], "-a sigma=5.0 (the run has 3.0)"),
    (["--augment", "affine"], "--augment affine (the run has elastic)"),
])
def test_cli_resume_refuses_other_augmentation_settings(args, words, tmp_path):
    out = tmp_path / "aug"
    assert invoke("train", "--augment", "elastic", "-a", "sigma=3", "--limit", "300",
                  "--epochs", "1", "-m", "hidden_size=8", "--out", str(out),
                  "-q").exit_code == 0
    before = (out / "run.json").read_bytes()
    result = invoke("train", "--resume", str(out), "--epochs", "2", *args)
    assert result.exit_code != 0 and words in result.output, result.output
    assert (out / "run.json").read_bytes() == before

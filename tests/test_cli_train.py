"""`mnistkit train`, `test` and `predict` end to end through the CLI, on small --limit runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit.cli import build_cli

QUICK = ["--limit", "2000", "--val-size", "500", "--epochs", "2", "-m", "hidden_size=32"]


def invoke(*args: str):
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    result = invoke("train", *QUICK, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_train_prints_epoch_lines_and_final_accuracy(run_dir):
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["model_options"]["hidden_size"] == 32
    assert record["training"]["limit"] == 2000
    assert record["dataset"]["n_train"] == 2000 and record["dataset"]["n_val"] == 500
    assert record["dataset"]["name"] == "mnist" and len(record["dataset"]["fingerprint"]) == 64
    assert set(record["versions"]) >= {"mnistkit", "numpy"}
    assert record["metrics"]["test_accuracy"] > 0.6  # 32 steps only; chance is 0.1
    header = (run_dir / "history.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train_loss,train_accuracy,val_accuracy")


def test_train_output_has_one_line_per_epoch(tmp_path):
    result = invoke("train", *QUICK, "--out", str(tmp_path / "r"))
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and "train acc" in lines[0] and "val acc" in lines[0]
    assert "test accuracy" in result.output.splitlines()[-2] + result.output.splitlines()[-1]


def test_quiet_prints_only_the_final_line_and_json_is_parseable(tmp_path):
    quiet = invoke("train", *QUICK, "--quiet", "--out", str(tmp_path / "q"))
    assert quiet.exit_code == 0
    assert quiet.output.count("\n") <= 2 and "test accuracy" in quiet.output
    as_json = invoke("train", *QUICK, "--json", "--out", str(tmp_path / "j"))
    record = json.loads(as_json.stdout)
    assert record["status"] == "finished" and record["run"] == str(tmp_path / "j")


def test_test_command_reports_the_accuracy_train_reported(run_dir):
    record = json.loads((run_dir / "run.json").read_text())
    result = invoke("test", str(run_dir), "--json")
    summary = json.loads(result.stdout)
    assert summary["accuracy"] == record["metrics"]["test_accuracy"]
    assert np.array(summary["confusion_matrix"]).sum() == 10_000
    assert len(summary["per_class"]) == 10
    val = json.loads(invoke("test", str(run_dir), "--split", "val", "--json").stdout)
    assert val["images"] == 500 and val["accuracy"] == pytest.approx(
        record["history"][record["best_epoch"] - 1]["val_accuracy"])
    table = invoke("test", str(run_dir))
    assert "Confusion matrix" in table.output and "precision" in table.output


def test_predict_classifies_a_users_picture(run_dir, tmp_path):
    from PIL import Image

    from mnistkit.datasets import load_dataset

    test = load_dataset("mnist").test
    index = int(np.flatnonzero(test.labels == 7)[0])
    digit = 255 - test.images[index]  # dark ink on a light background, larger than MNIST
    Image.fromarray(np.kron(digit, np.ones((4, 4), np.uint8))).save(tmp_path / "seven.png")
    result = json.loads(invoke("predict", str(run_dir), str(tmp_path / "seven.png"),
                               "--json").stdout)
    top = result[0]["top"]
    assert top[0]["class"] == "7" and len(top) == 3
    assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]


def test_mnistify_matches_mnist_conventions():
    from mnistkit.preprocess import mnistify

    picture = np.full((100, 60), 250, np.uint8)
    picture[10:90, 25:35] = 0  # a dark vertical bar on white: a "1"
    digit = mnistify(picture)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit > 50)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # background is black
    mass = digit.astype(float)
    centre = (np.indices(mass.shape) * mass).sum(axis=(1, 2)) / mass.sum()
    assert np.all(np.abs(centre - 13.5) <= 1.0)


@pytest.mark.parametrize("args, message", [
    (["--model", "twolayr"], "Did you mean 'twolayer'"),
    (["--optimizer", "sgdd"], "unknown optimizer 'sgdd'"),
    (["-m", "hiden_size=3"], "no option 'hiden_size'. Did you mean 'hidden_size'"),
    (["-o", "lr=-1"], "lr must be > 0"),
    (["-o", "lr"], "name=value"),
    (["--batch-size", "0"], "--batch-size must be between 1 and"),
    (["--limit", "999999"], "--limit must be between 1 and 50000"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_user_mistakes_give_one_line_and_nonzero_exit(args, message, tmp_path):
    result = CliRunner().invoke(build_cli(), ["train", *args, "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_test_on_something_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(build_cli(), ["test", str(tmp_path)])
    assert result.exit_code == 1 and "not a run folder" in result.output


def _default_sigint() -> None:
    """preexec_fn: SIGINT back to its default in the child (a suite run as a background job
    inherits it ignored; see ``default_signals`` in tests/reliability/conftest.py)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_a_resumable_run_and_resume_finishes_it(tmp_path):
    """A real SIGINT to a real process: exit 130, then --resume ends like an uninterrupted run."""
    out = tmp_path / "r"
    args = [sys.executable, "-m", "mnistkit", "train", "--limit", "20000", "--val-size", "1000",
            "--epochs", "3", "-m", "hidden_size=64", "--batch-size", "32", "--out", str(out)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True, preexec_fn=_default_sigint)
    deadline = time.time() + 60  # wait for the first epoch's row: the signal lands in epoch 2
    history = out / "history.csv"
    while time.time() < deadline and not (
            history.exists() and len(history.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with: mnistkit train --resume" in err and "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"

    # Same BLAS thread count for all three processes: results are bit-identical per count.
    subprocess.run([*args[:4], "--resume", str(out), "--quiet"], env=env, check=True,
                   capture_output=True, preexec_fn=_default_sigint)
    subprocess.run([*args[:-1], str(tmp_path / "whole"), "--quiet"], env=env, check=True,
                   capture_output=True, preexec_fn=_default_sigint)
    a = np.load(out / "last.npz")
    b = np.load(tmp_path / "whole" / "last.npz")
    for key in ("params/W1", "params/b1", "params/W2", "params/b2"):
        assert np.array_equal(a[key], b[key]), key


def test_a_failing_history_picture_does_not_fail_a_finished_run(tmp_path, monkeypatch):
    import mnistkit.plots

    def full_disk(run_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mnistkit.plots, "save_history_plot", full_disk)
    result = CliRunner().invoke(build_cli(), ["train", *QUICK, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0
    assert "warning: could not draw" in result.output and "No space left" in result.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"

"""mnistkit-compare: the command is registered through the hook and reads runs defensively."""

from __future__ import annotations

import json

import mnistkit_compare
import pytest
from click.testing import CliRunner

from mnistkit.cli import build_cli
from mnistkit.plugins import load_plugins
from mnistkit.testing import conformance_cases


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's cache folder (decompressed MNIST, downloads)."""
    monkeypatch.setenv("MNISTKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("check", conformance_cases(mnistkit_compare))
def test_conformance(check):
    check()


def write_run(folder, **record):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def full_record(model, test_accuracy, seconds):
    return {
        "model": model, "optimizer": "sgd", "model_options": {"layers": [64, 32]},
        "optimizer_options": {"lr": 0.1}, "seed": 0, "status": "finished",
        "dataset": {"name": "mnist"},
        "history": [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.9,
                     "val_accuracy": 0.91, "seconds": seconds},
                    {"epoch": 2, "train_loss": 0.3, "train_accuracy": 0.95,
                     "val_accuracy": 0.95, "seconds": seconds}],
        "metrics": {"test_accuracy": test_accuracy}, "wall_seconds": 2 * seconds}


@pytest.fixture
def cli():
    return build_cli(load_plugins([mnistkit_compare], entry_points=False))


def test_table_of_runs(cli, tmp_path):
    a = write_run(tmp_path / "a", **full_record("twolayer", 0.976, 3.0))
    b = write_run(tmp_path / "b", **full_record("mlp", 0.979, 5.0))
    result = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    for text in ("twolayer", "mlp", "97.60%", "97.90%", "layers=64,32", "lr=0.1"):
        assert text in result.output


def test_json_sorted_and_defensive(cli, tmp_path):
    a = write_run(tmp_path / "a", **full_record("twolayer", 0.976, 3.0))
    b = write_run(tmp_path / "b", **full_record("mlp", 0.979, 5.0))
    odd = write_run(tmp_path / "odd", model="softmax", history="nonsense", metrics=None,
                    wall_seconds="slow", status="interrupted")
    result = CliRunner().invoke(cli, ["compare", str(a), str(odd), str(b), "--sort",
                                      "test_accuracy", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["runs"]
    assert [r["model"] for r in rows] == ["mlp", "twolayer", "softmax"]
    assert rows[0]["best_val_accuracy"] == 0.95 and rows[0]["epochs"] == 2
    assert rows[2]["test_accuracy"] is None and rows[2]["wall_seconds"] is None
    assert rows[2]["epochs"] == 0 and rows[2]["status"] == "interrupted"


@pytest.mark.parametrize(("content", "words"), [(None, "no run.json"), ("{oops", "not valid JSON"),
                                                ("[1, 2]", "JSON object")])
def test_bad_runs_are_one_line_errors(cli, tmp_path, content, words):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "run.json").write_text(content)
    result = CliRunner().invoke(cli, ["compare", str(run)])
    assert result.exit_code == 1
    assert words in result.output and "Traceback" not in result.output


def test_compare_real_runs(cli, tmp_path):
    """Two tiny real trainings, then compare them."""
    runner = CliRunner()
    full = build_cli(load_plugins([mnistkit_compare], entry_points=False))
    for name, model in (("s", "softmax"), ("t", "twolayer")):
        result = runner.invoke(full, ["train", "--model", model, "-o", "lr=0.1", "--limit",
                                      "1000", "--val-size", "200", "--epochs", "1", "-q",
                                      "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["compare", str(tmp_path / "s"), str(tmp_path / "t"),
                                 "--json"])
    rows = json.loads(result.stdout)["runs"]
    assert [r["model"] for r in rows] == ["softmax", "twolayer"]
    assert all(0 < r["test_accuracy"] <= 1 and r["epochs"] == 1 for r in rows)
    assert rows[0]["seed"] == 0

"""Ctrl-C (a real SIGINT to a real ``mnistkit train`` process) at many points of a run:
always exit 130, one message, no traceback; whenever the run folder exists it resumes
to exactly the parameters of an uninterrupted run with the same seed.

Every process uses one BLAS thread (``OPENBLAS_NUM_THREADS=1`` in the children,
``--threads 1`` in-process): results are bit-identical only for the same thread count.
The single-point version of this test is tests/test_cli_train.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _signal_plugin
import numpy as np
import pytest
from conftest import default_signals, invoke, subprocess_env

from mnistkit.checkpoint import load_checkpoint
from mnistkit.cli import build_cli
from mnistkit.plugins import load_plugins

HERE = Path(__file__).resolve().parent
# 2 epochs of 40 steps; the "signalling" model computes exactly what twolayer does
TRAIN = ["--model", "signalling", "-m", "hidden_size=16", "--limit", "2000", "--val-size", "500",
         "--epochs", "2", "--batch-size", "50", "--seed", "5"]

#: point -> (where SIGINT lands, how many SIGINTs, expected "Interrupted at" or None)
POINTS = {
    "load": ("while the data loads", 1, None),
    "factory": ("while Run.start builds the model", 1, "epoch 1, step 0"),
    "step:1": ("during the first step", 1, "epoch 1, step 1"),
    "step:17": ("in the middle of epoch 1", 1, "epoch 1, step 17"),
    "step:40": ("during the last step of epoch 1", 1, "epoch 2, step 0"),
    "scores:1": ("during the end-of-epoch evaluation", 1, "epoch 2, step 0"),
    "step:63": ("in the middle of epoch 2", 1, "epoch 2, step 23"),
    "step:70": ("twice in the middle of epoch 2 (abort)", 2, None),
}


def interrupt_at(point: str, folder: Path) -> dict:
    """Start ``mnistkit train`` signalling at ``point``; SIGINT it there; collect."""
    marker, out = folder / f"marker-{point.replace(':', '-')}", folder / f"run-{point}"
    args = TRAIN + ["--out", str(out)]
    if point == "load":
        args += ["--dataset", "mnist-slow"]
    env = subprocess_env(MNISTKIT_TEST_SIGNAL_AT=point, MNISTKIT_TEST_MARKER=str(marker),
                         PYTHONPATH=f"{subprocess_env()['PYTHONPATH']}:{HERE}")
    proc = subprocess.Popen([sys.executable, "-c", _signal_plugin.DRIVER, "train", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    deadline = time.time() + 90
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    reached = marker.exists()
    for n in range(POINTS[point][1]):
        if n:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=90)
    return {"reached": reached, "code": proc.returncode, "stdout": stdout, "stderr": stderr,
            "out": out}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict[str, dict]:
    """All the interrupted processes, three at a time (they mostly wait on each other)."""
    folder = tmp_path_factory.mktemp("sigint")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = pool.map(lambda p: interrupt_at(p, folder), POINTS)
        return dict(zip(POINTS, results, strict=True))


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(extra=[_signal_plugin], entry_points=False))


@pytest.fixture(scope="module")
def reference(cli, tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("ref") / "whole"
    result = invoke("train", *TRAIN, "--out", out, "--quiet", "--threads", "1", cli=cli)
    assert result.exit_code == 0, result.output
    return load_checkpoint(out / "last.npz")["params"]


@pytest.mark.parametrize("point", list(POINTS))
def test_sigint_exits_130_and_the_run_resumes_to_the_same_parameters(
        interrupted, cli, reference, point):
    outcome = interrupted[point]
    where, _, position = POINTS[point]
    assert outcome["reached"], f"never reached {where}: {outcome['stderr']}"
    assert outcome["code"] == 130, outcome["stderr"]
    output = outcome["stdout"] + outcome["stderr"]
    assert "Traceback" not in output, output
    out: Path = outcome["out"]
    if point == "load":
        assert outcome["stderr"].strip().splitlines()[-1] == (
            "Interrupted while loading the data; nothing was saved.")
        assert not out.exists()
        return
    if position is None:  # the second Ctrl-C: stop at once, keep the last checkpoint
        assert f"Stopped at once; the last checkpoint in {out} is kept" in outcome["stderr"]
    else:
        assert f"Interrupted at {position}: checkpoint saved. Resume with: mnistkit train " \
               f"--resume {out}" in outcome["stderr"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted"
    result = invoke("train", "--resume", out, "--quiet", "--threads", "1", cli=cli)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    final = load_checkpoint(out / "last.npz")["params"]
    assert final.keys() == reference.keys()
    for key in reference:
        assert np.array_equal(final[key], reference[key]), key


def test_ctrl_c_in_other_commands_exits_130_without_a_traceback(monkeypatch):
    """KeyboardInterrupt anywhere in a command: 'Interrupted.', exit 130."""
    import mnistkit.cli.data_cmds as data_cmds

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_cmds, "load_dataset_for_cli", interrupted)
    result = invoke("inspect")
    assert result.exit_code == 130 and result.output.strip() == "Interrupted."


def test_stop_before_the_first_step_then_resume_equals_uninterrupted(tmp_path):
    """Library level: a run stopped before its first step (its batch order already drawn)
    resumes to the uninterrupted result (that order used to be drawn again)."""
    from mnistkit.datasets import load_dataset
    from mnistkit.runs import Run, RunSpec
    from mnistkit.training import TrainConfig

    data = load_dataset("mnist")
    registry = load_plugins(entry_points=False).registry
    spec = RunSpec(model="softmax", val_size=500, limit=1000,
                   config=TrainConfig(epochs=2, batch_size=100, seed=1))

    def train(run, stop=lambda: False):
        for _ in run.train(stop):
            pass
        return run

    whole = train(Run.start(spec, data, registry, tmp_path / "whole"))
    stopped = train(Run.start(spec, data, registry, tmp_path / "part"), stop=lambda: True)
    assert stopped.record["status"] == "interrupted" and stopped.trainer.order is not None
    resumed = train(Run.resume(tmp_path / "part", data, registry))
    for key, value in whole.model.params.items():
        assert np.array_equal(resumed.model.params[key], value), key

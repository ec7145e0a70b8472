"""Runs side by side: a run folder has one writer, claimed before anything is written.

Two trainings into the same ``--out``, two default-named trainings started together,
``--resume`` of a run being trained right now, a SIGKILLed owner, and ``--resume`` with
options that contradict the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, default_signals, invoke, subprocess_env

from mnistkit.datasets import load_dataset
from mnistkit.errors import RunError, TrainingError
from mnistkit.plugins import load_plugins
from mnistkit.run_folder import read_record
from mnistkit.run_lock import LOCK_NAME, RunBusyError, claim_new_run_folder, lock_run_folder
from mnistkit.runs import Run, RunFinishedError, RunSpec
from mnistkit.training import TrainConfig

QUICK = ["--limit", "1000", "--val-size", "100", "--epochs", "2", "-m", "hidden_size=16",
         "--batch-size", "100", "--threads", "1"]
LONG = ["--limit", "2000", "--val-size", "100", "--epochs", "200", "-m", "hidden_size=16",
        "--batch-size", "100", "--threads", "1"]


def start_train(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistkit", "train", *args],
                            env=subprocess_env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert path.exists(), f"{path} never appeared"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("done") / "run"
    result = invoke("train", *QUICK, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


# -- two processes, one folder ------------------------------------------------------------
@pytest.mark.parametrize("attempt", range(3))
def test_two_trainings_into_the_same_out_never_merge(tmp_path, attempt):
    """Started together with different seeds: exactly one trains the folder, the other is
    refused in one line naming it, and the record is wholly the winner's."""
    out = tmp_path / "same"
    procs = {seed: start_train(*QUICK, "--seed", str(seed), "--out", str(out), "--quiet")
             for seed in (1, 2)}
    outcomes = {seed: finish(proc) for seed, proc in procs.items()}
    winners = [seed for seed, (code, _) in outcomes.items() if code == 0]
    assert len(winners) == 1, outcomes
    (loser,) = set(outcomes) - set(winners)
    code, err = outcomes[loser]
    assert code == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and str(out) in lines[0], err
    assert "being trained by another mnistkit process (pid" in lines[0] or \
        "is not empty" in lines[0], err
    record = read_record(out)
    assert record["status"] == "finished" and record["seed"] == winners[0]
    assert record["training"]["seed"] == winners[0] and len(record["history"]) == 2
    assert not (out / LOCK_NAME).exists()  # released when the winner ended


def test_default_names_started_together_get_two_folders(tmp_path):
    """Two ``mnistkit train`` without --out at the same moment: two folders, both runs kept."""
    procs = [start_train(*QUICK, "--seed", str(seed), "--quiet", cwd=tmp_path)
             for seed in (1, 2)]
    outcomes = [finish(proc) for proc in procs]
    assert all(code == 0 for code, _ in outcomes), outcomes
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2, folders
    assert sorted(read_record(f)["seed"] for f in folders) == [1, 2]


def test_taken_default_names_get_a_counter(tmp_path):
    """The same default name claimed three times (as in one second): -2 and -3 are added;
    an existing empty folder of that name is not reused."""
    base = tmp_path / "20261202-120000-twolayer"
    base.mkdir()
    locks = [claim_new_run_folder(base, pick_free_name=True) for _ in range(3)]
    assert [lock.folder.name for lock in locks] == [f"{base.name}-{n}" for n in (2, 3, 4)]
    for lock in locks:
        lock.release()


def test_resume_of_a_run_being_trained_is_refused_until_its_owner_dies(tmp_path):
    """The owner's pid is named; after SIGKILL the kernel drops the lock and the run
    resumes (a killed process never leaves its folder locked)."""
    out = tmp_path / "run"
    proc = start_train(*LONG, "--out", str(out), "--quiet")
    try:
        wait_for(out / "run.json", proc)
        result = invoke("train", "--resume", out, "--epochs", "1000")
        assert_one_line_error(result, str(out), "is being trained by another mnistkit process",
                              f"(pid {proc.pid} since", "wait for it to finish or stop it",
                              exit_code=1)
        again = invoke("train", *QUICK, "--out", out)  # a new run into it: refused too
        assert_one_line_error(again, str(out), exit_code=1)
    finally:
        proc.kill()
        proc.communicate()
    assert (out / LOCK_NAME).exists()  # SIGKILL: the file stays, the flock does not
    done = len(read_record(out)["history"])
    result = invoke("train", "--resume", out, "--epochs", str(done + 1), "--quiet")
    assert result.exit_code == 0, result.output
    assert read_record(out)["status"] == "finished" and not (out / LOCK_NAME).exists()


# -- the library: claimed before writing, released on every exit path ---------------------
@pytest.fixture(scope="module")
def small():
    registry = load_plugins(entry_points=False).registry
    return load_dataset("mnist", registry=registry), registry


def _spec(**training) -> RunSpec:
    config = TrainConfig(**{"epochs": 2, "batch_size": 100, "seed": 0, **training})
    return RunSpec(model_options={"hidden_size": 8}, val_size=100, limit=500, config=config)


def _assert_free(folder: Path) -> None:
    with lock_run_folder(folder):
        pass


def test_a_started_run_holds_its_folder_until_training_ends(small, tmp_path):
    dataset, registry = small
    run = Run.start(_spec(), dataset, registry, tmp_path / "run")
    with pytest.raises(RunBusyError, match=f"pid {os.getpid()}"):
        lock_run_folder(tmp_path / "run")
    with pytest.raises(RunError, match="being trained"):
        Run.resume(tmp_path / "run", dataset, registry)
    for _ in run.train():
        pass
    _assert_free(tmp_path / "run")


@pytest.mark.parametrize("ending", ["finished", "interrupted", "diverged", "exception"])
def test_the_folder_is_released_however_training_ends(small, tmp_path, ending):
    dataset, registry = small
    spec = _spec()
    if ending == "diverged":
        spec = RunSpec(**{**spec.__dict__, "optimizer_options": {"lr": 1e9}})
    run = Run.start(spec, dataset, registry, tmp_path / "run")
    steps = iter(range(10_000))
    stop = (lambda: next(steps) >= 3) if ending == "interrupted" else (lambda: False)
    events = run.train(stop)
    if ending == "exception":  # the consumer fails mid-training (a plugin's callback...)
        next(events)
        with pytest.raises(ZeroDivisionError):
            events.throw(ZeroDivisionError("consumer broke"))
    elif ending == "diverged":
        with pytest.raises(TrainingError), np.errstate(all="ignore"):
            list(events)
    else:
        list(events)
        assert run.record["status"] == ending
    _assert_free(tmp_path / "run")


def test_a_failed_first_write_releases_the_folder(small, tmp_path, monkeypatch):
    dataset, registry = small
    monkeypatch.setattr(Run, "_save_last", lambda self: (_ for _ in ()).throw(
        RunError("cannot write: disk full")))
    with pytest.raises(RunError, match="disk full"):
        Run.start(_spec(), dataset, registry, tmp_path / "run")
    _assert_free(tmp_path / "run")


def test_bad_options_create_no_folder(small, tmp_path):
    dataset, registry = small
    with pytest.raises(Exception, match="batch_size"):
        Run.start(_spec(batch_size=0), dataset, registry, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- --out that cannot be a new run folder ------------------------------------------------
@pytest.mark.parametrize("case", ["file", "non-empty-folder", "file-as-parent", "symlink-loop"])
def test_out_that_cannot_hold_a_new_run_is_one_line(tmp_path, case):
    target = tmp_path / "notes.txt"
    if case == "file":
        target.write_text("my notes")
        fragments = [f"{target} exists and is not a folder; choose another --out"]
    elif case == "non-empty-folder":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        fragments = [f"output folder {target} is not empty", f"--resume {target}"]
    elif case == "file-as-parent":
        target.write_text("my notes")
        target = target / "run"
        fragments = [f"cannot write {target}", "Not a directory"]
    else:
        target.symlink_to(target)
        fragments = [str(target)]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("train", *QUICK, "--out", target)
    assert_one_line_error(result, *fragments, exit_code=1)
    assert "epoch" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing added or changed
    if case in ("file", "file-as-parent"):
        assert (tmp_path / "notes.txt").read_text() == "my notes"


def test_an_empty_existing_folder_may_be_the_out(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("train", *QUICK, "--out", tmp_path / "empty", "--quiet")
    assert result.exit_code == 0, result.output
    assert read_record(tmp_path / "empty")["status"] == "finished"


# -- --resume: only what may change -------------------------------------------------------
CONTRADICTIONS = {
    "model": (["--model", "softmax"], "--model softmax (the run has twolayer)"),
    "optimizer": (["--optimizer", "sgdd"], "--optimizer sgdd (the run has sgd)"),
    "model-option": (["-m", "hidden_size=32"], "-m hidden_size=32 (the run has 16)"),
    "optimizer-option": (["-o", "lr=0.5"], "-o lr=0.5 (the run has 0.8)"),
    "two-at-once": (["-o", "momentum=0.9", "--batch-size", "50"],
                    "--batch-size 50 (the run has 100)"),
    "batch-size": (["--batch-size", "64"], "--batch-size 64 (the run has 100)"),
    "seed": (["--seed", "3"], "--seed 3 (the run has 0)"),
    "limit": (["--limit", "900"], "--limit 900 (the run has 1000)"),
    "val-size": (["--val-size", "0"], "--val-size 0 (the run has 100)"),
    "sampling": (["--sampling", "replacement"], "--sampling replacement (the run has shuffle)"),
    "steps-per-epoch": (["--steps-per-epoch", "5"], "--steps-per-epoch 5 (the run has None)"),
    "raw-pixels": (["--raw-pixels"], "--raw-pixels (the run fed scaled to 0..1 pixels)"),
    "dataset": (["--dataset", "fashion-mnist"], "--dataset fashion-mnist (the run has mnist)"),
}


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_resume_with_contradicting_options_is_refused_naming_them(finished_run, case):
    args, fragment = CONTRADICTIONS[case]
    before = (finished_run / "run.json").read_bytes()
    result = invoke("train", "--resume", finished_run, "--epochs", "3", *args)
    assert_one_line_error(result, f"--resume {finished_run}", fragment,
                          "only --epochs and --threads may change", exit_code=2)
    assert (finished_run / "run.json").read_bytes() == before


def test_resume_with_out_is_a_usage_error(finished_run, tmp_path):
    result = invoke("train", "--resume", finished_run, "--out", tmp_path / "elsewhere")
    assert_one_line_error(result, "--out and --resume cannot be used together", exit_code=2)


def test_resume_with_options_equal_to_the_runs_goes_ahead(finished_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(finished_run, tmp_path / "copy"))
    result = invoke("train", "--resume", run, "--epochs", "3", "-m", "hidden_size=16",
                    "--batch-size", "100", "--seed", "0", "-o", "lr=0.8", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(read_record(run)["history"]) == 3


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished_run):
    files = {p.name: p.read_bytes() for p in finished_run.iterdir()}
    result = invoke("train", "--resume", finished_run)
    assert result.exit_code == 0, result.output
    assert "is already finished (2 of 2 epochs, test accuracy" in result.output
    assert "give --epochs N with N greater than 2" in result.output
    assert {p.name: p.read_bytes() for p in finished_run.iterdir()} == files
    as_json = invoke("train", "--resume", finished_run, "--json")
    assert as_json.exit_code == 0 and '"status": "finished"' in as_json.stdout


def test_resume_with_fewer_epochs_than_done_is_refused(finished_run, small):
    dataset, registry = small
    with pytest.raises(RunFinishedError):
        Run.resume(finished_run, dataset, registry, epochs=2)
    record = json.loads((finished_run / "run.json").read_text())
    record["status"] = "interrupted"
    # The same check on an interrupted run: asking for fewer epochs than it has done.
    from mnistkit.runs import RunRecord
    from mnistkit.runs.session import _check_resume_epochs

    with pytest.raises(Exception, match="epochs 1 is fewer than the 2 epochs"):
        _check_resume_epochs(finished_run, RunRecord.from_json(record), 1)
    assert np.isfinite(record["metrics"]["test_accuracy"])

"""Sweeps for real: a local spawn pool and a Dask LocalCluster on 127.0.0.1 give the same
results; a failing trial does not stop the others; Ctrl-C and --resume; a killed worker;
``mnistkit runs`` lists every trial."""

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
from conftest import assert_one_line_error, default_signals, invoke, subprocess_env

from mnistkit.checkpoint import load_checkpoint

# The 12-trial sweep: --limit 5000, 2 epochs.
TWELVE = ["-m", "hidden_size=32,64", "-o", "lr=0.1,0.3,0.8", "--seeds", "2", "--epochs", "2",
          "--limit", "5000", "--val-size", "1000", "--threads", "1"]
SMALL = ["-m", "hidden_size=16", "-o", "lr=0.3", "--seeds", "2", "--epochs", "1",
         "--limit", "1000", "--val-size", "200", "--threads", "1"]


def sweep_process(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistkit", "sweep", *args],
                            env=subprocess_env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)


def run_sweep(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    proc = sweep_process(*args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def manifest(folder: Path) -> dict:
    return json.loads((folder / "sweep.json").read_text())


def results(folder: Path) -> list[tuple]:
    return [(t["id"], t["status"], t["val_accuracy"], t["test_accuracy"])
            for t in manifest(folder)["trials"]]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("local") / "S"
    code, out, err = run_sweep(*TWELVE, "--workers", "2", "--out", str(folder), "--json")
    assert code == 0, err
    return folder


def test_twelve_trials_on_the_local_pool(local_sweep):
    data = manifest(local_sweep)
    assert len(data["trials"]) == 12 and {t["status"] for t in data["trials"]} == {"finished"}
    for trial in data["trials"]:  # every trial is an ordinary run folder
        record = json.loads((local_sweep / trial["run"] / "run.json").read_text())
        assert record["seed"] == trial["seed"] and record["status"] == "finished"
        assert record["metrics"]["test_accuracy"] == trial["test_accuracy"]
        assert record["model_options"]["hidden_size"] == int(
            trial["config"]["model_options"]["hidden_size"])
    assert not (local_sweep / ".stop").exists() and not (local_sweep / ".mnistkit.lock").exists()
    test = invoke("test", local_sweep / "trials" / "t0000", "--json")
    assert test.exit_code == 0 and json.loads(test.stdout)["accuracy"] == \
        data["trials"][0]["test_accuracy"]


def test_the_same_sweep_on_a_dask_cluster_gives_identical_results(local_sweep, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  protocol="tcp") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        folder = tmp_path / "D"
        code, out, err = run_sweep(*TWELVE, "--scheduler", address, "--out", str(folder),
                                   "--json")
    assert code == 0, err
    assert results(folder) == results(local_sweep)  # bit for bit, same thread counts
    ranked = [s["config"] for s in json.loads(out)["summary"]]
    local_ranked = [s["config"] for s in _summary(local_sweep)]
    assert ranked == local_ranked
    a = load_checkpoint(folder / "trials" / "t0005" / "best.npz")["params"]
    b = load_checkpoint(local_sweep / "trials" / "t0005" / "best.npz")["params"]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _summary(folder: Path) -> list[dict]:
    from mnistkit.sweep import summarize

    return [{"config": s.config} for s in summarize(manifest(folder)["trials"])]


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    result = invoke("sweep", *SMALL, "--scheduler", "tcp://127.0.0.1:9", "--out",
                    tmp_path / "S")
    assert_one_line_error(result, "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
                          exit_code=2)
    assert (tmp_path / "S" / "sweep.json").exists()  # resumable once a cluster is there


def test_a_failing_trial_is_recorded_and_the_others_go_on(tmp_path):
    folder = tmp_path / "F"
    code, out, err = run_sweep("-o", "lr=0.3,1e9", "-m", "hidden_size=16", "--epochs", "1",
                               "--limit", "1000", "--val-size", "200", "--threads", "1",
                               "--workers", "2", "--out", str(folder))
    assert code == 1 and "Traceback" not in err, err
    trials = manifest(folder)["trials"]
    assert [t["status"] for t in trials] == ["finished", "failed"]
    assert "training diverged" in trials[1]["error"]
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: 1 of 2 trials did not finish; t0001 (trials/t0001): failed: "
                      f"{trials[1]['error']}"], err
    assert "Ranked by mean validation accuracy" in out


def test_ctrl_c_checkpoints_running_trials_and_resume_finishes_the_same(tmp_path):
    """SIGINT mid-sweep: exit 130, running trials interrupted with a checkpoint, nothing
    finished is lost; --resume ends with exactly the uninterrupted sweep's results."""
    # 30 epochs a trial, the SIGINT after a trial's first epoch: the running trials have
    # most of their epochs ahead of them, however fast or loaded the machine.
    args = ["-m", "hidden_size=32", "-o", "lr=0.3,0.5", "--seeds", "2", "--epochs", "30",
            "--limit", "5000", "--val-size", "300", "--threads", "1", "--workers", "2"]
    whole = tmp_path / "whole"
    assert run_sweep(*args, "--out", str(whole), "--quiet")[0] == 0
    part = tmp_path / "part"
    proc = sweep_process(*args, "--out", str(part))
    deadline = time.time() + 120
    while time.time() < deadline and not _an_epoch_done(part):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"Resume with: mnistkit sweep --resume {part}" in err and "Traceback" not in err
    statuses = [t["status"] for t in manifest(part)["trials"]]
    assert "interrupted" in statuses, statuses
    assert set(statuses) <= {"finished", "interrupted", "pending"}
    code, out, err = run_sweep("--resume", str(part), "--quiet")
    assert code == 0, err
    assert results(part) == results(whole)


def _an_epoch_done(folder: Path) -> bool:
    """Whether some trial of the sweep in ``folder`` has finished an epoch (history.csv is
    written, header only, when a trial starts)."""
    for history in folder.glob("trials/*/history.csv"):
        try:
            if len(history.read_text().splitlines()) >= 2:
                return True
        except OSError:
            pass
    return False


def test_resume_refuses_new_sweep_settings(tmp_path):
    folder = tmp_path / "S"
    assert run_sweep(*SMALL, "--out", str(folder), "--quiet")[0] == 0
    result = invoke("sweep", "--resume", folder, "--epochs", "3")
    assert_one_line_error(result, "--resume continues a sweep as it was defined; remove "
                                  "--epochs", exit_code=2)
    again = invoke("sweep", "--resume", folder, "--quiet")  # all finished: nothing runs
    assert again.exit_code == 0, again.output


def _workers_of(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.parametrize("retries", [1, 0])
def test_a_killed_worker_never_hangs_the_sweep(tmp_path, retries):
    """SIGKILL of a pool worker mid-trial: with --retries 1 its trials resume from their
    checkpoints and the sweep finishes; with 0 they are failed, named, and the rest run."""
    folder = tmp_path / "K"
    proc = sweep_process("-m", "hidden_size=64", "-o", "lr=0.3", "--seeds", "3", "--epochs",
                         "6", "--limit", "4000", "--val-size", "300", "--threads", "1",
                         "--workers", "2", "--retries", str(retries), "--out", str(folder),
                         "--quiet")
    deadline = time.time() + 120
    while time.time() < deadline and not list(folder.glob("trials/*/history.csv")):
        time.sleep(0.02)
    workers = _workers_of(proc.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    assert "Traceback" not in err, err
    trials = manifest(folder)["trials"]
    if retries:
        assert proc.returncode == 0, err
        assert {t["status"] for t in trials} == {"finished"}
        assert max(t["attempts"] for t in trials) == 2
    else:
        assert proc.returncode == 1, err
        failed = [t for t in trials if t["status"] == "failed"]
        assert failed and all("worker process died" in t["error"] for t in failed)
        assert any(t["status"] == "finished" for t in trials)  # the others still ran


def test_runs_lists_every_trial(local_sweep, tmp_path):
    result = invoke("runs", local_sweep.parent, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"finished"}
    by_path = {Path(r["path"]).name: r for r in rows}
    for trial in manifest(local_sweep)["trials"]:
        assert by_path[trial["id"]]["test_accuracy"] == trial["test_accuracy"]
    filtered = invoke("runs", local_sweep.parent, "--filter", "hidden_size=64", "--json")
    assert len(json.loads(filtered.stdout)) == 6
    table = invoke("runs", local_sweep.parent, "--sort", "val")
    assert table.exit_code == 0 and "12 runs" in table.output


def test_runs_rm_removes_only_unfinished_runs(tmp_path, local_sweep):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(local_sweep / "trials" / "t0000", root / "done")
    shutil.copytree(local_sweep / "trials" / "t0001", root / "broken")
    (root / "broken" / "run.json").write_text("{damaged")
    from click.testing import CliRunner

    from mnistkit.cli import build_cli
    from mnistkit.plugins import load_plugins

    refused = CliRunner().invoke(build_cli(load_plugins(entry_points=False)),
                                 ["runs", "rm", str(root)], input="n\n")
    assert refused.exit_code == 0 and "Nothing removed" in refused.output
    assert (root / "broken").exists()
    removed = invoke("runs", "rm", root, "--yes")
    assert removed.exit_code == 0 and "Removed 1 run folder" in removed.output
    assert not (root / "broken").exists() and (root / "done" / "run.json").exists()


def test_visualise_sweep_draws_one_panel_per_swept_setting(local_sweep, tmp_path):
    import matplotlib.image

    from mnistkit.plots import sweep_axis_points

    out = tmp_path / "sweep.png"
    result = invoke("visualise", "sweep", local_sweep, "-o", out)
    assert result.exit_code == 0, result.output
    assert "12 finished trials, settings: m.hidden_size, o.lr" in result.output
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[1] > pixels.shape[0] and pixels[..., :3].std() > 0.05
    values, points = sweep_axis_points(manifest(local_sweep)["trials"], "o.lr")
    assert values == ["0.1", "0.3", "0.8"] and len(points) == 12
    assert sorted({i for i, _ in points}) == [0, 1, 2]
    missing = invoke("visualise", "sweep", tmp_path / "nothing")
    assert_one_line_error(missing, "no such sweep folder", exit_code=1)


def test_tpe_search_is_seeded_and_resumes_to_the_same_trials(tmp_path):
    """--search tpe: the same seed makes the same trials with 1 or 2 workers (asked in
    batches, told in trial order); a sweep stopped between batches resumes to them too."""
    pytest.importorskip("optuna")
    args = ["--search", "tpe", "--trials", "6", "--search-seed", "5", "-m",
            "hidden_size=8,16", "-o", "lr=0.1,0.3,0.8", "--epochs", "1", "--limit", "600",
            "--val-size", "100", "--threads", "1", "--quiet"]
    code, _, err = run_sweep(*args, "--workers", "2", "--out", str(tmp_path / "a"))
    assert code == 0, err
    code, _, err = run_sweep(*args, "--workers", "1", "--out", str(tmp_path / "b"))
    assert code == 0, err
    first = manifest(tmp_path / "a")["trials"]
    assert len(first) == 6 and [t["choice"] for t in first] == [
        t["choice"] for t in manifest(tmp_path / "b")["trials"]]
    assert results(tmp_path / "a") == results(tmp_path / "b")
    # Drop the second batch from the record, as if stopped after the first: the resume
    # replays batch 1 through a fresh sampler and asks the same batch 2.
    partial = tmp_path / "c"
    import shutil

    shutil.copytree(tmp_path / "a", partial)
    data = manifest(partial)
    data["trials"] = data["trials"][:4]
    (partial / "sweep.json").write_text(json.dumps(data))
    for trial in first[4:]:
        shutil.rmtree(partial / trial["run"])
    code, _, err = run_sweep("--resume", str(partial), "--quiet")
    assert code == 0, err
    assert results(partial) == results(tmp_path / "a")

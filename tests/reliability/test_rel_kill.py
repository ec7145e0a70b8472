"""Atomic writes under SIGKILL: a writer killed at random moments never leaves a
half-written checkpoint, and the temporary files it leaves are cleaned on resume.

``MNISTKIT_KILL_REPEATS`` sets the number of kill rounds (default 40).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import KILL_REPEATS, default_signals, invoke, subprocess_env

from mnistkit.checkpoint import load_checkpoint, save_checkpoint
from mnistkit.run_folder import LAST_NPZ, remove_stale_temporaries

ROUND = 1_000_000  # version numbers of round r start at r * ROUND: unique across rounds


def version(v: int) -> dict[str, dict[str, np.ndarray]]:
    """Checkpoint number ``v``: the size of a default twolayer run (~2 MB), every array
    derived from ``v`` so a mix of two versions is detectable."""
    rng = np.random.default_rng(v)
    params = {"W1": rng.standard_normal((784, 256)).astype(np.float32),
              "b1": np.full(256, v, np.float32), "W2": np.full((256, 10), v % 997, np.float32),
              "b2": np.full(10, -v, np.float32)}
    return {"params": params,
            "optimizer": {f"velocity.{k}": p * 0.5 for k, p in params.items()},
            "trainer": {"meta": np.array(json.dumps({"version": v})),
                        "order": rng.permutation(50_000)}}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[g].keys() == b[g].keys() and all(np.array_equal(a[g][k], b[g][k]) for k in a[g])
        for g in a)


def writer(path: Path, first: int, report: int) -> None:
    """Child process: save versions first, first+1, ... forever, reporting each one done."""
    v = first
    while True:
        save_checkpoint(path, version(v))
        os.write(report, v.to_bytes(8, "big"))
        v += 1


def test_sigkill_while_saving_never_leaves_a_partial_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    chooser = random.Random(7)
    latest: int | None = None  # the last version whose save was reported complete
    outcomes = {"absent": 0, "previous": 0, "in-flight": 0}
    for r in range(1, KILL_REPEATS + 1):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                os.close(read_end)
                writer(path, r * ROUND, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        reported = []
        if r == 1:  # however slow the machine, one complete save before the first kill
            reported.append(int.from_bytes(os.read(read_end, 8), "big"))
        time.sleep(chooser.uniform(0.0, 0.045))  # one save takes ~10-20 ms here
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(read_end, 8 * 1024):
            reported += [int.from_bytes(chunk[i:i + 8], "big") for i in range(0, len(chunk), 8)]
        os.close(read_end)
        in_flight = reported[-1] + 1 if reported else r * ROUND
        previous = reported[-1] if reported else latest
        if not path.exists():
            assert previous is None, "a complete checkpoint disappeared"
            outcomes["absent"] += 1
            continue
        groups = load_checkpoint(path)  # complete and valid, or this raises
        found = json.loads(str(groups["trainer"]["meta"]))["version"]
        assert found in (previous, in_flight), (found, previous, in_flight)
        assert same(groups, version(found)), f"checkpoint {found} is a mix of versions"
        outcomes["in-flight" if found == in_flight else "previous"] += 1
        latest = found
        leftovers = {p.name for p in tmp_path.iterdir()} - {"ckpt.npz"}
        # what a killed writer may leave: hidden temporaries, never another *.npz
        assert all(n.startswith(".ckpt.npz.") and n.endswith(".tmp") for n in leftovers), leftovers
    assert latest is not None and sum(outcomes.values()) == KILL_REPEATS
    temporaries = sorted(p.name for p in tmp_path.glob(".*.tmp"))
    print(f"{KILL_REPEATS} kills: {outcomes}; {len(temporaries)} temporaries left behind")
    if KILL_REPEATS >= 20:  # evidence that kills landed in the middle of writes
        assert temporaries and outcomes["previous"]
    # A later save does not trip over the temporaries, and the cleanup removes them all.
    save_checkpoint(path, version(0))
    removed = remove_stale_temporaries(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"ckpt.npz"}
    assert all(n.endswith(".tmp") for n in removed)
    assert same(load_checkpoint(path), version(0))


def test_loading_ignores_and_keeps_stale_temporaries(tmp_path):
    """A half-written temporary beside a checkpoint: loading uses the real file and
    deletes nothing (only the run's owner cleans, see the next test)."""
    save_checkpoint(tmp_path / "last.npz", version(1))
    stale = tmp_path / ".last.npz.k3j2h1.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")
    assert same(load_checkpoint(tmp_path / "last.npz"), version(1))
    assert stale.exists()


# ~15000 steps (a few seconds of training): long enough to be killed in the middle even at
# 0.6 s on a fast machine (with 2 epochs a kill at 0.6 s could land after the run finished)
TRAIN = ["--limit", "24000", "--val-size", "500", "--epochs", "5", "-m", "hidden_size=48",
         "--batch-size", "8", "-o", "lr=0.1", "--seed", "3"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    """Final parameters of the uninterrupted run, in-process with one BLAS thread (the
    children run with OPENBLAS_NUM_THREADS=1: the same arithmetic)."""
    out = tmp_path_factory.mktemp("ref") / "whole"
    result = invoke("train", *TRAIN, "--out", out, "--quiet", "--threads", "1")
    assert result.exit_code == 0, result.output
    return load_checkpoint(out / LAST_NPZ)["params"]


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6])
def test_sigkilled_training_leaves_a_resumable_run(tmp_path, reference, delay):
    """``mnistkit train`` killed with SIGKILL ``delay`` s after its run folder appears:
    the folder resumes (stale temporaries removed) to the uninterrupted parameters."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mnistkit", "train", *TRAIN, "--out",
                             str(out), "--quiet"], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=default_signals)
    deadline = time.time() + 60
    while not (out / "run.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    assert proc.poll() is None, "training ended before the kill: make it longer"
    assert json.loads((out / "run.json").read_text())["status"] != "finished", \
        "the run finished before the kill: make it longer"
    proc.kill()
    proc.wait()
    assert (out / "run.json").exists() and (out / LAST_NPZ).exists()
    stale = out / ".last.npz.abcd1234.tmp"
    stale.write_bytes(b"a killed writer's leftover")
    result = invoke("train", "--resume", out, "--quiet", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not list(out.glob(".*.tmp"))
    final = load_checkpoint(out / LAST_NPZ)["params"]
    for key, value in reference.items():
        assert np.array_equal(final[key], value), key


def test_resume_cleans_only_temporaries(tmp_path):
    result = invoke("train", "--limit", "500", "--val-size", "100", "--epochs", "1", "-m",
                    "hidden_size=8", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    before = {p.name for p in run.iterdir()}
    for name in (".last.npz.x1.tmp", ".run.json.y2.tmp", ".best.npz.z3.tmp"):
        (run / name).write_bytes(b"partial")
    (run / "notes.tmp.txt").write_text("mine")  # not a temporary of ours: kept
    result = invoke("train", "--resume", run, "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert {p.name for p in run.iterdir()} == before | {"notes.tmp.txt"}

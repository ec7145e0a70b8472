"""Unwritable or full output: one clear line before training starts (or at the first save
that fails), no traceback, and no earlier checkpoint damaged.

Tests run as root, where chmod does not stop writes: read-only outputs are paths under a
file and /proc; a full disk is emulated in-process (ENOSPC from the writes), by a file
size limit in a child process (EFBIG, works anywhere), and for real on a tiny tmpfs when
this machine lets us mount one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import assert_one_line_error, default_signals, invoke, subprocess_env

import mnistkit.checkpoint
import mnistkit.runs.folder
from mnistkit.checkpoint import load_checkpoint

QUICK = ["--limit", "1000", "--val-size", "100", "--epochs", "2", "-m", "hidden_size=16",
         "--batch-size", "100"]


def test_out_under_a_file_fails_before_training(tmp_path):
    (tmp_path / "some_file").write_text("not a folder")
    result = invoke("train", *QUICK, "--out", tmp_path / "some_file" / "run")
    assert_one_line_error(result, f"{tmp_path / 'some_file' / 'run'}", "Not a directory",
                          exit_code=1)
    assert "epoch" not in result.output


def test_out_in_proc_fails_before_training():
    target = Path("/proc") / f"mnistkit-{uuid.uuid4().hex}"
    result = invoke("train", *QUICK, "--out", target)
    assert_one_line_error(result, f"cannot write {target}", exit_code=1)
    assert "epoch" not in result.output


class FullDisk:
    """Replaces ``atomic_write`` in a module: the first ``allow`` writes work, then every
    write fails with ENOSPC (after part of the data went out, like a real full disk)."""

    def __init__(self, real, allow: int) -> None:
        self.real, self.allow, self.calls = real, allow, 0

    @contextlib.contextmanager
    def __call__(self, path, mode="wb"):
        self.calls += 1
        with self.real(path, mode) as handle:
            if self.calls > self.allow:
                handle.write(b"\0" * 10 if "b" in mode else "x" * 10)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            yield handle


def test_disk_full_at_the_first_checkpoint_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(mnistkit.checkpoint, "atomic_write",
                        FullDisk(mnistkit.checkpoint.atomic_write, allow=0))
    result = invoke("train", *QUICK, "--out", tmp_path / "run")
    assert_one_line_error(result, f"cannot write {tmp_path / 'run' / 'last.npz'}: "
                                  "No space left on device", exit_code=1)
    assert "epoch" not in result.output
    assert not list((tmp_path / "run").glob("*.npz")) and not list((tmp_path / "run").glob(".*"))


def test_disk_full_at_an_epoch_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    # writes 1-3: the initial last.npz, then last.npz and best.npz of epoch 1; then full
    full = FullDisk(mnistkit.checkpoint.atomic_write, allow=3)
    monkeypatch.setattr(mnistkit.checkpoint, "atomic_write", full)
    result = invoke("train", *QUICK, "--out", tmp_path / "run")
    assert_one_line_error(result, "last.npz: No space left on device", exit_code=1)
    kept = load_checkpoint(tmp_path / "run" / "last.npz")  # epoch 1's, complete
    assert json.loads(str(kept["trainer"]["meta"]))["epoch"] == 1
    monkeypatch.undo()
    resumed = invoke("train", "--resume", tmp_path / "run", "--quiet")  # space again
    assert resumed.exit_code == 0, resumed.output


def test_disk_full_when_writing_run_json(tmp_path, monkeypatch):
    monkeypatch.setattr(mnistkit.runs.folder, "atomic_write",
                        FullDisk(mnistkit.runs.folder.atomic_write, allow=0))
    result = invoke("train", *QUICK, "--out", tmp_path / "run")
    assert_one_line_error(result, f"cannot write the run folder {tmp_path / 'run'}: "
                                  "No space left on device", exit_code=1)
    assert "epoch" not in result.output


def _limit_file_size() -> None:  # in the child, before exec
    default_signals()
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed


def test_file_size_limit_in_a_real_process_fails_before_training(tmp_path):
    """A real process whose writes stop at 100 kB: the initial checkpoint (400 kB) fails."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mnistkit", "train", *QUICK, "-m", "hidden_size=128", "--out",
         str(out)], env=subprocess_env(), capture_output=True, text=True, timeout=120,
        preexec_fn=_limit_file_size)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"Error: cannot write {out / 'last.npz'}: File too large" in proc.stderr
    assert "epoch" not in proc.stdout


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 128 KiB file system (needs root and mount rights; skipped otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount_point)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_real_full_disk_fails_before_training(tiny_tmpfs):
    result = invoke("train", *QUICK, "-m", "hidden_size=128", "--out", tiny_tmpfs / "run")
    assert_one_line_error(result, f"cannot write {tiny_tmpfs / 'run' / 'last.npz'}: "
                                  "No space left on device", exit_code=1)
    assert "epoch" not in result.output
    assert not list((tiny_tmpfs / "run").glob(".*.tmp"))  # the temporary was removed

"""Shared helpers of the reliability suite (``pytest -m reliability``).

Every test here is marked ``reliability``. The default run stays fast; heavier variants
are selected by environment variables:

- ``MNISTKIT_FUZZ_EXAMPLES``: hypothesis examples per fuzz test (default 300);
- ``MNISTKIT_KILL_REPEATS``: SIGKILL rounds of the atomic-write test (default 40).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings

from mnistkit.cli import build_cli
from mnistkit.data.idx import write_idx
from mnistkit.plugins import load_plugins

REPO = Path(__file__).resolve().parents[2]
FUZZ_EXAMPLES = int(os.environ.get("MNISTKIT_FUZZ_EXAMPLES", "300"))
KILL_REPEATS = int(os.environ.get("MNISTKIT_KILL_REPEATS", "40"))

# One profile for every fuzz test; the example count comes from the environment.
settings.register_profile(
    "mnistkit-fuzz", max_examples=FUZZ_EXAMPLES, deadline=2000, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture])
FUZZ = settings.get_profile("mnistkit-fuzz")


def pytest_collection_modifyitems(config, items):
    """Mark everything collected from this folder ``reliability``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


def invoke(*args: str, cli=None, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process like a user would (exceptions are not re-raised); by default
    with the built-ins only, so installed plugins (CI installs plugins/) change nothing."""
    cli = cli or build_cli(load_plugins(entry_points=False))
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def assert_one_line_error(result: Result, *fragments: str, exit_code: int | None = None) -> str:
    """A failed command: non-zero exit, one ``Error:`` line holding every fragment, no
    traceback. Returns that line."""
    output = result.output
    assert "Traceback" not in output, output
    assert result.exit_code != 0, output
    if exit_code is not None:
        assert result.exit_code == exit_code, output
    # a real exception escaping the CLI would be result.exception without SystemExit
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception)
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], output
    return errors[0]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: one BLAS thread (bit-identical results), the
    session's cache folder, this checkout importable."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "NO_COLOR": "1",
           "COLUMNS": "200"}
    env.pop("MNISTKIT_LOAD_PLUGINS", None)
    env.update(extra)
    return env


def default_signals() -> None:
    """``preexec_fn`` of every child process the tests start: SIGINT back to its default.

    A test suite started as a background job (``pytest &`` in a script, a CI runner)
    inherits SIGINT *ignored*, exec keeps it ignored, and Python then installs no
    KeyboardInterrupt handler: a child would not react to the tests' Ctrl-C at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_python(code: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c code args...`` and capture its text output."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env or subprocess_env(), timeout=timeout,
                          preexec_fn=default_signals)


def small_idx_folder(folder: Path, n_train: int = 600, n_test: int = 100, gz: bool = True,
                     seed: int = 0) -> Path:
    """A tiny MNIST-style folder (random 28x28 digits, labels 0..9) with the four names."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                  rng.integers(0, 10, n, dtype=np.uint8))
    return folder


class Hang(BaseException):
    """Raised by :func:`time_limit` (a BaseException so no reader can swallow it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with :class:`Hang` if the block runs longer than ``seconds`` (main thread).

    The timer pytest-timeout armed for the whole test (same signal) is put back afterwards
    with the time it has left, so the per-test timeout still holds after the block."""
    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))

"""Helpers for ``benchmarks/run.py``: timing statistics, child processes, machine facts.

Nothing here imports torch; numpy and threadpoolctl are imported lazily so that
``python benchmarks/run.py --help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def median(values: list[float]) -> float:
    """Median of ``values`` (NaN when empty)."""
    return statistics.median(values) if values else float("nan")


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min, max and every repetition, rounded for the JSON."""
    if not values:
        return {"median": None, "min": None, "max": None, "reps": []}
    return {"median": round(median(values), 5), "min": round(min(values), 5),
            "max": round(max(values), 5), "reps": [round(v, 5) for v in values]}


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (``y ~ x ** slope``)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    return sxy / sxx if sxx else float("nan")


@dataclasses.dataclass
class ChildResult:
    """A finished child process: wall seconds, peak RSS in MB, exit code and output."""

    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# A small launcher forks and waits for the measured command. Measuring straight from this
# (large) process would be wrong: Linux folds the parent's memory high-water mark into a
# vfork()ed child's ru_maxrss at exec, so every child would look as big as the benchmark.
_LAUNCHER = """\
import json, os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(out, "w") as handle:
    json.dump({"seconds": seconds, "maxrss_kb": usage.ru_maxrss,
               "code": os.waitstatus_to_exitcode(status)}, handle)
"""


def run_child(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
              timeout: float = 900.0) -> ChildResult:
    """Run ``cmd``; its wall time and its own peak RSS come from a small launcher process
    that forks it and reads ``wait4``'s resource usage."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "usage.json"
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with out_path.open("w") as out, err_path.open("w") as err:
            subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd],
                           stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                           timeout=timeout, check=False)
        usage = json.loads(report.read_text())
        return ChildResult(usage["seconds"], usage["maxrss_kb"] / 1024.0, usage["code"],
                           out_path.read_text(), err_path.read_text())


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_slug() -> str:
    """A file-name friendly machine label, e.g. ``amd-epyc-2-cores``."""
    words = "".join(c if c.isalnum() else " " for c in cpu_model().lower()).split()
    words = [w for w in words if w not in ("processor", "cpu", "with", "radeon", "graphics")]
    return "-".join(words[:4] + [str(os.cpu_count()), "cores"])


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the BLAS libraries loaded in this process."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "architecture", "num_threads",
            "threading_layer", "prefix")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()]


def machine_info(torch_version: str | None) -> dict[str, Any]:
    """CPU, cores, memory, Python, numpy, BLAS kernel, torch and the OpenBLAS variables."""
    import numpy as np

    mem_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gb = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "torch": torch_version,
        "env": {name: os.environ.get(name) for name in
                ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "executable": sys.executable,
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class OtherCpu:
    """How much CPU other processes used while a block ran: a check that a timing was
    taken on a quiet machine. ``fraction`` is their CPU time over (wall time x cores)."""

    def __init__(self) -> None:
        self.fraction: float | None = None

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user
        return (sum(values) - idle - guest) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> OtherCpu:
        self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())
        return self

    def __exit__(self, *exc: Any) -> None:
        wall0, busy0, own0 = self._start
        busy1 = self._busy_seconds()
        if busy0 is None or busy1 is None:
            return
        wall = time.perf_counter() - wall0
        others = (busy1 - busy0) - (self._own_seconds() - own0)
        self.fraction = max(0.0, others) / (wall * (os.cpu_count() or 1))

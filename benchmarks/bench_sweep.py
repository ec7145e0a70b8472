"""Sweep throughput: 2 workers against 1, and the per-trial cost of the pool and of Dask.

The 12-trial sweep of the tests (``twolayer``, hidden 32/64 x lr 0.1/0.3/0.8 x 2 seeds,
``--limit 5000`` or ``--limit N``, 2 epochs, one BLAS thread per trial) is run, in this one
script:

1. *alone*: the 12 trials one after another in this process (``run_trial``, the function
   a worker runs), the data already loaded: the work itself;
2. the local spawn pool with 1 worker, then with 2;
3. a Dask ``LocalCluster`` on 127.0.0.1 with 1 worker, then 2 (one thread each), when
   ``distributed`` is installed.

Per-trial overhead = (time with 1 worker - time alone) / 12; the speed-up = 1 worker /
2 workers. Run it on an otherwise idle machine::

    python benchmarks/bench_sweep.py [--repeats 2] [--json benchmarks/results/sweep.json]

Each figure is the median of ``--repeats`` runs, and the sections alternate within a
repeat so all see the same machine state.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import blas_info, cpu_model, load_average  # noqa: E402

from mnistkit import sweep_runner  # noqa: E402
from mnistkit.plugins import get_registry  # noqa: E402
from mnistkit.sweep import expand_trials, spec_from_cli  # noqa: E402

LIMIT = [5000]  # training images per trial (--limit)
TRIALS = dict(model="twolayer", optimizer="sgd", model_options=("hidden_size=32,64",),
              optimizer_options=("lr=0.1,0.3,0.8",), epochs="2", batch_size="128",
              dataset="mnist", seeds=2, search="grid", trials=None, search_seed=0,
              val_size=1000, limit=5000)


def _state():
    spec = spec_from_cli(**{**TRIALS, "limit": LIMIT[0]})
    return sweep_runner.new_state(spec, expand_trials(spec, get_registry()))


def alone() -> float:
    """The 12 trials in this process, one BLAS thread, data loaded beforehand."""
    state = _state()
    with tempfile.TemporaryDirectory() as tmp:
        sweep_runner._worker_data("mnist")
        start = time.perf_counter()
        for trial in state.trials:
            outcome = sweep_runner.run_trial({
                "config": trial["config"], "seed": trial["seed"], "threads": 1,
                "folder": str(Path(tmp) / trial["id"]), "stop_file": str(Path(tmp) / ".stop")})
            assert outcome["status"] == "finished", outcome
        return time.perf_counter() - start


def swept(backend: sweep_runner.Backend) -> float:
    """The whole sweep on ``backend``, from the first submission to the last result
    (the pool's process start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "S"
        folder.mkdir()
        runner = sweep_runner.SweepRunner(folder, _state(), backend)
        start = time.perf_counter()
        for update in runner.run():
            last = update
        seconds = time.perf_counter() - start
        assert {t["status"] for t in last.trials} == {"finished"}, last.trials
        return seconds


def dask_times(workers: int) -> float | None:
    try:
        from distributed import LocalCluster
    except ImportError:
        return None
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster:
        backend = sweep_runner.dask_backend(cluster.scheduler_address, threads=1)
        try:
            return swept(backend)
        finally:
            backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=5000,
                        help="training images per trial (5000: the tests' sweep)")
    args = parser.parse_args()
    LIMIT[0] = args.limit
    times: dict[str, list[float]] = {k: [] for k in (
        "alone", "pool_1", "pool_2", "dask_1", "dask_2")}
    for repeat in range(args.repeats):
        times["alone"].append(alone())
        times["pool_1"].append(swept(sweep_runner.local_backend(1, 1)))
        times["pool_2"].append(swept(sweep_runner.local_backend(2, 1)))
        for n in (1, 2):
            value = dask_times(n)
            if value is not None:
                times[f"dask_{n}"].append(value)
        print(f"repeat {repeat + 1}: " + ", ".join(
            f"{k} {v[-1]:.2f} s" for k, v in times.items() if v), flush=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    n = 12
    result: dict[str, Any] = {
        "machine": cpu_model(), "blas": blas_info(), "load_average": load_average(),
        "trials": n, "limit": args.limit, "seconds": {k: round(v, 3) for k, v in med.items()},
        "speedup_pool_2_over_1": round(med["pool_1"] / med["pool_2"], 3),
        "overhead_per_trial_pool": round((med["pool_1"] - med["alone"]) / n, 3),
        "trials_per_minute_pool_2": round(60 * n / med["pool_2"], 1),
    }
    if "dask_1" in med:
        result.update({
            "speedup_dask_2_over_1": round(med["dask_1"] / med["dask_2"], 3),
            "overhead_per_trial_dask": round((med["dask_1"] - med["alone"]) / n, 3),
            "trials_per_minute_dask_2": round(60 * n / med["dask_2"], 1)})
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

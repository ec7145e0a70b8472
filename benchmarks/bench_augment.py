"""What augmentation costs an epoch: plain against elastic and affine, side by side.

    python benchmarks/bench_augment.py [--rounds 5] [--threads N] [--hidden 800]

Trains a 784-800-10 network (batch 128, 55,000 images) three ways in one process, one
epoch of each in turn for ``--rounds`` rounds, and reports the median time of an epoch's
steps (evaluation excluded) and the ratio of each augmented epoch to the plain one. The
distortions are made ahead of the step by the trainer's background thread, as in
``mnistkit train --augment``. Prints which BLAS kernel ran.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

from mnistkit.datasets import load_dataset
from mnistkit.plugins import get_registry
from mnistkit.runs import Run, RunSpec
from mnistkit.training import EpochStarted, StepFinished, TrainConfig

CONTENDERS = ("none", "elastic", "affine")


def _epoch_timer(run: Run):
    """A generator: each ``next()`` trains one more epoch and gives its steps' seconds."""
    started = 0.0
    for event in run.train():
        if isinstance(event, EpochStarted):
            started = time.perf_counter()
        elif isinstance(event, StepFinished) and event.step == event.steps:
            yield time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=800)
    args = parser.parse_args()
    dataset, registry = load_dataset("mnist"), get_registry()
    with tempfile.TemporaryDirectory() as scratch, threadpool_limits(args.threads):
        timers = {}
        for name in CONTENDERS:
            spec = RunSpec(model_options={"hidden_size": args.hidden}, val_size=5000,
                           augment=name, config=TrainConfig(epochs=args.rounds + 1))
            timers[name] = _epoch_timer(Run.start(spec, dataset, registry,
                                                  Path(scratch) / name))
            next(timers[name])  # a first epoch of each, not timed: warm caches and pages
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for _ in range(args.rounds):
            for name in CONTENDERS:
                time.sleep(0.2)  # let the BLAS threads of the last contender go idle
                times[name].append(next(timers[name]))
        for timer in timers.values():
            timer.close()
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"784-{args.hidden}-10, batch 128, 55,000 images; BLAS {blas}; threads "
          f"{args.threads or 'default'}; median of {args.rounds} epochs (steps only)")
    plain = statistics.median(times["none"])
    for name in CONTENDERS:
        median = statistics.median(times[name])
        each = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:8s} {median:6.3f} s  ({each})  ratio to plain {median / plain:.2f}x")


if __name__ == "__main__":
    main()

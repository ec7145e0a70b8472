"""What augmentation costs an epoch: plain against elastic and affine, side by side.

    python benchmarks/bench_augment.py [--rounds 5] [--hidden 800]

Trains a 784-800-10 network (batch 128, 55,000 images) in one process several ways, one
epoch of each in turn for ``--rounds`` rounds: plain with 2 and 1 BLAS threads, elastic
and affine with 1 (what ``mnistkit train --augment`` uses on 2 cores) and with 2. It
reports the median time of an epoch's steps (evaluation excluded) and its ratio to the
plain 2-thread epoch (``mnistkit train``'s default) and to the plain epoch with the same
threads. The distortions are made ahead of the step by the trainer's background thread,
as in training. It also times the distortions alone (one thread, an epoch's batches), the
work the background thread has to hide. Prints which BLAS kernel ran.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mnistkit.augment import Affine, AffineOptions, Elastic, ElasticOptions, batch_rng
from mnistkit.datasets import load_dataset
from mnistkit.plugins import get_registry
from mnistkit.runs import Run, RunSpec
from mnistkit.training import EpochStarted, StepFinished, TrainConfig

#: (augmentation, BLAS threads) of each contender.
CONTENDERS = (("none", 2), ("none", 1), ("elastic", 1), ("affine", 1), ("elastic", 2),
              ("affine", 2))


def _epoch_timer(run: Run):
    """A generator: each ``next()`` trains one more epoch and gives its steps' seconds."""
    started = 0.0
    for event in run.train():
        if isinstance(event, EpochStarted):
            started = time.perf_counter()
        elif isinstance(event, StepFinished) and event.step == event.steps:
            yield time.perf_counter() - started


def distortion_seconds(augmentation, images: np.ndarray, batch: int = 128) -> float:
    """Seconds of one thread to distort an epoch of ``images`` in batches (best of 3)."""
    order = np.random.default_rng(0).permutation(len(images))
    best = float("inf")
    with threadpool_limits(1):
        for epoch in range(3):
            started = time.perf_counter()
            for step in range(len(images) // batch):
                raw = images.take(order[step * batch:(step + 1) * batch], axis=0)
                augmentation.distort(raw, batch_rng(0, epoch, step))
            best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=800)
    args = parser.parse_args()
    dataset, registry = load_dataset("mnist"), get_registry()
    times: dict[tuple[str, int], list[float]] = {c: [] for c in CONTENDERS}
    with tempfile.TemporaryDirectory() as scratch:
        timers = {}
        for name, threads in CONTENDERS:
            spec = RunSpec(model_options={"hidden_size": args.hidden}, val_size=5000,
                           augment=name, config=TrainConfig(epochs=args.rounds + 1))
            run = Run.start(spec, dataset, registry, Path(scratch) / f"{name}-{threads}")
            timers[name, threads] = _epoch_timer(run)
            with threadpool_limits(threads):
                next(timers[name, threads])  # a first epoch, not timed: warm caches, pages
        for _ in range(args.rounds):
            for contender in CONTENDERS:
                time.sleep(0.3)  # let the BLAS threads of the last contender go idle
                with threadpool_limits(contender[1]):
                    times[contender].append(next(timers[contender]))
        for timer in timers.values():
            timer.close()
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("version"))
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"784-{args.hidden}-10, batch 128, 55,000 images; BLAS {blas}; median of "
          f"{args.rounds} epochs (steps only)")
    plain = {threads: statistics.median(times["none", threads]) for threads in (1, 2)}
    for (name, threads), values in times.items():
        median = statistics.median(values)
        each = ", ".join(f"{t:.2f}" for t in values)
        print(f"  {name:8s} {threads} thread{'s' if threads > 1 else ' '}  {median:6.3f} s  "
              f"x{median / plain[2]:.2f} of plain 2 threads, x{median / plain[threads]:.2f} "
              f"of plain {threads}  ({each})")
    images = dataset.train.images[:55000]
    for name, augmentation in (("elastic", Elastic(ElasticOptions())),
                               ("affine", Affine(AffineOptions()))):
        print(f"  {name} distortions alone, 1 thread: "
              f"{distortion_seconds(augmentation, images):.3f} s per epoch")


if __name__ == "__main__":
    main()

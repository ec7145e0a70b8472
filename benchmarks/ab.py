"""A/B of the training epoch: this working tree's mnistkit against another git revision's,
side by side in one process.

Usage::

    python benchmarks/ab.py --base HEAD~1                 # 2 BLAS threads (the default)
    python benchmarks/ab.py --base 22b6542 --threads 1 --reps 8

The base revision's ``mnistkit`` package is exported with ``git archive`` into a
temporary folder as ``mnistkit_base`` (its own imports rewritten to that name), so both
versions live in this process. Each builds ``twolayer`` + ``sgd`` (no momentum, constant
lr 0.1, L2 1e-5) on the bundled MNIST with the same seed and trains through its own
``Trainer``; epochs alternate between the two (who goes first alternates too), after a
pause that lets BLAS threads go idle, and only the training steps are timed. Prints the
median epoch of each and the median of the per-pair ratios (new / base). Both versions
must have this project's ``Trainer`` API (2026-11-28 or later).
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def export_base(revision: str, folder: Path) -> ModuleType:
    """``git archive`` the ``mnistkit`` package at ``revision`` into ``folder`` as
    ``mnistkit_base`` and import it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "mnistkit"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    package = folder / "mnistkit_base"
    (folder / "mnistkit").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bfrom mnistkit\b", "from mnistkit_base", text)
        text = re.sub(r"\bimport mnistkit\b", "import mnistkit_base", text)
        path.write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module("mnistkit_base")


def make_trainer(package: str, images: Any, labels: Any, hidden: int) -> tuple[Any, Any]:
    """A ``Trainer`` of ``package`` and its event stream."""
    import numpy as np

    twolayer = importlib.import_module(f"{package}.models.twolayer")
    sgd = importlib.import_module(f"{package}.optimizers.sgd")
    training = importlib.import_module(f"{package}.training")
    dataset = importlib.import_module(f"{package}.data.dataset")
    rng = np.random.default_rng(0)
    model = twolayer.TwoLayerNet(twolayer.TwoLayerOptions(hidden_size=hidden, reg=1e-5), rng)
    optimizer = sgd.SGD(model.params, sgd.SGDOptions(lr=0.1, schedule="constant"))
    train = dataset.Split(images, labels)
    nothing = dataset.Split(images[:0], labels[:0])
    trainer = training.Trainer(model, optimizer, train, nothing,
                               training.TrainConfig(epochs=1000, batch_size=128), rng)
    return trainer, trainer.run()


def timed_epoch(trainer: Any, events: Any) -> float:
    """Seconds of one epoch's training steps (the end-of-epoch accuracy is not timed)."""
    next(events)  # EpochStarted
    start = time.perf_counter()
    for _ in range(trainer.steps):
        next(events)
    seconds = time.perf_counter() - start
    next(events)  # EpochFinished
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads [default: the library's own, all cores]")
    parser.add_argument("--reps", type=int, default=6, help="timed epochs each [default: 6]")
    parser.add_argument("--hidden", type=int, default=100, help="hidden units [default: 100]")
    args = parser.parse_args(argv)

    import numpy as np
    from threadpoolctl import threadpool_limits

    from mnistkit.datasets import load_dataset

    if args.threads:
        threadpool_limits(args.threads)
    data = load_dataset("mnist").train
    with tempfile.TemporaryDirectory() as folder:
        export_base(args.base, Path(folder))
        runs = {name: make_trainer(package, data.images, data.labels, args.hidden)
                for name, package in (("base", "mnistkit_base"), ("new", "mnistkit"))}
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(args.reps + 1):  # the first round is a warm-up
            for name in (("base", "new") if rep % 2 else ("new", "base")):
                time.sleep(0.3)  # let the BLAS threads of the last epoch go idle
                took = timed_epoch(*runs[name])
                if rep:
                    seconds[name].append(took)
    base, new = np.array(seconds["base"]), np.array(seconds["new"])
    print(f"784-{args.hidden}-10, batch 128, threads {args.threads or 'default'}, "
          f"{args.reps} epochs each")
    print(f"  base {args.base}: median {np.median(base):.4f} s   "
          f"({' '.join(f'{v:.3f}' for v in base)})")
    print(f"  new (working tree): median {np.median(new):.4f} s   "
          f"({' '.join(f'{v:.3f}' for v in new)})")
    print(f"  new / base: {np.median(new / base):.3f} (median of the per-pair ratios)")


if __name__ == "__main__":
    main()

"""A/B of the training epoch: this working tree's mnistkit against another git revision's,
side by side in one process.

Usage::

    python benchmarks/ab.py --base HEAD~1                 # 2 BLAS threads (the default)
    python benchmarks/ab.py --base 22b6542 --threads 1 --reps 8
    python benchmarks/ab.py --base main -o momentum=0.9   # through loss_and_grads
    python benchmarks/ab.py --base main --optimizer adam  # needs mnistkit-adam

The base revision's ``mnistkit`` package is exported with ``git archive`` into a
temporary folder as ``mnistkit_base`` (its own imports rewritten to that name), so both
versions live in this process. Each builds ``twolayer`` (L2 1e-5) + ``sgd`` (no momentum,
constant lr 0.1: the fused ``sgd_step`` path) on the bundled MNIST with the same seed and
trains through its own ``Trainer``. ``-o KEY=VALUE`` changes the optimizer's options
(``-o momentum=0.9`` takes the path through ``loss_and_grads``); ``--optimizer NAME``
takes another registered optimizer (from this working tree's plugins, the same class for
both versions; its own defaults, then ``-o``). Epochs alternate between the two (who goes
first alternates too), after a pause that lets BLAS threads go idle, and only the training
steps are timed. Prints which path each took, the median epoch of each and the median of
the per-pair ratios (new / base). Both versions
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


def make_optimizer(package: str, name: str, values: dict[str, str], params: Any) -> Any:
    """The optimizer ``name`` over ``params``: ``package``'s own ``sgd`` (lr 0.1, constant,
    then ``values``), or another one registered with this working tree's mnistkit."""
    from mnistkit.options import build_options
    from mnistkit.plugins import get_registry

    if name == "sgd":
        sgd = importlib.import_module(f"{package}.optimizers.sgd")
        options = build_options(sgd.SGDOptions, {"lr": 0.1, "schedule": "constant", **values},
                                "optimizer 'sgd'")
        return sgd.SGD(params, options)
    entry = get_registry().get("optimizer", name)
    return entry.factory(params, entry.make_options(values))


def make_trainer(package: str, images: Any, labels: Any, hidden: int, optimizer_name: str,
                 optimizer_values: dict[str, str]) -> tuple[Any, Any]:
    """A ``Trainer`` of ``package`` and its event stream."""
    import numpy as np

    twolayer = importlib.import_module(f"{package}.models.twolayer")
    training = importlib.import_module(f"{package}.training")
    dataset = importlib.import_module(f"{package}.data.dataset")
    rng = np.random.default_rng(0)
    model = twolayer.TwoLayerNet(twolayer.TwoLayerOptions(hidden_size=hidden, reg=1e-5), rng)
    optimizer = make_optimizer(package, optimizer_name, optimizer_values, model.params)
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
    parser.add_argument("--optimizer", default="sgd", metavar="NAME",
                        help="optimizer [default: sgd, lr 0.1 constant, no momentum]")
    parser.add_argument("-o", "--optimizer-option", action="append", default=[],
                        metavar="KEY=VALUE", help="optimizer option, e.g. -o momentum=0.9 "
                        "(repeatable)")
    args = parser.parse_args(argv)

    import numpy as np
    from threadpoolctl import threadpool_limits

    from mnistkit.datasets import load_dataset
    from mnistkit.options import parse_assignments

    optimizer_values = parse_assignments(args.optimizer_option)
    if args.threads:
        threadpool_limits(args.threads)
    data = load_dataset("mnist").train
    with tempfile.TemporaryDirectory() as folder:
        export_base(args.base, Path(folder))
        runs = {name: make_trainer(package, data.images, data.labels, args.hidden,
                                   args.optimizer, optimizer_values)
                for name, package in (("base", "mnistkit_base"), ("new", "mnistkit"))}
        paths = {name: "fused sgd_step" if getattr(trainer, "_fused", False)
                 else "loss_and_grads + optimizer.step" for name, (trainer, _) in runs.items()}
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(args.reps + 1):  # the first round is a warm-up
            for name in (("base", "new") if rep % 2 else ("new", "base")):
                time.sleep(0.3)  # let the BLAS threads of the last epoch go idle
                took = timed_epoch(*runs[name])
                if rep:
                    seconds[name].append(took)
    base, new = np.array(seconds["base"]), np.array(seconds["new"])
    optimizer = " ".join([args.optimizer, *args.optimizer_option])
    print(f"784-{args.hidden}-10, batch 128, {optimizer}, threads {args.threads or 'default'}, "
          f"{args.reps} epochs each")
    print(f"  path: base {paths['base']}, new {paths['new']}")
    print(f"  base {args.base}: median {np.median(base):.4f} s   "
          f"({' '.join(f'{v:.3f}' for v in base)})")
    print(f"  new (working tree): median {np.median(new):.4f} s   "
          f"({' '.join(f'{v:.3f}' for v in new)})")
    print(f"  new / base: {np.median(new / base):.3f} (median of the per-pair ratios)")


if __name__ == "__main__":
    main()

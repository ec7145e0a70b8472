"""Where the time of a default ``mnistkit train --model twolayer`` goes, by py-spy sampling.

Usage::

    pip install py-spy
    python benchmarks/profile_train.py                 # the default run
    python benchmarks/profile_train.py -- --epochs 3   # extra train options after --

py-spy samples the Python stack of the run from outside (``--nonblocking``: the run is
never paused) and this script sums the samples into the parts of a training run. Time
inside NumPy/BLAS counts for the Python function that called it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# (label, substrings of a frame: the first category whose substring is on the stack wins)
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("forward: x@W1, +b1, ReLU, h@W2", ("TwoLayerNet._forward",)),
    ("softmax + cross-entropy (fused)", ("softmax_cross_entropy",)),
    ("W1 update fused into x.T @ dh (one gemm)", ("gemm_update",)),
    ("backward + small updates: dh, ReLU mask, dW2, biases, reg",
     ("TwoLayerNet.loss_and_grads", "TwoLayerNet._loss_and_deltas", "TwoLayerNet.sgd_step")),
    ("SGD update (unfused path)", ("SGD.step",)),
    ("non-finite check of the parameters (per epoch)", ("_all_finite",)),
    ("batch gather + uint8->float32", ("BatchMaker.take",)),
    ("per-epoch train/val accuracy (2 x 10k images)", ("Trainer._finish_epoch",)),
    ("checkpoints + run.json per epoch", ("Run._save_epoch",)),
    ("final test evaluation", ("Run._finish",)),
    ("history plot (matplotlib)", ("save_history_plot",)),
    ("data loading", ("load_dataset_for_cli",)),
    ("run set-up (options, data fingerprint, model init)", ("Run.start",)),
    ("other per-step bookkeeping (trainer, events)", ("Trainer._one_step", "Trainer.run",
                                                     "Run.train")),
    ("imports, plugins, CLI", ("<module>", "build_cli", "main (")),
]


def categorise(raw_lines: list[str]) -> tuple[collections.Counter, int]:
    """Samples per category from py-spy's ``raw`` (collapsed stacks) output."""
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in raw_lines:
        line = line.strip()
        if not line:
            continue
        stack, _, number = line.rpartition(" ")
        n = int(number)
        total += n
        frames = stack.split(";")
        for label, needles in CATEGORIES:
            if any(needle in frame for frame in frames for needle in needles):
                counts[label] += n
                break
        else:
            counts["other"] += n
    return counts, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/profile_train.py",
        description="Profile a default 'mnistkit train --model twolayer' with py-spy and "
                    "print the share of each part of the run.",
        epilog="Example: python benchmarks/profile_train.py -- --epochs 3 --threads 1")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--raw", type=Path, default=None, help="also keep py-spy's raw output")
    parser.add_argument("train_args", nargs="*", help="extra 'mnistkit train' options")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists() and not shutil.which("py-spy"):
        parser.error("py-spy is not installed (pip install py-spy)")
    script = Path(sys.executable).with_name("mnistkit")
    cli = [str(script)] if script.exists() else ["-c", "from mnistkit.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.txt"
        cmd = [spy, "record", "--nonblocking", "-r", str(args.rate), "-f", "raw", "-o", str(raw),
               "--", sys.executable, *cli, "train", "--model", "twolayer", "--quiet",
               "--out", str(Path(tmp) / "run"), *args.train_args]
        print("$", " ".join(cmd[cmd.index("--") + 1:]), file=sys.stderr)
        subprocess.run(cmd, check=True, env=dict(os.environ))
        lines = raw.read_text().splitlines()
        if args.raw:
            shutil.copy(raw, args.raw)
    counts, total = categorise(lines)
    print(f"{'share':>6}  part of the run ({total} samples at {args.rate}/s)")
    for label, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

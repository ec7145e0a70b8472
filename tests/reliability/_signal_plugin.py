"""A test plugin that tells a test *when* to interrupt a training process.

Registered in-process (``load_plugins(extra=[_signal_plugin])``) by the tests and by the
subprocess driver :data:`DRIVER`. In a process started with ``MNISTKIT_TEST_SIGNAL_AT``
and ``MNISTKIT_TEST_MARKER``, reaching the named point writes the marker file and pauses,
so the test can send SIGINT exactly there. Without those variables the plugin is inert:
``signalling`` computes exactly what ``twolayer`` does, ``mnist-slow`` loads ``mnist``.

Points: ``load`` (dataset loading), ``factory`` (building the model, inside Run.start),
``step:N`` (the N-th training step of this process), ``scores:N`` (the N-th evaluation
call after training started, e.g. the end-of-epoch accuracy).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mnistkit import hookimpl
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions

WHEN = os.environ.get("MNISTKIT_TEST_SIGNAL_AT", "")
MARKER = os.environ.get("MNISTKIT_TEST_MARKER", "")
PAUSE = float(os.environ.get("MNISTKIT_TEST_PAUSE", "0.4"))

#: ``python -c DRIVER ARGS...``: the real mnistkit CLI with this plugin added.
DRIVER = (
    "import sys, _signal_plugin\n"
    "from mnistkit.cli import build_cli\n"
    "from mnistkit.plugins import load_plugins\n"
    "cli = build_cli(load_plugins(extra=[_signal_plugin], entry_points=False))\n"
    "cli.main(args=sys.argv[1:], prog_name='mnistkit')\n"
)


def reached(point: str) -> None:
    """Write the marker and pause if ``point`` is the one this process signals at."""
    if MARKER and point == WHEN:
        Path(MARKER).write_text(point)
        time.sleep(PAUSE)  # the test sends SIGINT during this pause


class SignallingNet:
    """``twolayer``, with signalling points; same parameters, same arithmetic."""

    def __init__(self, options: TwoLayerOptions, rng: Any, n_inputs: int = 784,
                 n_classes: int = 10) -> None:
        reached("factory")
        self.inner = TwoLayerNet(options, rng, n_inputs, n_classes)
        self.params = self.inner.params
        self.steps = self.evaluations = 0

    def loss_and_grads(self, x: Any, y: Any) -> Any:
        self.steps += 1
        reached(f"step:{self.steps}")
        return self.inner.loss_and_grads(x, y)

    def scores(self, x: Any) -> Any:
        if self.steps:
            self.evaluations += 1
            reached(f"scores:{self.evaluations}")
        return self.inner.scores(x)


def load_slowly(options: Any, data_dir: Path | None) -> Any:
    reached("load")
    from mnistkit.data.mnist import load_mnist

    return load_mnist(data_dir)


@hookimpl
def mnistkit_register_models(register: Any) -> None:
    register("signalling", SignallingNet, options=TwoLayerOptions,
             help="twolayer that signals a test (tests only)")


@hookimpl
def mnistkit_register_datasets(register: Any) -> None:
    register("mnist-slow", load_slowly, help="mnist that signals while loading (tests only)")

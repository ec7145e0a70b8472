"""mnistkit's side of the benchmarks: its own Trainer driven epoch by epoch, and the
matrix-multiply floor the epoch is compared against."""

from __future__ import annotations

import time
import types
from typing import Any

import numpy as np

from mnistkit.data.dataset import Split
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions
from mnistkit.optimizers.base import scheduled_lr
from mnistkit.optimizers.sgd import SGD, SGDOptions
from mnistkit.training import EpochFinished, EpochStarted, StepFinished, TrainConfig, Trainer

N_INPUTS, N_CLASSES = 784, 10


def epoch_flops(n_images: int, hidden: int) -> float:
    """Multiply-add FLOPs of one training epoch: forward, dW2, dh and dW1 products,
    ``6 * N * (784 * H + H * 10)`` (bias, ReLU and softmax work is negligible)."""
    return 6.0 * n_images * (N_INPUTS * hidden + hidden * N_CLASSES)


class MnistkitRunner:
    """A ``twolayer`` + ``sgd`` training driven through :class:`mnistkit.training.Trainer`.

    The batch order of every epoch is predicted up front from a copy of the trainer's
    random generator (so a PyTorch twin can train on it, even before mnistkit does), and
    checked against the trainer's own order when each epoch starts.
    """

    def __init__(self, train: Split, *, hidden: int, reg: float, sgd: SGDOptions,
                 batch_size: int, seed: int, epochs: int) -> None:
        rng = np.random.default_rng(seed)
        self.model = TwoLayerNet(TwoLayerOptions(hidden_size=hidden, reg=reg), rng)
        self.initial_params = {k: v.copy() for k, v in self.model.params.items()}
        self.sgd, self.epochs = sgd, epochs
        optimizer = SGD(self.model.params, sgd)
        empty = Split(train.images[:0], train.labels[:0])
        config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
        self.trainer = Trainer(self.model, optimizer, train, empty, config, rng, "twolayer")
        self.orders = self._predict_orders(rng, epochs)
        self.images_per_epoch = self.trainer.steps * batch_size
        self._events = self.trainer.run()
        self.epochs_done = 0

    def _predict_orders(self, rng: np.random.Generator, epochs: int) -> list[np.ndarray]:
        peek = np.random.default_rng()
        peek.bit_generator.state = rng.bit_generator.state
        shadow = types.SimpleNamespace(train=self.trainer.train, steps=self.trainer.steps,
                                       config=self.trainer.config, rng=peek)
        return [Trainer._epoch_order(shadow)[:self.trainer.steps * self.trainer.config.batch_size]
                for _ in range(epochs)]

    def lr(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based) under the SGD schedule."""
        o = self.sgd
        return scheduled_lr(o.lr, o.schedule, epoch, self.epochs, o.step_size, o.gamma)

    def start_epoch(self) -> None:
        """Begin the next epoch (draws its batch order, checked against the prediction)."""
        event = next(self._events)
        if not isinstance(event, EpochStarted):
            raise RuntimeError(f"expected an epoch start, got {event}")
        used = self.trainer.order[:len(self.orders[self.epochs_done])]
        if not np.array_equal(used, self.orders[self.epochs_done]):
            raise RuntimeError("the predicted batch order differs from the trainer's")
        self._steps_done = 0

    def steps(self, count: int) -> float:
        """Run the next ``count`` training steps of the epoch; their seconds."""
        start = time.perf_counter()
        for _ in range(count):
            event = next(self._events)
            if not isinstance(event, StepFinished):
                raise RuntimeError(f"expected a step, got {event}")
        self._steps_done += count
        return time.perf_counter() - start

    def finish_epoch(self) -> float:
        """End the epoch (the trainer measures accuracy); its seconds."""
        start = time.perf_counter()
        event = next(self._events)
        if not isinstance(event, EpochFinished) or self._steps_done != self.trainer.steps:
            raise RuntimeError(f"expected an epoch end after all steps, got {event}")
        self.epochs_done += 1
        return time.perf_counter() - start


def sgemm_gflops(size: int = 1024, calls: int = 4, typical: bool = False) -> float:
    """Float32 matrix-multiply rate (GFLOP/s) of a ``size``-square product: the best of
    ``calls`` (the floor), or their median (``typical``: a canary for a slow moment)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2] if typical else min(times)
    return 2.0 * size**3 / seconds / 1e9


def matmul_only_epoch(n_images: int, hidden: int, batch_size: int = 128) -> float:
    """Seconds for just the five matrix products of an epoch, at the network's shapes,
    into preallocated outputs: the cost of an epoch with every other step removed."""
    rng = np.random.default_rng(2)
    x = rng.random((batch_size, N_INPUTS), dtype=np.float32)
    w1 = rng.standard_normal((N_INPUTS, hidden), dtype=np.float32)
    w2 = rng.standard_normal((hidden, N_CLASSES), dtype=np.float32)
    h = np.empty((batch_size, hidden), np.float32)
    s = np.empty((batch_size, N_CLASSES), np.float32)
    dh = np.empty_like(h)
    dw1, dw2 = np.empty_like(w1), np.empty_like(w2)
    steps = -(-n_images // batch_size)
    start = time.perf_counter()
    for _ in range(steps):
        np.matmul(x, w1, out=h)
        np.matmul(h, w2, out=s)
        np.matmul(h.T, s, out=dw2)
        np.matmul(s, w2.T, out=dh)
        np.matmul(x.T, dh, out=dw1)
    return time.perf_counter() - start


def accuracy_of(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """mnistkit's accuracy function on ``images`` (uint8) and ``labels``."""
    from mnistkit.evaluation import accuracy

    return accuracy(model, images, labels)

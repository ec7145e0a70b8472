"""Distorted training batches made ahead of the step, in a background thread.

:class:`AugmentedBatches` gathers an epoch's batches, distorts them with an
augmentation (:mod:`mnistkit.augment`) and converts them to float32 while the training
step runs: NumPy releases the GIL in the products and gathers, so the distortions use
the core that the step leaves idle. Batch ``step`` of ``epoch`` is distorted with
:func:`mnistkit.augment.batch_rng` ``(seed, epoch, step)``, a function of its position
only: a run resumed mid-epoch gets the very same images, however far ahead the thread
was when it stopped.

The standard library's ``threading`` and ``queue`` serve here: a process pool would
have to copy each batch back, and the work is NumPy calls that release the GIL.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from mnistkit.augment import batch_rng
from mnistkit.errors import MnistkitError, PluginError

#: Batches made ahead of the one being trained on.
DEPTH = 4
_POLL_SECONDS = 0.1


class AugmentedBatches:
    """Float32 batches of distorted training images, made ahead by a background thread.

    Call :meth:`start` at each epoch (or mid-epoch, when resuming), :meth:`take` once per
    step, and :meth:`close` when training stops (also safe to call twice). A batch from
    :meth:`take` stays valid until ``DEPTH + 1`` further calls.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, augmentation: Any,
                 batch_size: int, pixel_scale: float, seed: int, name: str = "augmentation",
                 depth: int = DEPTH) -> None:
        if images.ndim != 3:
            raise PluginError(f"augmentation {name!r} needs images (N, H, W); got shape "
                              f"{images.shape}")
        self.images, self.labels = images, labels.astype(np.intp)
        self.augmentation, self.name = augmentation, name
        self.batch_size, self.seed = batch_size, seed
        self.pixel_scale = np.float32(pixel_scale)
        self._depth = max(depth, 1)
        width = images.shape[1] * images.shape[2]
        # The consumer holds one, the queue up to ``depth``, the producer fills one more.
        self._xs = [np.empty((batch_size, width), np.float32) for _ in range(self._depth + 2)]
        self._ys = [np.empty(batch_size, np.intp) for _ in range(self._depth + 2)]
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self._depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checked = False

    def start(self, epoch: int, order: np.ndarray, first_step: int, steps: int) -> None:
        """Begin making the batches ``first_step .. steps - 1`` of ``epoch`` (0-based),
        batch ``s`` being the images ``order[s * batch_size:(s + 1) * batch_size]``."""
        self.close()
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self._depth)
        self._thread = threading.Thread(
            target=self._produce, args=(epoch, order, first_step, steps, self._stop,
                                        self._queue),
            name=f"mnistkit-augment-{self.name}", daemon=True)
        self._thread.start()

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch (float32 inputs, int labels), waiting for it if need be; raises
        what the augmentation raised, a broken one as :class:`PluginError`."""
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                stopped = self._thread is None or not self._thread.is_alive()
                if stopped and self._queue.empty():
                    raise RuntimeError("the augmentation thread is not running") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the batch it is making) and drop made batches."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        while thread.is_alive():
            _drain(self._queue)  # a producer blocked on a full queue sees the stop
            thread.join(_POLL_SECONDS)
        _drain(self._queue)

    # -- the background thread ----------------------------------------------------------
    def _produce(self, epoch: int, order: np.ndarray, first_step: int, steps: int,
                 stop: threading.Event, out: queue.Queue[Any]) -> None:
        b = self.batch_size
        try:
            for step in range(first_step, steps):
                if stop.is_set():
                    return
                indices = order[step * b:(step + 1) * b]
                item = self._make(epoch, step, indices)
                while not stop.is_set():
                    try:
                        out.put(item, timeout=_POLL_SECONDS)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the training thread, raised by take()
            out.put(self._explain(exc))

    def _make(self, epoch: int, step: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slot = step % len(self._xs)
        n = len(indices)
        raw = self.images.take(indices, axis=0)
        distorted = self.augmentation.distort(raw, batch_rng(self.seed, epoch, step))
        if not self._checked:
            _check_distorted(self.name, raw, distorted)
            self._checked = True
        x, y = self._xs[slot][:n], self._ys[slot][:n]
        np.copyto(x, distorted.reshape(n, -1))
        x *= self.pixel_scale
        self.labels.take(indices, out=y)
        return x, y

    def _explain(self, exc: BaseException) -> BaseException:
        if isinstance(exc, MnistkitError) or not isinstance(exc, Exception):
            return exc
        text = (str(exc).splitlines() or [""])[0]
        return PluginError(f"augmentation {self.name!r}: distort failed "
                           f"({type(exc).__name__}: {text})")


def _check_distorted(name: str, raw: np.ndarray, distorted: Any) -> None:
    """Raise :class:`PluginError` unless ``distorted`` is uint8 shaped like ``raw``."""
    if not isinstance(distorted, np.ndarray) or distorted.dtype != np.uint8 or (
            distorted.shape != raw.shape):
        got = f"{getattr(distorted, 'dtype', type(distorted).__name__)} " \
              f"{getattr(distorted, 'shape', '')}".strip()
        raise PluginError(f"augmentation {name!r}: distort must return uint8 images shaped "
                          f"{raw.shape}; got {got}")


def _drain(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return

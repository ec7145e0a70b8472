"""The PyTorch twin of mnistkit's ``twolayer`` + ``sgd``, for side-by-side timing.

Same architecture (``Linear(784, H) -> ReLU -> Linear(H, 10)``, cross-entropy), the very
same initial weights (copied from an mnistkit model), the same batch order (given per
epoch), the same hyper-parameters (L2 ``reg`` on the weights only, as mnistkit does,
via a ``weight_decay`` parameter group) and the same input pipeline: gather uint8 rows
by index into a reused buffer, convert to float32 and scale in place. Idiomatic PyTorch
otherwise (``nn.Sequential``, ``F.cross_entropy``, ``optim.SGD``, autograd).

Import this module only when torch is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812


def version() -> str:
    """Torch's version string."""
    return torch.__version__


def set_threads(threads: int) -> None:
    """Intra-op threads for torch (its matmuls)."""
    torch.set_num_threads(threads)


class TorchTwoLayer:
    """``784 -> H -> 10`` ReLU network trained with ``torch.optim.SGD``."""

    def __init__(self, params: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
                 *, lr: float, momentum: float, nesterov: bool, reg: float, batch_size: int,
                 pixel_scale: float) -> None:
        n_inputs, hidden = params["W1"].shape
        classes = params["W2"].shape[1]
        self.net = torch.nn.Sequential(torch.nn.Linear(n_inputs, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, classes))
        self.load(params)
        first, _, second = self.net
        self.opt = torch.optim.SGD(
            [{"params": [first.weight, second.weight], "weight_decay": reg},
             {"params": [first.bias, second.bias], "weight_decay": 0.0}],
            lr=lr, momentum=momentum, nesterov=nesterov)
        self.batch_size = batch_size
        self.scale = float(np.float32(pixel_scale))
        self.images = torch.from_numpy(np.ascontiguousarray(images.reshape(len(images), -1)))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self._raw = torch.empty((batch_size, n_inputs), dtype=torch.uint8)
        self._x = torch.empty((batch_size, n_inputs), dtype=torch.float32)
        self._y = torch.empty(batch_size, dtype=torch.int64)

    def load(self, params: dict[str, np.ndarray]) -> None:
        """Copy mnistkit's ``W1, b1, W2, b2`` (weights are stored transposed in torch)."""
        first, _, second = self.net
        with torch.no_grad():
            first.weight.copy_(torch.from_numpy(np.ascontiguousarray(params["W1"].T)))
            first.bias.copy_(torch.from_numpy(params["b1"]))
            second.weight.copy_(torch.from_numpy(np.ascontiguousarray(params["W2"].T)))
            second.bias.copy_(torch.from_numpy(params["b2"]))

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = index.shape[0]
        raw, x, y = self._raw[:n], self._x[:n], self._y[:n]
        torch.index_select(self.images, 0, index, out=raw)
        x.copy_(raw).mul_(self.scale)
        torch.index_select(self.labels, 0, index, out=y)
        return x, y

    def start_epoch(self, lr: float | None = None) -> None:
        """Set the learning rate of the coming steps (mnistkit's schedule sets it per epoch)."""
        if lr is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr
        self.net.train()

    def steps(self, order: np.ndarray) -> float:
        """Train on the images in ``order`` (int64), ``batch_size`` at a time; returns the
        last batch's loss."""
        order_t = torch.from_numpy(np.ascontiguousarray(order, dtype=np.int64))
        b = self.batch_size
        loss = torch.zeros(())
        for start in range(0, order_t.shape[0], b):
            x, y = self._batch(order_t[start:start + b])
            loss = F.cross_entropy(self.net(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return float(loss.detach())

    def scores(self, images: np.ndarray, chunk: int = 1000) -> np.ndarray:
        """Class scores of uint8 ``images`` ``(N, 28, 28)`` as a numpy array."""
        flat = torch.from_numpy(np.ascontiguousarray(images.reshape(len(images), -1)))
        self.net.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, flat.shape[0], chunk):
                x = flat[start:start + chunk].to(torch.float32).mul_(self.scale)
                out.append(self.net(x))
        return torch.cat(out).numpy()

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of ``images`` classified as ``labels``."""
        return float(np.mean(self.scores(images).argmax(axis=1) == labels))


def make_twin(params: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
              **kwargs: Any) -> TorchTwoLayer:
    """A :class:`TorchTwoLayer` starting from a copy of ``params``."""
    return TorchTwoLayer(params, images, labels, **kwargs)

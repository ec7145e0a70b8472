"""Arrays carved from one block of memory, each starting on its own cache line.

A training step's small arrays (scores, bias gradients, the 10-column weights) would
otherwise come from the general allocator, sharing 64-byte cache lines with each other
and with Python objects. When a BLAS worker thread on another core writes its part of
a product's output while the main thread touches a neighbour on the same line, the line
bounces between the cores. Giving every array its own lines removed that cost: 5-8% of
a two-thread epoch of the 784-100-10 network (nothing with one thread; see README,
Performance).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CACHE_LINE = 64


def cache_aligned(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copies of ``arrays`` (same shapes, dtypes and values) in one fresh block, each
    starting on a cache line and owning every line it touches."""
    sizes = {name: -(-a.nbytes // CACHE_LINE) * CACHE_LINE for name, a in arrays.items()}
    block = np.empty(sum(sizes.values()) + CACHE_LINE, np.uint8)
    start = -block.ctypes.data % CACHE_LINE
    out = {}
    for name, a in arrays.items():
        view = block[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        out[name] = view
        start += sizes[name]
    return out

"""What proving the decompressed cache costs: bundled MNIST loads side by side, one process.

Each round (order rotated round by round) times, on all 70,000 images:

- ``no cache``: ``load_mnist(use_cache=False)`` (decompress + MD5 while reading);
- ``warm, verified``: ``load_mnist()`` from a filled cache (``np.load`` + SHA-256 of each
  array's IDX content against mnistkit's shipped sums): what every warm load does now;
- ``warm, CRC-32 only``: ``np.load`` of the same four entries + ``zlib.crc32``: what a warm
  load did before (it trusted the record's MD5);
- ``warm, MD5 recomputed``: ``np.load`` + MD5 of the IDX content (the proof without the
  shipped SHA-256 sums);
- ``np.load only``: the floor.

Usage: ``python benchmarks/cache_cost.py [--rounds 7]``; uses a temporary cache folder.
Prints the median and range of each, in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path


def main() -> None:
    """Run the rounds and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ["MNISTKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="mnistkit-cache-cost-")
    os.environ.pop("MNISTKIT_NO_CACHE", None)
    import numpy as np

    from mnistkit.data.cache import idx_cache_dir, idx_content_digest
    from mnistkit.data.mnist import load_mnist

    load_mnist()  # fill the cache
    entries = sorted(Path(idx_cache_dir()).glob("*.npy"))
    assert len(entries) == 4, entries

    def np_load() -> list:
        return [np.load(p, allow_pickle=False) for p in entries]

    cases = {
        "no cache": lambda: load_mnist(use_cache=False),
        "warm, verified (now)": load_mnist,
        "warm, CRC-32 only (before)": lambda: [zlib.crc32(a.reshape(-1)) for a in np_load()],
        "warm, MD5 recomputed": lambda: [idx_content_digest(a, "md5") for a in np_load()],
        "np.load only": np_load,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(0.05)
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name:28s} median {statistics.median(values):.3f} s  "
              f"({min(values):.3f}-{max(values):.3f}, {len(values)} rounds)")


if __name__ == "__main__":
    main()

"""Facts about a dataset for ``inspect`` and ``show-samples``: counts, shapes, pixel
statistics, checksums, random samples.

Pure functions returning JSON-ready values; the CLI renders them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistkit.data.dataset import SPLITS, Dataset, Split

_CHUNK = 1 << 20  # pixels per step: exact integer sums without a float copy of the images


def pixel_mean_std(images: np.ndarray, scale: float = 255.0) -> tuple[float, float]:
    """Mean and (population) standard deviation of all pixels, divided by ``scale``.

    Sums are exact integers, accumulated over chunks of a uint32 copy, so no float64
    copy of the whole image array is made.
    """
    flat = images.reshape(-1)
    n = flat.size
    if n == 0:
        return float("nan"), float("nan")
    if flat.dtype.kind not in "ui" or flat.dtype.itemsize > 2:
        values = flat.astype(np.float64) / scale
        return float(values.mean()), float(values.std())
    work = np.uint32 if flat.dtype == np.uint8 else np.int64  # squares cannot overflow
    total = 0
    squares = 0
    for start in range(0, n, _CHUNK):
        chunk = flat[start:start + _CHUNK].astype(work)
        total += int(chunk.sum(dtype=np.int64))
        squares += int(np.square(chunk, out=chunk).sum(dtype=np.int64))
    mean = total / n
    variance = (squares * n - total * total) / (n * n)  # exact numerator
    return mean / scale, float(np.sqrt(max(variance, 0.0))) / scale


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    """How many labels there are of each class ``0..n_classes-1``."""
    return [int(c) for c in np.bincount(labels, minlength=n_classes)[:n_classes]]


def split_files(dataset: Dataset, split: str) -> list[str]:
    """The files of ``dataset`` that hold ``split`` (by the ``train``/``t10k``/``test`` prefix)."""
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    names = list(dataset.files) + [n for n in dataset.expected_md5 if n not in dataset.files]
    return [n for n in names if n.startswith(prefixes)]


def file_checks(dataset: Dataset) -> list[dict[str, Any]]:
    """Each file with its MD5 (established in this process), the published MD5 and
    ``ok``/``mismatch``/``unknown``/``not checked``."""
    from mnistkit.data.mnist import checksum_report

    return [{"file": c.name, "md5": c.md5, "expected": c.expected, "status": c.status}
            for c in checksum_report(dataset)]


def summarize_split(split: Split, n_classes: int) -> dict[str, Any]:
    """Count, image shape, dtype, per-class counts and pixel mean/std (0..1) of ``split``."""
    mean, std = pixel_mean_std(split.images)
    return {
        "count": len(split),
        "image_shape": list(split.images.shape[1:]),
        "dtype": str(split.images.dtype),
        "class_counts": class_counts(split.labels, n_classes),
        "pixel_mean": mean,
        "pixel_std": std,
    }


def summarize_dataset(dataset: Dataset) -> dict[str, Any]:
    """Everything ``mnistkit inspect`` shows, as a JSON-ready dict."""
    checks = file_checks(dataset)
    status_of = {c["file"]: c["status"] for c in checks}
    splits = {}
    for name in SPLITS:
        record = summarize_split(dataset.split(name), dataset.n_classes)
        statuses = [status_of[f] for f in split_files(dataset, name)]
        record["checksum"] = _overall(statuses)
        splits[name] = record
    return {
        "dataset": dataset.name,
        "source": dataset.source,
        "class_names": list(dataset.class_names),
        "splits": splits,
        "files": checks,
        "verified": dataset.verified,
    }


def _overall(statuses: list[str]) -> str:
    if not statuses:
        return "unknown"
    if "mismatch" in statuses:
        return "mismatch"
    if "not checked" in statuses:
        return "not checked"
    return "ok" if all(s == "ok" for s in statuses) else "unknown"


def choose_samples(labels: np.ndarray, n: int, seed: int,
                   digit: int | None = None) -> np.ndarray:
    """``n`` distinct random indices (fewer if there are not enough), all of class
    ``digit`` when given; reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(labels == digit) if digit is not None else np.arange(len(labels))
    return rng.choice(pool, size=min(n, pool.size), replace=False)

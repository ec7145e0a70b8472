"""Read a run folder's ``run.json`` defensively into one flat summary row.

Only ``run.json`` is read (plain JSON, never a pickle). Missing or oddly typed fields
become ``None`` rather than errors, so runs written by older or newer mnistkit versions,
unfinished or interrupted runs, can still be compared.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mnistkit.errors import RunError

RUN_RECORD = "run.json"
MAX_RECORD_BYTES = 50 * 1024 * 1024

#: Columns that can be sorted on, best first (higher is better unless listed in LOWER).
NUMERIC = ("test_accuracy", "best_val_accuracy", "final_train_loss", "epochs", "wall_seconds",
           "seconds_per_epoch")
LOWER_IS_BETTER = {"final_train_loss", "wall_seconds", "seconds_per_epoch"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _options(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return ""
    parts = []
    for key, item in value.items():
        shown = ",".join(map(str, item)) if isinstance(item, list) else item
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def read_record(run: Path) -> dict[str, Any]:
    """The parsed ``run.json`` of ``run`` (a folder, or the file itself)."""
    path = run / RUN_RECORD if run.is_dir() else run
    if not path.is_file():
        raise RunError(f"{run}: no {RUN_RECORD} here; is it a run folder made by "
                       "'mnistkit train'?")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise RunError(f"{path}: too large for a run record")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise RunError(f"{path}: not valid JSON (nested too deeply)") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(record, dict):
        raise RunError(f"{path}: expected a JSON object")
    return record


def summarise(run: Path) -> dict[str, Any]:
    """One row: names, options, seed, epochs, accuracies, loss and times of ``run``."""
    record = read_record(run)
    history = [h for h in record.get("history") or [] if isinstance(h, dict)] \
        if isinstance(record.get("history"), list) else []
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    val = [v for v in (_number(h.get("val_accuracy")) for h in history) if v is not None]
    seconds = [s for s in (_number(h.get("seconds")) for h in history) if s is not None]
    dataset = record.get("dataset")
    dataset_name = dataset.get("name") if isinstance(dataset, dict) else dataset
    return {
        "run": str(run),
        "status": record.get("status") if isinstance(record.get("status"), str) else None,
        "model": str(record.get("model", "?")),
        "model_options": _options(record.get("model_options")),
        "optimizer": str(record.get("optimizer", "?")),
        "optimizer_options": _options(record.get("optimizer_options")),
        "dataset": str(dataset_name) if dataset_name is not None else None,
        "seed": record.get("seed", (record.get("training") or {}).get("seed")
                           if isinstance(record.get("training"), dict) else None),
        "epochs": len(history),
        "best_val_accuracy": max(val) if val else None,
        "test_accuracy": _number(metrics.get("test_accuracy")),
        "final_train_loss": _number(history[-1].get("train_loss")) if history else None,
        "wall_seconds": _number(record.get("wall_seconds")),
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
    }


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows best first by ``key``; rows without a value go last."""
    lower = key in LOWER_IS_BETTER
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: r[key], reverse=not lower) + missing

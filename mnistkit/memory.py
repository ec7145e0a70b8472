"""Memory the machine can give, and whether what the user asks for fits in it.

Sizes come from the user (``-m hidden_size=2000000``, ``--steps-per-epoch``), so they
are estimated *before* anything is allocated and refused with one line when they
exceed the memory available to this process: the smallest of ``MemAvailable`` in
``/proc/meminfo`` (else ``os.sysconf``), the cgroup limit (containers) and the address
space limit (``ulimit -v``), minus what is already in use.

A model declares its needs with an optional ``estimate_memory`` on its factory (see
:func:`model_memory` and docs/plugins.md); models without one are still built, and an
allocation that fails is turned into the same one-line error (:func:`memory_errors`).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnistkit.errors import MemoryLimitError

#: Optimizer buffers reserved per parameter (Adam keeps two: its moments).
OPTIMIZER_SLOTS = 2


def format_bytes(count: float) -> str:
    """``12582912000`` -> ``'11.7 GiB'``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(min(count, 10**300)), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{int(value)} bytes"
    return f"{value:.1f} {units[unit]}" if value < 1e6 else f"{min(count, 10**300):.3g} bytes"


def available_bytes() -> int | None:
    """Bytes this process can still allocate, or ``None`` when nothing says."""
    limits = [v for v in (_meminfo_available(), _cgroup_available(), _address_space_left())
              if v is not None]
    return min(limits) if limits else None


def _meminfo_available() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _cgroup_available() -> int | None:
    """cgroup v2 ``memory.max - memory.current`` of this process's cgroup, if limited."""
    with contextlib.suppress(OSError, ValueError):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        group = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        folder = Path("/sys/fs/cgroup") / group.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit != "max":
            return max(int(limit) - int((folder / "memory.current").read_text()), 0)
    return None


def _address_space_left() -> int | None:
    """``RLIMIT_AS`` minus the current virtual size, when such a limit is set."""
    with contextlib.suppress(OSError, ValueError):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(soft - int(line.split()[1]) * 1024, 0)
        return soft
    return None


def check_fits(needed: int, what: str, hint: str = "") -> None:
    """Raise :class:`MemoryLimitError` when ``needed`` bytes exceed what is available."""
    available = available_bytes()
    if available is not None and needed > available:
        raise MemoryLimitError(f"{what} needs about {format_bytes(needed)} of memory but "
                               f"{format_bytes(available)} is available{hint}")


def model_memory(factory: Any, options: Any, n_inputs: int, n_classes: int,
                 batch_size: int) -> dict[str, int] | None:
    """The model's own estimate, ``{"params": bytes, "work": bytes}``, or ``None``.

    ``factory.estimate_memory(options, n_inputs, n_classes, batch_size)`` is optional:
    ``params`` is the size of the parameters (float32), ``work`` everything else the
    model allocates to be built and to take a step on ``batch_size`` images
    (initialisation temporaries, gradients, per-batch buffers). A missing method, or
    one that fails or returns something else, gives ``None``: no estimate.
    """
    estimate = getattr(factory, "estimate_memory", None)
    if not callable(estimate):
        return None
    try:
        result = estimate(options, n_inputs=n_inputs, n_classes=n_classes,
                          batch_size=batch_size)
        return {"params": _bytes(result["params"]), "work": _bytes(result["work"])}
    except Exception:  # a plugin's estimate must never stop a model that works
        return None


def _bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"not a byte count: {value!r}")
    return int(value) if isinstance(value, int) or math.isfinite(value) else 2**63


def check_model_fits(entry: Any, options: Any, n_inputs: int, n_classes: int,
                     batch_size: int, *, params_copies: float = 1 + OPTIMIZER_SLOTS,
                     work_factor: float = 1.0, action: str = "training") -> None:
    """Refuse a model whose estimate (see :func:`model_memory`) does not fit.

    Needed: ``params * params_copies + work * work_factor`` (by default the parameters
    and :data:`OPTIMIZER_SLOTS` optimizer buffers each). Models without an estimate pass.
    """
    estimate = model_memory(entry.factory, options, n_inputs, n_classes, batch_size)
    if estimate is None:
        return
    needed = int(estimate["params"] * params_copies + estimate["work"] * work_factor)
    check_fits(needed, f"{action} model {entry.name!r} ({describe(options)})",
               "; choose smaller model options")


def describe(options: Any) -> str:
    """``hidden_size=2000000 reg=1e-05`` for an options dataclass (``no options``)."""
    fields = getattr(options, "__dataclass_fields__", None) or {}
    return " ".join(f"{k}={getattr(options, k)}" for k in fields) or "no options"


@contextlib.contextmanager
def memory_errors(what: str) -> Iterator[None]:
    """Turn a failed allocation (``MemoryError``, NumPy's ``_ArrayMemoryError``, or an
    array size NumPy cannot represent) inside the block into one
    :class:`MemoryLimitError` line naming ``what``."""
    try:
        yield
    except MemoryError as exc:
        text = (str(exc).splitlines() or [""])[0] or "out of memory"
        raise MemoryLimitError(f"{what}: not enough memory ({text})") from None

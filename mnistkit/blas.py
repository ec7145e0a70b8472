"""A matrix product that accumulates into its output: ``C = alpha * op(A) @ B + beta * C``.

NumPy's ``matmul`` always overwrites its output, so an update such as an SGD step
``W = (1 - lr*reg) * W - lr * x.T @ dh`` costs a product into a gradient buffer and then
three or four passes over it. BLAS's own ``gemm`` does it in one call: each BLAS thread
updates its share of ``W`` in place, and the gradient never goes through memory.

:func:`gemm_update` calls ``cblas_sgemm``/``cblas_dgemm`` of the OpenBLAS that NumPy's
wheels bundle (found by its exported names, through :mod:`ctypes`, on first use), so it
shares NumPy's BLAS threads and ``--threads`` limits. Everything is validated before the
call; where that library is not found (other NumPy builds), it falls back to NumPy with a
temporary: the same result up to rounding.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable
from typing import Any

import numpy as np

# CBLAS enum values (cblas.h)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (symbol, integer type): numpy>=2 wheels (scipy-openblas, 64-bit ints), then plain names
_NAMES = {
    np.dtype(dtype): [(f"scipy_cblas_{letter}gemm64_", ctypes.c_int64),
                      (f"cblas_{letter}gemm64_", ctypes.c_int64),
                      (f"scipy_cblas_{letter}gemm", ctypes.c_int32),
                      (f"cblas_{letter}gemm", ctypes.c_int32)]
    for dtype, letter in ((np.float32, "s"), (np.float64, "d"))
}
_SCALAR = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}

_functions: dict[np.dtype, Callable[..., Any] | None] | None = None


def _numpy_blas_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries bundled with NumPy (Linux and macOS wheels)."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    found = []
    for folder in ("numpy.libs", os.path.join("numpy", ".dylibs")):
        found += sorted(glob.glob(os.path.join(root, folder, "*openblas*")))
    return found


def _load() -> dict[np.dtype, Callable[..., Any] | None]:
    functions: dict[np.dtype, Callable[..., Any] | None] = dict.fromkeys(_NAMES)
    for path in _numpy_blas_libraries():
        try:
            library = ctypes.CDLL(path)  # already loaded by NumPy: the same handle
        except OSError:
            continue
        for dtype in _NAMES:
            if functions[dtype] is None:
                functions[dtype] = _first_working_gemm(library, dtype)
    return functions


def _first_working_gemm(library: ctypes.CDLL, dtype: np.dtype) -> Callable[..., Any] | None:
    """The first of ``_NAMES[dtype]`` that ``library`` exports and that computes right."""
    real, pointer = _SCALAR[dtype], ctypes.c_void_p
    for name, integer in _NAMES[dtype]:
        function = getattr(library, name, None)
        if function is None:
            continue
        function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, integer, integer,
                             integer, real, pointer, integer, pointer, integer, real,
                             pointer, integer]
        function.restype = None
        if _agrees_with_numpy(dtype, function):
            return function
    return None


def _agrees_with_numpy(dtype: np.dtype, function: Callable[..., Any]) -> bool:
    """One small product through ``function`` must match NumPy's (guards the ABI guess)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3)).astype(dtype), rng.random((5, 4)).astype(dtype)
    c = rng.random((3, 4)).astype(dtype)
    expected = 0.5 * a.T @ b + 2.0 * c
    _call(function, c, a, b, 0.5, 2.0, True)
    return bool(np.allclose(c, expected, rtol=1e-5))


def _call(function: Callable[..., Any], c: np.ndarray, a: np.ndarray, b: np.ndarray,
          alpha: float, beta: float, trans_a: bool) -> None:
    m, n = c.shape
    k = b.shape[0]
    function(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _NO_TRANS, m, n, k, alpha,
             a.ctypes.data, a.shape[1], b.ctypes.data, n, beta, c.ctypes.data, n)


def blas_function(dtype: np.dtype) -> Callable[..., Any] | None:
    """The accumulating ``gemm`` used for ``dtype``, or None when NumPy's fallback is."""
    global _functions
    if _functions is None:
        _functions = _load()
    return _functions.get(np.dtype(dtype))


def gemm_update(c: np.ndarray, a: np.ndarray, b: np.ndarray, *, alpha: float, beta: float,
                trans_a: bool = False) -> None:
    """``c = alpha * op(a) @ b + beta * c`` in place, ``op(a)`` being ``a.T`` if
    ``trans_a`` else ``a``.

    ``a``, ``b`` and ``c`` must be 2-d, C-contiguous, of one dtype (float32 or float64),
    with ``c`` writeable and not overlapping ``a`` or ``b``; raises ``ValueError``
    otherwise (nothing is computed then).
    """
    _check(c, a, b, trans_a)
    function = blas_function(c.dtype)
    if function is not None and min(a.shape + b.shape) > 0:  # BLAS rejects a zero stride
        _call(function, c, a, b, alpha, beta, trans_a)
        return
    product = (a.T if trans_a else a) @ b
    product *= alpha
    if beta != 1.0:
        c *= beta
    c += product


def _check(c: np.ndarray, a: np.ndarray, b: np.ndarray, trans_a: bool) -> None:
    arrays = {"a": a, "b": b, "c": c}
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.ndim != 2:
            raise ValueError(f"gemm_update: {name} must be a 2-d array")
        if not array.flags.c_contiguous:
            raise ValueError(f"gemm_update: {name} must be C-contiguous")
        if array.dtype != c.dtype:
            raise ValueError(f"gemm_update: {name} is {array.dtype}, c is {c.dtype}")
    if c.dtype not in _SCALAR:
        raise ValueError(f"gemm_update: float32 or float64 only, not {c.dtype}")
    if not c.flags.writeable:
        raise ValueError("gemm_update: c is read-only")
    rows, inner = (a.shape[1], a.shape[0]) if trans_a else a.shape
    if (rows, b.shape[1]) != c.shape or inner != b.shape[0]:
        op = "a.T" if trans_a else "a"
        raise ValueError(f"gemm_update: {op} @ b is ({rows}, {inner}) @ {b.shape}, "
                         f"c is {c.shape}")
    if np.may_share_memory(c, a) or np.may_share_memory(c, b):
        raise ValueError("gemm_update: c overlaps a or b")

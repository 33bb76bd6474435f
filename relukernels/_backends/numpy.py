"""NumPy arrays on the Numba CPU loops; several threads on large arrays.

How a dtype runs is a table, not a chain of cases: float32/64 and the integer dtypes
run compiled Numba loops; float16, which Numba lacks, maps its bit patterns through
tables of all 65,536 results that NumPy itself computed; any other real dtype
(longdouble) takes the formula in NumPy's own operations.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from .. import _validate
from . import RunBackend, generic

_STRATEGIES = {np.dtype(c): "numba" for c in "f4 f8 i1 i2 i4 i8 u1 u2 u4 u8".split()}
_STRATEGIES[np.dtype(np.float16)] = "float16 tables"
"""How each dtype runs; real dtypes not listed take the formula."""

_UINT16 = np.dtype(np.uint16)
_ALL_FLOAT16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16)

PARALLEL_MIN_SIZE = 1 << 18
"""Arrays with fewer elements run in the calling thread."""

_CHUNK_ALIGN = 1024


def num_threads() -> int:
    """Threads for large arrays: ``RELUKERNELS_NUM_THREADS``, else the usable CPUs."""
    configured = os.environ.get("RELUKERNELS_NUM_THREADS")
    if configured:
        return max(1, int(configured))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(num_threads(), thread_name_prefix="relukernels")
        return _pool


class NumpyBackend(RunBackend):
    """``numpy.ndarray`` inputs; array-likes are converted to them by the dispatcher."""

    name = "numpy"

    def accepts(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def run(self, op: str, x: np.ndarray, leak: int | float, outs: tuple, names: tuple) -> list:
        """``op`` over ``x`` into ``outs`` (each ``None`` or an array, named ``names``)."""
        a, dtype = _validate.numpy_result(x.dtype, leak)
        overlaps = False
        checked = []
        for out, name in zip(outs, names):
            if out is None:
                out = np.empty_like(x, dtype=dtype)
            else:
                _validate.out_array(out, name=name, expected_type=np.ndarray, shape=x.shape, dtype=dtype)
                overlaps = overlaps or _overlap(out, x)
            checked.append(out)
        if len(checked) == 2 and _overlap(*checked):
            raise ValueError("out[0] and out[1] overlap; they must be separate arrays")
        if x.size == 0:
            return checked
        strategy = _STRATEGIES.get(x.dtype, "formula")
        if strategy == "numba":
            _launch(op, x, (a,), checked, overlaps)
        elif strategy == "float16 tables":
            relu_table, dash_table = _float16_tables(a)
            lookup, tables = {
                "relu": ("lookup", (relu_table,)),
                "relu_dash": ("lookup", (dash_table,)),
                "relu_and_dash": ("lookup_pair", (relu_table, dash_table)),
            }[op]
            bits = [out.view(_UINT16) for out in checked]
            _launch(lookup, x.view(_UINT16), tables, bits, overlaps)
        else:
            with np.errstate(all="ignore"):
                for out, formula in zip(checked, generic.FORMULAS[op]):
                    out[...] = formula(np, x, a)
        return checked


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` may share memory without being the same array object."""
    if a is b or (a.base is None and b.base is None):
        return False
    return bool(np.may_share_memory(a, b))


@functools.lru_cache(maxsize=64)
def _float16_tables(a: float) -> tuple[np.ndarray, np.ndarray]:
    """``relu`` and ``relu_dash`` of every float16, as uint16 bit patterns.

    NumPy's float16 product rounds the exact float32 product once, so these are the
    correctly rounded results that the contract asks for.
    """
    with np.errstate(all="ignore"):
        tables = tuple(
            np.ascontiguousarray(formula(np, _ALL_FLOAT16, a)).view(_UINT16)
            for formula in (generic.relu, generic.relu_dash)
        )
    for table in tables:
        table.flags.writeable = False  # shared by every later call with this leak
    return tables


def _launch(name: str, x: np.ndarray, extras: tuple, outs: list, overlaps: bool) -> None:
    """Run loop ``name`` over ``x`` into ``outs``, on chunks in threads when large.

    All arrays C- (or all F-) contiguous: the ``njit`` loop over 1-d views in memory
    order. Otherwise, or when an output shares memory with ``x`` without being ``x``,
    the gufunc, whose NumPy machinery handles any strides and buffers overlaps.
    """
    arrays = [x, *outs]
    c_order = f_order = not overlaps
    for array in arrays:
        flags = array.flags
        c_order = c_order and flags.c_contiguous
        f_order = f_order and flags.f_contiguous
    if c_order or f_order:
        if x.ndim != 1:
            arrays = [a.reshape(-1) if c_order else a.T.reshape(-1) for a in arrays]
        kernel = _loops[name, True, x.dtype, outs[0].dtype]
    else:
        if not x.ndim:
            arrays = [a.reshape(1) for a in arrays]
        kernel = functools.partial(_quietly, _loops[name, False, x.dtype, outs[0].dtype])
    if x.size < PARALLEL_MIN_SIZE or overlaps or num_threads() == 1:
        kernel(arrays[0], *extras, *arrays[1:])
        return
    bounds = _chunk_bounds(len(arrays[0]), min(num_threads(), len(arrays[0])))
    chunks = [[a[lo:hi] for a in arrays] for lo, hi in zip(bounds, bounds[1:])]
    futures = [_thread_pool().submit(kernel, c[0], *extras, *c[1:]) for c in chunks[1:]]
    kernel(chunks[0][0], *extras, *chunks[0][1:])
    for future in futures:
        future.result()


class _CompiledLoops(dict):
    """Compiled loops by (name, flat, input dtype, output dtype), compiled on first use."""

    def __missing__(self, key: tuple) -> Callable[..., None]:
        from . import _numba_cpu

        loop = self[key] = _numba_cpu.loop(*key)
        return loop


_loops = _CompiledLoops()


def _chunk_bounds(length: int, pieces: int) -> list[int]:
    step = -(-length // pieces)
    if length >= pieces * _CHUNK_ALIGN:
        step = -(-step // _CHUNK_ALIGN) * _CHUNK_ALIGN
    return [min(i * step, length) for i in range(pieces)] + [length]


def _quietly(kernel: Callable[..., None], *args: Any) -> None:
    """Call a gufunc without NumPy's floating-point warnings: NaN compares raise the
    'invalid' flag inside the loop, which NumPy would report as a RuntimeWarning."""
    with np.errstate(all="ignore"):
        kernel(*args)

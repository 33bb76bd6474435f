"""NumPy arrays: the ufuncs of ``relukernels.ufuncs``, and a threaded fast path.

How a call runs:

- a scalar leak over arrays that are all C- (or all F-) contiguous and do not
  overlap runs the Numba loops of ``_numba_cpu`` over 1-d views, on chunks in
  threads when large; float16, which Numba lacks, maps its bit patterns through
  tables of all 65,536 results that NumPy itself computed;
- anything else (strided views, overlapping ``out``, array leaks) calls the ufunc,
  whose NumPy machinery handles broadcasting, strides and overlap;
- real dtypes without a loop (longdouble) take the formula in NumPy's operations.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from .. import _validate
from .._ops import Operation

_LOOP_DTYPES = frozenset(np.dtype(c) for c in "f4 f8 i1 i2 i4 i8 u1 u2 u4 u8".split())
_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_UINT16 = np.dtype(np.uint16)
_ALL_FLOAT16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16)

PARALLEL_MIN_SIZE = 1 << 18
"""Arrays with fewer elements run in the calling thread."""

_CHUNK_ALIGN = 1024


@functools.cache
def num_threads() -> int:
    """Threads for large arrays: ``RELUKERNELS_NUM_THREADS``, else the usable CPUs.
    Read once, on first use."""
    configured = os.environ.get("RELUKERNELS_NUM_THREADS", "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise ValueError(f"RELUKERNELS_NUM_THREADS must be a positive integer, got {configured!r}")
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(num_threads(), thread_name_prefix="relukernels")
        return _pool


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool object but none of its threads: start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


class NumpyBackend:
    """``numpy.ndarray`` inputs; array-likes are converted to them by the dispatcher."""

    name = "numpy"

    def run(self, op: Operation, x: np.ndarray, leak: Any, outs: tuple) -> list:
        """``op`` over ``x`` into ``outs`` (each ``None`` or an array)."""
        if _validate.is_array_leak(leak):
            if not isinstance(leak, np.ndarray):
                raise TypeError(f"leak must be a NumPy array for a NumPy x, got {type(leak).__name__}")
            a, dtype = _validate.array_leak(np, leak, x.shape, x.dtype)
        else:
            a, dtype = _validate.numpy_result(x.dtype, leak)
        overlaps = False
        checked = []
        for out, name in zip(outs, op.out_names):
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
        if x.dtype not in _LOOP_DTYPES and x.dtype != _FLOAT16:
            with np.errstate(all="ignore"):
                for out, formula in zip(checked, op.formulas):
                    out[...] = formula(np, x, a, dtype)
        elif isinstance(a, np.ndarray) or overlaps or not _fast(op, x, a, checked):
            call_ufunc(op, x, a, dtype, checked)
        return checked


def call_ufunc(op: Operation, x: Any, a: Any, dtype: np.dtype | None, outs: tuple | list) -> list:
    """``op``'s ufunc over ``x`` (an array or a container) with leak ``a`` in result
    ``dtype`` (``None``: NumPy resolves it), into ``outs`` (each ``None`` or an array).

    Float16 runs the float32 loop on a float16 leak: exact once stored as float16.
    """
    from ..ufuncs import UFUNCS

    options: dict[str, Any] = {} if all(out is None for out in outs) else {"out": tuple(outs)}
    if dtype is not None:
        a = a if isinstance(a, np.ndarray) else dtype.type(a)
        options["dtype"] = _FLOAT32 if dtype == _FLOAT16 else dtype
    results = UFUNCS[op.name](x, a, **options)
    results = list(results) if op.nout > 1 else [results]
    if dtype == _FLOAT16:
        results = [r if out is not None else r.astype(_FLOAT16) for r, out in zip(results, outs)]
    return results


def _fast(op: Operation, x: np.ndarray, a: int | float, outs: list) -> bool:
    """Run ``op`` on the Numba loops if every array is contiguous in one order;
    return whether it ran."""
    arrays = [x, *outs]
    c_order = all(array.flags.c_contiguous for array in arrays)
    if not c_order and not all(array.flags.f_contiguous for array in arrays):
        return False
    if x.ndim != 1:
        arrays = [array.reshape(-1) if c_order else array.T.reshape(-1) for array in arrays]
    if x.dtype == _FLOAT16:
        tables = _float16_tables(a)
        name = "lookup" if op.nout == 1 else "lookup_pair"
        extras = tuple(tables[element.__name__] for element in op.elements)
        arrays = [array.view(_UINT16) for array in arrays]
        kernel = _loops[name, _UINT16, _UINT16]
    else:
        extras = (outs[0].dtype.type(a),)
        kernel = _loops[op.name, x.dtype, outs[0].dtype]
    _in_chunks(kernel, arrays, extras)
    return True


def _in_chunks(kernel: Callable[..., None], arrays: list[np.ndarray], extras: tuple) -> None:
    """``kernel(x, *extras, *outs)`` over 1-d ``arrays``, on chunks in threads when large."""
    size = len(arrays[0])
    if size < PARALLEL_MIN_SIZE or num_threads() == 1:
        kernel(arrays[0], *extras, *arrays[1:])
        return
    bounds = _chunk_bounds(size, min(num_threads(), size))
    chunks = [[a[lo:hi] for a in arrays] for lo, hi in zip(bounds, bounds[1:])]
    futures = [_thread_pool().submit(kernel, c[0], *extras, *c[1:]) for c in chunks[1:]]
    kernel(chunks[0][0], *extras, *chunks[0][1:])
    for future in futures:
        future.result()


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` may share memory without being the same array object."""
    if a is b or (a.base is None and b.base is None):
        return False
    return bool(np.may_share_memory(a, b))


@functools.lru_cache(maxsize=64)
def _float16_tables(a: float) -> dict[str, np.ndarray]:
    """Every element formula of every float16 value, as uint16 bit patterns, by name.

    NumPy's float16 product rounds the exact float32 product once, so these are the
    correctly rounded results that the contract asks for.
    """
    from .._ops import RELU, RELU_DASH

    tables = {}
    with np.errstate(all="ignore"):
        for op in (RELU, RELU_DASH):
            table = np.ascontiguousarray(op.formulas[0](np, _ALL_FLOAT16, a, _FLOAT16)).view(_UINT16)
            table.flags.writeable = False  # shared by every later call with this leak
            tables[op.elements[0].__name__] = table
    return tables


class _CompiledLoops(dict):
    """Compiled loops by (name, input dtype, output dtype), compiled on first use."""

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

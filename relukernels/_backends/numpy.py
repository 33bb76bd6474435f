"""NumPy arrays: Numba loops for a scalar leak, the ufuncs of ``relukernels.ufuncs``
for the rest.

How a call runs (benchmarks/RESULTS.md has the measurements behind each choice):

- a scalar leak over arrays that are all C- (or all F-) contiguous and do not
  overlap runs the ``njit`` loops of ``_numba_cpu`` over 1-d views, on chunks in
  threads when large;
- a scalar leak over any other layout runs the strided ``guvectorize`` loop along the
  axis with the smallest stride, NumPy's gufunc machinery doing the other axes and
  any overlap;
- an array leak that is constant along ``x``'s trailing axes (PReLU's ``(C, 1, 1)``
  against ``(N, C, H, W)``) runs the rows loops, each row of those axes with its own
  leak, in threads when large; any other array leak calls the ufunc, whose
  machinery broadcasts it;
- ``relu_backward`` (``backward``) runs a threaded ``njit`` loop over ``grad`` and
  ``x`` when both and the output share a dtype and a contiguous layout and the leak
  is a number, and its ufunc otherwise;
- float16, which Numba lacks, maps its bit patterns through tables of all 65,536
  results that NumPy itself computed (the ufunc for array leaks); real dtypes
  without a loop (longdouble) take the formula in NumPy's operations.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from .. import _validate
from .._ops import RELU_BACKWARD, Operation

_LOOP_DTYPES = frozenset(np.dtype(c) for c in "f4 f8 i1 i2 i4 i8 u1 u2 u4 u8".split())
_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_UINT16 = np.dtype(np.uint16)
_ALL_FLOAT16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16)

PARALLEL_MIN_SIZE = 1 << 20
"""Arrays with fewer elements run in the calling thread: handing chunks to the pool
costs 60-100 µs on the 2-core development machine, so two threads pay only from about
a million elements (benchmarks/RESULTS.md, "Threads")."""

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
        a, dtype = _resolve_leak(x, leak)
        overlaps = False
        checked = []
        for out, name in zip(outs, op.out_names):
            checked.append(_output(out, x, dtype, name))
            overlaps = overlaps or (out is not None and _overlap(out, x))
        if len(checked) == 2 and _overlap(*checked):
            raise ValueError("out[0] and out[1] overlap; they must be separate arrays")
        if x.size == 0:
            return checked
        if x.dtype not in _LOOP_DTYPES and x.dtype != _FLOAT16:
            with np.errstate(all="ignore"):
                for out, formula in zip(checked, op.formulas):
                    out[...] = formula(np, x, a, dtype)
        elif isinstance(a, np.ndarray):
            if dtype not in _LOOP_DTYPES or x.dtype == _FLOAT16 or not _by_rows(op, x, a, checked, overlaps):
                call_ufunc(op, (x,), a, dtype, checked)
        elif overlaps or not _flat(op, x, a, checked):
            _strided(op, x, a, checked)
        return checked

    def backward(self, grad: np.ndarray, x: np.ndarray, leak: Any, out: Any) -> np.ndarray:
        """``relu_backward``: the ``njit`` loop when ``grad``, ``x`` and ``out`` share a
        dtype and a contiguous layout and the leak is a number (on chunks in threads
        when large), else the ufunc; ``out`` may be ``grad`` or ``x`` itself."""
        a, dash_dtype = _resolve_leak(x, leak)
        if grad.shape != x.shape:
            _validate.grad_shape(grad.shape, x.shape)
            grad = np.broadcast_to(grad, x.shape)
        dtype = dash_dtype if grad.dtype == dash_dtype else _validate.grad_dtype(np, grad.dtype, dash_dtype)
        given = out
        out = _output(out, x, dtype, "out")
        overlaps = given is not None and (_overlap(out, grad) or _overlap(out, x))
        if x.size == 0:
            return out
        if dtype not in _LOOP_DTYPES and dtype != _FLOAT16:
            with np.errstate(all="ignore"):
                out[...] = RELU_BACKWARD.formulas[0](np, grad, x, a, dash_dtype)
            return out
        views = None
        if not overlaps and not isinstance(a, np.ndarray) and grad.dtype == x.dtype == dtype != _FLOAT16:
            views = _flat_views([grad, x, out])
        if views is None:  # the leak rounded to relu_dash's dtype first, as the product does
            with np.errstate(all="ignore"):  # inf * 0 is the product's NaN, as in the loop
                call_ufunc(RELU_BACKWARD, (grad, x), a if isinstance(a, np.ndarray) else dash_dtype.type(a), dtype, (out,))
            return out
        kernel = _loops["backward", dtype]
        g, v, y = views
        if x.size < PARALLEL_MIN_SIZE:
            kernel(g, v, a, y)
            return out
        _in_chunks(lambda lo, hi: kernel(g[lo:hi], v[lo:hi], a, y[lo:hi]), x.size, x.size, _CHUNK_ALIGN)
        return out


def _resolve_leak(x: np.ndarray, leak: Any) -> tuple[Any, np.dtype]:
    """The leak to compute with (a number, or an array cast to the result dtype) and
    ``relu``'s result dtype, for ``x``."""
    if type(leak) is float or type(leak) is int:
        return _validate.numpy_result(x.dtype, leak)
    if isinstance(leak, np.ndarray):
        return _validate.array_leak(np, leak, x.shape, x.dtype)
    raise TypeError(f"leak must be a number or a NumPy array for a NumPy x, got {type(leak).__name__}")


def _output(out: Any, x: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``out`` checked to take a result of ``x``'s shape in ``dtype``, or a new array
    in ``x``'s memory order."""
    if out is None:
        return np.empty_like(x, dtype=dtype, subok=False)
    if not (type(out) is np.ndarray and out.shape == x.shape and out.dtype == dtype and out.flags.writeable):
        _validate.out_array(out, name=name, expected_type=np.ndarray, shape=x.shape, dtype=dtype)
    return out


def call_ufunc(op: Operation, inputs: tuple, a: Any, dtype: np.dtype | None, outs: tuple | list) -> list:
    """``op``'s ufunc over ``inputs`` (arrays or containers: ``(x,)``, or ``(grad, x)``
    for ``relu_backward``) with leak ``a`` in result
    ``dtype`` (``None``: NumPy resolves it), into ``outs`` (each ``None`` or an array).

    Float16 runs the float32 loop on a float16 leak: exact once stored as float16.
    """
    from ..ufuncs import UFUNCS

    options: dict[str, Any] = {} if all(out is None for out in outs) else {"out": tuple(outs)}
    if dtype is not None:
        a = a if isinstance(a, np.ndarray) else dtype.type(a)
        options["dtype"] = _FLOAT32 if dtype == _FLOAT16 else dtype
    results = UFUNCS[op.name](*inputs, a, **options)
    results = list(results) if op.nout > 1 else [results]
    if dtype == _FLOAT16:
        results = [r if out is not None else r.astype(_FLOAT16) for r, out in zip(results, outs)]
    return results


def _flat(op: Operation, x: np.ndarray, a: int | float, outs: list) -> bool:
    """Run ``op`` on the ``njit`` loops if every array is contiguous in one order, on
    chunks in threads when large; return whether it ran."""
    arrays = _flat_views([x, *outs])
    if arrays is None:
        return False
    kernel, extras, arrays = _loop(op, "flat", a, arrays)
    if x.size < PARALLEL_MIN_SIZE:
        kernel(arrays[0], *extras, *arrays[1:])
        return True
    _in_chunks(lambda lo, hi: kernel(arrays[0][lo:hi], *extras, *[y[lo:hi] for y in arrays[1:]]),
               x.size, x.size, _CHUNK_ALIGN)
    return True


def _flat_views(arrays: list[np.ndarray]) -> list[np.ndarray] | None:
    """1-d views of same-shaped ``arrays`` in one element order, if all are C- or all
    are F-contiguous; else ``None``."""
    for array in arrays:  # plain loops: a small call's checks cost more than its kernel
        if not array.flags.c_contiguous:
            break
    else:
        return arrays if arrays[0].ndim == 1 else [array.reshape(-1) for array in arrays]
    for array in arrays:
        if not array.flags.f_contiguous:
            return None
    return [array.T.reshape(-1) for array in arrays]


def _strided(op: Operation, x: np.ndarray, a: int | float, outs: list) -> None:
    """Run ``op``'s strided loop along the axis of ``x`` with the smallest stride
    (unit axes dropped, so that a column view is one long run)."""
    keep = tuple(d for d, n in enumerate(x.shape) if n != 1) or (0,)
    arrays = [array.reshape([array.shape[d] for d in keep]) if x.ndim else array.reshape(1) for array in (x, *outs)]
    inner = int(np.argmin([abs(s) for s in arrays[0].strides]))
    arrays = [np.moveaxis(array, inner, -1) for array in arrays]
    kernel, extras, arrays = _loop(op, "strided", a, arrays)
    kernel(arrays[0], *extras, *arrays[1:])


_MIN_ROW = 64
"""Rows shorter than this call the ufunc instead: the loop's cost per row dominates."""


def _by_rows(op: Operation, x: np.ndarray, a: np.ndarray, outs: list, overlaps: bool) -> bool:
    """Run ``op``'s rows loop over ``x`` seen as rows of the trailing axes along which
    the leak ``a`` is constant, each row with its own leak, on chunks of rows in
    threads when large; return whether ``x`` and the outputs allow it (C-contiguous
    rows, long enough to pay for the loop's cost per row)."""
    leak = np.broadcast_to(a, x.shape)
    trailing = 0
    while trailing < x.ndim and (leak.strides[-1 - trailing] == 0 or x.shape[-1 - trailing] == 1):
        trailing += 1
    lead = x.shape[: x.ndim - trailing]
    row = math.prod(x.shape[x.ndim - trailing :])
    if not trailing or row < _MIN_ROW:
        return False
    rows = math.prod(lead)
    try:  # each row must be one run in memory: no copies
        arrays = [np.reshape(array, (rows, row), copy=False) for array in (x, *outs)]
    except ValueError:
        return False
    if not all(array.flags.c_contiguous for array in arrays):
        return False
    row_leaks = np.broadcast_to(leak[(..., *[0] * trailing)], lead).reshape(rows)
    kernel = _loops["rows", op.name, x.dtype, outs[0].dtype]
    if overlaps:
        arrays = [arrays[0].copy(), *arrays[1:]]
    _in_chunks(lambda lo, hi: kernel(arrays[0][lo:hi], row_leaks[lo:hi], *[y[lo:hi] for y in arrays[1:]]),
               rows, x.size, 1)
    return True


def _loop(op: Operation, kind: str, a: int | float, arrays: list[np.ndarray]) -> tuple:
    """The compiled ``kind`` ("flat" or "strided") loop for ``op`` over ``arrays``
    (``x``, then the outputs), its extra arguments, and the arrays as it takes them:
    float16 runs the lookup loops over bit patterns."""
    if arrays[0].dtype == _FLOAT16:
        tables = _float16_tables(a)
        name = "lookup" if op.nout == 1 else "lookup_pair"
        extras = tuple(tables[part] for part in op.parts)
        return _loops[kind, name, _UINT16, _UINT16], extras, [array.view(_UINT16) for array in arrays]
    # The leak goes as a Python number, which Numba converts to the loop's type
    # (correctly rounded) faster than it types a NumPy scalar.
    return _loops[kind, op.name, arrays[0].dtype, arrays[1].dtype], (a,), arrays


def _in_chunks(run: Callable[[int, int], None], length: int, size: int, align: int) -> None:
    """``run(lo, hi)`` over ``range(length)``: at once when ``size`` (the elements
    behind it) is small, else on chunks (multiples of ``align``) in threads."""
    pieces = min(num_threads(), length)
    if size < PARALLEL_MIN_SIZE or pieces < 2:
        run(0, length)
        return
    bounds = _chunk_bounds(length, pieces, align)
    futures = [_thread_pool().submit(run, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    run(bounds[0], bounds[1])
    for future in futures:
        future.result()


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` may share memory without being the same array object."""
    if a is b or (a.base is None and b.base is None):
        return False
    return bool(np.may_share_memory(a, b))


@functools.lru_cache(maxsize=64)
def _float16_tables(a: float) -> dict[str, np.ndarray]:
    """Every single-output operation of every float16 value, as uint16 bit patterns,
    by the operation's name.

    NumPy's float16 product rounds the exact float32 product once, so these are the
    correctly rounded results that the contract asks for.
    """
    from .._ops import OPERATIONS

    tables = {}
    with np.errstate(all="ignore"):
        for op in (op for op in OPERATIONS.values() if op.nout == 1):
            table = np.ascontiguousarray(op.formulas[0](np, _ALL_FLOAT16, a, _FLOAT16)).view(_UINT16)
            table.flags.writeable = False  # shared by every later call with this leak
            tables[op.name] = table
    return tables


class _CompiledLoops(dict):
    """Compiled loops by (kind: "flat", "strided" or "rows", name, input dtype,
    output dtype), or ("backward", dtype), compiled (or loaded from Numba's disk cache) on first use."""

    def __missing__(self, key: tuple) -> Callable[..., None]:
        from . import _numba_cpu

        num_threads()  # a bad RELUKERNELS_NUM_THREADS fails the first call, not the first large one

        kind, *signature = key
        if kind == "rows":
            loop = _numba_cpu.rows_loop(*signature)
        elif kind == "backward":
            loop = _numba_cpu.backward_loop(*signature)
        else:
            loop = _numba_cpu.loop(signature[0], kind == "flat", *signature[1:])
        self[key] = loop
        return loop


_loops = _CompiledLoops()


def _chunk_bounds(length: int, pieces: int, align: int) -> list[int]:
    step = -(-length // pieces)
    if length >= pieces * align:
        step = -(-step // align) * align
    return [min(i * step, length) for i in range(pieces)] + [length]

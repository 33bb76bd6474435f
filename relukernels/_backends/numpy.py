"""NumPy arrays on the CPU kernels of ``relukernels._kernels``, by one of three routes:

1. **Rows loops** over contiguous data: ``x`` and the outputs contiguous in one order
   (C or Fortran), a dtype with a loop that the result keeps, and every output new,
   ``x`` itself or apart from it; the leak a number (the data one row, or on threads
   one row per chunk), or an array constant along ``x``'s trailing axes, as PReLU's
   ``(C, 1, 1)`` against ``(N, C, H, W)`` is (C order, a row per leak). The compiled
   loop runs in the calling thread, or where a call moves ``PARALLEL_MIN_BYTES`` or
   more (read and written) on Numba's threads, a row or a run of rows at a time.
2. **The ufuncs** of ``relukernels.ufuncs`` for everything else with a loop (other
   layouts and array leaks, float16, integers that a float leak promotes, outputs
   that partly overlap ``x``): NumPy's machinery does the strides, broadcasting,
   casts and overlap. Containers (``ufunc_protocol``) come this way too.
3. **NumPy's own operations**, the array-API formulas, for real dtypes without a
   loop (longdouble).

Threads are Numba's own (``parallel=True``), in whatever threading layer Numba chose
and with its thread count (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``); nothing
here changes either. Two rules keep every layer safe: one call at a time runs on the
threads, and a call that finds them busy runs in its own thread (Numba's ``workqueue``
layer aborts when two threads use it at once); and a process forked after Numba
started its ``omp`` layer runs every call in its own thread (GNU OpenMP kills a forked
child on its first parallel region).

No call warns (``docs/contract.md``, "Warnings"): the formulas compare quietly, and
the ufunc calls whose products can overflow or meet a signalling NaN (and every float16
call, which casts) run with NumPy's overflow and invalid warnings off; nothing reads
the rows loops' floating-point flags.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from types import EllipsisType
from typing import Any, Literal

import numpy as np

from .. import _validate
from .._ops import RELU_BACKWARD, Operation

LOOP_DTYPES = tuple(np.dtype(c) for c in "i1 u1 i2 u2 i4 u4 i8 u8 f4 f8".split())
"""The dtypes with compiled loops, smallest first (the order the ufuncs need); here,
not in ``_kernels``, because importing that module imports Numba."""
_HAS_LOOP = frozenset(LOOP_DTYPES)
UFUNC_LOOP = {dtype: dtype for dtype in LOOP_DTYPES} | {np.dtype(np.float16): np.dtype(np.float32)}
"""The dtype of the ufunc loop for each native dtype that has one: float16 runs
float32's. The values are the objects the loops were registered with: NumPy finds a
ufunc's loop by type number, and equal dtypes may differ in it (``np.longlong``)."""
_FLOAT16 = np.dtype(np.float16)

PARALLEL_MIN_BYTES = 640 << 10
"""Calls that read and write this many bytes or more run on Numba's threads: a
float32 ``relu`` from 81,920 elements, a float32 ``relu_backward`` from 54,614
(benchmarks/RESULTS.md, "Threads")."""


class _Threads:
    """Whether a rows loop may run on Numba's threads now (see the module's docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.usable = True

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()  # another thread of the parent may have held it
        numba = sys.modules.get("numba")  # not imported: no layer started in the parent
        try:
            self.usable = numba is None or numba.threading_layer() != "omp"
        except ValueError:  # no layer started in the parent: the child may start its own
            pass


_threads = _Threads()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_threads.after_fork_in_child)


class NumpyBackend:
    """``numpy.ndarray`` inputs; array-likes are converted to them by the dispatcher."""

    name = "numpy"

    def run(self, op: Operation, x: np.ndarray, leak: Any, outs: tuple) -> list:
        """``op`` over ``x`` into ``outs`` (each ``None`` or an array)."""
        if type(leak) is float or type(leak) is int:
            # _validate.numpy_result, inlined: one Python call less on the shortest path
            a, dtype = (_validate.NUMPY_RULES.get(x.dtype) or _validate.dtype_rule(np, x.dtype)).resolve(leak)
            if op.nout == 1 and dtype is x.dtype and dtype in _HAS_LOOP and x.flags.c_contiguous:
                # The common call, on the shortest path: one result of a C-contiguous x.
                out = outs[0]
                if out is None:
                    out = np.empty(x.shape, dtype)
                else:
                    _check_out(out, x, dtype, "out")
                    if not _contiguous_with(out, x, "C"):
                        return call_ufuncs(op, (x,), a, dtype, [out])
                n = x.size
                if 2 * x.nbytes < PARALLEL_MIN_BYTES:
                    if n:
                        loop = _SERIAL_LOOPS[op.name].get(dtype) or rows_loop(op, dtype, False, False)
                        loop(x, out, a, n) if x.ndim == 1 else loop(x.reshape(-1), out.reshape(-1), a, n)
                else:
                    _run_rows(op, dtype, [x.reshape(-1), out.reshape(-1)], a, n)
                return [out]
        else:
            a, dtype = _resolve_leak(x, _validate.leak(leak))
        order = _order(x)
        contiguous = order is not None and dtype == x.dtype and dtype in _HAS_LOOP
        results = []
        for out, name in zip(outs, op.out_names, strict=True):
            if out is None:
                results.append(np.empty(x.shape, dtype, order) if order else np.empty_like(x, dtype=dtype))
            else:
                _check_out(out, x, dtype, name)
                contiguous = contiguous and order is not None and _contiguous_with(out, x, order)
                results.append(out)
        if (len(results) == 2 and outs[0] is not None and outs[1] is not None
                and np.may_share_memory(results[0], results[1])):
            raise ValueError("out[0] and out[1] overlap; they must be separate arrays")
        if x.size == 0:
            return results
        if contiguous and order is not None:
            rows = _rows(x, a, order)
            if rows is not None:
                _run_rows(op, dtype, _flat_views([x, *results], order), *rows)
                return results
        return call_ufuncs(op, (x,), a, dtype, results)

    def backward(self, grad: np.ndarray, x: np.ndarray, leak: Any, out: Any) -> np.ndarray:
        """``relu_backward``: ``grad * relu_dash(x, leak)`` into ``out`` (``None`` or an
        array; may be ``grad`` or ``x`` itself)."""
        a: Any  # a number, or an array leak once resolved
        if ((type(leak) is float or type(leak) is int) and grad.dtype is x.dtype and grad.shape == x.shape
                and x.flags.c_contiguous and grad.flags.c_contiguous):
            # _validate.numpy_result, inlined as in run
            a, dtype = (_validate.NUMPY_RULES.get(x.dtype) or _validate.dtype_rule(np, x.dtype)).resolve(leak)
            if dtype is x.dtype and dtype in _HAS_LOOP:
                # The common call (a network's backward pass), on the shortest path.
                if out is not None:
                    _check_out(out, x, dtype, "out")
                if out is None or (_contiguous_with(out, x, "C") and _contiguous_with(out, grad, "C")):
                    result = np.empty(x.shape, dtype) if out is None else out
                    if x.size:
                        _run_rows(RELU_BACKWARD, dtype, [grad.reshape(-1), x.reshape(-1), result.reshape(-1)], a,
                                  x.size)
                    return result
        a, dash_dtype = _resolve_leak(x, _validate.leak(leak))
        if grad.shape != x.shape:
            _validate.grad_shape(grad.shape, x.shape)
            grad = np.broadcast_to(grad, x.shape)
        dtype = dash_dtype if grad.dtype == dash_dtype else _validate.grad_dtype(np, grad.dtype, dash_dtype)
        order = _order(x)
        if out is None:
            result = np.empty(x.shape, dtype, order) if order else np.empty_like(x, dtype=dtype)
        else:
            _check_out(out, x, dtype, "out")
            result = out
        if x.size == 0:
            return result
        if (order is not None and grad.dtype == x.dtype == dtype and dtype in _HAS_LOOP
                and _contiguous_with(grad, x, order)
                and (out is None or (_contiguous_with(out, x, order) and _contiguous_with(out, grad, order)))):
            rows = _rows(x, a, order)
            if rows is not None:
                _run_rows(RELU_BACKWARD, dtype, _flat_views([grad, x, result], order), *rows)
                return result
        # The leak rounded to relu_dash's dtype first, as the product does.
        a = a if type(a) is np.ndarray else dash_dtype.type(a)
        return call_ufuncs(RELU_BACKWARD, (grad, x), a, dtype, [result])[0]


def _resolve_leak(x: np.ndarray, leak: Any) -> tuple[Any, np.dtype]:
    """The leak to compute with (a number, or an array cast to the result dtype) and
    ``relu``'s result dtype, for ``x`` and a leak checked by ``_validate.leak``."""
    if type(leak) is float or type(leak) is int:
        return _validate.numpy_result(x.dtype, leak)
    if isinstance(leak, np.ndarray):
        return _validate.array_leak(np, leak, x.shape, x.dtype)
    raise TypeError(f"leak must be a number or a NumPy array for a NumPy x, got {type(leak).__name__}")


def _order(x: np.ndarray) -> Literal["C", "F"] | None:
    """"C" or "F" where ``x`` is contiguous in that order (C first), else ``None``."""
    flags = x.flags
    return "C" if flags.c_contiguous else "F" if flags.f_contiguous else None


def _check_out(out: Any, x: np.ndarray, dtype: np.dtype, name: str) -> None:
    """``out`` must take a result of ``x``'s shape in ``dtype``."""
    if not (type(out) is np.ndarray and out.shape == x.shape and out.dtype == dtype and out.flags.writeable):
        _validate.out_array(out, name=name, expected_type=np.ndarray, shape=x.shape, dtype=dtype)


def _contiguous_with(array: np.ndarray, x: np.ndarray, order: str) -> bool:
    """Whether ``array`` can go with ``x`` (contiguous in ``order``, of its shape) into a
    rows loop: contiguous in that order, and ``x`` itself or apart from it (two arrays
    that own their memory are apart, without a look at it). A separate view of ``x``'s
    memory that starts where ``x`` does is ``x`` itself (``x[...]``; a torch tensor
    given as its own ``out``, which reaches here as two views)."""
    contiguous = array.flags.c_contiguous if order == "C" else array.flags.f_contiguous
    return contiguous and (array is x or (array.base is None and x.base is None) or not np.may_share_memory(array, x)
                           or array.__array_interface__["data"][0] == x.__array_interface__["data"][0])


def _flat_views(arrays: list[np.ndarray], order: str) -> list[np.ndarray]:
    """1-d views of ``arrays``, all contiguous in ``order``, in one element order."""
    if arrays[0].ndim == 1:
        return arrays
    return [array.reshape(-1) if order == "C" else array.T.reshape(-1) for array in arrays]


MIN_ROW = 64
"""Rows of an array leak shorter than this take the ufunc: the loop's cost per row
would outweigh its elements."""


def _rows(x: np.ndarray, a: Any, order: str) -> tuple[Any, int] | None:
    """The leaks and the row width for a rows loop over ``x`` (contiguous in ``order``):
    a number leak and the whole of ``x`` as one row; an array leak as ``_leak_rows``
    gives it, in C order only; ``None`` where the ufuncs must do it."""
    if type(a) is not np.ndarray:
        return a, x.size
    return _leak_rows(x, a) if order == "C" else None


def _leak_rows(x: np.ndarray, leak: np.ndarray) -> tuple[np.ndarray, int] | None:
    """For a C-contiguous ``x`` and an array leak constant along its trailing axes (a
    stride of 0 or a length of 1 once broadcast), one leak per row of those axes and
    the row's length; ``None`` if there are no such axes or the rows are short."""
    broadcast = np.broadcast_to(leak, x.shape)
    trailing = 0
    while trailing < x.ndim and (broadcast.strides[-1 - trailing] == 0 or x.shape[-1 - trailing] == 1):
        trailing += 1
    width = math.prod(x.shape[x.ndim - trailing:])
    if not trailing or width < MIN_ROW:
        return None
    first_of_each_row: tuple[EllipsisType | int, ...] = (..., *[0] * trailing)
    return np.ascontiguousarray(broadcast[first_of_each_row]).reshape(-1), width


def _run_rows(op: Operation, dtype: np.dtype, arrays: list[np.ndarray], leaks: Any, width: int) -> None:
    """``op``'s rows loop over 1-d ``arrays`` (inputs, then outputs) in rows of
    ``width``, with ``leaks`` (a number, or one per row): on Numba's threads when the
    call is large and they are free, else in this thread."""
    per_row = type(leaks) is np.ndarray
    if (arrays[0].nbytes * len(arrays) < PARALLEL_MIN_BYTES or not _threads.usable
            or not _threads.lock.acquire(False)):
        loop = None if per_row else _SERIAL_LOOPS[op.name].get(dtype)
        (loop or rows_loop(op, dtype, False, per_row))(*arrays, leaks, width)
        return
    try:
        if not per_row:  # runs of rows for Numba's threads to share out: 64 runs of whole vectors
            width = -(-arrays[0].shape[0] // (64 * 64)) * 64
        rows_loop(op, dtype, True, per_row)(*arrays, leaks, width)
    finally:
        _threads.lock.release()


_LOOPS: dict[tuple[bool, bool], dict[str, dict[np.dtype, Callable[..., None]]]] = {
    kind: defaultdict(dict) for kind in ((False, False), (False, True), (True, False), (True, True))
}
"""The compiled rows loops by (on Numba's threads, a leak per row), then operation
name, then dtype."""
_SERIAL_LOOPS = _LOOPS[False, False]
"""Those in the calling thread with a number leak: the shortest path's."""


def rows_loop(op: Operation, dtype: np.dtype, parallel: bool, per_row: bool) -> Callable[..., None]:
    """``op``'s rows loop over 1-d C-contiguous arrays of ``dtype``, on Numba's threads
    if ``parallel``: called ``loop(*inputs, *outputs, leaks, width)``, ``leaks`` one
    per row (``per_row``) or a Python number that Numba converts to ``dtype``
    (correctly rounded). Compiled, or loaded from Numba's disk cache, on first use."""
    loop = _LOOPS[parallel, per_row][op.name].get(dtype)
    if loop is None:
        import numba

        from .. import _kernels

        t = numba.from_dtype(dtype)
        # Inputs typed read-only accept writeable arrays too (read-only ones, such as a
        # memory-mapped file opened for reading, would match no writeable signature).
        read, write = numba.types.Array(t, 1, "C", readonly=True), numba.types.Array(t, 1, "C")
        signature = numba.void(*[read] * len(op.inputs), *[write] * op.nout, read if per_row else t, numba.intp)
        elements = tuple(_kernels.ELEMENTS[name] for name in op.elements)
        template = _kernels.rows_loop(elements, len(op.inputs), parallel)
        loop = _LOOPS[parallel, per_row][op.name][dtype] = _kernels.compiled(
            lambda **cache: numba.njit([signature], nogil=True, parallel=parallel, **cache), template
        )
    return loop


def call_ufuncs(op: Operation, inputs: tuple, a: Any, dtype: np.dtype, outs: list) -> list:
    """``op``'s results by the ufuncs: one single-output ufunc per result (xarray and
    Dask take no gufuncs) over ``inputs`` (arrays or containers: ``(x,)``, or ``(grad,
    x)`` for ``relu_backward``), with leak ``a``, into ``outs`` (each ``None`` or an
    array), in result ``dtype``.

    The loop is the result dtype's in native byte order (NumPy casts big-endian data
    itself); float16 runs the float32 loop on a float16 leak, exact once stored as
    float16. An output that overlaps ``x`` is written last, after the results that
    read ``x``; if two do, ``x`` is copied first. Real dtypes without a loop take the
    array-API formulas in NumPy's operations instead.
    """
    from ..ufuncs import UFUNCS

    native = dtype.newbyteorder("=")
    loop = UFUNC_LOOP.get(native)
    if loop is not None:
        a = a if type(a) is np.ndarray else dtype.type(a)
    x = inputs[-1]
    overlapping = [i for i, out in enumerate(outs) if out is not None and np.may_share_memory(out, x)]
    if len(overlapping) > 1:
        inputs = (*inputs[:-1], np.copy(x))
    results = list(outs)
    for i in sorted(range(len(outs)), key=lambda i: i in overlapping):
        if loop is None:  # NumPy backend only: its outputs are arrays
            with np.errstate(all="ignore"):
                outs[i][...] = op.formulas[i](np, *inputs, a, dtype)
            continue
        name = op.parts[i]
        with np.errstate(over="ignore", invalid="ignore") if _may_raise_flags(name, native) else _NO_CHANGE:
            results[i] = UFUNCS[name](*inputs, a, out=outs[i], dtype=loop)
            if outs[i] is None and native == _FLOAT16:  # from the float32 loop
                results[i] = results[i].astype(native)
    return results


def _may_raise_flags(name: str, dtype: np.dtype) -> bool:
    """Whether the ufunc ``name`` may raise a floating-point flag in ``dtype``, which
    NumPy would report as a warning: a product (``relu``'s ``leak * x``,
    ``relu_backward``'s ``grad * leak``) overflows for a leak beyond ±1, is NaN for an
    infinite ``grad`` and a zero leak, and is 'invalid' for a signalling NaN; float16
    goes through casts, which are 'invalid' for a signalling NaN too. ``relu_dash``
    in float32 or float64 only selects."""
    return dtype.kind == "f" and (name != "relu_dash" or dtype == _FLOAT16)


_NO_CHANGE = contextlib.nullcontext()

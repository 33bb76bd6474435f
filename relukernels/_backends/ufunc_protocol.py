"""Containers that speak NumPy's ufunc protocol: pandas Series and DataFrames, xarray
DataArrays (Dask-backed ones stay lazy), masked arrays, ``np.matrix`` and other
ndarray subclasses. They call the ufuncs of ``relukernels.ufuncs`` and get back
what went in (index, coords, mask and all), as they do from ``np.maximum``.

Every check runs first, against the container's dtype: a DataFrame or an xarray
Dataset, which has one dtype per column or variable, goes one at a time
(``DataFrame.apply``, ``Dataset.map``). ``out=`` is taken for
ndarray subclasses only; other containers are refused it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from .._ops import OPERATIONS, RELU_BACKWARD, Operation
from .numpy import UFUNC_LOOP, call_ufuncs


class UfuncProtocolBackend:
    """Anything with ``__array_ufunc__`` that is not an array of a known library."""

    name = "numpy ufunc protocol"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        leak = _validate.leak(leak)
        if not hasattr(x, "dtype"):
            return _by_column(op, x, leak, outs)
        a, dtype = _resolve_leak(x, leak)
        for out, name in zip(outs, op.out_names, strict=True):
            _check_out(out, x, dtype, name)
        if len(outs) == 2 and outs[0] is not None and outs[1] is not None and np.may_share_memory(*outs):
            raise ValueError("out[0] and out[1] overlap; they must be separate arrays")
        return call_ufuncs(op, (x,), a, dtype, list(outs))

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        """``relu_backward``'s ufunc over the two containers (pandas aligns them)."""
        if not hasattr(x, "dtype"):
            raise TypeError(f"relu_backward takes no {type(x).__name__} (one dtype per column): call it per column")
        a, dash_dtype = _resolve_leak(x, _validate.leak(leak))
        _check_labels(grad, x)
        dtype = _validate.grad_dtype(np, _numpy_dtype(grad.dtype), dash_dtype)
        _check_loop(dtype, "grad")
        _check_out(out, x, dtype, "out")
        a = a if isinstance(a, np.ndarray) else dash_dtype.type(a)  # rounded as relu_dash rounds it
        return call_ufuncs(RELU_BACKWARD, (grad, x), a, dtype, [out])[0]


def plain_arrays(grad: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """``grad`` and ``x`` as NumPy arrays, element for element (their labels checked
    to agree); masked elements of either become zeros of both, so that they add
    nothing to a sum."""
    if not hasattr(x, "dtype"):
        raise TypeError(f"x of type {type(x).__name__} has one dtype per column: call it per column")
    _check_labels(grad, x)
    masked = np.ma.isMaskedArray(x) or np.ma.isMaskedArray(grad)
    mask = np.ma.getmaskarray(x) | np.ma.getmaskarray(grad) if masked else None
    grad, x = np.asarray(np.ma.getdata(grad)), np.asarray(np.ma.getdata(x))
    if mask is not None:
        grad, x = np.where(mask, 0, grad), np.where(mask, 0, x)
    return grad, x


def _check_labels(grad: Any, x: Any) -> None:
    """``grad`` must have ``x``'s shape (or broadcast to it), and where both carry labels,
    the same ones: pandas would otherwise align (reorder or extend) the result, and
    xarray broadcast it over new dimensions."""
    _validate.grad_shape(np.shape(grad), np.shape(x))
    for labels in ("index", "columns", "dims"):
        if hasattr(grad, labels) and hasattr(x, labels):
            ours, theirs = getattr(grad, labels), getattr(x, labels)
            same = ours.equals(theirs) if hasattr(ours, "equals") else tuple(ours) == tuple(theirs)
            if not same:
                raise ValueError(f"grad and x have different {labels}; align them first (e.g. grad.reindex_like(x))")
    if hasattr(grad, "coords") and hasattr(x, "coords"):
        import xarray

        try:
            xarray.align(grad, x, join="exact")
        except ValueError:
            raise ValueError("grad and x have different coordinates; align them first (xarray.align)") from None


def _resolve_leak(x: Any, leak: Any) -> tuple[Any, np.dtype]:
    """The leak to compute with and ``relu``'s result dtype, for container ``x``."""
    if _validate.is_array_leak(leak) and not isinstance(leak, np.ndarray):
        raise TypeError(f"leak must be a number or a NumPy array here, got {type(leak).__name__}")
    dtype = _numpy_dtype(x.dtype)
    a, result_dtype = (_validate.array_leak(np, leak, np.shape(x), dtype) if _validate.is_array_leak(leak)
                       else _validate.numpy_result(dtype, leak))
    _check_loop(result_dtype, "x")
    return a, result_dtype


def _check_loop(dtype: np.dtype, name: str) -> None:
    """A container comes back as itself only through a ufunc, and the ufuncs have loops
    for the dtypes of ``UFUNC_LOOP`` only (Numba has no longdouble)."""
    if dtype.newbyteorder("=") not in UFUNC_LOOP:
        raise TypeError(
            f"{name} gives results of dtype {dtype}, which relukernels' ufuncs have no loop for: a container "
            f"of it cannot come back as itself; pass np.asarray({name}) (a NumPy array of it works)"
        )


def _check_out(out: Any, x: Any, dtype: np.dtype, name: str) -> None:
    """``out`` is for ndarray subclasses only, checked as for NumPy arrays."""
    if out is not None:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"out= is not supported for {type(x).__name__}; use the result")
        _validate.out_array(out, name=name, expected_type=np.ndarray, shape=x.shape, dtype=dtype)


def _numpy_dtype(dtype: Any) -> np.dtype:
    """A container's dtype as NumPy's: itself, or an extension dtype's ``numpy_dtype``
    (pandas' nullable ``Float64`` is float64); ``TypeError`` for others (strings)."""
    if isinstance(dtype, np.dtype):
        return dtype
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if isinstance(numpy_dtype, np.dtype) and numpy_dtype.kind in "fiu":
        return numpy_dtype
    raise TypeError(f"x has dtype {dtype}; relukernels takes real floating or integer arrays")


def _by_column(op: Operation, x: Any, leak: Any, outs: tuple) -> list:
    """A container with one dtype per column or variable (a pandas DataFrame, an
    xarray Dataset), one column or variable at a time."""
    dtypes = getattr(x, "dtypes", None)
    kind, method = ("variable", "map") if hasattr(x, "data_vars") else ("column", "apply")
    each = getattr(x, method, None)
    if dtypes is None or each is None:
        raise TypeError(f"x of type {type(x).__name__} has no dtype")
    if _validate.is_array_leak(leak):
        raise TypeError(f"leak must be a number for a {type(x).__name__}, one dtype per column")
    if any(out is not None for out in outs):
        raise TypeError(f"out= is not supported for {type(x).__name__}; use the result")
    from .._dispatch import backend_for

    for name, column_dtype in dtypes.items():  # every column checked before any is computed
        try:
            _check_loop(_validate.numpy_result(_numpy_dtype(column_dtype), leak)[1], "x")
        except (TypeError, ValueError) as error:
            raise type(error)(f"{kind} {name!r} of x: {error}") from None
    return [
        each(lambda column, part=part: backend_for(column)[0].run(OPERATIONS[part], column, leak, (None,))[0])
        for part in op.parts
    ]

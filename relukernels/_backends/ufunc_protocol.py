"""Containers that speak NumPy's ufunc protocol: pandas Series and DataFrames, xarray
DataArrays (Dask-backed ones stay lazy), masked arrays, ``np.matrix`` and other
ndarray subclasses. They call the ufuncs of ``relukernels.ufuncs`` and get back
what went in (index, coords, mask and all), as they do from ``np.maximum``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from .._ops import OPERATIONS, Operation
from .numpy import call_ufunc


class UfuncProtocolBackend:
    """Anything with ``__array_ufunc__`` that is not an array of a known library."""

    name = "numpy ufunc protocol"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        dtype = getattr(x, "dtype", None)
        if _validate.is_array_leak(leak) and not isinstance(leak, np.ndarray):
            raise TypeError(f"leak must be a number or a NumPy array here, got {type(leak).__name__}")
        if not isinstance(dtype, np.dtype):  # a DataFrame: NumPy picks each column's loop
            a, dtype = leak, None
        elif _validate.is_array_leak(leak):
            a, dtype = _validate.array_leak(np, leak, np.shape(x), dtype)
        else:
            a, dtype = _validate.numpy_result(dtype, leak)
        # One single-output ufunc per result: xarray and Dask take no gufuncs.
        return [
            call_ufunc(OPERATIONS[element.__name__], x, a, dtype, (out,))[0]
            for element, out in zip(op.elements, outs)
        ]

"""Numba CPU loops over C-contiguous 1-d arrays with a scalar leak, compiled one
signature at a time on first use and cached on disk.

They are the NumPy backend's fast path, run by threads on chunks: with a scalar leak
a ufunc call gives Numba's ufunc loop a leak of stride 0, and Numba runs its generic
strided loop instead of its vectorized one (benchmarks/RESULTS.md). Each loop maps
one 1-d array to one or two outputs through the formulas of ``relukernels._scalar``
(or, for float16, through tables of all 65,536 results). Everything else (other
layouts, array leaks, containers) runs the ufuncs of ``relukernels.ufuncs``.
Importing this module imports Numba; ``relukernels`` does so on the first NumPy call.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import numba
import numpy as np

from .. import _scalar

_relu = numba.njit(inline="always")(_scalar.relu)
_relu_dash = numba.njit(inline="always")(_scalar.relu_dash)


def relu_loop(x, a, y):
    for i in range(x.shape[0]):
        y[i] = _relu(x[i], a)


def relu_dash_loop(x, a, y):
    for i in range(x.shape[0]):
        y[i] = _relu_dash(x[i], a)


def relu_and_dash_loop(x, a, y, dy):
    for i in range(x.shape[0]):
        y[i] = _relu(x[i], a)
        dy[i] = _relu_dash(x[i], a)


def lookup_loop(bits, table, y):
    for i in range(bits.shape[0]):
        y[i] = table[bits[i]]


def lookup_pair_loop(bits, table, dash_table, y, dy):
    for i in range(bits.shape[0]):
        y[i] = table[bits[i]]
        dy[i] = dash_table[bits[i]]


LOOPS: dict[str, tuple[Callable[..., None], int]] = {
    # name: (loop, number of outputs)
    "relu": (relu_loop, 1),
    "relu_dash": (relu_dash_loop, 1),
    "relu_and_dash": (relu_and_dash_loop, 2),
    "lookup": (lookup_loop, 1),
    "lookup_pair": (lookup_pair_loop, 2),
}


def _compile(decorator: Callable[..., Any], func: Callable[..., Any]) -> Any:
    """Compile with the on-disk cache; in memory where no cache directory is writeable.

    Numba looks for the package's ``__pycache__``, then a user-wide cache directory.
    Where neither can be written it raises ``RuntimeError`` ("cannot cache"), or for a
    zipped package ``OSError`` while reading or writing the cache.
    """
    try:
        return decorator(cache=True)(func)
    except (OSError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "cannot cache" not in str(error):
            raise
        warnings.warn(
            f"relukernels: Numba cannot use its on-disk cache ({error}); "
            "compiling in memory for this process",
            RuntimeWarning,
            stacklevel=2,
        )
        return decorator(cache=False)(func)


@functools.cache
def loop(name: str, in_dtype: np.dtype, out_dtype: np.dtype) -> Callable[..., None]:
    """The compiled loop ``name`` for one pair of dtypes, called ``loop(x, *extras, *outs)``
    on C-contiguous 1-d arrays. The extras are the leak in ``out_dtype``, or for the
    lookups uint16 tables."""
    func, n_outputs = LOOPS[name]
    x_type, y_type = numba.from_dtype(in_dtype), numba.from_dtype(out_dtype)
    # Inputs typed read-only accept writeable arrays too (read-only ones, such as a
    # memory-mapped file opened for reading, would match no writeable signature).
    x_array = numba.types.Array(x_type, 1, "C", readonly=True)
    y_array = numba.types.Array(y_type, 1, "C")
    if name.startswith("lookup"):
        extras = [numba.types.Array(y_type, 1, "C", readonly=True)] * n_outputs
    else:
        extras = [y_type]
    signature = numba.void(x_array, *extras, *[y_array] * n_outputs)
    return _compile(lambda **kw: numba.njit([signature], nogil=True, **kw), func)

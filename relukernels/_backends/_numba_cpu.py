"""Numba CPU loops with one leak per run of elements, compiled one signature at a
time on first use and cached on disk: the NumPy backend's fast paths.

Why not the ufuncs of ``relukernels.ufuncs`` for everything: a ufunc gets a scalar
leak as an operand of stride 0, and Numba's ufunc loop then runs its generic strided
loop instead of its vectorized one, about ten times slower (benchmarks/RESULTS.md).
These loops take the leak as a scalar for a whole 1-d run, so the compiler keeps it
in a register and vectorizes the run. Each maps one 1-d array to one or two outputs
through the formulas of ``relukernels._scalar`` (or, for float16, through tables of
all 65,536 results). A loop is compiled two ways: ``@njit(nogil=True)`` over
C-contiguous 1-d arrays, which threads run on chunks; and ``@guvectorize`` over a
strided last axis, with NumPy's gufunc machinery doing the other axes and overlap.
The rows loops take a 2-d C-contiguous array and one leak per row (PReLU); the
backward loop takes two 1-d arrays (``grad`` and ``x``).
Importing this module imports Numba; ``relukernels`` does so on the first NumPy call.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import numba
import numpy as np

from .. import _scalar

relu_element = numba.njit(inline="always")(_scalar.relu)
relu_dash_element = numba.njit(inline="always")(_scalar.relu_dash)
relu_backward_element = numba.njit(inline="always")(_scalar.relu_backward)
"""The element formulas as Numba functions, for these loops and for the ufuncs."""


def relu_loop(x, a, y):
    for i in range(x.shape[0]):
        y[i] = relu_element(x[i], a)


def relu_dash_loop(x, a, y):
    for i in range(x.shape[0]):
        y[i] = relu_dash_element(x[i], a)


def relu_and_dash_loop(x, a, y, dy):
    for i in range(x.shape[0]):
        v = x[i]  # read once: y may be x itself
        y[i] = relu_element(v, a)
        dy[i] = relu_dash_element(v, a)


def relu_rows_loop(x, a, y):
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            y[r, i] = relu_element(x[r, i], a[r])


def relu_dash_rows_loop(x, a, y):
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            y[r, i] = relu_dash_element(x[r, i], a[r])


def relu_and_dash_rows_loop(x, a, y, dy):
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = x[r, i]  # read once: y may be x itself
            y[r, i] = relu_element(v, a[r])
            dy[r, i] = relu_dash_element(v, a[r])


def relu_backward_loop(g, x, a, y):
    for i in range(x.shape[0]):
        y[i] = relu_backward_element(g[i], x[i], a)  # y may be g or x itself


def lookup_loop(bits, table, y):
    for i in range(bits.shape[0]):
        y[i] = table[bits[i]]


def lookup_pair_loop(bits, table, dash_table, y, dy):
    for i in range(bits.shape[0]):
        b = bits[i]  # read once: y may be bits itself
        y[i] = table[b]
        dy[i] = dash_table[b]


LOOPS: dict[str, tuple[Callable[..., None], int]] = {
    # name: (loop, number of outputs)
    "relu": (relu_loop, 1),
    "relu_dash": (relu_dash_loop, 1),
    "relu_and_dash": (relu_and_dash_loop, 2),
    "lookup": (lookup_loop, 1),
    "lookup_pair": (lookup_pair_loop, 2),
}
"""Loops over a 1-d run with one leak (the flat and strided paths)."""

ROWS_LOOPS: dict[str, tuple[Callable[..., None], int]] = {
    "relu": (relu_rows_loop, 1),
    "relu_dash": (relu_dash_rows_loop, 1),
    "relu_and_dash": (relu_and_dash_rows_loop, 2),
}
"""Loops over the C-contiguous rows of a 2-d array, each row with its own leak."""


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
def rows_loop(name: str, in_dtype: np.dtype, out_dtype: np.dtype) -> Callable[..., None]:
    """The compiled rows loop ``name``, called ``loop(x, leaks, *outs)`` on 2-d
    C-contiguous arrays and a 1-d array of one leak per row, in ``out_dtype``."""
    func, n_outputs = ROWS_LOOPS[name]
    y_type = numba.from_dtype(out_dtype)
    x_array = numba.types.Array(numba.from_dtype(in_dtype), 2, "C", readonly=True)
    leaks = numba.types.Array(y_type, 1, "A", readonly=True)
    signature = numba.void(x_array, leaks, *[numba.types.Array(y_type, 2, "C")] * n_outputs)
    return _compile(lambda **kw: numba.njit([signature], nogil=True, **kw), func)


@functools.cache
def backward_loop(dtype: np.dtype) -> Callable[..., None]:
    """The compiled ``relu_backward`` loop, called ``loop(grad, x, leak, out)`` on 1-d
    C-contiguous arrays of ``dtype``."""
    t = numba.from_dtype(dtype)
    array = numba.types.Array(t, 1, "C", readonly=True)
    signature = numba.void(array, array, t, numba.types.Array(t, 1, "C"))
    return _compile(lambda **kw: numba.njit([signature], nogil=True, **kw), relu_backward_loop)


@functools.cache
def loop(name: str, flat: bool, in_dtype: np.dtype, out_dtype: np.dtype) -> Callable[..., None]:
    """The compiled loop ``name`` for one pair of dtypes, called ``loop(x, *extras, *outs)``.

    ``flat`` selects the ``njit`` version over C-contiguous 1-d arrays; otherwise the
    ``guvectorize`` version over the last axis of arrays of any shape and strides.
    The extras are the leak in ``out_dtype``, or for the lookups uint16 tables.
    """
    func, n_outputs = LOOPS[name]
    x_type, y_type = numba.from_dtype(in_dtype), numba.from_dtype(out_dtype)
    # Inputs typed read-only accept writeable arrays too (read-only ones, such as a
    # memory-mapped file opened for reading, would match no writeable signature).
    layout = numba.types.Array(x_type, 1, "C" if flat else "A", readonly=True)
    y_array = numba.types.Array(y_type, 1, "C" if flat else "A")
    if name.startswith("lookup"):
        extras = [numba.types.Array(y_type, 1, "C", readonly=True)] * n_outputs
        core = ",".join(["(m)"] * n_outputs)
    else:
        extras, core = [y_type], "()"
    signature = numba.void(layout, *extras, *[y_array] * n_outputs)
    if flat:
        return _compile(lambda **kw: numba.njit([signature], nogil=True, **kw), func)
    gufunc_layout = f"(n),{core}->" + ",".join(["(n)"] * n_outputs)
    return _compile(lambda **kw: numba.guvectorize([signature], gufunc_layout, **kw), func)

"""The NumPy kernels: real NumPy ufuncs, built by Numba from the element formulas.

>>> import numpy as np
>>> from relukernels import ufuncs
>>> ufuncs.relu(np.array([-2.0, 3.0]), 0.1)
array([-0.2,  3. ])

``relu(x, leak)`` and ``relu_dash(x, leak)`` are ``@numba.vectorize`` ufuncs, and so is
``relu_backward(grad, x, leak)``, ``grad * relu_dash(x, leak)`` in one pass;
``relu_and_dash(x, leak)`` is a ``@numba.guvectorize`` ufunc with scalar core
dimensions (``(),()->(),()``) and two outputs. NumPy's machinery gives them
broadcasting (a per-channel leak), any strides, ``out=``, overlap handling, type
resolution and the ufunc protocol (pandas, xarray, Dask, masked arrays and other
ndarray subclasses come back as what went in). ``where=`` is the exception: NumPy
refuses it for every ufunc that Numba builds ("An iterator operand was flagged as
the ARRAYMASK..."), because Numba sets its own flags on the output operands.

The inner loops of ``relu``, ``relu_dash`` and ``relu_backward`` are
``relukernels._kernels.ufunc_loop``, compiled with ``numba.cfunc`` and given to the
``@numba.vectorize`` ufunc with its own ``_add_loop``: Numba's generated loop runs
scalar code whenever the leak is a number (NumPy passes it with a step of 0), this
one vectorizes. Loops exist for float32, float64 and the eight integer dtypes. Numba
has no float16: float16 inputs run the float32 loop, which is exact when the leak is a
float16 (the product of two float16 values is exact in float32) and ``out`` is
float16; ``relukernels.relu`` does both. A NaN input raises no floating-point warning.

The ``numba_*`` names are Numba's own objects, for users' ``@numba.njit`` code
(``numba_relu(x, 0.1)`` on arrays or scalars, ``numba_relu_and_dash(x, 0.1, y, dy)``);
outside Numba, the plain names are faster to call. Importing this module imports
Numba and loads the loops from its on-disk cache.
"""

from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np

from . import _kernels
from ._backends.numpy import LOOP_DTYPES as DTYPES
from ._ops import OPERATIONS, RELU_BACKWARD, Operation

# DTYPES: the dtypes with a loop of their own, smallest first: NumPy takes the first
# loop that the inputs cast to safely, so ``int8`` with an integer leak stays ``int8``.

_INNER_LOOPS: list[Any] = []
"""The compiled inner loops, kept alive as long as the ufuncs that call them."""


def _vectorized(op: Operation) -> Any:
    """``op``'s element formula as a ``@numba.vectorize`` ufunc with the inner loops of
    ``_kernels.ufunc_loop``, one per dtype of ``DTYPES``."""
    (element_name,) = op.elements
    element = _kernels.ELEMENTS[element_name]
    ufunc = _kernels.compiled(numba.vectorize, element)
    inputs = len(op.inputs)
    for dtype in DTYPES:
        t = numba.from_dtype(dtype)
        signature = numba.void(numba.types.CPointer(numba.types.CPointer(t)), numba.types.CPointer(numba.intp),
                               numba.types.CPointer(numba.intp), numba.types.voidptr)
        loop = _kernels.compiled(functools.partial(numba.cfunc, signature), _kernels.ufunc_loop(element, inputs))
        _INNER_LOOPS.append(loop)
        # Private: the method by which Numba's own DUFunc registers each loop it compiles
        # (numba/np/ufunc/dufunc.py; checked with Numba 0.68).
        ufunc._add_loop(loop.address, [dtype.num] * (inputs + 2))
    return ufunc


def _relu_and_dash() -> Any:
    types = [numba.from_dtype(dtype) for dtype in DTYPES]
    signatures = [numba.void(t, t, t[:], t[:]) for t in types]
    return _kernels.compiled(lambda **cache: numba.guvectorize(signatures, "(),()->(),()", **cache),
                             _kernels.relu_and_dash)


NUMBA_UFUNCS: dict[str, Any] = {
    **{op.name: _vectorized(op) for op in (*OPERATIONS.values(), RELU_BACKWARD) if op.nout == 1},
    "relu_and_dash": _relu_and_dash(),
}
"""Numba's objects, which ``@numba.njit`` code can call (on arrays and scalars)."""
UFUNCS: dict[str, np.ufunc] = {name: compiled.ufunc for name, compiled in NUMBA_UFUNCS.items()}
"""The bare NumPy ufuncs: what NumPy, pandas, xarray and Dask see."""

relu = UFUNCS["relu"]
relu_dash = UFUNCS["relu_dash"]
relu_and_dash = UFUNCS["relu_and_dash"]
relu_backward = UFUNCS["relu_backward"]

numba_relu = NUMBA_UFUNCS["relu"]
numba_relu_dash = NUMBA_UFUNCS["relu_dash"]
numba_relu_and_dash = NUMBA_UFUNCS["relu_and_dash"]
numba_relu_backward = NUMBA_UFUNCS["relu_backward"]

__all__ = [
    "relu", "relu_dash", "relu_and_dash", "relu_backward",
    "numba_relu", "numba_relu_dash", "numba_relu_and_dash", "numba_relu_backward",
]

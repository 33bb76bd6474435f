"""The NumPy kernels: real NumPy ufuncs, built by Numba from the element formulas.

>>> import numpy as np
>>> from relukernels import ufuncs
>>> ufuncs.relu(np.array([-2.0, 3.0]), 0.1)
array([-0.2,  3. ])

``relu(x, leak)`` and ``relu_dash(x, leak)`` are ``@numba.vectorize`` ufuncs;
``relu_backward(grad, x, leak)``, ``grad * relu_dash(x, leak)`` in one pass, is a
``@numba.vectorize`` ufunc of three inputs; ``relu_and_dash(x, leak)`` is a
``@numba.guvectorize`` ufunc with scalar core
dimensions (``(),()->(),()``) and two outputs. NumPy's machinery gives them
broadcasting (a per-channel leak), any strides, ``out=``, overlap handling, type
resolution and the ufunc protocol (pandas, xarray, Dask, masked arrays and other
ndarray subclasses come back as what went in). ``where=`` is the exception: NumPy
refuses it for every ufunc that Numba builds ("An iterator operand was flagged as
the ARRAYMASK..."), because Numba sets its own flags on the output operands.

Loops exist for float32, float64 and the eight integer dtypes. Numba has no float16:
float16 inputs run the float32 loop, which is exact when the leak is a float16 (the
product of two float16 values is exact in float32) and ``out`` is float16;
``relukernels.relu`` does both. A NaN input raises no floating-point warning.
The ``numba_*`` names are the same kernels as Numba's own objects, for users'
``@numba.njit`` code (``numba_relu(x, 0.1)`` on arrays or scalars,
``numba_relu_and_dash(x, 0.1, y, dy)``); outside Numba, the plain names are faster to
call. Importing this module imports Numba and loads the loops from its on-disk cache.
"""

from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np

from ._backends._numba_cpu import relu_dash_element, relu_element
from ._ops import OPERATIONS, RELU_BACKWARD, Operation

DTYPES = tuple(np.dtype(c) for c in "i1 u1 i2 u2 i4 u4 i8 u8 f4 f8".split())
"""The dtypes with a loop of their own, smallest first: NumPy takes the first loop
that the inputs cast to safely, so ``int8`` with an integer leak stays ``int8``."""


def _relu_and_dash(x, a, y, dy):
    y[0] = relu_element(x, a)
    dy[0] = relu_dash_element(x, a)


_relu_and_dash.__name__ = "relu_and_dash"  # the ufunc's name

_MULTI_OUTPUT_KERNELS: dict[str, Callable[..., None]] = {"relu_and_dash": _relu_and_dash}
"""The ``guvectorize`` kernels of the operations with several outputs, written out at
module level: Numba's disk cache cannot key a closure, so a kernel made by a factory
would be compiled again in every process."""


def _build(op: Operation) -> Any:
    """``op`` as a Numba ``DUFunc`` or ``GUFunc``, compiled for every dtype of ``DTYPES``."""
    types = [numba.from_dtype(dtype) for dtype in DTYPES]
    if op.nout == 1:
        arguments = len(op.inputs) + 1  # the arrays, then the leak
        return numba.vectorize([t(*[t] * arguments) for t in types], cache=True)(op.elements[0])
    signatures = [numba.void(t, t, *[t[:]] * op.nout) for t in types]
    layout = "(),()->" + ",".join(["()"] * op.nout)
    return numba.guvectorize(signatures, layout, cache=True)(_MULTI_OUTPUT_KERNELS[op.name])


NUMBA_UFUNCS: dict[str, Any] = {op.name: _build(op) for op in (*OPERATIONS.values(), RELU_BACKWARD)}
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

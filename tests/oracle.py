"""The test oracle: the seed's ``np.where`` formulas with the contract's precisions,
written here and independent of the package.

- ``leak`` is cast to the result dtype before the product: ``x``'s dtype for a
  floating ``x``, or for an integer ``x`` with an integer leak; NumPy's promotion
  (NEP 50) for an integer ``x`` with a float leak, whatever its value (a number:
  float64, as in the seed; an array: ``result_type`` of the two dtypes).
- Where the cast leak is 0, ``relu`` of ``x <= 0`` is 0 (so ``relu(-inf) == 0``).
"""

from __future__ import annotations

import numpy as np


def result_dtype(x: np.ndarray, leak) -> np.dtype:
    if x.dtype.kind == "f":
        return x.dtype
    leak = np.asarray(leak)
    if leak.dtype.kind in "iub":
        return x.dtype
    return np.result_type(x.dtype, leak.dtype) if leak.ndim else np.dtype(np.float64)


def cast_leak(x: np.ndarray, leak) -> np.ndarray:
    """The leak in the result dtype, as ``np.asarray(leak, dtype)`` gives it (a Python
    int through the nearest double, as NumPy converts it)."""
    return np.asarray(leak, dtype=result_dtype(x, leak))


def relu(x, leak=0):
    """``where(x <= 0, a * x, x)`` with ``a`` the leak in the result dtype."""
    x = np.asarray(x)
    a = cast_leak(x, leak)
    with np.errstate(all="ignore"):
        y = np.where(x <= 0, a * x, x).astype(a.dtype)
    return np.where((x <= 0) & (a == 0), np.zeros((), a.dtype), y)


def relu_dash(x, leak=0):
    """``where(x <= 0, a, 1)`` in the result dtype."""
    x = np.asarray(x)
    a = cast_leak(x, leak)
    return np.where(x <= 0, a, np.ones((), a.dtype)).astype(a.dtype)

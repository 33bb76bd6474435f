"""The contract's element formulas, as plain Python for Numba to compile.

The NumPy ufuncs (``relukernels.ufuncs``), the CPU fast loops and the CUDA kernels
are all compiled from these functions, so every Numba backend computes the same thing
in the same order of operations.

``x <= 0`` is written so that no comparison ever sees a NaN: an ordered comparison
with NaN raises the floating-point 'invalid' flag inside SIMD loops, which NumPy
reports as a RuntimeWarning after a ufunc. ``x == 0`` and ``x == x`` are quiet
comparisons, and ``copysign(1.0, x)`` is never NaN.
"""

import math


def relu(x, a):
    """``a * x`` where ``x <= 0``, else ``x``; NaN passes through.

    With ``a == 0`` the product is ``0 * 0``, an exact zero, so ``relu(-inf) == 0``
    where ``0 * -inf`` would be NaN (and raise the 'invalid' flag).
    """
    scaled = a * (x if a != 0 else a)
    return scaled if x == 0 or (math.copysign(1.0, x) < 0 and x == x) else x


def relu_backward(g, x, a):
    """``g * relu_dash(x, a)`` in one step: ``g * a`` where ``x <= 0``, else ``g``
    (``g * 1`` is ``g``, bit for bit, but for a signalling NaN, which stays signalling:
    the contract asks only that NaN propagates)."""
    return g * a if x == 0 or (math.copysign(1.0, x) < 0 and x == x) else g


def relu_dash(x, a):
    """``a`` where ``x <= 0``, else 1 (NaN gives 1, as the seed's ``np.where`` does)."""
    return a if x == 0 or (math.copysign(1.0, x) < 0 and x == x) else 1

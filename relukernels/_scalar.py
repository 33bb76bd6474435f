"""The contract's element formulas, as plain Python for Numba to compile.

The CPU loops and the CUDA kernels are both compiled from these two functions, so
every Numba backend computes the same thing in the same order of operations.
"""


def relu(x, a):
    """``a * x`` where ``x <= 0``, else ``x``.

    NaN fails ``x <= 0`` and passes through. With ``a == 0`` the result is ``a``
    itself, an exact zero, so that ``relu(-inf) == 0`` where ``0 * -inf`` is NaN.
    """
    return (a * x if a != 0 else a) if x <= 0 else x


def relu_dash(x, a):
    """``a`` where ``x <= 0``, else 1 (NaN gives 1, as the seed's ``np.where`` does)."""
    return a if x <= 0 else 1

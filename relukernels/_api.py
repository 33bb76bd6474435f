"""The public functions: check ``leak``, find the backend, delegate."""

from __future__ import annotations

from typing import Any

from . import _validate
from ._dispatch import backend_for


def relu(x: Any, leak: float = 0.0, *, out: Any = None) -> Any:
    """ReLU, or leaky ReLU with slope ``leak`` for ``x <= 0``: the seed's ``relu(x, leak)``.

    Parameters
    ----------
    x : array or array-like
        NumPy, CuPy, PyTorch, JAX, Dask or any array-API array; lists and scalars
        become NumPy arrays. Real floating or integer dtype.
    leak : real number, default 0.0
        Slope for ``x <= 0``; finite. Cast to ``x``'s floating dtype.
    out : array, optional
        Where to write the result: same shape, dtype, type and device as the result.
        May be ``x`` itself.

    Returns
    -------
    array
        ``where(x <= 0, leak * x, x)`` (exact zeros for ``x <= 0`` when ``leak == 0``),
        of ``x``'s type, on ``x``'s device.
    """
    backend, x = backend_for(x)
    return backend.relu(x, _validate.leak(leak), out)


def relu_dash(x: Any, leak: float = 0.0, *, out: Any = None) -> Any:
    """Derivative of :func:`relu`: ``leak`` where ``x <= 0``, else 1 (the seed's ``relu_dash``).

    Parameters and result as for :func:`relu`; the result has ``relu``'s dtype.
    """
    backend, x = backend_for(x)
    return backend.relu_dash(x, _validate.leak(leak), out)


def relu_and_dash(x: Any, leak: float = 0.0, *, out: Any = None) -> tuple[Any, Any]:
    """:func:`relu` and :func:`relu_dash` together, from one pass over ``x``.

    Parameters
    ----------
    x, leak
        As for :func:`relu`.
    out : pair of arrays, optional
        ``(y, dy)`` to write into.

    Returns
    -------
    tuple of two arrays
        Exactly what ``relu(x, leak)`` and ``relu_dash(x, leak)`` return.
    """
    backend, x = backend_for(x)
    return backend.relu_and_dash(x, _validate.leak(leak), out)


def leaky_relu(x: Any, negative_slope: float = 0.01, *, out: Any = None) -> Any:
    """:func:`relu` under PyTorch's and JAX's name and default slope (0.01)."""
    return relu(x, negative_slope, out=out)

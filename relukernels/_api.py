"""The public functions: check ``leak``, find the backend, delegate."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validate
from ._backends import generic, ufunc_protocol
from ._dispatch import UFUNC_PROTOCOL, backend_for
from ._ops import RELU, RELU_AND_DASH, RELU_DASH, leak_gradient_formula


def relu(x: Any, leak: Any = 0, *, out: Any = None) -> Any:
    """ReLU, or leaky ReLU with slope ``leak`` for ``x <= 0``: the tutorial's ``relu(x, leak)``.

    Parameters
    ----------
    x : array or array-like
        NumPy, CuPy, PyTorch, JAX, Dask or any array-API array, or a container that
        speaks NumPy's ufunc protocol (pandas, xarray, masked arrays); lists and
        scalars become NumPy arrays. Real floating or integer dtype.
    leak : real number or array, default 0
        Slope for ``x <= 0``; finite. Cast to ``x``'s floating dtype; an integer ``x``
        keeps its dtype with an int leak, and a float leak promotes it as the library
        promotes ``leak * x`` (NumPy: float64). An array of
        ``x``'s library that broadcasts to ``x``'s shape is a slope per element, as in
        PReLU (a ``(C, 1, 1)`` leak against ``(N, C, H, W)``).
    out : array, optional
        Where to write the result: same shape, dtype, type and device as the result.
        May be ``x`` itself.

    Returns
    -------
    array
        ``where(x <= 0, leak * x, x)`` (exact zeros for ``x <= 0`` where ``leak == 0``),
        of ``x``'s type, on ``x``'s device.
    """
    backend, x = backend_for(x)
    return backend.run(RELU, x, leak, (out,))[0]


def relu_dash(x: Any, leak: Any = 0, *, out: Any = None) -> Any:
    """Derivative of :func:`relu`: ``leak`` where ``x <= 0``, else 1 (the tutorial's ``relu_dash``).

    Parameters and result as for :func:`relu`; the result has ``relu``'s dtype.
    """
    backend, x = backend_for(x)
    return backend.run(RELU_DASH, x, leak, (out,))[0]


def relu_and_dash(x: Any, leak: Any = 0, *, out: Any = None) -> tuple[Any, Any]:
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
    y, dy = backend.run(RELU_AND_DASH, x, leak, _validate.outs(out, 2))
    return y, dy


def leaky_relu(x: Any, negative_slope: Any = 0.01, *, out: Any = None) -> Any:
    """:func:`relu` under PyTorch's and JAX's name and default slope (0.01)."""
    return relu(x, negative_slope, out=out)


def relu_backward(grad: Any, x: Any, leak: Any = 0, *, out: Any = None) -> Any:
    """The backward pass of :func:`relu`: ``grad * relu_dash(x, leak)``, in one pass.

    Parameters
    ----------
    grad : array
        The gradient with respect to ``relu(x, leak)``: an array of ``x``'s library
        and shape (or one that broadcasts to it), real floating or integer dtype.
    x, leak
        As given to :func:`relu`.
    out : array, optional
        Where to write the result; may be ``grad`` or ``x`` itself.

    Returns
    -------
    array
        ``grad * relu_dash(x, leak)``, bit for bit, in that product's dtype (the
        library's promotion of ``grad``'s dtype and ``relu_dash``'s).
    """
    backend, grad, x = _backend_for_pair(grad, x)
    return backend.backward(grad, x, leak, out)


def relu_leak_gradient(grad: Any, x: Any, leak: Any) -> Any:
    """The gradient of :func:`relu` with respect to its leak (PReLU's slope gradient).

    Parameters
    ----------
    grad : array
        The gradient with respect to ``relu(x, leak)``, as for :func:`relu_backward`.
    x, leak
        As given to :func:`relu`.

    Returns
    -------
    array
        ``grad * x`` where ``x <= 0``, else 0, summed over the dimensions along which
        the leak was broadcast: an array of the leak's shape (0-d for a number), in
        the dtype of ``relu_backward(grad, x, leak)``, of ``x``'s library (NumPy for
        containers).
    """
    backend, grad, x = _backend_for_pair(grad, x)
    if backend is UFUNC_PROTOCOL:  # containers: the gradient is a plain array
        grad, x = ufunc_protocol.plain_arrays(grad, x)
    xp = generic.namespace(x)
    leak = _validate.leak(leak)
    if isinstance(leak, np.ndarray) and not isinstance(x, np.ndarray) and backend.name == "dask":
        leak = xp.asarray(leak)  # as relu takes it
    _, dash_dtype = generic.resolve_leak(xp, x, leak)
    _validate.grad_shape(grad.shape, x.shape)
    dtype = _validate.grad_dtype(xp, grad.dtype, dash_dtype)
    leak_shape = tuple(leak.shape) if _validate.is_array_leak(leak) else ()
    with np.errstate(all="ignore"):  # an overflowing product is ±inf, silently (docs/contract.md)
        return leak_gradient_formula(xp, xp.astype(grad, dtype) * xp.astype(x, dtype), x, leak_shape)


def _backend_for_pair(grad: Any, x: Any) -> tuple[Any, Any, Any]:
    """The backend for ``x``, and ``grad`` and ``x`` as it takes them; ``grad`` must be
    an array of the same backend."""
    backend, x = backend_for(x)
    grad_backend, grad = backend_for(grad)
    if grad_backend is not backend:
        raise TypeError(f"grad must be an array of x's type ({_type_name(x)}), got {_type_name(grad)}")
    return backend, grad, x


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"

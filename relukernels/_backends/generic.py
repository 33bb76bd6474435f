"""Any array-API namespace (array-api-strict, ...): each operation's array-API
formulas (``relukernels._ops``) in the namespace's own operations. The leak resolution
and the formulas here also serve the torch and JAX backends."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from .._ops import RELU_BACKWARD, Operation, device_of


def resolve_leak(xp: Any, x: Any, leak: Any) -> tuple[Any, Any]:
    """The leak as the formulas take it, and the result dtype, for ``x`` of ``xp``
    (``leak`` as the caller gave it)."""
    leak = _validate.leak(leak)
    if _validate.is_array_leak(leak):
        import array_api_compat

        if array_api_compat.array_namespace(leak) is not xp:
            raise TypeError(f"leak must be an array of x's library, got {type(leak).__module__}.{type(leak).__name__}")
        return _validate.array_leak(xp, leak, x.shape, x.dtype)
    return _validate.dtype_rule(xp, x.dtype).resolve(leak)


def formulas(op: Operation, xp: Any, x: Any, leak: Any) -> list:
    """``op``'s results in namespace ``xp``, computed by its array-API formulas."""
    a, dtype = resolve_leak(xp, x, leak)
    with np.errstate(all="ignore"):  # a namespace that NumPy computes would warn on overflow
        return [formula(xp, x, a, dtype) for formula in op.formulas]


_namespaces: dict[type, Any] = {}


def namespace(x: Any) -> Any:
    """The array-API namespace of ``x``, cached per exact type."""
    try:
        return _namespaces[type(x)]
    except KeyError:
        import array_api_compat

        xp = _namespaces[type(x)] = array_api_compat.array_namespace(x)
        return xp


class GenericBackend:
    """Any array-API namespace, through its own operations."""

    name = "array-api"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        """Compute ``op``, check every ``out``, then copy each result into its ``out``."""
        results = formulas(op, namespace(x), x, leak)
        return _into(results, outs, op.out_names, x)

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        """``relu_backward`` by its formula, copied into ``out`` if given."""
        return _into([backward_formula(namespace(x), grad, x, leak)], (out,), ("out",), x)[0]


def backward_formula(xp: Any, grad: Any, x: Any, leak: Any) -> Any:
    """``relu_backward`` in namespace ``xp``, after the contract's checks."""
    a, dash_dtype = resolve_leak(xp, x, leak)
    _validate.grad_shape(grad.shape, x.shape)
    _validate.grad_dtype(xp, grad.dtype, dash_dtype)
    with np.errstate(all="ignore"):
        return RELU_BACKWARD.formulas[0](xp, grad, x, a, dash_dtype)


def _into(results: list, outs: tuple, names: tuple, x: Any) -> list:
    """``results``, each copied into its ``out`` where one is given (all checked first)."""
    for result, out, name in zip(results, outs, names, strict=True):
        if out is not None:
            _validate.out_array(
                out,
                name=name,
                expected_type=type(x),
                shape=result.shape,
                dtype=result.dtype,
                device=device_of(x),
                device_of=device_of,
            )
    for result, out, name in zip(results, outs, names, strict=True):
        if out is not None:
            try:
                out[...] = result
            except (TypeError, ValueError, NotImplementedError) as error:
                raise TypeError(f"{name}: {type(out).__name__} arrays cannot be written in place") from error
    return [result if out is None else out for result, out in zip(results, outs, strict=True)]

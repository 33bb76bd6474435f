"""JAX arrays: each operation's array-API formulas, compiled once per result dtype with
``jax.jit`` (one dispatch per eager call, as ``jax.nn.leaky_relu``), with a custom JVP
for ``relu``.

The JVP is ``relu_dash(x, a) * dx + where(x <= 0, x, 0) * da``: the leak's tangent
(PReLU's gradient) is right, also where the leak is 0, and no infinite ``x`` turns a
zero cotangent into NaN, as differentiating ``where(x <= 0, a * x, x)`` would. A leak
traced under ``jit``, ``grad`` or ``vmap`` is an array like any other; its values are
checked where they are known. Integer arrays take the formulas without the custom JVP
(their tangents are ``float0``). JAX arrays are immutable, so ``out=`` is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .. import _validate
from .._ops import OPERATIONS, RELU, RELU_BACKWARD, Operation
from . import generic


class JaxBackend:
    """``jax.Array`` on any device, and JAX's tracers."""

    name = "jax"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        if any(out is not None for out in outs):
            raise TypeError("out= is not supported for JAX arrays, which are immutable; use the result")
        a, dtype = generic.resolve_leak(generic.namespace(x), x, leak)
        return [_compiled(part, dtype, _is_floating(x.dtype))(x, a) for part in op.parts]

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        if out is not None:
            raise TypeError("out= is not supported for JAX arrays, which are immutable; use the result")
        xp = generic.namespace(x)
        a, dash_dtype = generic.resolve_leak(xp, x, leak)
        _validate.grad_shape(grad.shape, x.shape)
        _validate.grad_dtype(xp, grad.dtype, dash_dtype)
        return _compiled_backward(dash_dtype)(grad, x, a)


@functools.cache
def _is_floating(dtype: Any) -> bool:
    import jax.numpy as jnp

    return bool(jnp.issubdtype(dtype, jnp.floating))


@functools.cache
def _compiled_backward(dash_dtype: Any) -> Callable[[Any, Any, Any], Any]:
    """``jax.jit`` of ``relu_backward``'s formula for ``relu_dash`` results of ``dash_dtype``."""
    import jax
    import jax.numpy as jnp

    (formula,) = RELU_BACKWARD.formulas
    return jax.jit(lambda grad, x, a: formula(jnp, grad, x, a, dash_dtype))


@functools.cache
def _compiled(name: str, dtype: Any, x_is_float: bool) -> Callable[[Any, Any], Any]:
    """``jax.jit`` of operation ``name``'s formula for results of ``dtype``, with the
    custom JVP for ``relu`` of a floating ``x``."""
    import jax
    import jax.numpy as jnp

    (formula,) = OPERATIONS[name].formulas

    def value(x: Any, a: Any) -> Any:
        return formula(jnp, x, a, dtype)

    if name != RELU.name or not x_is_float:
        return jax.jit(value)
    dash = OPERATIONS["relu_dash"].formulas[0]
    relu = jax.custom_jvp(value)

    @relu.defjvp
    def relu_jvp(primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        x, a = primals
        x_dot, a_dot = tangents
        nonpositive_x = jnp.where(x <= 0, x, jnp.zeros_like(x))
        return relu(x, a), dash(jnp, x, a, dtype) * x_dot + nonpositive_x * a_dot

    return jax.jit(relu)

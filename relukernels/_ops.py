"""The operations, each described once: its element formulas (by name, in
``relukernels._kernels``), its outputs and its array-API formulas. The NumPy ufuncs,
the CPU and CUDA kernels and every backend's wrappers are built from this table, so a
new operation is one entry here (and its element formula in ``_kernels``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def relu_formula(xp: Any, x: Any, a: Any, dtype: Any) -> Any:
    """``where(x <= 0, a * x, x)`` in namespace ``xp``, an exact zero where ``a == 0``.

    ``a`` is the leak as ``generic.resolve_leak`` gives it: a Python number, or an
    array of ``xp`` in the result ``dtype`` that broadcasts to ``x``'s shape.
    """
    if isinstance(a, (int, float)):
        if a == 0:
            return xp.where(x <= 0, xp.zeros_like(x, dtype=dtype), xp.astype(x, dtype))
        if dtype == x.dtype:
            a = xp.asarray(a, dtype=dtype, device=device_of(x))
        return xp.where(x <= 0, a * x, x)
    # 0 * inf would be NaN: where the leak is 0, an infinite x becomes 0 first. (Not
    # x as a whole: the derivative with respect to a leak of 0 is still x.)
    safe_x = xp.where((a == 0) & xp.isinf(x), xp.zeros_like(x), x)
    return xp.where(x <= 0, a * safe_x, x)


def relu_dash_formula(xp: Any, x: Any, a: Any, dtype: Any) -> Any:
    """``where(x <= 0, a, 1)`` in the result ``dtype``."""
    if isinstance(a, (int, float)):
        a = xp.asarray(a, dtype=dtype, device=device_of(x))
    return xp.where(x <= 0, a, xp.ones_like(x, dtype=dtype))


def relu_backward_formula(xp: Any, grad: Any, x: Any, a: Any, dtype: Any) -> Any:
    """``grad * relu_dash(x, a)`` in ``xp``'s promotion of ``grad`` and ``dtype``,
    ``relu_dash``'s result dtype. Under ``jax.jit`` the two operations fuse into one
    pass."""
    return grad * relu_dash_formula(xp, x, a, dtype)


def leak_gradient_formula(xp: Any, per_element: Any, x: Any, leak_shape: tuple[int, ...]) -> Any:
    """A leak's gradient from ``per_element``, the chain rule's factor at each element
    (``grad * x`` for ``relu``, ``grad`` for ``relu_dash`` and ``relu_backward``): kept
    where ``x <= 0`` (elsewhere the result does not depend on the leak) and summed, in
    its dtype, over the dimensions along which a leak of ``leak_shape`` (``()`` for a
    number) was broadcast to ``x``'s shape."""
    kept = xp.where(x <= 0, per_element, xp.zeros_like(per_element))
    lead = kept.ndim - len(leak_shape)
    repeated = [lead + d for d, n in enumerate(leak_shape) if n == 1 and kept.shape[lead + d] != 1]
    axes = tuple(range(lead)) + tuple(repeated)
    summed = xp.sum(kept, axis=axes, dtype=kept.dtype, keepdims=True) if axes else kept
    return xp.reshape(summed, tuple(leak_shape))


def device_of(x: Any) -> Any:
    """The device of array ``x``, as ``array_api_compat`` reads it."""
    import array_api_compat

    return array_api_compat.device(x)


@dataclass(frozen=True)
class Operation:
    """One public operation: ``name(x, leak)`` giving ``len(elements)`` results."""

    name: str
    elements: tuple[str, ...]
    """The names of its element formulas in ``relukernels._kernels``, one per output,
    compiled by Numba (CPU and CUDA)."""
    formulas: tuple[Callable[..., Any], ...]
    """The same formulas as ``f(xp, *inputs, a, dtype)`` in an array-API namespace:
    ``f(xp, x, a, dtype)``, or ``f(xp, grad, x, a, dtype)`` for ``relu_backward``."""
    parts: tuple[str, ...]
    """The single-output operations that give each result (``(name,)`` for one)."""
    inputs: tuple[str, ...] = ("x",)
    """The array arguments before the leak: the element formulas take these, then the leak."""
    nout: int = field(init=False)
    out_names: tuple[str, ...] = field(init=False)
    """How errors name each output."""

    def __post_init__(self) -> None:
        nout = len(self.elements)
        object.__setattr__(self, "nout", nout)
        object.__setattr__(self, "out_names", ("out",) if nout == 1 else tuple(f"out[{i}]" for i in range(nout)))


RELU = Operation("relu", ("relu",), (relu_formula,), ("relu",))
RELU_DASH = Operation("relu_dash", ("relu_dash",), (relu_dash_formula,), ("relu_dash",))
RELU_AND_DASH = Operation(
    "relu_and_dash", ("relu", "relu_dash"), (relu_formula, relu_dash_formula), ("relu", "relu_dash")
)
RELU_BACKWARD = Operation(
    "relu_backward", ("relu_backward",), (relu_backward_formula,), ("relu_backward",), inputs=("grad", "x")
)
"""The backward pass: ``grad`` times ``relu_dash``, a second array input, so not one of
``OPERATIONS`` (the backends' ``run``); they run it with ``backward``."""

OPERATIONS: dict[str, Operation] = {op.name: op for op in (RELU, RELU_DASH, RELU_AND_DASH)}

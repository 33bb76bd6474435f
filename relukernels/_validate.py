"""Argument checks shared by every backend: one place for the contract's errors.

Every check runs before any backend writes, so a call that raises leaves ``x``
and ``out`` as they were.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


def leak(value: Any) -> Any:
    """Return a scalar ``value`` as a finite Python ``int`` or ``float``; an array of
    one or more dimensions as it is, for its backend to check with ``array_leak``.

    Accepts Python and NumPy real scalars, 0-d arrays of any namespace, and arrays
    (lists and tuples become NumPy arrays). Every backend checks the leak with this
    first (under ``torch.compile`` a number may be symbolic: the torch backend leaves
    it to its custom ops, which check it when they run).
    """
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ValueError(f"leak must be finite, got {value!r}")
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise TypeError(f"leak must be a real number, got a boolean ({value!r})")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return leak(float(value))
    ndim = getattr(value, "ndim", None)
    if differentiable(value) or values_unknown(value):
        return value  # an array, for autodiff to follow or for its values to come later
    if ndim == 0 and hasattr(value, "item"):
        return leak(value.item())
    if isinstance(value, (list, tuple)):
        return leak(np.asarray(value))
    if isinstance(ndim, int) and hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        return value
    raise TypeError(
        f"leak must be a real number or an array that broadcasts to x's shape, "
        f"got {type(value).__name__}"
    )


def is_array_leak(value: Any) -> bool:
    """Whether a leak checked by ``leak`` is an array (not a Python number)."""
    return not isinstance(value, (int, float))


def array_leak(xp: Any, value: Any, shape: tuple[int, ...], dtype: Any) -> tuple[Any, Any]:
    """An array ``leak`` for ``x`` of ``shape`` and ``dtype`` in namespace ``xp``:
    the leak cast to the result dtype, and that dtype.

    The leak must pass ``array_leak_dtype``, hold only finite values, and fit the
    result dtype. Where its values cannot be read yet (traced or symbolic), or where
    reading them would wait for a GPU (one with ``__cuda_array_interface__``: a sync
    per call, and no CUDA-graph capture), they are not checked, but for an integer
    leak whose dtype holds values that the integer result cannot, which the cast
    would wrap: a non-finite value then gives non-finite results where it applies.
    """
    result = array_leak_dtype(xp, value.dtype, tuple(value.shape), tuple(shape), dtype)
    rule = dtype_rule(xp, dtype)
    leak_is_float = xp.isdtype(value.dtype, "real floating")
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        cast = xp.astype(value, result)
    if values_unknown(value):
        return cast, result
    if hasattr(value, "__cuda_array_interface__"):
        if leak_is_float or not isinstance(rule, IntegerRule):
            return cast, result
        held = xp.iinfo(value.dtype)
        if rule.low <= held.min and held.max <= rule.high:
            return cast, result
    if leak_is_float and not bool(xp.all(xp.isfinite(value))):
        raise ValueError("leak must be finite: it holds NaN or infinity")
    if xp.isdtype(result, "real floating"):
        if not bool(xp.all(xp.isfinite(cast))):
            raise ValueError(f"leak overflows {rule.name if result == dtype else result}: it would become infinite")
    elif math.prod(value.shape):
        assert isinstance(rule, IntegerRule)  # an integer result dtype is x's own
        if not (rule.low <= int(xp.min(value)) and int(xp.max(value)) <= rule.high):
            raise ValueError(f"leak does not fit in {rule.name} [{rule.low}, {rule.high}], the dtype of x")
    return cast, result


def array_leak_dtype(xp: Any, leak_dtype: Any, leak_shape: tuple[int, ...], shape: tuple[int, ...],
                     dtype: Any) -> Any:
    """The result dtype for an ``x`` of ``shape`` and ``dtype`` and an array leak of
    ``leak_dtype`` and ``leak_shape`` in namespace ``xp``, from those alone: the leak
    must have a real dtype and broadcast to ``shape`` without changing it. The result
    dtype is ``x``'s, except for integer ``x`` with a floating leak: then ``xp``'s
    promotion of the two."""
    if not (xp.isdtype(leak_dtype, "real floating") or xp.isdtype(leak_dtype, "integral")):
        name = str(leak_dtype).removeprefix("torch.")
        raise TypeError(f"leak has dtype {name}; it must be a real floating or integer array")
    broadcast_leak(leak_shape, shape)
    if isinstance(dtype_rule(xp, dtype), IntegerRule) and xp.isdtype(leak_dtype, "real floating"):
        return xp.result_type(dtype, leak_dtype)
    return dtype


def grad_dtype(xp: Any, dtype: Any, dash_dtype: Any) -> Any:
    """The result dtype of ``relu_backward`` for a ``grad`` of ``dtype``: ``xp``'s
    promotion of it and ``dash_dtype`` (``relu_dash``'s). ``grad`` must be real."""
    if not (xp.isdtype(dtype, "real floating") or xp.isdtype(dtype, "integral")):
        name = str(dtype).removeprefix("torch.")
        raise TypeError(f"grad has dtype {name}; it must be a real floating or integer array")
    return xp.result_type(dtype, dash_dtype)


def grad_shape(grad_shape: tuple, shape: tuple) -> None:
    """Check that a ``grad`` of ``grad_shape`` broadcasts to ``x``'s ``shape`` and
    leaves it as is."""
    try:
        broadcast = np.broadcast_shapes(tuple(shape), tuple(grad_shape))
    except ValueError:
        broadcast = None
    if broadcast != tuple(shape):
        raise ValueError(f"grad has shape {tuple(grad_shape)}; it must have (or broadcast to) x's shape {tuple(shape)}")


def broadcast_leak(leak_shape: tuple, shape: tuple) -> None:
    """Check that a leak of ``leak_shape`` broadcasts to ``shape`` and leaves it as is."""
    try:
        broadcast = np.broadcast_shapes(shape, leak_shape)
    except ValueError:
        raise ValueError(f"leak of shape {leak_shape} does not broadcast to x's shape {shape}") from None
    if broadcast != shape:
        raise ValueError(f"leak of shape {leak_shape} would change the result's shape from x's {shape} to {broadcast}")


def values_unknown(value: Any) -> bool:
    """Whether ``value``'s values cannot be read now: a JAX tracer; a tensor under
    ``torch.compile``, inside ``torch.func``'s ``vmap`` (no storage) or on ``meta``."""
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.core.Tracer):
        return True
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return False
    if value.device.type == "meta" or torch.compiler.is_compiling():
        return True
    try:
        value.data_ptr()
    except RuntimeError:
        return True
    return False


def differentiable(value: Any) -> bool:
    """Whether autograd follows tensor ``value``: it requires grad, or is a dual tensor
    of forward AD (with a tangent)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return False
    from torch.autograd.forward_ad import unpack_dual

    return value.requires_grad or unpack_dual(value).tangent is not None


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.compiler.is_compiling()


@dataclass(frozen=True)
class FloatRule:
    """A real floating dtype: the result keeps it and ``leak`` is cast to it."""

    name: str
    dtype: Any
    overflow: float  # the smallest magnitude that rounds to infinity in this dtype
    underflow: float  # the largest magnitude that rounds to zero in this dtype

    def resolve(self, value: int | float) -> tuple[float, Any]:
        """``leak`` for this dtype (a signed zero where it rounds to zero), and the
        result dtype: this one."""
        if type(value) is float and (value == 0.0 or self.underflow < abs(value) < self.overflow):
            return value, self.dtype  # the common cases, first and cheap
        return self.cast_leak(value), self.dtype

    def cast_leak(self, value: int | float) -> float:
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond every float
            as_float = math.inf
        if not isinstance(value, int) and not math.isfinite(as_float):
            raise ValueError(f"leak must be finite, got {value!r}")
        if abs(as_float) >= self.overflow:
            raise ValueError(f"leak={value!r} overflows {self.name}: it would become infinite")
        # A leak that rounds to zero keeps its sign, as a cast to the dtype would.
        return math.copysign(0.0, as_float) if abs(as_float) <= self.underflow else as_float


@dataclass(frozen=True)
class IntegerRule:
    """An integer dtype: an integer ``leak`` keeps it, a float one promotes it as the
    namespace promotes it for ``leak * x`` (NumPy: float64, as in the tutorial; PyTorch
    and JAX: their default float), whatever its value."""

    name: str
    dtype: Any
    low: int
    high: int
    xp: Any

    def resolve(self, value: int | float) -> tuple[int | float, Any]:
        """``leak`` to compute with, and the result dtype.

        An integer ``leak`` must fit in this dtype; a float one is returned as is.
        """
        if isinstance(value, int):
            return self.cast_leak(value), self.dtype
        if not math.isfinite(value):
            raise ValueError(f"leak must be finite, got {value!r}")
        try:
            return value, self.xp.result_type(self.dtype, value)
        except (TypeError, ValueError) as error:  # a namespace that refuses the mix
            raise TypeError(f"leak={value!r}, a float, cannot be used with x of dtype {self.name}: {error}") from None

    def cast_leak(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise ValueError(
                f"leak={value!r} does not fit in {self.name} "
                f"[{self.low}, {self.high}], the dtype of x"
            )
        return value


_rules: dict[Any, dict[Any, FloatRule | IntegerRule]] = {}
"""Rules by namespace, then dtype: dtypes of two namespaces are never compared."""
NUMPY_RULES = _rules.setdefault(np, {})
"""NumPy's rules by dtype, filled by ``dtype_rule``: a hot path's first lookup."""


def dtype_rule(xp: Any, dtype: Any) -> FloatRule | IntegerRule:
    """The contract's rule for arrays of ``dtype`` in namespace ``xp``, cached.

    Raises ``TypeError`` for bool, complex and every other non-real dtype.
    """
    rules = _rules.get(xp)
    if rules is None:
        rules = _rules[xp] = {}
    try:
        return rules[dtype]
    except (KeyError, TypeError):
        pass
    name = str(dtype).removeprefix("torch.")
    try:
        is_float = xp.isdtype(dtype, "real floating")
        is_integer = xp.isdtype(dtype, "integral")
    except (TypeError, ValueError):
        is_float = is_integer = False
    if (is_float or is_integer) and isinstance(dtype, np.dtype):
        # NumPy's canonical object for the dtype: equal dtypes (np.longlong and np.int64
        # on Linux; one with metadata and the plain one) share this rule, and the
        # results and loops of all of them are the canonical dtype's.
        dtype = np.dtype(dtype.str)
    if is_float:
        info = xp.finfo(dtype)
        largest = float(info.max)
        # Halfway between the largest finite value and the next power of two, where
        # rounding to nearest (ties to even) gives infinity.
        half_ulp = math.ldexp(float(info.eps), math.frexp(largest)[1] - 2)
        # Half the smallest subnormal rounds (ties to even) to zero.
        half_subnormal = float(info.smallest_normal) * float(info.eps) / 2
        rule: FloatRule | IntegerRule = FloatRule(name, dtype, largest + half_ulp, half_subnormal)
    elif is_integer:
        info = xp.iinfo(dtype)
        rule = IntegerRule(name, dtype, int(info.min), int(info.max), xp)
    else:
        raise TypeError(
            f"x has dtype {name}; relukernels takes real floating or integer arrays "
            "(not bool, complex, object or string)"
        )
    try:
        rules[dtype] = rule
    except TypeError:
        pass
    return rule


def numpy_result(dtype: Any, leak: int | float) -> tuple[int | float, Any]:
    """The leak to compute with and the result dtype, for an array of NumPy ``dtype``
    (``IntegerRule`` and ``FloatRule``). Raises as ``dtype_rule`` does."""
    return (NUMPY_RULES.get(dtype) or dtype_rule(np, dtype)).resolve(leak)


def out_array(
    out: Any,
    *,
    name: str,
    expected_type: type[Any],
    shape: tuple[int, ...],
    dtype: Any,
    device: Any = None,
    device_of: Any = None,
    dtype_of: Any = None,
) -> None:
    """Check that ``out`` can receive a result of ``shape`` and ``dtype``.

    ``device_of`` reads an array's device; when given, ``out`` must be on ``device``.
    ``dtype_of`` reads an array's dtype in the terms of ``dtype`` (default: ``.dtype``).
    """
    if type(out) is not expected_type and not isinstance(out, expected_type):
        raise TypeError(
            f"{name} must be an array of x's type ({_type_name(expected_type)}), "
            f"got {_type_name(type(out))}"
        )
    if out.shape != shape and tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(out.shape)}; the result has shape {tuple(shape)}")
    out_dtype = out.dtype if dtype_of is None else dtype_of(out)
    if out_dtype != dtype:
        raise TypeError(f"{name} has dtype {out_dtype}; the result has dtype {dtype}")
    if not getattr(getattr(out, "flags", None), "writeable", True):
        raise ValueError(f"{name} is read-only")
    if device_of is not None and device_of(out) != device:
        raise ValueError(f"{name} is on device {device_of(out)}; x is on device {device}")


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def outs(out: Any, nout: int) -> tuple:
    """The outputs of an operation with ``nout`` results: ``(out,)``, or for two results
    ``out`` checked to be ``None`` or a pair of arrays."""
    if nout == 1:
        return (out,)
    if out is None:
        return (None,) * nout
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(
            "out of relu_and_dash must be None or a pair (y, dy) of arrays, "
            f"got {type(out).__name__}"
        )
    if out[0] is not None and out[0] is out[1]:
        raise ValueError("out[0] and out[1] must be different arrays")
    return out[0], out[1]

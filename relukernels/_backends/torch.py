"""PyTorch tensors: PyTorch's own kernels where they give the contract's bits, CPU
tensors on the NumPy kernels through zero-copy views, CUDA tensors on the CUDA
kernels on PyTorch's current stream, autograd kept working.

- Without autograd, ``relu`` of a float32 or float64 tensor with a number leak is
  PyTorch's ``leaky_relu`` (``relu`` for a zero leak): the same bits, at PyTorch's
  cost. Everything else runs on the kernels.
- A tensor (or a leak tensor) that requires grad, or a dual tensor of forward AD,
  goes through the ``torch.autograd.Function`` of ``_relu_function``: its forward is
  the call above, its backward ``relu_backward`` (one pass on the kernels; PyTorch's
  ``leaky_relu_backward`` gives the slope at NaN, the contract 1), and a leak tensor
  gets PReLU's gradient. Outside ``torch.func``'s transforms it is applied without
  ``Function.apply``'s argument binding.
- Under ``torch.compile`` the calls are ``torch.library`` custom ops with registered
  autograd (``_define_custom_ops``): Dynamo cannot trace an ``autograd.Function``
  with a forward-AD rule, which ``torch.func.jvp`` needs, so the two share the
  kernels and the backward, not the class.
- Dtypes NumPy lacks (bfloat16), integer tensors that a float leak promotes (to
  PyTorch's default float, not float64), and tensors on devices without kernels take
  the formulas in PyTorch's own operations.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, NamedTuple

from .. import _validate
from .._ops import RELU, RELU_BACKWARD, RELU_DASH, Operation, leak_gradient_formula
from . import generic
from .cuda import CudaBackend, numpy_dtype
from .numpy import NumpyBackend

_NUMPY = NumpyBackend()
_CUDA = CudaBackend()


class TorchBackend:
    """``torch.Tensor`` (and subclasses such as ``nn.Parameter``), CPU or CUDA."""

    name = "torch"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        torch = sys.modules["torch"]  # imported: a tensor of it is here
        if torch.compiler.is_compiling():  # Dynamo traces the registered custom ops
            return _compiled(op, x, leak, outs)
        if op is RELU and type(leak) is float:  # the common call, on the shortest path
            native = _native_relu(x, leak, outs[0])
            if native is not None:
                return [native]
        _check_layout(x, "x")
        leak = _validate.leak(leak)
        leak_is_tensor = _validate.is_array_leak(leak)
        if leak_is_tensor:
            _check_leak_type(leak)
        tracks_grad = _tracks_grad(x, leak)
        if not tracks_grad and not torch._C._are_functorch_transforms_active():
            return _run(op, x, leak, outs)
        has_storage = _has_storage(x) and not (leak_is_tensor and _validate.values_unknown(leak))
        if has_storage and not tracks_grad:
            return _run(op, x, leak, outs)
        if any(out is not None for out in outs):
            raise TypeError(
                "out= cannot be used when x or leak requires grad, or inside torch.func's transforms: "
                "autograd cannot follow a write into out (call it under torch.no_grad(), or without out=)"
            )
        results = []
        for part in op.parts:
            if part == RELU.name:
                results.append(_apply(_relu_function(), x, leak))
            elif (leak_is_tensor and _validate.differentiable(leak)) or not has_storage:  # linear in the leak
                results.append(_formula(RELU_DASH, x.detach(), leak, (None,))[0])
            else:  # the derivative of a step is zero almost everywhere: no graph
                results.append(_run(RELU_DASH, x.detach(), leak, (None,))[0])
        return results

    def backward(self, grad: Any, x: Any, leak: Any, out: Any) -> Any:
        import torch

        if torch.compiler.is_compiling():
            return _compiled(RELU_BACKWARD, x, leak, (out,), grad)[0]
        _check_layout(x, "x")
        _check_layout(grad, "grad")
        leak = _validate.leak(leak)
        _check_leak_type(leak)
        if grad.device != x.device:
            raise ValueError(f"grad is on device {grad.device}; x is on device {x.device}")
        return _relu_backward(grad, x, leak, out)


class _Native(NamedTuple):
    """What the shortest path needs of PyTorch, looked up once."""

    rules: dict[Any, tuple[_validate.FloatRule, float]]
    """The dtypes whose ``leaky_relu`` gives the contract's bits (the slope rounded to
    the dtype, one product): the contract's rule for them, and the largest slope
    PyTorch takes."""
    leaky_relu: Any
    grad_enabled: Any
    forward_ad: Any
    transforms_active: Any


def _native_relu(x: Any, leak: int | float, out: Any = None) -> Any:
    """PyTorch's own ``leaky_relu(x, leak)`` (into ``out``, checked, where one is given)
    where it gives the kernels' bits, else ``None``: a float32 or float64 tensor on the
    CPU or CUDA; no autograd, forward AD or ``torch.func`` transform (the derivative of
    ``leaky_relu`` at NaN is the leak; ``relu_dash`` is 1); a leak that is nonzero in
    that dtype (``0 * -inf`` would be NaN; ``relu`` keeps the sign of -0.0, where the
    kernels give 0) and up to its largest finite value (PyTorch refuses larger ones,
    which the contract rounds to it); and an ``out`` that is ``x`` or shares no memory
    with it (PyTorch refuses a partial overlap, which the kernels compute as if there
    were none). A non-finite leak raises, as ``_validate.leak`` would."""
    native = _native()
    rule = native.rules.get(x.dtype)
    if (rule is None or not (x.is_cpu or x.is_cuda) or (x.requires_grad and native.grad_enabled())
            or native.forward_ad._current_level >= 0 or native.transforms_active()):
        return None
    a, _ = rule[0].resolve(leak)
    if a == 0 or abs(a) > rule[1]:
        return None
    if out is None:
        try:
            return native.leaky_relu(x, a)
        except (NotImplementedError, RuntimeError):
            if x.layout is sys.modules["torch"].strided:
                raise
            return None  # a sparse x: the caller's checks name it
    _check_out(out, x, x.dtype, "out")
    if out is not x and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        return None
    return native.leaky_relu(x, a, out=out)


@functools.cache
def _native() -> _Native:
    import numpy as np
    import torch

    rules: dict[Any, tuple[_validate.FloatRule, float]] = {}
    for dtype, name in ((torch.float32, "float32"), (torch.float64, "float64")):
        rule = _validate.dtype_rule(np, np.dtype(name))
        assert isinstance(rule, _validate.FloatRule)  # a floating dtype's
        rules[dtype] = (rule, float(np.finfo(name).max))
    return _Native(rules, torch._C._nn.leaky_relu, torch.is_grad_enabled, torch.autograd.forward_ad,
                   torch._C._are_functorch_transforms_active)


def _apply(function: Any, *args: Any) -> Any:
    """``function.apply(*args)``; outside ``torch.func``'s transforms without its
    argument binding (``inspect.Signature.bind`` on every call, a quarter of the cost
    of a small forward and backward), as ``Function.apply`` then does itself."""
    import torch

    if torch._C._are_functorch_transforms_active():
        return function.apply(*args)
    return super(torch.autograd.Function, function).apply(*args)


def _check_layout(tensor: Any, name: str) -> None:
    """The kernels and formulas take dense tensors (``torch.strided``), not sparse ones."""
    import torch

    if tensor.layout is not torch.strided:
        raise TypeError(f"{name} is a {tensor.layout} tensor; relukernels takes dense ones ({name}.to_dense())")


def _check_leak_type(leak: Any) -> None:
    import torch

    if _validate.is_array_leak(leak) and not isinstance(leak, torch.Tensor):
        raise TypeError(f"leak must be a number or a torch.Tensor for a tensor x, got {type(leak).__name__}")


def _check_leak_device(leak: Any, x: Any) -> None:
    if leak.device != x.device:
        raise ValueError(f"leak is on device {leak.device}; x is on device {x.device}")


def _relu_backward(grad: Any, x: Any, leak: Any, out: Any) -> Any:
    """``relu_backward``: the kernels where they can read ``grad`` and ``x`` and no graph
    has to go through ``grad`` or a leak tensor; otherwise PyTorch's operations, which
    stay differentiable (double backward) and which ``torch.func`` traces. No graph
    goes through ``x``: relu_dash is a step in ``x``. Eager mode only."""
    torch = sys.modules["torch"]
    if (out is None and type(leak) is float and x.is_cpu and x.dtype is grad.dtype and x.dtype.is_floating_point
            and grad.shape == x.shape and not _tracks_grad(grad, leak)
            and not torch._C._are_functorch_transforms_active() and numpy_dtype(x.dtype) is not None):
        # The common call (autograd's backward of relu on the CPU), on the shortest path.
        return torch.from_numpy(_NUMPY.backward(_numpy(grad), _numpy(x), leak, None))
    leak_is_tensor = _validate.is_array_leak(leak)
    if leak_is_tensor:
        _check_leak_device(leak, x)
    constant_leak = not (leak_is_tensor and (_validate.differentiable(leak) or _validate.values_unknown(leak)))
    readable = _has_storage(grad) and _has_storage(x)
    same_shape = grad.shape == x.shape
    if (readable and same_shape and constant_leak and not _tracks_grad(grad, leak)
            and _kernels_apply(x, leak, grad.dtype)):
        if out is not None:
            _check_out(out, x, grad.dtype, "out")
        result = torch.empty_like(grad) if out is None else out
        if leak_is_tensor:
            leak = leak.detach()
        if x.is_cuda:
            _CUDA.backward(grad.detach(), x.detach(), leak, result.detach())
        else:
            leak = leak.numpy() if leak_is_tensor else leak
            _NUMPY.backward(_numpy(grad), _numpy(x), leak, _numpy(result))
        if out is not None:
            torch.autograd.graph.increment_version(out)
        return result
    import array_api_compat.torch as xp

    result = generic.backward_formula(xp, grad, x.detach(), leak)
    if out is None:
        return result
    if _tracks_grad(grad, leak):
        raise TypeError("out= cannot be used when grad or leak requires grad: autograd cannot follow a write into out")
    _check_out(out, x, result.dtype, "out")
    return out.copy_(result)


def _numpy(tensor: Any) -> Any:
    """A CPU tensor's memory as a NumPy array, whether or not it requires grad."""
    return (tensor.detach() if tensor.requires_grad else tensor).numpy()


def _kernels_apply(x: Any, leak: Any, dtype: Any = None) -> bool:
    """Whether the kernels give what PyTorch's promotion gives: dtypes NumPy has, no
    integer ``x`` with a fractional leak, on the CPU or CUDA; for ``relu_backward``,
    a ``grad`` of ``dtype`` equal to ``x``'s."""
    if not (x.is_cpu or x.is_cuda) or (dtype is not None and dtype != x.dtype):
        return False
    x_dtype = numpy_dtype(x.dtype)
    if x_dtype is None:
        return False
    if _validate.is_array_leak(leak):
        return numpy_dtype(leak.dtype) is not None and (x.dtype.is_floating_point or not leak.dtype.is_floating_point)
    return _validate.numpy_result(x_dtype, leak)[1] == x_dtype


def _run(op: Operation, x: Any, leak: Any, outs: tuple) -> list:
    """``op`` without autograd: the CUDA or NumPy kernels, else PyTorch's operations."""
    import torch

    if _validate.is_array_leak(leak):  # a tensor: TorchBackend.run checked that
        _check_leak_device(leak, x)
        leak = leak.detach()
    if not _kernels_apply(x, leak):
        return _formula(op, x, leak, outs)
    for out, name in zip(outs, op.out_names, strict=True):
        if out is not None:
            _check_out(out, x, x.dtype, name)
    if x.is_cuda:
        results = _CUDA.run(op, x, leak, outs)
    else:
        results = [torch.empty_like(x) if out is None else out for out in outs]
        leak = leak.numpy() if _validate.is_array_leak(leak) else leak
        _NUMPY.run(op, _numpy(x), leak, tuple(_numpy(r) for r in results))
    for out in outs:  # written behind autograd's back: tell it, as an in-place op would
        if out is not None:
            torch.autograd.graph.increment_version(out)
    return results


def _has_storage(x: Any) -> bool:
    """Whether the kernels can read ``x``: not for the wrappers of ``torch.func``'s
    transforms (``vmap``'s batched tensors), which go through the autograd.Function."""
    try:
        x.data_ptr()
    except RuntimeError:
        return False
    return True


def _tracks_grad(x: Any, leak: Any) -> bool:
    """Whether autograd follows the call: backward (``requires_grad``, with grad mode
    on) or forward AD (a dual tensor, which exists only inside a dual level), through
    ``x`` or a leak tensor."""
    torch = sys.modules["torch"]
    leak_is_tensor = _validate.is_array_leak(leak)
    if torch.is_grad_enabled() and (x.requires_grad or (leak_is_tensor and leak.requires_grad)):
        return True
    forward_ad = torch.autograd.forward_ad
    if forward_ad._current_level < 0:
        return False
    unpack_dual = forward_ad.unpack_dual
    return unpack_dual(x).tangent is not None or (leak_is_tensor and unpack_dual(leak).tangent is not None)


def _check_out(out: Any, x: Any, dtype: Any, name: str) -> None:
    """Check a caller's ``out`` for a result of torch ``dtype``: the contract's checks,
    and no autograd history to break."""
    torch = sys.modules["torch"]
    if not (type(out) is torch.Tensor and out.shape == x.shape and out.dtype == dtype and out.device == x.device):
        _validate.out_array(
            out,
            name=name,
            expected_type=torch.Tensor,
            shape=tuple(x.shape),
            dtype=dtype,
            device=x.device,
            device_of=_device,
        )
    if out.requires_grad and torch.is_grad_enabled():
        raise TypeError(f"{name} requires grad; autograd cannot follow a write into it")


def _formula(op: Operation, x: Any, leak: Any, outs: tuple) -> list:
    """The contract's formulas in PyTorch's operations, written into ``outs`` if given."""
    import array_api_compat.torch as xp

    results = generic.formulas(op, xp, x, leak)
    for result, out, name in zip(results, outs, op.out_names, strict=True):
        if out is not None:
            _check_out(out, x, result.dtype, name)
    return [result if out is None else out.copy_(result) for result, out in zip(results, outs, strict=True)]


def _device(tensor: Any) -> Any:
    return tensor.device


def _leak_gradient(per_element: Any, x: Any, leak: Any) -> Any:
    """A leak tensor's gradient from ``per_element`` (see ``leak_gradient_formula``),
    in the leak's dtype."""
    import array_api_compat.torch as xp

    return leak_gradient_formula(xp, per_element, x, tuple(leak.shape)).to(leak.dtype)


@functools.cache
def _relu_function() -> Any:
    """``torch.autograd.Function`` for relu in eager mode, built on first use: backward
    (double backward too), forward AD (``jvp``) and ``vmap``, so that ``torch.func``'s
    transforms work; the leak may be a number or a tensor."""
    import torch

    class Relu(torch.autograd.Function):
        @staticmethod
        def forward(x: Any, leak: Any) -> Any:
            if type(leak) is float:  # PyTorch's own forward where it gives the same bits
                native = _native_relu(x, leak)  # (a Function's forward runs without grad mode)
                if native is not None:
                    return native
            plain_leak = leak.detach() if _validate.is_array_leak(leak) else leak
            return _run(RELU, x.detach(), plain_leak, (None,))[0]

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
            x, leak = inputs
            leak_is_tensor = _validate.is_array_leak(leak)
            ctx.save_for_backward(x, leak if leak_is_tensor else None)
            if torch.autograd.forward_ad._current_level >= 0 or torch._C._are_functorch_transforms_active():
                ctx.save_for_forward(x, leak if leak_is_tensor else None)  # for jvp, in forward AD only
            ctx.leak = None if leak_is_tensor else leak

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, Any]:
            x, leak_tensor = ctx.saved_tensors
            leak = ctx.leak if leak_tensor is None else leak_tensor
            # Without create_graph (grad mode off) no graph goes through the leak here:
            # x's gradient runs on the kernels; the leak's own comes below.
            leak_for_x = leak if leak_tensor is None or torch.is_grad_enabled() else leak_tensor.detach()
            grad_x = _relu_backward(grad, x, leak_for_x, None) if ctx.needs_input_grad[0] else None
            grad_leak = None
            if leak_tensor is not None and ctx.needs_input_grad[1]:
                grad_leak = _leak_gradient(grad * x, x, leak_tensor)
            return grad_x, grad_leak

        @staticmethod
        def jvp(ctx: Any, x_dot: Any, leak_dot: Any) -> Any:
            x, leak_tensor = ctx.saved_tensors
            leak = ctx.leak if leak_tensor is None else leak_tensor
            tangent = _relu_backward(x_dot, x, leak, None) if x_dot is not None else None
            if leak_dot is not None:
                from_leak = torch.where(x <= 0, leak_dot.to(x.dtype) * x, torch.zeros_like(x))
                tangent = from_leak if tangent is None else tangent + from_leak
            return tangent

        @staticmethod
        def vmap(info: Any, in_dims: tuple, x: Any, leak: Any) -> tuple[Any, Any]:
            x_dim, leak_dim = in_dims
            x = x.movedim(x_dim, 0) if x_dim is not None else x.expand(info.batch_size, *x.shape)
            if leak_dim is not None:  # a batch of leaks, lined up with x's dimensions
                leak = leak.movedim(leak_dim, 0)
                leak = leak.reshape(leak.shape[:1] + (1,) * (x.dim() - leak.dim()) + leak.shape[1:])
            return Relu.apply(x, leak), 0

    # Function.apply binds its arguments to forward's signature inside torch.func's
    # transforms; computed once here, that costs 2 µs instead of 9.
    # (functions take attributes; mypy sees forward as a Callable, which has none)
    Relu.forward.__signature__ = inspect.signature(Relu.forward)  # type: ignore[attr-defined]
    return Relu


_CUSTOM_OPS: dict[str, Any] = {}


def register_custom_ops() -> dict[str, Any]:
    """The custom ops, registered on the first call (see ``_define_custom_ops``)."""
    if not _CUSTOM_OPS:
        _CUSTOM_OPS.update(_define_custom_ops())
    return _CUSTOM_OPS


def _define_custom_ops() -> dict[str, Any]:
    """``relukernels::relu``, ``relukernels::relu_dash`` and ``relukernels::relu_backward``
    as ``torch.library`` custom ops, for ``torch.compile``: fake implementations for tracing, and autograd
    (PReLU's gradient for a leak tensor). Registered as soon as both torch and
    relukernels are imported (``relukernels._dispatch``; Dynamo cannot trace a
    registration), or failing that with the first tensor. In eager mode they are not
    used: a custom op's Python dispatch costs about 19 µs a call here."""
    import torch

    def implementation(op: Operation) -> Any:
        def run(x: Any, leak_tensor: Any, leak: float) -> Any:
            return _run(op, x, leak if leak_tensor is None else leak_tensor, (None,))[0]

        return run

    def fake(x: Any, leak_tensor: Any, leak: float) -> Any:
        """The result's dtype from dtypes alone; a floating ``x`` keeps its own, which
        needs no value of a number leak (symbolic under ``torch.compile``)."""
        import array_api_compat.torch as xp

        if leak_tensor is None and x.dtype.is_floating_point:
            return torch.empty_like(x)
        dtype = generic.resolve_leak(xp, x, leak if leak_tensor is None else leak_tensor)[1]
        return torch.empty_like(x, dtype=dtype)

    ops = {}
    for op in (RELU, RELU_DASH):
        schema = "(Tensor x, Tensor? leak_tensor, Scalar leak) -> Tensor"
        ops[op.name] = torch.library.custom_op(
            f"relukernels::{op.name}", implementation(op), mutates_args=(), schema=schema
        )
        ops[op.name].register_fake(fake)

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        x, leak_tensor, leak = inputs
        ctx.save_for_backward(x, leak_tensor)
        ctx.leak = leak

    def backward(ctx: Any, grad: Any) -> tuple[Any, Any, None]:
        x, leak_tensor = ctx.saved_tensors
        leak = ctx.leak if leak_tensor is None else leak_tensor
        grad_x = ops[RELU_BACKWARD.name](grad, x, leak_tensor, ctx.leak) if ctx.needs_input_grad[0] else None
        grad_leak = _leak_gradient(grad * x, x, leak) if leak_tensor is not None and ctx.needs_input_grad[1] else None
        return grad_x, grad_leak, None

    def dash_backward(ctx: Any, grad: Any) -> tuple[Any, Any, None]:
        x, leak_tensor = ctx.saved_tensors
        grad_leak = None  # and none for x, which comes detached: relu_dash is a step in x
        if leak_tensor is not None and ctx.needs_input_grad[1]:
            grad_leak = _leak_gradient(grad, x, leak_tensor)
        return None, grad_leak, None

    def run_backward(grad: Any, x: Any, leak_tensor: Any, leak: float) -> Any:
        return _relu_backward(grad, x, leak if leak_tensor is None else leak_tensor, None)

    def fake_backward(grad: Any, x: Any, leak_tensor: Any, leak: float) -> Any:
        _validate.grad_shape(tuple(grad.shape), tuple(x.shape))
        return torch.empty_like(x, dtype=torch.result_type(grad, fake(x, leak_tensor, leak)))

    schema = "(Tensor grad, Tensor x, Tensor? leak_tensor, Scalar leak) -> Tensor"
    name = RELU_BACKWARD.name
    ops[name] = torch.library.custom_op(f"relukernels::{name}", run_backward, mutates_args=(), schema=schema)
    ops[name].register_fake(fake_backward)

    def setup_backward_context(ctx: Any, inputs: tuple, output: Any) -> None:
        grad, x, leak_tensor, leak = inputs
        ctx.save_for_backward(grad, x, leak_tensor)
        ctx.leak = leak

    def backward_backward(ctx: Any, grad_grad: Any) -> tuple[Any, None, Any, None]:
        """Linear in ``grad``; in a leak tensor, ``grad`` where ``x <= 0``."""
        grad, x, leak_tensor = ctx.saved_tensors
        grad_of_grad = ops[name](grad_grad, x, leak_tensor, ctx.leak) if ctx.needs_input_grad[0] else None
        grad_leak = None
        if leak_tensor is not None and ctx.needs_input_grad[2]:
            grad_leak = _leak_gradient(grad_grad * grad, x, leak_tensor)
        return grad_of_grad, None, grad_leak, None

    ops[RELU.name].register_autograd(backward, setup_context=setup_context)
    ops[name].register_autograd(backward_backward, setup_context=setup_backward_context)
    ops[RELU_DASH.name].register_autograd(dash_backward, setup_context=setup_context)
    return ops


def _compiled(op: Operation, x: Any, leak: Any, outs: tuple, grad: Any = None) -> list:
    """``op`` under ``torch.compile``: the custom ops, one per result, taking ``grad``
    first for ``relu_backward``; ``out`` by copy."""
    if not _CUSTOM_OPS:
        raise RuntimeError(
            "relukernels could not register its torch.library ops when torch was imported "
            "(see the warning then): call it once eagerly, outside torch.compile"
        )
    ops = _CUSTOM_OPS
    leak_tensor, number = (leak, 0) if _validate.is_array_leak(leak) else (None, leak)
    arrays = (grad,) if op is RELU_BACKWARD else ()
    # only relu has a graph through x: relu_dash is a step in x, as in eager mode
    results = [ops[part](*arrays, x if part == RELU.name else x.detach(), leak_tensor, number) for part in op.parts]
    for result, out, name in zip(results, outs, op.out_names, strict=True):
        if out is not None:
            _check_out(out, x, result.dtype, name)
    return [result if out is None else out.copy_(result) for result, out in zip(results, outs, strict=True)]


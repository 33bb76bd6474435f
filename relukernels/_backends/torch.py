"""PyTorch tensors: CPU tensors on the NumPy kernels through zero-copy views, CUDA
tensors on the CUDA kernels on PyTorch's current stream, autograd kept working.

A tensor (or a leak tensor) that requires grad goes through a
``torch.autograd.Function`` whose backward multiplies by ``relu_dash`` and gives a
leak tensor PReLU's gradient. Dtypes NumPy lacks (bfloat16), integer tensors with a
fractional leak (PyTorch promotes them to its default float, not to float64), and
tensors on devices without kernels take the formulas in PyTorch's own operations.
"""

from __future__ import annotations

from typing import Any

from .. import _validate
from .._ops import RELU, RELU_DASH, Operation
from . import generic
from .cuda import CudaBackend, numpy_dtype
from .numpy import NumpyBackend

_NUMPY = NumpyBackend()
_CUDA = CudaBackend()


class TorchBackend:
    """``torch.Tensor`` (and subclasses such as ``nn.Parameter``), CPU or CUDA."""

    name = "torch"

    def run(self, op: Operation, x: Any, leak: Any, outs: tuple) -> list:
        import torch

        if _validate.is_array_leak(leak) and not isinstance(leak, torch.Tensor):
            raise TypeError(f"leak must be a number or a torch.Tensor for a tensor x, got {type(leak).__name__}")
        if not _tracks_grad(x, leak):
            return _run(op, x, leak, outs)
        if any(out is not None for out in outs):
            raise TypeError(
                "out= cannot be used when x or leak requires grad: autograd cannot follow a write "
                "into out (call it under torch.no_grad(), or without out=)"
            )
        results = []
        for part in op.parts:
            if part == RELU.name:
                results.append(_relu_function().apply(x, leak))
            elif getattr(leak, "requires_grad", False):  # linear in the leak
                results.append(_formula(RELU_DASH, x.detach(), leak, (None,))[0])
            else:  # the derivative of a step is zero almost everywhere: no graph
                results.append(_run(RELU_DASH, x.detach(), leak, (None,))[0])
        return results


def _run(op: Operation, x: Any, leak: Any, outs: tuple) -> list:
    """``op`` without autograd: the CUDA or NumPy kernels, else PyTorch's operations."""
    import torch

    x_dtype = numpy_dtype(x.dtype)
    if _validate.is_array_leak(leak):
        if not isinstance(leak, torch.Tensor):
            raise TypeError(f"leak must be a torch.Tensor for a tensor x, got {type(leak).__name__}")
        if leak.device != x.device:
            raise ValueError(f"leak is on device {leak.device}; x is on device {x.device}")
        leak = leak.detach()
        kernels_apply = x_dtype is not None and numpy_dtype(leak.dtype) is not None and (
            x.dtype.is_floating_point or not leak.dtype.is_floating_point
        )
    else:
        kernels_apply = x_dtype is not None and _validate.numpy_result(x_dtype, leak)[1] == x_dtype
    if not kernels_apply or x.device.type not in ("cpu", "cuda"):
        return _formula(op, x, leak, outs)
    for out, name in zip(outs, op.out_names):
        if out is not None:
            _check_out(out, x, x.dtype, name)
    if x.is_cuda:
        return _CUDA.run(op, x, leak, outs)
    results = [torch.empty_like(x) if out is None else out for out in outs]
    leak = leak.numpy() if _validate.is_array_leak(leak) else leak
    _NUMPY.run(op, x.detach().numpy(), leak, tuple(r.detach().numpy() for r in results))
    return results


def _tracks_grad(x: Any, leak: Any) -> bool:
    import torch

    leak_requires_grad = getattr(leak, "requires_grad", False)
    return (x.requires_grad or leak_requires_grad) and torch.is_grad_enabled()


def _check_out(out: Any, x: Any, dtype: Any, name: str) -> None:
    """Check a caller's ``out`` for a result of torch ``dtype``: the contract's checks,
    and no autograd history to break."""
    import torch

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
    for result, out, name in zip(results, outs, op.out_names):
        if out is not None:
            _check_out(out, x, result.dtype, name)
    return [result if out is None else out.copy_(result) for result, out in zip(results, outs)]


def _device(tensor: Any) -> Any:
    return tensor.device


def _sum_to_shape(tensor: Any, shape: Any) -> Any:
    """``tensor`` summed over the dimensions along which ``shape`` was broadcast to it."""
    lead = tensor.dim() - len(shape)
    if lead:
        tensor = tensor.sum(dim=tuple(range(lead)))
    repeated = tuple(d for d, n in enumerate(shape) if n == 1 and tensor.shape[d] != 1)
    return tensor.sum(dim=repeated, keepdim=True) if repeated else tensor


_RELU_FUNCTION = None


def _relu_function() -> Any:
    """``torch.autograd.Function`` for relu, built on first use (importing torch)."""
    global _RELU_FUNCTION
    if _RELU_FUNCTION is None:
        import torch

        class Relu(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any, leak: Any) -> Any:
                leak_is_tensor = _validate.is_array_leak(leak)
                ctx.save_for_backward(x, leak if leak_is_tensor else None)
                ctx.leak = None if leak_is_tensor else leak
                return _run(RELU, x.detach(), leak.detach() if leak_is_tensor else leak, (None,))[0]

            @staticmethod
            def backward(ctx: Any, grad: Any) -> tuple[Any, Any]:
                x, leak_tensor = ctx.saved_tensors
                leak = ctx.leak if leak_tensor is None else leak_tensor.detach()
                grad_x = grad_leak = None
                if ctx.needs_input_grad[0]:
                    grad_x = grad * _run(RELU_DASH, x.detach(), leak, (None,))[0]
                if leak_tensor is not None and ctx.needs_input_grad[1]:
                    # PReLU's gradient: grad * x where x <= 0, summed where the leak broadcast.
                    per_element = torch.where(x <= 0, grad * x, torch.zeros_like(grad))
                    grad_leak = _sum_to_shape(per_element, leak_tensor.shape).to(leak_tensor.dtype)
                return grad_x, grad_leak

        _RELU_FUNCTION = Relu
    return _RELU_FUNCTION
